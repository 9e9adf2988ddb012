//! Byte-level decoder tests. Every buffer is built by hand, field by field, in the
//! kernel's layout (host byte order), independently of the structs in `abi`.

use super::*;

const UNIQUE: u64 = 0x1122_3344_5566_7788;
const NODEID: u64 = 42;
const MINOR: u32 = 40;

/// Appends host-order integers and raw bytes.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// A whole request: a `fuse_in_header` followed by `body`.
fn request(opcode: u32, body: Bytes) -> Vec<u8> {
    request_ext(opcode, body, 0)
}

/// As [`request`], announcing `total_extlen` 8-byte units of extensions, which the
/// caller has put at the end of `body`.
fn request_ext(opcode: u32, body: Bytes, total_extlen: u16) -> Vec<u8> {
    let len = u32::try_from(40 + body.0.len()).expect("test bodies are small");
    Bytes::default()
        .u32(len) //          len: header + body
        .u32(opcode) //       opcode
        .u64(UNIQUE) //       unique
        .u64(NODEID) //       nodeid
        .u32(1000) //         uid
        .u32(100) //          gid
        .u32(4321) //         pid
        .u16(total_extlen) // total_extlen
        .u16(0) //            padding
        .raw(&body.0)
        .0
}

fn op(msg: &[u8]) -> Operation<'_> {
    decode(msg, MINOR).expect("request should decode").1
}

fn err(msg: &[u8]) -> DecodeErrorReason {
    let e = decode(msg, MINOR).expect_err("request should not decode");
    e.reason
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn header_fields() {
    let msg = request(FUSE_STATFS, Bytes::default());
    let (h, op) = decode(&msg, MINOR).expect("statfs should decode");
    assert_eq!(
        h,
        RequestHeader {
            len: 40,
            opcode: FUSE_STATFS,
            unique: UNIQUE,
            nodeid: NODEID,
            uid: 1000,
            gid: 100,
            pid: 4321,
        }
    );
    assert_eq!(op, Operation::StatFs);
}

#[test]
fn init_with_flags2() {
    let body = Bytes::default()
        .u32(7) //                          major
        .u32(43) //                         minor
        .u32(0x2_0000) //                   max_readahead
        .u32((1 << 30) | (1 << 13) | 1) //  flags: INIT_EXT | DO_READDIRPLUS | ASYNC_READ
        .u32(1 << 5) //                     flags2: bit 37 = PASSTHROUGH
        .raw(&[0; 44]); //                  unused[11]
    let msg = request(FUSE_INIT, body);
    assert_eq!(
        op(&msg),
        Operation::Init {
            major: 7,
            minor: 43,
            max_readahead: 0x2_0000,
            flags: FUSE_INIT_EXT | FUSE_DO_READDIRPLUS | FUSE_ASYNC_READ | FUSE_PASSTHROUGH,
        }
    );
}

#[test]
fn init_ignores_flags2_without_init_ext() {
    let body = Bytes::default()
        .u32(7) //          major
        .u32(40) //         minor
        .u32(4096) //       max_readahead
        .u32(1) //          flags: ASYNC_READ, no INIT_EXT
        .u32(0xffff_ffff) // flags2: must be ignored
        .raw(&[0; 44]); //  unused[11]
    let msg = request(FUSE_INIT, body);
    let Operation::Init { flags, .. } = op(&msg) else {
        panic!("expected Init");
    };
    assert_eq!(flags, FUSE_ASYNC_READ);
}

#[test]
fn init_pre_7_36_body_of_16_bytes() {
    let body = Bytes::default()
        .u32(7) //    major
        .u32(31) //   minor
        .u32(4096) // max_readahead
        .u32(1 << 30); // flags: INIT_EXT set, but there is no flags2 field
    let msg = request(FUSE_INIT, body);
    assert_eq!(
        op(&msg),
        Operation::Init {
            major: 7,
            minor: 31,
            max_readahead: 4096,
            flags: FUSE_INIT_EXT,
        }
    );
}

#[test]
fn init_from_another_major_keeps_major_and_minor() {
    let body = Bytes::default()
        .u32(8) // major
        .u32(0); // minor; nothing else is promised for another major
    let msg = request(FUSE_INIT, body);
    let Operation::Init { major, minor, .. } = op(&msg) else {
        panic!("expected Init");
    };
    assert_eq!((major, minor), (8, 0));
}

#[test]
fn lookup() {
    let msg = request(FUSE_LOOKUP, Bytes::default().raw(b"hello.txt\0")); // name, NUL
    assert_eq!(
        op(&msg),
        Operation::Lookup {
            name: os("hello.txt")
        }
    );
}

#[test]
fn lookup_name_without_nul() {
    let msg = request(FUSE_LOOKUP, Bytes::default().raw(b"hello")); // no NUL
    assert_eq!(err(&msg), DecodeErrorReason::MissingNul { what: "name" });
}

#[test]
fn lookup_with_empty_body() {
    let msg = request(FUSE_LOOKUP, Bytes::default());
    assert!(matches!(err(&msg), DecodeErrorReason::MissingNul { .. }));
}

#[test]
fn getattr_with_fh() {
    let body = Bytes::default()
        .u32(1) //   getattr_flags: FUSE_GETATTR_FH
        .u32(0) //   dummy
        .u64(77); // fh
    let msg = request(FUSE_GETATTR, body);
    assert_eq!(op(&msg), Operation::GetAttr { fh: Some(77) });
}

#[test]
fn getattr_without_fh() {
    let body = Bytes::default()
        .u32(0) //   getattr_flags: none
        .u32(0) //   dummy
        .u64(77); // fh: garbage, not to be reported
    let msg = request(FUSE_GETATTR, body);
    assert_eq!(op(&msg), Operation::GetAttr { fh: None });
}

#[test]
fn getattr_before_7_9_has_no_body() {
    let msg = request(FUSE_GETATTR, Bytes::default());
    let (_, op) = decode(&msg, 8).expect("old getattr should decode");
    assert_eq!(op, Operation::GetAttr { fh: None });
}

#[test]
fn getattr_short_body() {
    let body = Bytes::default().u32(1).u32(0); // fh missing
    let msg = request(FUSE_GETATTR, body);
    assert_eq!(
        err(&msg),
        DecodeErrorReason::ShortBody {
            what: "fuse_getattr_in",
            needed: 16,
            left: 8
        }
    );
}

#[test]
fn setattr_size_mode_and_times() {
    let valid = FATTR_MODE
        | FATTR_SIZE
        | FATTR_FH
        | FATTR_ATIME
        | FATTR_ATIME_NOW
        | FATTR_MTIME
        | FATTR_CTIME;
    let body = Bytes::default()
        .u32(valid) //                     valid
        .u32(0) //                         padding
        .u64(9) //                         fh
        .u64(4096) //                      size
        .u64(0) //                         lock_owner
        .u64(111) //                       atime (ignored: ATIME_NOW)
        .u64(1_700_000_000) //             mtime
        .u64((-5_i64) as u64) //           ctime: before the epoch
        .u32(1) //                         atimensec
        .u32(500) //                       mtimensec
        .u32(7) //                         ctimensec
        .u32(0o100_644) //                 mode
        .u32(0) //                         unused4
        .u32(55) //                        uid (not in valid)
        .u32(66) //                        gid (not in valid)
        .u32(0); //                        unused5
    let msg = request(FUSE_SETATTR, body);
    assert_eq!(
        op(&msg),
        Operation::SetAttr {
            valid,
            fh: Some(9),
            size: Some(4096),
            mode: Some(0o100_644),
            uid: None,
            gid: None,
            atime: Some(TimeOrNow::Now),
            mtime: Some(TimeOrNow::Time {
                secs: 1_700_000_000,
                nsecs: 500
            }),
            ctime: Some((-5, 7)),
        }
    );
}

#[test]
fn setattr_owner_only() {
    let body = Bytes::default()
        .u32(FATTR_UID | FATTR_GID) // valid
        .raw(&[0; 4 + 8 * 6 + 4 * 5]) // padding .. unused4
        .u32(55) // uid
        .u32(66) // gid
        .u32(0); // unused5
    let msg = request(FUSE_SETATTR, body);
    let Operation::SetAttr {
        uid,
        gid,
        size,
        atime,
        ..
    } = op(&msg)
    else {
        panic!("expected SetAttr");
    };
    assert_eq!((uid, gid, size, atime), (Some(55), Some(66), None, None));
}

#[test]
fn symlink_has_two_names() {
    let body = Bytes::default()
        .raw(b"link\0") //           entry name, NUL
        .raw(b"../target/file\0"); // link target, NUL
    let msg = request(FUSE_SYMLINK, body);
    assert_eq!(
        op(&msg),
        Operation::Symlink {
            name: os("link"),
            target: os("../target/file"),
        }
    );
}

#[test]
fn symlink_target_without_nul() {
    let msg = request(FUSE_SYMLINK, Bytes::default().raw(b"link\0target"));
    assert_eq!(
        err(&msg),
        DecodeErrorReason::MissingNul {
            what: "link target"
        }
    );
}

#[test]
fn mknod_and_mkdir() {
    let body = Bytes::default()
        .u32(0o010_644) // mode: FIFO
        .u32(0) //        rdev
        .u32(0o022) //    umask
        .u32(0) //        padding
        .raw(b"fifo\0"); // name
    assert_eq!(
        op(&request(FUSE_MKNOD, body)),
        Operation::MkNod {
            name: os("fifo"),
            mode: 0o010_644,
            rdev: 0,
            umask: 0o022,
        }
    );
    let body = Bytes::default()
        .u32(0o755) // mode
        .u32(0o027) // umask
        .raw(b"dir\0"); // name
    assert_eq!(
        op(&request(FUSE_MKDIR, body)),
        Operation::MkDir {
            name: os("dir"),
            mode: 0o755,
            umask: 0o027,
        }
    );
}

#[test]
fn mknod_before_7_12_is_8_bytes() {
    let body = Bytes::default()
        .u32(0o100_600) // mode
        .u32(0) //         rdev
        .raw(b"f\0"); //   name, straight after
    let msg = request(FUSE_MKNOD, body);
    let (_, op) = decode(&msg, 11).expect("old mknod should decode");
    assert_eq!(
        op,
        Operation::MkNod {
            name: os("f"),
            mode: 0o100_600,
            rdev: 0,
            umask: 0,
        }
    );
}

#[test]
fn unlink_rmdir_removexattr() {
    assert_eq!(
        op(&request(FUSE_UNLINK, Bytes::default().raw(b"a\0"))),
        Operation::Unlink { name: os("a") }
    );
    assert_eq!(
        op(&request(FUSE_RMDIR, Bytes::default().raw(b"d\0"))),
        Operation::RmDir { name: os("d") }
    );
    assert_eq!(
        op(&request(
            FUSE_REMOVEXATTR,
            Bytes::default().raw(b"user.x\0")
        )),
        Operation::RemoveXattr { name: os("user.x") }
    );
}

#[test]
fn rename_old_form() {
    let body = Bytes::default()
        .u64(5) //            newdir
        .raw(b"old\0") //     old name
        .raw(b"new\0"); //    new name
    assert_eq!(
        op(&request(FUSE_RENAME, body)),
        Operation::Rename {
            newdir: 5,
            name: os("old"),
            newname: os("new"),
            flags: 0,
        }
    );
}

#[test]
fn rename2_with_flags() {
    let body = Bytes::default()
        .u64(5) //            newdir
        .u32(1) //            flags: RENAME_NOREPLACE
        .u32(0) //            padding
        .raw(b"old\0") //     old name
        .raw(b"new\0"); //    new name
    assert_eq!(
        op(&request(FUSE_RENAME2, body)),
        Operation::Rename {
            newdir: 5,
            name: os("old"),
            newname: os("new"),
            flags: 1,
        }
    );
}

#[test]
fn rename2_second_name_without_nul() {
    let body = Bytes::default().u64(5).u32(0).u32(0).raw(b"old\0new");
    assert_eq!(
        err(&request(FUSE_RENAME2, body)),
        DecodeErrorReason::MissingNul { what: "new name" }
    );
}

#[test]
fn link() {
    let body = Bytes::default()
        .u64(17) //          oldnodeid
        .raw(b"alias\0"); // new name
    assert_eq!(
        op(&request(FUSE_LINK, body)),
        Operation::Link {
            oldnodeid: 17,
            newname: os("alias"),
        }
    );
}

#[test]
fn open_and_opendir() {
    let body = || {
        Bytes::default()
            .u32(0o2 | 0o100_000) // flags: O_RDWR | O_LARGEFILE
            .u32(1) //               open_flags: FUSE_OPEN_KILL_SUIDGID
    };
    assert_eq!(
        op(&request(FUSE_OPEN, body())),
        Operation::Open {
            flags: 0o100_002,
            open_flags: 1
        }
    );
    assert_eq!(
        op(&request(FUSE_OPENDIR, body())),
        Operation::OpenDir { flags: 0o100_002 }
    );
}

#[test]
fn read() {
    let body = Bytes::default()
        .u64(3) //        fh
        .u64(8192) //     offset
        .u32(4096) //     size
        .u32(0) //        read_flags: no lock owner
        .u64(99) //       lock_owner (not valid)
        .u32(0o100_000) // flags
        .u32(0); //       padding
    assert_eq!(
        op(&request(FUSE_READ, body)),
        Operation::Read {
            fh: 3,
            offset: 8192,
            size: 4096,
            flags: 0o100_000,
            lock_owner: None,
        }
    );
}

#[test]
fn read_with_lock_owner() {
    let body = Bytes::default()
        .u64(3) //    fh
        .u64(0) //    offset
        .u32(10) //   size
        .u32(2) //    read_flags: FUSE_READ_LOCKOWNER
        .u64(99) //   lock_owner
        .u32(0) //    flags
        .u32(0); //   padding
    let Operation::Read { lock_owner, .. } = op(&request(FUSE_READ, body)) else {
        panic!("expected Read");
    };
    assert_eq!(lock_owner, Some(99));
}

#[test]
fn readdir_and_readdirplus() {
    let body = || {
        Bytes::default()
            .u64(8) //    fh
            .u64(3) //    offset: cookie of the next entry
            .u32(4096) // size
            .u32(0) //    read_flags
            .u64(0) //    lock_owner
            .u32(0) //    flags
            .u32(0) //    padding
    };
    assert_eq!(
        op(&request(FUSE_READDIR, body())),
        Operation::ReadDir {
            fh: 8,
            offset: 3,
            size: 4096
        }
    );
    assert_eq!(
        op(&request(FUSE_READDIRPLUS, body())),
        Operation::ReadDirPlus {
            fh: 8,
            offset: 3,
            size: 4096
        }
    );
}

#[test]
fn write_with_data() {
    let body = Bytes::default()
        .u64(4) //        fh
        .u64(100) //      offset
        .u32(5) //        size
        .u32(2) //        write_flags: FUSE_WRITE_LOCKOWNER
        .u64(1) //        lock_owner
        .u32(0o1) //      flags: O_WRONLY
        .u32(0) //        padding
        .raw(b"hello"); // data
    assert_eq!(
        op(&request(FUSE_WRITE, body)),
        Operation::Write {
            fh: 4,
            offset: 100,
            data: b"hello",
            write_flags: 2,
            flags: 1,
        }
    );
}

#[test]
fn write_data_shorter_than_size() {
    let body = Bytes::default()
        .u64(4)
        .u64(0)
        .u32(10) // size: 10 bytes promised
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .raw(b"hello"); // only 5 sent
    assert_eq!(
        err(&request(FUSE_WRITE, body)),
        DecodeErrorReason::ShortBody {
            what: "write data",
            needed: 10,
            left: 5
        }
    );
}

#[test]
fn write_before_7_9_has_24_byte_header() {
    let body = Bytes::default()
        .u64(4) //   fh
        .u64(7) //   offset
        .u32(3) //   size
        .u32(0) //   write_flags
        .raw(b"abc"); // data, straight after
    let msg = request(FUSE_WRITE, body);
    let (_, op) = decode(&msg, 8).expect("old write should decode");
    assert_eq!(
        op,
        Operation::Write {
            fh: 4,
            offset: 7,
            data: b"abc",
            write_flags: 0,
            flags: 0,
        }
    );
}

#[test]
fn release_flush_fsync() {
    let body = Bytes::default()
        .u64(6) //   fh
        .u32(2) //   flags: O_RDWR
        .u32(1) //   release_flags: FUSE_RELEASE_FLUSH
        .u64(12); // lock_owner
    assert_eq!(
        op(&request(FUSE_RELEASE, body)),
        Operation::Release {
            fh: 6,
            flags: 2,
            release_flags: 1,
            lock_owner: 12,
        }
    );
    let body = Bytes::default()
        .u64(6) //   fh
        .u32(0) //   unused
        .u32(0) //   padding
        .u64(12); // lock_owner
    assert_eq!(
        op(&request(FUSE_FLUSH, body)),
        Operation::Flush {
            fh: 6,
            lock_owner: 12
        }
    );
    let body = Bytes::default()
        .u64(6) //  fh
        .u32(1) //  fsync_flags: FDATASYNC
        .u32(0); // padding
    assert_eq!(
        op(&request(FUSE_FSYNC, body)),
        Operation::Fsync {
            fh: 6,
            datasync: true
        }
    );
    let body = Bytes::default().u64(6).u32(0).u32(0);
    assert_eq!(
        op(&request(FUSE_FSYNCDIR, body)),
        Operation::FsyncDir {
            fh: 6,
            datasync: false
        }
    );
    let body = Bytes::default().u64(6).u32(0o200_000).u32(0).u64(0);
    assert_eq!(
        op(&request(FUSE_RELEASEDIR, body)),
        Operation::ReleaseDir {
            fh: 6,
            flags: 0o200_000
        }
    );
}

#[test]
fn setxattr_compat_form() {
    let body = Bytes::default()
        .u32(3) //            size of the value
        .u32(1) //            flags: XATTR_CREATE
        .raw(b"user.k\0") //  name
        .raw(b"v\0w"); //     value: may hold NULs
    assert_eq!(
        op(&request(FUSE_SETXATTR, body)),
        Operation::SetXattr {
            name: os("user.k"),
            value: b"v\0w",
            flags: 1,
        }
    );
}

#[test]
fn setxattr_ext_form() {
    let body = Bytes::default()
        .u32(2) //            size of the value
        .u32(2) //            flags: XATTR_REPLACE
        .u32(1) //            setxattr_flags: ACL_KILL_SGID
        .u32(0) //            padding
        .raw(b"user.k\0") //  name
        .raw(b"ab"); //       value
    let msg = request(FUSE_SETXATTR, body);
    let neg = Negotiated {
        minor: MINOR,
        setxattr_ext: true,
    };
    let (_, op) = decode_with(&msg, neg).expect("ext setxattr should decode");
    assert_eq!(
        op,
        Operation::SetXattr {
            name: os("user.k"),
            value: b"ab",
            flags: 2,
        }
    );
}

#[test]
fn setxattr_ext_form_needs_the_negotiated_flag() {
    // The 16-byte form decoded without FUSE_SETXATTR_EXT: bytes 8..16 (setxattr_flags
    // 1 and padding 0) are taken as the name, which ends at the first NUL byte.
    let body = Bytes::default()
        .u32(2)
        .u32(0)
        .u32(1)
        .u32(0)
        .raw(b"user.k\0")
        .raw(b"ab");
    let msg = request(FUSE_SETXATTR, body);
    let Operation::SetXattr { name, .. } = op(&msg) else {
        panic!("expected SetXattr");
    };
    assert_ne!(name, os("user.k"));
}

#[test]
fn setxattr_value_short() {
    let body = Bytes::default().u32(9).u32(0).raw(b"user.k\0").raw(b"ab");
    assert!(matches!(
        err(&request(FUSE_SETXATTR, body)),
        DecodeErrorReason::ShortBody {
            what: "xattr value",
            ..
        }
    ));
}

#[test]
fn getxattr_and_listxattr() {
    let body = Bytes::default()
        .u32(256) //           size
        .u32(0) //             padding
        .raw(b"user.k\0"); //  name
    assert_eq!(
        op(&request(FUSE_GETXATTR, body)),
        Operation::GetXattr {
            name: os("user.k"),
            size: 256
        }
    );
    let body = Bytes::default()
        .u32(0) // size: 0 = query the size
        .u32(0); // padding
    assert_eq!(
        op(&request(FUSE_LISTXATTR, body)),
        Operation::ListXattr { size: 0 }
    );
}

#[test]
fn access() {
    let body = Bytes::default()
        .u32(4) // mask: R_OK
        .u32(0); // padding
    assert_eq!(
        op(&request(FUSE_ACCESS, body)),
        Operation::Access { mask: 4 }
    );
}

#[test]
fn create() {
    let body = Bytes::default()
        .u32(0o100_101) //   flags: O_LARGEFILE | O_CREAT | O_WRONLY
        .u32(0o100_644) //   mode
        .u32(0o022) //       umask
        .u32(0) //           open_flags
        .raw(b"new.txt\0"); // name
    assert_eq!(
        op(&request(FUSE_CREATE, body)),
        Operation::Create {
            name: os("new.txt"),
            flags: 0o100_101,
            mode: 0o100_644,
            umask: 0o022,
            open_flags: 0,
        }
    );
}

#[test]
fn create_with_extension_cut_off() {
    // With FUSE_CREATE_SUPP_GROUP the kernel appends a supplementary-groups
    // extension; total_extlen counts it in 8-byte units.
    let body = Bytes::default()
        .u32(0o101) //     flags
        .u32(0o100_600) // mode
        .u32(0) //         umask
        .u32(0) //         open_flags
        .raw(b"n\0") //    name, NUL; the extension follows unaligned
        .u32(16) //        fuse_ext_header.size
        .u32(FUSE_EXT_GROUPS) // fuse_ext_header.type
        .u32(1) //         fuse_supp_groups.nr_groups
        .u32(27); //       groups[0]
    let msg = request_ext(FUSE_CREATE, body, 2);
    let Operation::Create { name, mode, .. } = op(&msg) else {
        panic!("expected Create");
    };
    assert_eq!((name, mode), (os("n"), 0o100_600));
}

#[test]
fn extension_longer_than_body() {
    let msg = request_ext(FUSE_LOOKUP, Bytes::default().raw(b"a\0"), 1);
    assert_eq!(
        err(&msg),
        DecodeErrorReason::BadExtensions { ext: 8, body: 2 }
    );
}

#[test]
fn extension_eats_the_name_nul() {
    // If the extension length were ignored, "a\0" would decode; it must not, since
    // the announced extension covers those bytes.
    let body = Bytes::default().raw(b"abcdefg\0");
    let msg = request_ext(FUSE_LOOKUP, body, 1);
    assert!(matches!(err(&msg), DecodeErrorReason::MissingNul { .. }));
}

#[test]
fn interrupt() {
    let body = Bytes::default().u64(0xdead_beef); // unique of the interrupted request
    assert_eq!(
        op(&request(FUSE_INTERRUPT, body)),
        Operation::Interrupt {
            unique: 0xdead_beef
        }
    );
}

#[test]
fn forget() {
    let body = Bytes::default().u64(3); // nlookup
    assert_eq!(
        op(&request(FUSE_FORGET, body)),
        Operation::Forget { nlookup: 3 }
    );
}

#[test]
fn batch_forget() {
    let body = Bytes::default()
        .u32(2) //   count
        .u32(0) //   dummy
        .u64(10) //  [0].nodeid
        .u64(1) //   [0].nlookup
        .u64(11) //  [1].nodeid
        .u64(5); //  [1].nlookup
    assert_eq!(
        op(&request(FUSE_BATCH_FORGET, body)),
        Operation::BatchForget {
            nodes: vec![(10, 1), (11, 5)]
        }
    );
}

#[test]
fn batch_forget_count_beyond_body() {
    let body = Bytes::default()
        .u32(u32::MAX) // count: far more records than sent
        .u32(0) //        dummy
        .u64(10) //       [0].nodeid
        .u64(1); //       [0].nlookup
    assert!(matches!(
        err(&request(FUSE_BATCH_FORGET, body)),
        DecodeErrorReason::ShortBody {
            what: "fuse_forget_one records",
            left: 16,
            ..
        }
    ));
}

#[test]
fn lseek_fallocate_copy_file_range() {
    let body = Bytes::default()
        .u64(1) //   fh
        .u64(512) // offset
        .u32(3) //   whence: SEEK_DATA
        .u32(0); //  padding
    assert_eq!(
        op(&request(FUSE_LSEEK, body)),
        Operation::Lseek {
            fh: 1,
            offset: 512,
            whence: 3
        }
    );
    let body = Bytes::default()
        .u64(1) //      fh
        .u64(0) //      offset
        .u64(1 << 20) // length
        .u32(1) //      mode: FALLOC_FL_KEEP_SIZE
        .u32(0); //     padding
    assert_eq!(
        op(&request(FUSE_FALLOCATE, body)),
        Operation::Fallocate {
            fh: 1,
            offset: 0,
            length: 1 << 20,
            mode: 1
        }
    );
    let body = Bytes::default()
        .u64(1) //    fh_in
        .u64(2) //    off_in
        .u64(3) //    nodeid_out
        .u64(4) //    fh_out
        .u64(5) //    off_out
        .u64(6) //    len
        .u64(0); //   flags
    assert_eq!(
        op(&request(FUSE_COPY_FILE_RANGE, body)),
        Operation::CopyFileRange {
            fh_in: 1,
            off_in: 2,
            nodeid_out: 3,
            fh_out: 4,
            off_out: 5,
            len: 6,
            flags: 0
        }
    );
}

#[test]
fn bodiless_opcodes() {
    for (opcode, expected) in [
        (FUSE_DESTROY, Operation::Destroy),
        (FUSE_READLINK, Operation::ReadLink),
        (FUSE_STATFS, Operation::StatFs),
    ] {
        assert_eq!(op(&request(opcode, Bytes::default())), expected);
    }
}

#[test]
fn unknown_opcodes() {
    for opcode in [FUSE_GETLK, FUSE_IOCTL, FUSE_STATX, 7, 9999] {
        let msg = request(opcode, Bytes::default().u64(0));
        assert_eq!(op(&msg), Operation::Unknown { opcode });
    }
}

#[test]
fn short_header() {
    let msg = request(FUSE_STATFS, Bytes::default());
    let e = decode(&msg[..39], MINOR).expect_err("39 bytes is no header");
    assert_eq!(
        e,
        DecodeError {
            opcode: 0,
            unique: None,
            reason: DecodeErrorReason::ShortHeader { got: 39 }
        }
    );
}

#[test]
fn truncated_buffer() {
    // The header says 50 bytes (a lookup of "abcdefghi"), the read returned 45.
    let msg = request(FUSE_LOOKUP, Bytes::default().raw(b"abcdefghi\0"));
    let e = decode(&msg[..45], MINOR).expect_err("truncated request");
    assert_eq!(e.opcode, FUSE_LOOKUP);
    assert_eq!(e.unique, Some(UNIQUE), "the caller needs unique to answer");
    assert_eq!(e.reason, DecodeErrorReason::BadLength { len: 50, got: 45 });
    assert!(e.to_string().contains("header length 50"));
}

#[test]
fn header_length_below_header_size() {
    let mut msg = request(FUSE_STATFS, Bytes::default());
    msg[..4].copy_from_slice(&12_u32.to_ne_bytes()); // len: 12
    assert_eq!(err(&msg), DecodeErrorReason::BadLength { len: 12, got: 40 });
}

#[test]
fn bytes_past_len_are_ignored() {
    // A lookup whose name would have no NUL within `len`, followed by a NUL that
    // belongs to the next buffer contents: the NUL must not be found.
    let mut msg = request(FUSE_LOOKUP, Bytes::default().raw(b"abc"));
    msg.extend_from_slice(b"\0junk");
    assert!(matches!(err(&msg), DecodeErrorReason::MissingNul { .. }));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic fuzz: every opcode, random bodies of every length up
    // to 200 bytes, random header fields. Decoding may fail, never panic.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for opcode in 0..=55 {
        for body_len in 0..200 {
            let body: Vec<u8> = (0..body_len)
                .map(|_| match next() % 4 {
                    0 => 0,
                    _ => next() as u8,
                })
                .collect();
            let mut msg = request_ext(opcode, Bytes::default().raw(&body), 0);
            if next() % 8 == 0 {
                msg[36..38].copy_from_slice(&((next() % 40) as u16).to_ne_bytes());
            }
            for minor in [8, 11, MINOR] {
                for setxattr_ext in [false, true] {
                    let _ = decode_with(
                        &msg,
                        Negotiated {
                            minor,
                            setxattr_ext,
                        },
                    );
                }
            }
        }
    }
}
