//! Building reply bodies and kernel notifications from plain values.
//!
//! Reply bodies ([`entry_out`], [`attr_out`], [`statfs_out`], [`DirBuf`]) are the part
//! after the `fuse_out_header`, which the reply path adds. Notifications
//! ([`inval_entry_notification`] and friends) are complete messages, header
//! included, ready to be written to `/dev/fuse`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use zerocopy::IntoBytes;

use crate::abi::*;

/// Attributes of an inode, in the units `stat(2)` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileAttr {
    /// Inode number shown to clients (`st_ino`).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Last access, (seconds, nanoseconds) since the epoch.
    pub atime: (i64, u32),
    /// Last modification.
    pub mtime: (i64, u32),
    /// Last status change.
    pub ctime: (i64, u32),
    /// File type and permission bits (`S_IFMT | 0o7777`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Preferred I/O size.
    pub blksize: u32,
}

impl FileAttr {
    /// The wire form (`fuse_attr`), with no `FUSE_ATTR_*` flags.
    pub fn to_fuse_attr(&self) -> FuseAttr {
        FuseAttr {
            ino: self.ino,
            size: self.size,
            blocks: self.blocks,
            // The kernel reads these back as signed 64-bit seconds.
            atime: self.atime.0 as u64,
            mtime: self.mtime.0 as u64,
            ctime: self.ctime.0 as u64,
            atimensec: self.atime.1,
            mtimensec: self.mtime.1,
            ctimensec: self.ctime.1,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: self.blksize,
            flags: 0,
        }
    }
}

/// Reply body for LOOKUP, MKNOD, MKDIR, SYMLINK, LINK (and the first half of CREATE).
///
/// `entry_valid` is how long the kernel may cache the name, `attr_valid` the
/// attributes. A `nodeid` of 0 is a negative entry (cached ENOENT).
pub fn entry_out(
    nodeid: u64,
    generation: u64,
    attr: &FileAttr,
    entry_valid: Duration,
    attr_valid: Duration,
) -> FuseEntryOut {
    FuseEntryOut {
        nodeid,
        generation,
        entry_valid: entry_valid.as_secs(),
        attr_valid: attr_valid.as_secs(),
        entry_valid_nsec: entry_valid.subsec_nanos(),
        attr_valid_nsec: attr_valid.subsec_nanos(),
        attr: attr.to_fuse_attr(),
    }
}

/// Reply body for GETATTR and SETATTR; `valid` is how long it may be cached.
pub fn attr_out(attr: &FileAttr, valid: Duration) -> FuseAttrOut {
    FuseAttrOut {
        attr_valid: valid.as_secs(),
        attr_valid_nsec: valid.subsec_nanos(),
        dummy: 0,
        attr: attr.to_fuse_attr(),
    }
}

/// The `fuse_dirent.type` value for a mode: its `S_IFMT` bits as a `DT_*` number.
pub const fn dirent_type(mode: u32) -> u32 {
    (mode & libc::S_IFMT) >> 12
}

/// A READDIR or READDIRPLUS reply body: `fuse_dirent` (or `fuse_direntplus`)
/// records, each padded to 8 bytes, never longer than the size the kernel asked for.
///
/// Each record carries the offset of the entry *after* it; the kernel passes that
/// offset back in the next READDIR to continue. Use one kind of record per buffer.
///
/// Names must be 1 to [`FUSE_NAME_MAX`] bytes without `/`: the kernel fails the
/// whole READDIR with `EIO` on any other name.
#[derive(Debug, Clone, Default)]
pub struct DirBuf {
    buf: Vec<u8>,
    max_size: usize,
}

impl DirBuf {
    /// An empty buffer that will hold at most `max_size` bytes (the request's `size`).
    pub fn new(max_size: usize) -> Self {
        DirBuf {
            buf: Vec::with_capacity(max_size.min(1 << 20)),
            max_size,
        }
    }

    /// Appends a READDIR record. Returns `false`, adding nothing, if it does not fit.
    pub fn push(&mut self, ino: u64, offset: u64, kind_mode: u32, name: &OsStr) -> bool {
        self.push_record(None, ino, offset, kind_mode, name)
    }

    /// Appends a READDIRPLUS record: `entry` as for LOOKUP (the kernel takes a
    /// lookup reference when `entry.nodeid` is not 0), then the dirent. Returns
    /// `false`, adding nothing, if it does not fit.
    pub fn push_plus(
        &mut self,
        entry: &FuseEntryOut,
        offset: u64,
        kind_mode: u32,
        name: &OsStr,
    ) -> bool {
        self.push_record(Some(entry), entry.attr.ino, offset, kind_mode, name)
    }

    fn push_record(
        &mut self,
        entry: Option<&FuseEntryOut>,
        ino: u64,
        offset: u64,
        kind_mode: u32,
        name: &OsStr,
    ) -> bool {
        let name = name.as_bytes();
        debug_assert!(
            (1..=FUSE_NAME_MAX).contains(&name.len()),
            "directory entry names must be 1..={FUSE_NAME_MAX} bytes"
        );
        let Ok(namelen) = u32::try_from(name.len()) else {
            return false;
        };
        let head = if entry.is_some() {
            FUSE_NAME_OFFSET_DIRENTPLUS
        } else {
            FUSE_NAME_OFFSET
        };
        let record = fuse_rec_align(head + name.len());
        if record > self.max_size - self.buf.len() {
            return false;
        }
        let start = self.buf.len();
        if let Some(entry) = entry {
            self.buf.extend_from_slice(entry.as_bytes());
        }
        let dirent = FuseDirent {
            ino,
            off: offset,
            namelen,
            typ: dirent_type(kind_mode),
        };
        self.buf.extend_from_slice(dirent.as_bytes());
        self.buf.extend_from_slice(name);
        self.buf.resize(start + record, 0);
        true
    }

    /// Bytes a READDIRPLUS record for a name of `name_len` bytes takes.
    pub const fn plus_record_len(name_len: usize) -> usize {
        fuse_rec_align(FUSE_NAME_OFFSET_DIRENTPLUS + name_len)
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.max_size - self.buf.len()
    }

    /// The records so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes used so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record has been added (an empty reply means end of directory).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// File-system statistics in `statvfs(3)` terms, for [`statfs_out`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks, in `frsize` units.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size, the unit of the block counts.
    pub frsize: u32,
}

impl StatFs {
    /// Takes the numbers of a `statvfs` of another file system (e.g. the layer's).
    pub fn from_statvfs(st: &rustix::fs::StatVfs) -> Self {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        StatFs {
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            bsize: clamp(st.f_bsize),
            namelen: clamp(st.f_namemax),
            frsize: clamp(st.f_frsize),
        }
    }
}

/// Reply body for STATFS.
pub fn statfs_out(st: &StatFs) -> FuseStatfsOut {
    FuseStatfsOut {
        st: FuseKstatfs {
            blocks: st.blocks,
            bfree: st.bfree,
            bavail: st.bavail,
            files: st.files,
            ffree: st.ffree,
            bsize: st.bsize,
            namelen: st.namelen,
            frsize: st.frsize,
            padding: 0,
            spare: [0; 6],
        },
    }
}

/// A complete notification message: `fuse_out_header` (unique 0, error = `code`)
/// followed by `parts`.
fn notification(code: i32, parts: &[&[u8]]) -> Vec<u8> {
    let len = size_of::<FuseOutHeader>() + parts.iter().map(|p| p.len()).sum::<usize>();
    let header = FuseOutHeader {
        len: u32::try_from(len).expect("a notification should be far below 4 GiB"),
        error: code,
        unique: 0,
    };
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(header.as_bytes());
    for part in parts {
        msg.extend_from_slice(part);
    }
    msg
}

/// `FUSE_NOTIFY_INVAL_ENTRY`: forget the cached name `name` in directory `parent`.
///
/// The kernel rejects names over [`FUSE_NAME_MAX`] bytes (`ENAMETOOLONG`).
pub fn inval_entry_notification(parent: u64, name: &OsStr) -> Vec<u8> {
    let name = name.as_bytes();
    let out = FuseNotifyInvalEntryOut {
        parent,
        namelen: name_len(name),
        flags: 0,
    };
    notification(FUSE_NOTIFY_INVAL_ENTRY, &[out.as_bytes(), name, &[0]])
}

/// `FUSE_NOTIFY_INVAL_INODE`: drop cached attributes of `ino` and its cached data
/// from `off` for `len` bytes (`len` 0 = to the end; `off` < 0 = attributes only).
pub fn inval_inode_notification(ino: u64, off: i64, len: i64) -> Vec<u8> {
    let out = FuseNotifyInvalInodeOut { ino, off, len };
    notification(FUSE_NOTIFY_INVAL_INODE, &[out.as_bytes()])
}

/// `FUSE_NOTIFY_DELETE`: `name` in `parent`, which was `child`, is gone.
pub fn delete_notification(parent: u64, child: u64, name: &OsStr) -> Vec<u8> {
    let name = name.as_bytes();
    let out = FuseNotifyDeleteOut {
        parent,
        child,
        namelen: name_len(name),
        padding: 0,
    };
    notification(FUSE_NOTIFY_DELETE, &[out.as_bytes(), name, &[0]])
}

fn name_len(name: &[u8]) -> u32 {
    // Longer names are refused by the kernel anyway; saturate rather than wrap.
    u32::try_from(name.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
