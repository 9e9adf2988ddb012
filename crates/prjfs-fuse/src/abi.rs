//! The FUSE kernel wire ABI: `#[repr(C)]` request/reply bodies, opcodes and flags.
//!
//! Transcribed from the kernel's `include/uapi/linux/fuse.h` (protocol 7.40 plus the
//! 7.43 `request_timeout` field of the INIT reply). All integers are in host byte
//! order, as the kernel writes them. Every struct has a compile-time size check
//! against the kernel's `sizeof` (see the bottom of this file).
//!
//! Names follow the kernel: `struct fuse_init_out` is [`FuseInitOut`], field names
//! are unchanged (`type` becomes `typ`).

use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// ---------------------------------------------------------------------------------
// Versions and fixed numbers
// ---------------------------------------------------------------------------------

/// Major protocol version; a kernel with another major cannot be served.
pub const FUSE_KERNEL_VERSION: u32 = 7;
/// Minor protocol version this crate speaks: 7.40 brings passthrough
/// (`FUSE_PASSTHROUGH`, `fuse_open_out.backing_id`, `fuse_init_out.max_stack_depth`).
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 40;
/// Node id of the root directory.
pub const FUSE_ROOT_ID: u64 = 1;
/// Smallest read buffer the kernel accepts for `/dev/fuse` reads.
pub const FUSE_MIN_READ_BUFFER: usize = 8192;
/// Longest name the kernel accepts in an invalidation notification.
pub const FUSE_NAME_MAX: usize = 1024;

/// Size of `fuse_entry_out` before 7.9.
pub const FUSE_COMPAT_ENTRY_OUT_SIZE: usize = 120;
/// Size of `fuse_attr_out` before 7.9.
pub const FUSE_COMPAT_ATTR_OUT_SIZE: usize = 96;
/// Size of `fuse_mknod_in` before 7.12.
pub const FUSE_COMPAT_MKNOD_IN_SIZE: usize = 8;
/// Size of `fuse_write_in` (and `fuse_read_in`) before 7.9.
pub const FUSE_COMPAT_WRITE_IN_SIZE: usize = 24;
/// Size of `fuse_statfs_out` before 7.4.
pub const FUSE_COMPAT_STATFS_SIZE: usize = 48;
/// Size of `fuse_setxattr_in` unless `FUSE_SETXATTR_EXT` was negotiated.
pub const FUSE_COMPAT_SETXATTR_IN_SIZE: usize = 8;
/// Size of `fuse_init_out` before 7.5.
pub const FUSE_COMPAT_INIT_OUT_SIZE: usize = 8;
/// Size of `fuse_init_out` from 7.5 to 7.22.
pub const FUSE_COMPAT_22_INIT_OUT_SIZE: usize = 24;
/// Size of `fuse_init_in` before 7.36 (no `flags2`).
pub const FUSE_COMPAT_INIT_IN_SIZE: usize = 16;

/// High bit of `fuse_in_header.unique`: the kernel is resending this request
/// (only with `FUSE_HAS_RESEND`).
pub const FUSE_UNIQUE_RESEND: u64 = 1 << 63;
/// uid/gid the kernel sends when an idmapped mount cannot map the caller.
pub const FUSE_INVALID_UIDGID: u32 = u32::MAX;

// ---------------------------------------------------------------------------------
// Opcodes (enum fuse_opcode)
// ---------------------------------------------------------------------------------

#[allow(missing_docs)]
mod opcodes {
    pub const FUSE_LOOKUP: u32 = 1;
    pub const FUSE_FORGET: u32 = 2; // no reply
    pub const FUSE_GETATTR: u32 = 3;
    pub const FUSE_SETATTR: u32 = 4;
    pub const FUSE_READLINK: u32 = 5;
    pub const FUSE_SYMLINK: u32 = 6;
    pub const FUSE_MKNOD: u32 = 8;
    pub const FUSE_MKDIR: u32 = 9;
    pub const FUSE_UNLINK: u32 = 10;
    pub const FUSE_RMDIR: u32 = 11;
    pub const FUSE_RENAME: u32 = 12;
    pub const FUSE_LINK: u32 = 13;
    pub const FUSE_OPEN: u32 = 14;
    pub const FUSE_READ: u32 = 15;
    pub const FUSE_WRITE: u32 = 16;
    pub const FUSE_STATFS: u32 = 17;
    pub const FUSE_RELEASE: u32 = 18;
    pub const FUSE_FSYNC: u32 = 20;
    pub const FUSE_SETXATTR: u32 = 21;
    pub const FUSE_GETXATTR: u32 = 22;
    pub const FUSE_LISTXATTR: u32 = 23;
    pub const FUSE_REMOVEXATTR: u32 = 24;
    pub const FUSE_FLUSH: u32 = 25;
    pub const FUSE_INIT: u32 = 26;
    pub const FUSE_OPENDIR: u32 = 27;
    pub const FUSE_READDIR: u32 = 28;
    pub const FUSE_RELEASEDIR: u32 = 29;
    pub const FUSE_FSYNCDIR: u32 = 30;
    pub const FUSE_GETLK: u32 = 31;
    pub const FUSE_SETLK: u32 = 32;
    pub const FUSE_SETLKW: u32 = 33;
    pub const FUSE_ACCESS: u32 = 34;
    pub const FUSE_CREATE: u32 = 35;
    pub const FUSE_INTERRUPT: u32 = 36;
    pub const FUSE_BMAP: u32 = 37;
    pub const FUSE_DESTROY: u32 = 38;
    pub const FUSE_IOCTL: u32 = 39;
    pub const FUSE_POLL: u32 = 40;
    pub const FUSE_NOTIFY_REPLY: u32 = 41; // no reply
    pub const FUSE_BATCH_FORGET: u32 = 42; // no reply
    pub const FUSE_FALLOCATE: u32 = 43;
    pub const FUSE_READDIRPLUS: u32 = 44;
    pub const FUSE_RENAME2: u32 = 45;
    pub const FUSE_LSEEK: u32 = 46;
    pub const FUSE_COPY_FILE_RANGE: u32 = 47;
    pub const FUSE_SETUPMAPPING: u32 = 48;
    pub const FUSE_REMOVEMAPPING: u32 = 49;
    pub const FUSE_SYNCFS: u32 = 50;
    pub const FUSE_TMPFILE: u32 = 51;
    pub const FUSE_STATX: u32 = 52;
    /// 7.45: like COPY_FILE_RANGE, answered with a 64-bit count.
    pub const FUSE_COPY_FILE_RANGE_64: u32 = 53;
    pub const CUSE_INIT: u32 = 4096;
    /// `CUSE_INIT << 8`: a CUSE INIT seen with the other byte order.
    pub const CUSE_INIT_BSWAP_RESERVED: u32 = 1_048_576;
    /// `FUSE_INIT << 24`: a FUSE INIT seen with the other byte order.
    pub const FUSE_INIT_BSWAP_RESERVED: u32 = 436_207_616;
}
pub use opcodes::*;

/// The kernel's name for an opcode (`"FUSE_LOOKUP"`), for logs; `None` if unknown.
pub fn opcode_name(opcode: u32) -> Option<&'static str> {
    Some(match opcode {
        FUSE_LOOKUP => "FUSE_LOOKUP",
        FUSE_FORGET => "FUSE_FORGET",
        FUSE_GETATTR => "FUSE_GETATTR",
        FUSE_SETATTR => "FUSE_SETATTR",
        FUSE_READLINK => "FUSE_READLINK",
        FUSE_SYMLINK => "FUSE_SYMLINK",
        FUSE_MKNOD => "FUSE_MKNOD",
        FUSE_MKDIR => "FUSE_MKDIR",
        FUSE_UNLINK => "FUSE_UNLINK",
        FUSE_RMDIR => "FUSE_RMDIR",
        FUSE_RENAME => "FUSE_RENAME",
        FUSE_LINK => "FUSE_LINK",
        FUSE_OPEN => "FUSE_OPEN",
        FUSE_READ => "FUSE_READ",
        FUSE_WRITE => "FUSE_WRITE",
        FUSE_STATFS => "FUSE_STATFS",
        FUSE_RELEASE => "FUSE_RELEASE",
        FUSE_FSYNC => "FUSE_FSYNC",
        FUSE_SETXATTR => "FUSE_SETXATTR",
        FUSE_GETXATTR => "FUSE_GETXATTR",
        FUSE_LISTXATTR => "FUSE_LISTXATTR",
        FUSE_REMOVEXATTR => "FUSE_REMOVEXATTR",
        FUSE_FLUSH => "FUSE_FLUSH",
        FUSE_INIT => "FUSE_INIT",
        FUSE_OPENDIR => "FUSE_OPENDIR",
        FUSE_READDIR => "FUSE_READDIR",
        FUSE_RELEASEDIR => "FUSE_RELEASEDIR",
        FUSE_FSYNCDIR => "FUSE_FSYNCDIR",
        FUSE_GETLK => "FUSE_GETLK",
        FUSE_SETLK => "FUSE_SETLK",
        FUSE_SETLKW => "FUSE_SETLKW",
        FUSE_ACCESS => "FUSE_ACCESS",
        FUSE_CREATE => "FUSE_CREATE",
        FUSE_INTERRUPT => "FUSE_INTERRUPT",
        FUSE_BMAP => "FUSE_BMAP",
        FUSE_DESTROY => "FUSE_DESTROY",
        FUSE_IOCTL => "FUSE_IOCTL",
        FUSE_POLL => "FUSE_POLL",
        FUSE_NOTIFY_REPLY => "FUSE_NOTIFY_REPLY",
        FUSE_BATCH_FORGET => "FUSE_BATCH_FORGET",
        FUSE_FALLOCATE => "FUSE_FALLOCATE",
        FUSE_READDIRPLUS => "FUSE_READDIRPLUS",
        FUSE_RENAME2 => "FUSE_RENAME2",
        FUSE_LSEEK => "FUSE_LSEEK",
        FUSE_COPY_FILE_RANGE => "FUSE_COPY_FILE_RANGE",
        FUSE_SETUPMAPPING => "FUSE_SETUPMAPPING",
        FUSE_REMOVEMAPPING => "FUSE_REMOVEMAPPING",
        FUSE_SYNCFS => "FUSE_SYNCFS",
        FUSE_TMPFILE => "FUSE_TMPFILE",
        FUSE_STATX => "FUSE_STATX",
        FUSE_COPY_FILE_RANGE_64 => "FUSE_COPY_FILE_RANGE_64",
        CUSE_INIT => "CUSE_INIT",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------
// Notification codes (enum fuse_notify_code), sent as fuse_out_header.error
// ---------------------------------------------------------------------------------

#[allow(missing_docs)]
mod notify_codes {
    pub const FUSE_NOTIFY_POLL: i32 = 1;
    pub const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
    pub const FUSE_NOTIFY_INVAL_ENTRY: i32 = 3;
    pub const FUSE_NOTIFY_STORE: i32 = 4;
    pub const FUSE_NOTIFY_RETRIEVE: i32 = 5;
    pub const FUSE_NOTIFY_DELETE: i32 = 6;
    /// 7.40, with `FUSE_HAS_RESEND`.
    pub const FUSE_NOTIFY_RESEND: i32 = 7;
    /// 7.44.
    pub const FUSE_NOTIFY_INC_EPOCH: i32 = 8;
    /// 7.45.
    pub const FUSE_NOTIFY_PRUNE: i32 = 9;
}
pub use notify_codes::*;

/// `fuse_notify_inval_entry_out.flags`: only expire the dentry, do not drop it.
pub const FUSE_EXPIRE_ONLY: u32 = 1 << 0;

// ---------------------------------------------------------------------------------
// INIT flags. Bits 32..63 travel in `flags2` (when FUSE_INIT_EXT is set), so all
// are u64 here; split with `as u32` / `>> 32` when filling the wire structs.
// ---------------------------------------------------------------------------------

#[allow(missing_docs)]
mod init_flags {
    pub const FUSE_ASYNC_READ: u64 = 1 << 0;
    pub const FUSE_POSIX_LOCKS: u64 = 1 << 1;
    pub const FUSE_FILE_OPS: u64 = 1 << 2;
    pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
    pub const FUSE_BIG_WRITES: u64 = 1 << 5;
    pub const FUSE_DONT_MASK: u64 = 1 << 6;
    pub const FUSE_SPLICE_WRITE: u64 = 1 << 7;
    pub const FUSE_SPLICE_MOVE: u64 = 1 << 8;
    pub const FUSE_SPLICE_READ: u64 = 1 << 9;
    pub const FUSE_FLOCK_LOCKS: u64 = 1 << 10;
    pub const FUSE_HAS_IOCTL_DIR: u64 = 1 << 11;
    pub const FUSE_AUTO_INVAL_DATA: u64 = 1 << 12;
    pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
    pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const FUSE_ASYNC_DIO: u64 = 1 << 15;
    pub const FUSE_WRITEBACK_CACHE: u64 = 1 << 16;
    pub const FUSE_NO_OPEN_SUPPORT: u64 = 1 << 17;
    pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
    pub const FUSE_HANDLE_KILLPRIV: u64 = 1 << 19;
    pub const FUSE_POSIX_ACL: u64 = 1 << 20;
    pub const FUSE_ABORT_ERROR: u64 = 1 << 21;
    pub const FUSE_MAX_PAGES: u64 = 1 << 22;
    pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
    pub const FUSE_NO_OPENDIR_SUPPORT: u64 = 1 << 24;
    pub const FUSE_EXPLICIT_INVAL_DATA: u64 = 1 << 25;
    pub const FUSE_MAP_ALIGNMENT: u64 = 1 << 26;
    pub const FUSE_SUBMOUNTS: u64 = 1 << 27;
    pub const FUSE_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    /// The server takes the 16-byte `fuse_setxattr_in`; without it the kernel sends
    /// the 8-byte form.
    pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
    /// `fuse_init_in`/`fuse_init_out` carry `flags2` (bits 32..63).
    pub const FUSE_INIT_EXT: u64 = 1 << 30;
    pub const FUSE_INIT_RESERVED: u64 = 1 << 31;
    pub const FUSE_SECURITY_CTX: u64 = 1 << 32;
    pub const FUSE_HAS_INODE_DAX: u64 = 1 << 33;
    pub const FUSE_CREATE_SUPP_GROUP: u64 = 1 << 34;
    pub const FUSE_HAS_EXPIRE_ONLY: u64 = 1 << 35;
    pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
    /// 7.40: `FOPEN_PASSTHROUGH` with a backing id; set `max_stack_depth` too.
    pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
    pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
    pub const FUSE_HAS_RESEND: u64 = 1 << 39;
    pub const FUSE_ALLOW_IDMAP: u64 = 1 << 40;
    pub const FUSE_OVER_IO_URING: u64 = 1 << 41;
    /// 7.43: `fuse_init_out.request_timeout` is valid.
    pub const FUSE_REQUEST_TIMEOUT: u64 = 1 << 42;
}
pub use init_flags::*;

// ---------------------------------------------------------------------------------
// Per-request flags
// ---------------------------------------------------------------------------------

#[allow(missing_docs)]
mod request_flags {
    // fuse_setattr_in.valid
    pub const FATTR_MODE: u32 = 1 << 0;
    pub const FATTR_UID: u32 = 1 << 1;
    pub const FATTR_GID: u32 = 1 << 2;
    pub const FATTR_SIZE: u32 = 1 << 3;
    pub const FATTR_ATIME: u32 = 1 << 4;
    pub const FATTR_MTIME: u32 = 1 << 5;
    pub const FATTR_FH: u32 = 1 << 6;
    pub const FATTR_ATIME_NOW: u32 = 1 << 7;
    pub const FATTR_MTIME_NOW: u32 = 1 << 8;
    pub const FATTR_LOCKOWNER: u32 = 1 << 9;
    pub const FATTR_CTIME: u32 = 1 << 10;
    pub const FATTR_KILL_SUIDGID: u32 = 1 << 11;

    // fuse_open_out.open_flags
    pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
    pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
    pub const FOPEN_NONSEEKABLE: u32 = 1 << 2;
    pub const FOPEN_CACHE_DIR: u32 = 1 << 3;
    pub const FOPEN_STREAM: u32 = 1 << 4;
    pub const FOPEN_NOFLUSH: u32 = 1 << 5;
    pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
    /// 7.40: reads/writes go to the backing file named by `backing_id`.
    pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

    // fuse_open_in.open_flags / fuse_create_in.open_flags
    pub const FUSE_OPEN_KILL_SUIDGID: u32 = 1 << 0;

    // fuse_release_in.release_flags
    pub const FUSE_RELEASE_FLUSH: u32 = 1 << 0;
    pub const FUSE_RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;

    // fuse_getattr_in.getattr_flags
    pub const FUSE_GETATTR_FH: u32 = 1 << 0;

    // fuse_lk_in.lk_flags
    pub const FUSE_LK_FLOCK: u32 = 1 << 0;

    // fuse_write_in.write_flags
    pub const FUSE_WRITE_CACHE: u32 = 1 << 0;
    pub const FUSE_WRITE_LOCKOWNER: u32 = 1 << 1;
    pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;

    // fuse_read_in.read_flags
    pub const FUSE_READ_LOCKOWNER: u32 = 1 << 1;

    // fuse_fsync_in.fsync_flags
    pub const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;

    // fuse_attr.flags
    pub const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;
    pub const FUSE_ATTR_DAX: u32 = 1 << 1;

    // fuse_setxattr_in.setxattr_flags
    pub const FUSE_SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;
}
pub use request_flags::*;

/// Extension type of a supplementary-groups record (`fuse_ext_header.type`).
pub const FUSE_EXT_GROUPS: u32 = 32;
/// Extension types `0..=FUSE_MAX_NR_SECCTX` are security-context headers.
pub const FUSE_MAX_NR_SECCTX: u32 = 31;

// ---------------------------------------------------------------------------------
// /dev/fuse ioctls
// ---------------------------------------------------------------------------------

/// The ioctl "type" byte of `/dev/fuse`.
pub const FUSE_DEV_IOC_MAGIC: u8 = 229;
/// `_IOR(229, 0, uint32_t)`: attach this fd to the session whose fd is the argument.
pub const FUSE_DEV_IOC_CLONE: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::read::<u32>(FUSE_DEV_IOC_MAGIC, 0);
/// `_IOW(229, 1, struct fuse_backing_map)`: register a backing file, returns its id.
pub const FUSE_DEV_IOC_BACKING_OPEN: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::write::<FuseBackingMap>(FUSE_DEV_IOC_MAGIC, 1);
/// `_IOW(229, 2, uint32_t)`: drop a backing id.
pub const FUSE_DEV_IOC_BACKING_CLOSE: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::write::<u32>(FUSE_DEV_IOC_MAGIC, 2);

// ---------------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------------

macro_rules! wire_structs {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
    )*) => {
        $(
            $(#[$meta])*
            #[repr(C)]
            #[allow(missing_docs)]
            #[derive(
                Debug, Clone, Copy, Default, PartialEq, Eq,
                FromBytes, IntoBytes, Immutable, KnownLayout,
            )]
            pub struct $name { $( $(#[$fmeta])* pub $field: $ty ),* }
        )*
    };
}

wire_structs! {
    /// `struct fuse_attr`: inode attributes inside entry/attr replies.
    pub struct FuseAttr {
        ino: u64,
        size: u64,
        blocks: u64,
        atime: u64,
        mtime: u64,
        ctime: u64,
        atimensec: u32,
        mtimensec: u32,
        ctimensec: u32,
        mode: u32,
        nlink: u32,
        uid: u32,
        gid: u32,
        rdev: u32,
        blksize: u32,
        flags: u32,
    }

    /// `struct fuse_kstatfs`: file-system statistics.
    pub struct FuseKstatfs {
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
        padding: u32,
        spare: [u32; 6],
    }

    /// `struct fuse_file_lock`: a POSIX lock range.
    pub struct FuseFileLock {
        start: u64,
        end: u64,
        typ: u32,
        pid: u32,
    }

    /// `struct fuse_in_header`: starts every request.
    pub struct FuseInHeader {
        len: u32,
        opcode: u32,
        unique: u64,
        nodeid: u64,
        uid: u32,
        gid: u32,
        pid: u32,
        /// Length of the extensions that end the request, in 8-byte units.
        total_extlen: u16,
        padding: u16,
    }

    /// `struct fuse_out_header`: starts every reply and notification.
    pub struct FuseOutHeader {
        len: u32,
        /// Negative errno for replies, notify code for notifications.
        error: i32,
        /// 0 for notifications.
        unique: u64,
    }

    /// `struct fuse_init_in`: body of FUSE_INIT (16 bytes before 7.36).
    pub struct FuseInitIn {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u32,
        flags2: u32,
        unused: [u32; 11],
    }

    /// `struct fuse_init_out`: reply to FUSE_INIT (7.43 layout).
    pub struct FuseInitOut {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u32,
        max_background: u16,
        congestion_threshold: u16,
        max_write: u32,
        time_gran: u32,
        max_pages: u16,
        map_alignment: u16,
        flags2: u32,
        max_stack_depth: u32,
        request_timeout: u16,
        unused: [u16; 11],
    }

    /// `struct fuse_entry_out`: reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE.
    pub struct FuseEntryOut {
        nodeid: u64,
        generation: u64,
        entry_valid: u64,
        attr_valid: u64,
        entry_valid_nsec: u32,
        attr_valid_nsec: u32,
        attr: FuseAttr,
    }

    /// `struct fuse_forget_in`: body of FUSE_FORGET.
    pub struct FuseForgetIn {
        nlookup: u64,
    }

    /// `struct fuse_forget_one`: one record of FUSE_BATCH_FORGET.
    pub struct FuseForgetOne {
        nodeid: u64,
        nlookup: u64,
    }

    /// `struct fuse_batch_forget_in`: head of FUSE_BATCH_FORGET, `count` records follow.
    pub struct FuseBatchForgetIn {
        count: u32,
        dummy: u32,
    }

    /// `struct fuse_getattr_in`: body of FUSE_GETATTR.
    pub struct FuseGetattrIn {
        getattr_flags: u32,
        dummy: u32,
        fh: u64,
    }

    /// `struct fuse_attr_out`: reply to GETATTR and SETATTR.
    pub struct FuseAttrOut {
        attr_valid: u64,
        attr_valid_nsec: u32,
        dummy: u32,
        attr: FuseAttr,
    }

    /// `struct fuse_mknod_in`: body of FUSE_MKNOD, the name follows.
    pub struct FuseMknodIn {
        mode: u32,
        rdev: u32,
        umask: u32,
        padding: u32,
    }

    /// `struct fuse_mkdir_in`: body of FUSE_MKDIR, the name follows.
    pub struct FuseMkdirIn {
        mode: u32,
        umask: u32,
    }

    /// `struct fuse_rename_in`: body of FUSE_RENAME, both names follow.
    pub struct FuseRenameIn {
        newdir: u64,
    }

    /// `struct fuse_rename2_in`: body of FUSE_RENAME2, both names follow.
    pub struct FuseRename2In {
        newdir: u64,
        flags: u32,
        padding: u32,
    }

    /// `struct fuse_link_in`: body of FUSE_LINK, the new name follows.
    pub struct FuseLinkIn {
        oldnodeid: u64,
    }

    /// `struct fuse_setattr_in`: body of FUSE_SETATTR.
    pub struct FuseSetattrIn {
        valid: u32,
        padding: u32,
        fh: u64,
        size: u64,
        lock_owner: u64,
        atime: u64,
        mtime: u64,
        ctime: u64,
        atimensec: u32,
        mtimensec: u32,
        ctimensec: u32,
        mode: u32,
        unused4: u32,
        uid: u32,
        gid: u32,
        unused5: u32,
    }

    /// `struct fuse_open_in`: body of FUSE_OPEN and FUSE_OPENDIR.
    pub struct FuseOpenIn {
        flags: u32,
        open_flags: u32,
    }

    /// `struct fuse_create_in`: body of FUSE_CREATE, the name follows.
    pub struct FuseCreateIn {
        flags: u32,
        mode: u32,
        umask: u32,
        open_flags: u32,
    }

    /// `struct fuse_open_out`: reply to OPEN, OPENDIR, and (after the entry) CREATE.
    pub struct FuseOpenOut {
        fh: u64,
        open_flags: u32,
        /// With `FOPEN_PASSTHROUGH`: id from `FUSE_DEV_IOC_BACKING_OPEN` (7.40).
        backing_id: i32,
    }

    /// `struct fuse_release_in`: body of FUSE_RELEASE and FUSE_RELEASEDIR.
    pub struct FuseReleaseIn {
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
    }

    /// `struct fuse_flush_in`: body of FUSE_FLUSH.
    pub struct FuseFlushIn {
        fh: u64,
        unused: u32,
        padding: u32,
        lock_owner: u64,
    }

    /// `struct fuse_read_in`: body of FUSE_READ, FUSE_READDIR and FUSE_READDIRPLUS.
    pub struct FuseReadIn {
        fh: u64,
        offset: u64,
        size: u32,
        read_flags: u32,
        lock_owner: u64,
        flags: u32,
        padding: u32,
    }

    /// `struct fuse_write_in`: body of FUSE_WRITE, the data follows.
    pub struct FuseWriteIn {
        fh: u64,
        offset: u64,
        size: u32,
        write_flags: u32,
        lock_owner: u64,
        flags: u32,
        padding: u32,
    }

    /// `struct fuse_write_out`: reply to FUSE_WRITE.
    pub struct FuseWriteOut {
        size: u32,
        padding: u32,
    }

    /// `struct fuse_statfs_out`: reply to FUSE_STATFS.
    pub struct FuseStatfsOut {
        st: FuseKstatfs,
    }

    /// `struct fuse_fsync_in`: body of FUSE_FSYNC and FUSE_FSYNCDIR.
    pub struct FuseFsyncIn {
        fh: u64,
        fsync_flags: u32,
        padding: u32,
    }

    /// `struct fuse_setxattr_in` (7.33 form); only the first 8 bytes are sent
    /// unless `FUSE_SETXATTR_EXT` was negotiated. Name and value follow.
    pub struct FuseSetxattrIn {
        size: u32,
        flags: u32,
        setxattr_flags: u32,
        padding: u32,
    }

    /// `struct fuse_getxattr_in`: body of FUSE_GETXATTR (name follows) and LISTXATTR.
    pub struct FuseGetxattrIn {
        size: u32,
        padding: u32,
    }

    /// `struct fuse_getxattr_out`: reply to a size query (request size 0).
    pub struct FuseGetxattrOut {
        size: u32,
        padding: u32,
    }

    /// `struct fuse_lk_in`: body of FUSE_GETLK/SETLK/SETLKW.
    pub struct FuseLkIn {
        fh: u64,
        owner: u64,
        lk: FuseFileLock,
        lk_flags: u32,
        padding: u32,
    }

    /// `struct fuse_lk_out`: reply to FUSE_GETLK.
    pub struct FuseLkOut {
        lk: FuseFileLock,
    }

    /// `struct fuse_access_in`: body of FUSE_ACCESS.
    pub struct FuseAccessIn {
        mask: u32,
        padding: u32,
    }

    /// `struct fuse_interrupt_in`: body of FUSE_INTERRUPT.
    pub struct FuseInterruptIn {
        unique: u64,
    }

    /// `struct fuse_fallocate_in`: body of FUSE_FALLOCATE.
    pub struct FuseFallocateIn {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        padding: u32,
    }

    /// `struct fuse_dirent` header; `namelen` name bytes follow, padded to 8.
    pub struct FuseDirent {
        ino: u64,
        off: u64,
        namelen: u32,
        /// `(mode & S_IFMT) >> 12`, i.e. a `DT_*` value.
        typ: u32,
    }

    /// `struct fuse_direntplus` header: an entry reply, then a dirent header.
    pub struct FuseDirentplus {
        entry_out: FuseEntryOut,
        dirent: FuseDirent,
    }

    /// `struct fuse_notify_inval_inode_out`: drop cached data of an inode.
    pub struct FuseNotifyInvalInodeOut {
        ino: u64,
        /// Start of the range; negative means attributes only.
        off: i64,
        /// Length of the range; 0 or less means to the end.
        len: i64,
    }

    /// `struct fuse_notify_inval_entry_out`: drop a cached name; the name and a
    /// NUL follow.
    pub struct FuseNotifyInvalEntryOut {
        parent: u64,
        namelen: u32,
        flags: u32,
    }

    /// `struct fuse_notify_delete_out`: a name was deleted; the name and a NUL follow.
    pub struct FuseNotifyDeleteOut {
        parent: u64,
        child: u64,
        namelen: u32,
        padding: u32,
    }

    /// `struct fuse_notify_store_out`: push data into the page cache; data follows.
    pub struct FuseNotifyStoreOut {
        nodeid: u64,
        offset: u64,
        size: u32,
        padding: u32,
    }

    /// `struct fuse_lseek_in`: body of FUSE_LSEEK.
    pub struct FuseLseekIn {
        fh: u64,
        offset: u64,
        whence: u32,
        padding: u32,
    }

    /// `struct fuse_lseek_out`: reply to FUSE_LSEEK.
    pub struct FuseLseekOut {
        offset: u64,
    }

    /// `struct fuse_copy_file_range_in`: body of FUSE_COPY_FILE_RANGE.
    pub struct FuseCopyFileRangeIn {
        fh_in: u64,
        off_in: u64,
        nodeid_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u64,
    }

    /// `struct fuse_ext_header`: starts each request extension (security
    /// context, supplementary groups) after the request body.
    pub struct FuseExtHeader {
        size: u32,
        typ: u32,
    }

    /// `struct fuse_backing_map`: argument of `FUSE_DEV_IOC_BACKING_OPEN`.
    pub struct FuseBackingMap {
        fd: i32,
        flags: u32,
        padding: u64,
    }
}

/// Offset of the name inside a `fuse_dirent` record.
pub const FUSE_NAME_OFFSET: usize = size_of::<FuseDirent>();
/// Offset of the name inside a `fuse_direntplus` record.
pub const FUSE_NAME_OFFSET_DIRENTPLUS: usize = size_of::<FuseDirentplus>();

/// Rounds a directory record length up to the kernel's 8-byte record alignment.
pub const fn fuse_rec_align(len: usize) -> usize {
    (len + 7) & !7
}

// Sizes from the kernel header (sizeof on x86_64; the ABI pads every struct to 8).
const _: () = {
    assert!(size_of::<FuseAttr>() == 88);
    assert!(size_of::<FuseKstatfs>() == 80);
    assert!(size_of::<FuseFileLock>() == 24);
    assert!(size_of::<FuseInHeader>() == 40);
    assert!(size_of::<FuseOutHeader>() == 16);
    assert!(size_of::<FuseInitIn>() == 64);
    assert!(size_of::<FuseInitOut>() == 64);
    assert!(size_of::<FuseEntryOut>() == 128);
    assert!(size_of::<FuseForgetIn>() == 8);
    assert!(size_of::<FuseForgetOne>() == 16);
    assert!(size_of::<FuseBatchForgetIn>() == 8);
    assert!(size_of::<FuseGetattrIn>() == 16);
    assert!(size_of::<FuseAttrOut>() == 104);
    assert!(size_of::<FuseMknodIn>() == 16);
    assert!(size_of::<FuseMkdirIn>() == 8);
    assert!(size_of::<FuseRenameIn>() == 8);
    assert!(size_of::<FuseRename2In>() == 16);
    assert!(size_of::<FuseLinkIn>() == 8);
    assert!(size_of::<FuseSetattrIn>() == 88);
    assert!(size_of::<FuseOpenIn>() == 8);
    assert!(size_of::<FuseCreateIn>() == 16);
    assert!(size_of::<FuseOpenOut>() == 16);
    assert!(size_of::<FuseReleaseIn>() == 24);
    assert!(size_of::<FuseFlushIn>() == 24);
    assert!(size_of::<FuseReadIn>() == 40);
    assert!(size_of::<FuseWriteIn>() == 40);
    assert!(size_of::<FuseWriteOut>() == 8);
    assert!(size_of::<FuseStatfsOut>() == 80);
    assert!(size_of::<FuseFsyncIn>() == 16);
    assert!(size_of::<FuseSetxattrIn>() == 16);
    assert!(size_of::<FuseGetxattrIn>() == 8);
    assert!(size_of::<FuseGetxattrOut>() == 8);
    assert!(size_of::<FuseLkIn>() == 48);
    assert!(size_of::<FuseLkOut>() == 24);
    assert!(size_of::<FuseAccessIn>() == 8);
    assert!(size_of::<FuseInterruptIn>() == 8);
    assert!(size_of::<FuseFallocateIn>() == 32);
    assert!(size_of::<FuseDirent>() == 24);
    assert!(size_of::<FuseDirentplus>() == 152);
    assert!(size_of::<FuseNotifyInvalInodeOut>() == 24);
    assert!(size_of::<FuseNotifyInvalEntryOut>() == 16);
    assert!(size_of::<FuseNotifyDeleteOut>() == 24);
    assert!(size_of::<FuseNotifyStoreOut>() == 24);
    assert!(size_of::<FuseLseekIn>() == 24);
    assert!(size_of::<FuseLseekOut>() == 8);
    assert!(size_of::<FuseCopyFileRangeIn>() == 56);
    assert!(size_of::<FuseExtHeader>() == 8);
    assert!(size_of::<FuseBackingMap>() == 16);
    // Compat sizes are prefixes of the current structs.
    assert!(FUSE_COMPAT_WRITE_IN_SIZE < size_of::<FuseWriteIn>());
    assert!(FUSE_COMPAT_SETXATTR_IN_SIZE < size_of::<FuseSetxattrIn>());
    assert!(FUSE_COMPAT_MKNOD_IN_SIZE < size_of::<FuseMknodIn>());
    assert!(FUSE_COMPAT_INIT_IN_SIZE < size_of::<FuseInitIn>());
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn ioctl_numbers_match_the_kernel_encoding() {
        // Generic Linux ioctl encoding: dir << 30 | size << 16 | type << 8 | nr,
        // with read = 2, write = 1 (x86, arm, riscv, ...).
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86"))]
        {
            assert_eq!(FUSE_DEV_IOC_CLONE as u64, 0x8004_E500);
            assert_eq!(FUSE_DEV_IOC_BACKING_OPEN as u64, 0x4010_E501);
            assert_eq!(FUSE_DEV_IOC_BACKING_CLOSE as u64, 0x4004_E502);
        }
        assert_eq!((FUSE_DEV_IOC_CLONE as u64 >> 8) & 0xff, 229);
    }

    #[test]
    fn field_offsets_of_the_new_fields() {
        assert_eq!(offset_of!(FuseInHeader, total_extlen), 36);
        assert_eq!(offset_of!(FuseInitOut, max_pages), 28);
        assert_eq!(offset_of!(FuseInitOut, flags2), 32);
        assert_eq!(offset_of!(FuseInitOut, max_stack_depth), 36);
        assert_eq!(offset_of!(FuseInitOut, request_timeout), 40);
        assert_eq!(offset_of!(FuseOpenOut, backing_id), 12);
        assert_eq!(offset_of!(FuseEntryOut, attr), 40);
        assert_eq!(offset_of!(FuseAttrOut, attr), 16);
        assert_eq!(offset_of!(FuseInitIn, flags2), 16);
    }

    #[test]
    fn split_flags_fit_flags2() {
        assert_eq!((FUSE_PASSTHROUGH >> 32) as u32, 1 << 5);
        assert_eq!(FUSE_INIT_EXT as u32, 1 << 30);
    }

    #[test]
    fn opcode_names() {
        assert_eq!(opcode_name(FUSE_INTERRUPT), Some("FUSE_INTERRUPT"));
        assert_eq!(opcode_name(7), None);
    }

    #[test]
    fn rec_align() {
        assert_eq!(fuse_rec_align(24), 24);
        assert_eq!(fuse_rec_align(25), 32);
        assert_eq!(fuse_rec_align(32), 32);
    }
}
