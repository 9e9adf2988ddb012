//! Decoding of kernel requests: bytes read from `/dev/fuse` into a typed [`Operation`].
//!
//! [`decode`] never panics on malformed input: a buffer shorter than its header says,
//! a body shorter than its opcode needs, or a name without its terminating NUL is a
//! [`DecodeError`]. The error carries the request's `unique` whenever the header was
//! readable, so the caller can still answer the request (with `EIO`) and keep the
//! client from waiting forever.
//!
//! Some layouts depend on the connection: old protocol minors send shorter bodies,
//! and `FUSE_SETXATTR_EXT` (an INIT flag the *server* chooses) selects the 16-byte
//! `fuse_setxattr_in`. [`decode`] takes the negotiated minor and assumes that flag
//! was not set; [`decode_with`] takes both.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use zerocopy::{FromBytes, IntoBytes};

use crate::abi::*;

/// The fixed part of every request (`fuse_in_header`, without its padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Total length of the request in bytes, header included.
    pub len: u32,
    /// One of the `FUSE_*` opcodes in [`crate::abi`].
    pub opcode: u32,
    /// Request id; the reply must carry it. `FUSE_UNIQUE_RESEND` marks a resend.
    pub unique: u64,
    /// Node the request is about (the parent directory for name operations).
    pub nodeid: u64,
    /// Caller's file-system uid.
    pub uid: u32,
    /// Caller's file-system gid.
    pub gid: u32,
    /// Caller's thread-group id (0 for kernel-internal requests).
    pub pid: u32,
}

/// A new timestamp in SETATTR: the server's clock, or an explicit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrNow {
    /// Use the current time (`FATTR_ATIME_NOW` / `FATTR_MTIME_NOW`).
    Now,
    /// Seconds and nanoseconds since the epoch.
    Time {
        /// Seconds since the epoch.
        secs: i64,
        /// Nanoseconds, below 1e9.
        nsecs: u32,
    },
}

/// A decoded request body. Names are without their NUL terminator.
///
/// Opcodes prjfs does not serve (locks, ioctl, poll, bmap, DAX mappings, syncfs,
/// tmpfile, statx, notify replies, CUSE) decode as [`Operation::Unknown`].
#[allow(missing_docs)] // fields are named after the kernel's and documented there
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation<'a> {
    /// FUSE_INIT. `flags` holds `flags2 << 32` too when `FUSE_INIT_EXT` is set.
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u64,
    },
    /// FUSE_DESTROY: the file system is being unmounted.
    Destroy,
    /// FUSE_LOOKUP of `name` in directory `nodeid`.
    Lookup { name: &'a OsStr },
    /// FUSE_FORGET: drop `nlookup` references to `nodeid` (no reply).
    Forget { nlookup: u64 },
    /// FUSE_BATCH_FORGET: `(nodeid, nlookup)` pairs (no reply).
    BatchForget { nodes: Vec<(u64, u64)> },
    /// FUSE_GETATTR; `fh` when the kernel names an open handle.
    GetAttr { fh: Option<u64> },
    /// FUSE_SETATTR; each `Some` field is to be changed. `valid` is the raw
    /// `FATTR_*` mask (for bits such as `FATTR_KILL_SUIDGID`).
    SetAttr {
        valid: u32,
        fh: Option<u64>,
        size: Option<u64>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<(i64, u32)>,
    },
    /// FUSE_READLINK.
    ReadLink,
    /// FUSE_SYMLINK: create `name` in `nodeid` pointing at `target`.
    Symlink { name: &'a OsStr, target: &'a OsStr },
    /// FUSE_MKNOD.
    MkNod {
        name: &'a OsStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    },
    /// FUSE_MKDIR.
    MkDir {
        name: &'a OsStr,
        mode: u32,
        umask: u32,
    },
    /// FUSE_UNLINK.
    Unlink { name: &'a OsStr },
    /// FUSE_RMDIR.
    RmDir { name: &'a OsStr },
    /// FUSE_RENAME (`flags` 0) or FUSE_RENAME2 (`RENAME_*` flags).
    Rename {
        newdir: u64,
        name: &'a OsStr,
        newname: &'a OsStr,
        flags: u32,
    },
    /// FUSE_LINK: a new name `newname` in `nodeid` for `oldnodeid`.
    Link { oldnodeid: u64, newname: &'a OsStr },
    /// FUSE_OPEN. `flags` are the `open(2)` flags, `open_flags` are `FUSE_OPEN_*`.
    Open { flags: u32, open_flags: u32 },
    /// FUSE_READ. `flags` are the file's open flags.
    Read {
        fh: u64,
        offset: u64,
        size: u32,
        flags: u32,
        lock_owner: Option<u64>,
    },
    /// FUSE_WRITE. `write_flags` are `FUSE_WRITE_*`, `flags` the open flags.
    Write {
        fh: u64,
        offset: u64,
        data: &'a [u8],
        write_flags: u32,
        flags: u32,
    },
    /// FUSE_STATFS.
    StatFs,
    /// FUSE_RELEASE. `release_flags` are `FUSE_RELEASE_*`.
    Release {
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
    },
    /// FUSE_FSYNC.
    Fsync { fh: u64, datasync: bool },
    /// FUSE_SETXATTR. `flags` are `XATTR_CREATE` / `XATTR_REPLACE`.
    SetXattr {
        name: &'a OsStr,
        value: &'a [u8],
        flags: u32,
    },
    /// FUSE_GETXATTR; `size` 0 asks for the value's size only.
    GetXattr { name: &'a OsStr, size: u32 },
    /// FUSE_LISTXATTR; `size` 0 asks for the list's size only.
    ListXattr { size: u32 },
    /// FUSE_REMOVEXATTR.
    RemoveXattr { name: &'a OsStr },
    /// FUSE_FLUSH (on every `close` of a descriptor).
    Flush { fh: u64, lock_owner: u64 },
    /// FUSE_OPENDIR.
    OpenDir { flags: u32 },
    /// FUSE_READDIR.
    ReadDir { fh: u64, offset: u64, size: u32 },
    /// FUSE_RELEASEDIR.
    ReleaseDir { fh: u64, flags: u32 },
    /// FUSE_FSYNCDIR.
    FsyncDir { fh: u64, datasync: bool },
    /// FUSE_ACCESS (`R_OK | W_OK | X_OK`, or `F_OK`).
    Access { mask: u32 },
    /// FUSE_CREATE: create and open `name` in `nodeid`.
    Create {
        name: &'a OsStr,
        flags: u32,
        mode: u32,
        umask: u32,
        open_flags: u32,
    },
    /// FUSE_INTERRUPT of the request whose id is `unique`.
    Interrupt { unique: u64 },
    /// FUSE_READDIRPLUS.
    ReadDirPlus { fh: u64, offset: u64, size: u32 },
    /// FUSE_LSEEK (`SEEK_DATA` / `SEEK_HOLE`).
    Lseek { fh: u64, offset: u64, whence: u32 },
    /// FUSE_FALLOCATE.
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    /// FUSE_COPY_FILE_RANGE from (`nodeid`, `fh_in`) to (`nodeid_out`, `fh_out`).
    CopyFileRange {
        fh_in: u64,
        off_in: u64,
        nodeid_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u64,
    },
    /// Any opcode not listed above.
    Unknown { opcode: u32 },
}

/// What the decoder must know about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The negotiated protocol minor (the smaller of the kernel's and ours).
    pub minor: u32,
    /// Whether our INIT reply set `FUSE_SETXATTR_EXT`.
    pub setxattr_ext: bool,
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode FUSE request (opcode {opcode}, unique {unique:?}): {reason}")]
pub struct DecodeError {
    /// The request's opcode, or 0 if the header itself was unreadable.
    pub opcode: u32,
    /// The request's id, if the header was readable: answer it with an error.
    pub unique: Option<u64>,
    /// What was wrong.
    pub reason: DecodeErrorReason,
}

/// The specific defect behind a [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorReason {
    /// Fewer bytes than a `fuse_in_header`.
    #[error("{got} bytes is shorter than the 40-byte request header")]
    ShortHeader {
        /// Bytes available.
        got: usize,
    },
    /// The header's `len` is below the header size or beyond the buffer.
    #[error("header length {len} does not fit a {got}-byte buffer")]
    BadLength {
        /// `fuse_in_header.len`.
        len: u32,
        /// Bytes available.
        got: usize,
    },
    /// The extensions (`total_extlen`) are longer than the body.
    #[error("{ext} bytes of extensions do not fit a {body}-byte body")]
    BadExtensions {
        /// Extension bytes announced.
        ext: usize,
        /// Body bytes present.
        body: usize,
    },
    /// The body ended before a field the opcode needs.
    #[error("body too short for {what}: {needed} bytes needed, {left} left")]
    ShortBody {
        /// The missing part.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that remained.
        left: usize,
    },
    /// A name ran to the end of the body without a NUL.
    #[error("{what} is not NUL-terminated")]
    MissingNul {
        /// Which name.
        what: &'static str,
    },
}

/// Decodes one request for a connection with protocol minor `proto_minor` that did
/// not negotiate `FUSE_SETXATTR_EXT` (use [`decode_with`] if it did).
///
/// For `FUSE_INIT`, which comes before any negotiation, the value is ignored.
pub fn decode(buf: &[u8], proto_minor: u32) -> Result<(RequestHeader, Operation<'_>), DecodeError> {
    decode_with(
        buf,
        Negotiated {
            minor: proto_minor,
            setxattr_ext: false,
        },
    )
}

/// Decodes one request as [`decode`] does, for the connection state `neg`.
///
/// `buf` must start with the header; bytes past the header's `len` are ignored.
pub fn decode_with(
    buf: &[u8],
    neg: Negotiated,
) -> Result<(RequestHeader, Operation<'_>), DecodeError> {
    let Ok((h, _)) = FuseInHeader::read_from_prefix(buf) else {
        return Err(DecodeError {
            opcode: 0,
            unique: None,
            reason: DecodeErrorReason::ShortHeader { got: buf.len() },
        });
    };
    let header = RequestHeader {
        len: h.len,
        opcode: h.opcode,
        unique: h.unique,
        nodeid: h.nodeid,
        uid: h.uid,
        gid: h.gid,
        pid: h.pid,
    };
    let fail = |reason| DecodeError {
        opcode: h.opcode,
        unique: Some(h.unique),
        reason,
    };
    let len = h.len as usize;
    if len < size_of::<FuseInHeader>() || len > buf.len() {
        return Err(fail(DecodeErrorReason::BadLength {
            len: h.len,
            got: buf.len(),
        }));
    }
    // Extensions (security contexts, supplementary groups) end the request; no
    // operation here reads them, so cut them off before the trailing-data parsers.
    let body = &buf[size_of::<FuseInHeader>()..len];
    let ext = usize::from(h.total_extlen) * 8;
    if ext > body.len() {
        return Err(fail(DecodeErrorReason::BadExtensions {
            ext,
            body: body.len(),
        }));
    }
    let mut body = Body(&body[..body.len() - ext]);
    let op = decode_body(h.opcode, &mut body, neg).map_err(fail)?;
    Ok((header, op))
}

fn decode_body<'a>(
    opcode: u32,
    b: &mut Body<'a>,
    neg: Negotiated,
) -> Result<Operation<'a>, DecodeErrorReason> {
    // Bodies shrank for old minors: these are the lengths the kernel sent then.
    let rw_in_len = if neg.minor < 9 {
        FUSE_COMPAT_WRITE_IN_SIZE
    } else {
        size_of::<FuseWriteIn>()
    };
    Ok(match opcode {
        FUSE_INIT => {
            // Only major and minor are certain: a kernel with another major may
            // send another layout, and before 7.36 the body stops at `flags`.
            let i: FuseInitIn = b.prefix("fuse_init_in", 8, b.0.len())?;
            let mut flags = u64::from(i.flags);
            if flags & FUSE_INIT_EXT != 0 {
                flags |= u64::from(i.flags2) << 32;
            }
            Operation::Init {
                major: i.major,
                minor: i.minor,
                max_readahead: i.max_readahead,
                flags,
            }
        }
        FUSE_DESTROY => Operation::Destroy,
        FUSE_LOOKUP => Operation::Lookup {
            name: b.name("name")?,
        },
        FUSE_FORGET => {
            let f: FuseForgetIn = b.read("fuse_forget_in")?;
            Operation::Forget { nlookup: f.nlookup }
        }
        FUSE_BATCH_FORGET => {
            let f: FuseBatchForgetIn = b.read("fuse_batch_forget_in")?;
            let count = f.count as usize;
            let records = b.bytes("fuse_forget_one records", count.saturating_mul(16))?;
            let nodes = records
                .chunks_exact(size_of::<FuseForgetOne>())
                .filter_map(|c| FuseForgetOne::read_from_bytes(c).ok())
                .map(|f| (f.nodeid, f.nlookup))
                .collect();
            Operation::BatchForget { nodes }
        }
        FUSE_GETATTR => {
            if neg.minor < 9 {
                Operation::GetAttr { fh: None }
            } else {
                let g: FuseGetattrIn = b.read("fuse_getattr_in")?;
                Operation::GetAttr {
                    fh: (g.getattr_flags & FUSE_GETATTR_FH != 0).then_some(g.fh),
                }
            }
        }
        FUSE_SETATTR => decode_setattr(b.read("fuse_setattr_in")?),
        FUSE_READLINK => Operation::ReadLink,
        FUSE_SYMLINK => Operation::Symlink {
            name: b.name("name")?,
            target: b.name("link target")?,
        },
        FUSE_MKNOD => {
            let len = if neg.minor < 12 {
                FUSE_COMPAT_MKNOD_IN_SIZE
            } else {
                size_of::<FuseMknodIn>()
            };
            let m: FuseMknodIn = b.prefix("fuse_mknod_in", len, len)?;
            Operation::MkNod {
                name: b.name("name")?,
                mode: m.mode,
                rdev: m.rdev,
                umask: m.umask,
            }
        }
        FUSE_MKDIR => {
            let m: FuseMkdirIn = b.read("fuse_mkdir_in")?;
            Operation::MkDir {
                name: b.name("name")?,
                mode: m.mode,
                umask: m.umask,
            }
        }
        FUSE_UNLINK => Operation::Unlink {
            name: b.name("name")?,
        },
        FUSE_RMDIR => Operation::RmDir {
            name: b.name("name")?,
        },
        FUSE_RENAME => {
            let r: FuseRenameIn = b.read("fuse_rename_in")?;
            Operation::Rename {
                newdir: r.newdir,
                name: b.name("old name")?,
                newname: b.name("new name")?,
                flags: 0,
            }
        }
        FUSE_RENAME2 => {
            let r: FuseRename2In = b.read("fuse_rename2_in")?;
            Operation::Rename {
                newdir: r.newdir,
                name: b.name("old name")?,
                newname: b.name("new name")?,
                flags: r.flags,
            }
        }
        FUSE_LINK => {
            let l: FuseLinkIn = b.read("fuse_link_in")?;
            Operation::Link {
                oldnodeid: l.oldnodeid,
                newname: b.name("new name")?,
            }
        }
        FUSE_OPEN => {
            let o: FuseOpenIn = b.read("fuse_open_in")?;
            Operation::Open {
                flags: o.flags,
                open_flags: o.open_flags,
            }
        }
        FUSE_READ => {
            let r: FuseReadIn = b.prefix("fuse_read_in", rw_in_len, rw_in_len)?;
            Operation::Read {
                fh: r.fh,
                offset: r.offset,
                size: r.size,
                flags: r.flags,
                lock_owner: (r.read_flags & FUSE_READ_LOCKOWNER != 0).then_some(r.lock_owner),
            }
        }
        FUSE_WRITE => {
            let w: FuseWriteIn = b.prefix("fuse_write_in", rw_in_len, rw_in_len)?;
            Operation::Write {
                fh: w.fh,
                offset: w.offset,
                data: b.bytes("write data", w.size as usize)?,
                write_flags: w.write_flags,
                flags: w.flags,
            }
        }
        FUSE_STATFS => Operation::StatFs,
        FUSE_RELEASE => {
            let r: FuseReleaseIn = b.read("fuse_release_in")?;
            Operation::Release {
                fh: r.fh,
                flags: r.flags,
                release_flags: r.release_flags,
                lock_owner: r.lock_owner,
            }
        }
        FUSE_FSYNC => {
            let f: FuseFsyncIn = b.read("fuse_fsync_in")?;
            Operation::Fsync {
                fh: f.fh,
                datasync: f.fsync_flags & FUSE_FSYNC_FDATASYNC != 0,
            }
        }
        FUSE_SETXATTR => {
            let len = if neg.setxattr_ext {
                size_of::<FuseSetxattrIn>()
            } else {
                FUSE_COMPAT_SETXATTR_IN_SIZE
            };
            let s: FuseSetxattrIn = b.prefix("fuse_setxattr_in", len, len)?;
            Operation::SetXattr {
                name: b.name("xattr name")?,
                value: b.bytes("xattr value", s.size as usize)?,
                flags: s.flags,
            }
        }
        FUSE_GETXATTR => {
            let g: FuseGetxattrIn = b.read("fuse_getxattr_in")?;
            Operation::GetXattr {
                name: b.name("xattr name")?,
                size: g.size,
            }
        }
        FUSE_LISTXATTR => {
            let g: FuseGetxattrIn = b.read("fuse_getxattr_in")?;
            Operation::ListXattr { size: g.size }
        }
        FUSE_REMOVEXATTR => Operation::RemoveXattr {
            name: b.name("xattr name")?,
        },
        FUSE_FLUSH => {
            let f: FuseFlushIn = b.read("fuse_flush_in")?;
            Operation::Flush {
                fh: f.fh,
                lock_owner: f.lock_owner,
            }
        }
        FUSE_OPENDIR => {
            let o: FuseOpenIn = b.read("fuse_open_in")?;
            Operation::OpenDir { flags: o.flags }
        }
        FUSE_READDIR | FUSE_READDIRPLUS => {
            let r: FuseReadIn = b.prefix("fuse_read_in", rw_in_len, rw_in_len)?;
            if opcode == FUSE_READDIR {
                Operation::ReadDir {
                    fh: r.fh,
                    offset: r.offset,
                    size: r.size,
                }
            } else {
                Operation::ReadDirPlus {
                    fh: r.fh,
                    offset: r.offset,
                    size: r.size,
                }
            }
        }
        FUSE_RELEASEDIR => {
            let r: FuseReleaseIn = b.read("fuse_release_in")?;
            Operation::ReleaseDir {
                fh: r.fh,
                flags: r.flags,
            }
        }
        FUSE_FSYNCDIR => {
            let f: FuseFsyncIn = b.read("fuse_fsync_in")?;
            Operation::FsyncDir {
                fh: f.fh,
                datasync: f.fsync_flags & FUSE_FSYNC_FDATASYNC != 0,
            }
        }
        FUSE_ACCESS => {
            let a: FuseAccessIn = b.read("fuse_access_in")?;
            Operation::Access { mask: a.mask }
        }
        FUSE_CREATE => {
            // Before 7.12 the body was `{flags, mode}`, a prefix of fuse_create_in.
            let len = if neg.minor < 12 {
                8
            } else {
                size_of::<FuseCreateIn>()
            };
            let c: FuseCreateIn = b.prefix("fuse_create_in", len, len)?;
            Operation::Create {
                name: b.name("name")?,
                flags: c.flags,
                mode: c.mode,
                umask: c.umask,
                open_flags: c.open_flags,
            }
        }
        FUSE_INTERRUPT => {
            let i: FuseInterruptIn = b.read("fuse_interrupt_in")?;
            Operation::Interrupt { unique: i.unique }
        }
        FUSE_LSEEK => {
            let l: FuseLseekIn = b.read("fuse_lseek_in")?;
            Operation::Lseek {
                fh: l.fh,
                offset: l.offset,
                whence: l.whence,
            }
        }
        FUSE_FALLOCATE => {
            let f: FuseFallocateIn = b.read("fuse_fallocate_in")?;
            Operation::Fallocate {
                fh: f.fh,
                offset: f.offset,
                length: f.length,
                mode: f.mode,
            }
        }
        FUSE_COPY_FILE_RANGE => {
            let c: FuseCopyFileRangeIn = b.read("fuse_copy_file_range_in")?;
            Operation::CopyFileRange {
                fh_in: c.fh_in,
                off_in: c.off_in,
                nodeid_out: c.nodeid_out,
                fh_out: c.fh_out,
                off_out: c.off_out,
                len: c.len,
                flags: c.flags,
            }
        }
        opcode => Operation::Unknown { opcode },
    })
}

fn decode_setattr(s: FuseSetattrIn) -> Operation<'static> {
    let has = |bit: u32| s.valid & bit != 0;
    // The kernel sets FATTR_ATIME together with FATTR_ATIME_NOW; NOW wins.
    let time = |set: u32, now: u32, secs: u64, nsecs: u32| {
        if has(now) {
            Some(TimeOrNow::Now)
        } else if has(set) {
            Some(TimeOrNow::Time {
                secs: secs as i64,
                nsecs,
            })
        } else {
            None
        }
    };
    Operation::SetAttr {
        valid: s.valid,
        fh: has(FATTR_FH).then_some(s.fh),
        size: has(FATTR_SIZE).then_some(s.size),
        mode: has(FATTR_MODE).then_some(s.mode),
        uid: has(FATTR_UID).then_some(s.uid),
        gid: has(FATTR_GID).then_some(s.gid),
        atime: time(FATTR_ATIME, FATTR_ATIME_NOW, s.atime, s.atimensec),
        mtime: time(FATTR_MTIME, FATTR_MTIME_NOW, s.mtime, s.mtimensec),
        ctime: has(FATTR_CTIME).then_some((s.ctime as i64, s.ctimensec)),
    }
}

/// The unread rest of a request body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    /// Takes exactly `n` bytes.
    fn bytes(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], DecodeErrorReason> {
        if n > self.0.len() {
            return Err(DecodeErrorReason::ShortBody {
                what,
                needed: n,
                left: self.0.len(),
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// Takes a whole `T`.
    fn read<T: FromBytes>(&mut self, what: &'static str) -> Result<T, DecodeErrorReason> {
        let bytes = self.bytes(what, size_of::<T>())?;
        // The length was checked just above, so this cannot fail.
        T::read_from_bytes(bytes).map_err(|_| DecodeErrorReason::ShortBody {
            what,
            needed: size_of::<T>(),
            left: bytes.len(),
        })
    }

    /// Takes between `min` and `max` bytes (at most `size_of::<T>()`) as the
    /// leading part of a `T`; the fields past them read as zero.
    fn prefix<T: FromBytes + IntoBytes>(
        &mut self,
        what: &'static str,
        min: usize,
        max: usize,
    ) -> Result<T, DecodeErrorReason> {
        let n = self.0.len().min(max).min(size_of::<T>());
        if n < min {
            return Err(DecodeErrorReason::ShortBody {
                what,
                needed: min,
                left: self.0.len(),
            });
        }
        let bytes = self.bytes(what, n)?;
        let mut value = T::new_zeroed();
        value.as_mut_bytes()[..n].copy_from_slice(bytes);
        Ok(value)
    }

    /// Takes a NUL-terminated name, returning it without the NUL.
    fn name(&mut self, what: &'static str) -> Result<&'a OsStr, DecodeErrorReason> {
        let end = self
            .0
            .iter()
            .position(|&c| c == 0)
            .ok_or(DecodeErrorReason::MissingNul { what })?;
        let name = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(OsStr::from_bytes(name))
    }
}

#[cfg(test)]
mod tests;
