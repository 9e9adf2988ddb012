//! The thin adapter from kernel requests to the virtualizer: decode arguments,
//! call the virtualizer, encode its answer. No file-system logic lives here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use prjfs_fuse::encode::{attr_out, entry_out, statfs_out, DirBuf, FileAttr, StatFs};
use prjfs_fuse::request::Operation;
use prjfs_fuse::{abi, Filesystem, Reply, Request};

use crate::cancel::CancelSlot;
use crate::layer::{Attr, Item};
use crate::types::FileKind;
use crate::virtualizer::{RequestCtx, Virtualizer};

/// Name of the synthesized, read-only xattr holding an item's state.
pub const STATE_XATTR: &str = "user.prjfs.state";

/// How long the kernel may cache names and attributes. The layer owns the truth
/// and nothing else changes it while mounted (read-only projection).
const TTL: Duration = Duration::from_secs(1);

/// The FUSE side of a virtualization instance.
pub struct FuseFs {
    virt: Virtualizer,
}

impl FuseFs {
    /// Serve `virt` over the kernel channel.
    pub fn new(virt: Virtualizer) -> Self {
        Self { virt }
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        mode: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
    }
}

fn kind_mode(kind: FileKind) -> u32 {
    match kind {
        FileKind::File => libc::S_IFREG,
        FileKind::Directory => libc::S_IFDIR,
        FileKind::Symlink => libc::S_IFLNK,
    }
}

/// Render a state as `prjfs state` prints it: bits then names.
pub fn render_state(state: crate::types::OnDiskState) -> String {
    format!("{} {}", state.0, state.names().join("|"))
}

impl FuseFs {
    fn ctx(req: &Request<'_>, reply: &Reply) -> RequestCtx {
        let slot = CancelSlot::new();
        let fire = slot.clone();
        reply.on_interrupt(move || fire.fire());
        RequestCtx {
            pid: req.header.pid,
            uid: req.header.uid,
            gid: req.header.gid,
            cancel: slot,
        }
    }
}

impl Filesystem for FuseFs {
    fn dispatch(&self, req: Request<'_>, reply: Reply) {
        let node = req.header.nodeid;
        match req.op {
            Operation::Lookup { name } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.lookup(
                    &ctx,
                    node,
                    name,
                    Box::new(move |r: Result<(u64, Item), i32>| match r {
                        Ok((id, item)) => {
                            reply.value(&entry_out(id, 0, &file_attr(&item.attr), TTL, TTL))
                        }
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::GetAttr { .. } => match self.virt.getattr(node) {
                Ok(item) => reply.value(&attr_out(&file_attr(&item.attr), TTL)),
                Err(e) => reply.error(e),
            },
            Operation::ReadLink => match self.virt.readlink(node) {
                Ok(target) => reply.bytes(target.as_bytes()),
                Err(e) => reply.error(e),
            },
            Operation::Open { flags, .. } => match self.virt.open(node, flags as i32) {
                Ok(fh) => reply.value(&abi::FuseOpenOut {
                    fh,
                    open_flags: abi::FOPEN_KEEP_CACHE,
                    backing_id: 0,
                }),
                Err(e) => reply.error(e),
            },
            Operation::Read {
                fh, offset, size, ..
            } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.read(
                    &ctx,
                    fh,
                    offset,
                    size,
                    Box::new(move |r: Result<Vec<u8>, i32>| match r {
                        Ok(data) => reply.bytes(&data),
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::Release { fh, .. } => {
                self.virt.release(fh);
                reply.ok();
            }
            Operation::Flush { .. } => reply.ok(),
            Operation::OpenDir { .. } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.opendir(
                    &ctx,
                    node,
                    Box::new(move |r: Result<u64, i32>| match r {
                        Ok(fh) => reply.value(&abi::FuseOpenOut {
                            fh,
                            open_flags: 0,
                            backing_id: 0,
                        }),
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::ReadDir { fh, offset, size } => {
                let ctx = Self::ctx(&req, &reply);
                let size = size as usize;
                self.virt.readdir(
                    &ctx,
                    fh,
                    offset,
                    Box::new(move |r| match r {
                        Ok(items) => {
                            let mut buf = DirBuf::new(size);
                            for it in &items {
                                if !buf.push(it.ino, it.next_offset, kind_mode(it.kind), &it.name) {
                                    break;
                                }
                            }
                            reply.bytes(buf.as_bytes())
                        }
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::ReleaseDir { fh, .. } => {
                self.virt.releasedir(fh);
                reply.ok();
            }
            Operation::StatFs => match self.virt.statfs() {
                Ok(st) => reply.value(&statfs_out(&StatFs::from_statvfs(&st))),
                Err(e) => reply.error(e),
            },
            Operation::GetXattr { name, size } => {
                if name != OsStr::new(STATE_XATTR) {
                    return reply.error(libc::ENODATA);
                }
                match self.virt.state(node) {
                    Ok(state) => xattr_reply(reply, render_state(state).as_bytes(), size),
                    Err(e) => reply.error(e),
                }
            }
            Operation::ListXattr { size } => xattr_reply(reply, b"", size),
            Operation::Access { .. } => reply.error(libc::ENOSYS),
            Operation::FsyncDir { .. } | Operation::Fsync { .. } => reply.ok(),
            Operation::SetAttr { .. }
            | Operation::Symlink { .. }
            | Operation::MkNod { .. }
            | Operation::MkDir { .. }
            | Operation::Unlink { .. }
            | Operation::RmDir { .. }
            | Operation::Rename { .. }
            | Operation::Link { .. }
            | Operation::Write { .. }
            | Operation::SetXattr { .. }
            | Operation::RemoveXattr { .. }
            | Operation::Create { .. }
            | Operation::Fallocate { .. }
            | Operation::CopyFileRange { .. } => reply.error(libc::EROFS),
            _ => reply.error(libc::ENOSYS),
        }
    }

    fn forget(&self, req: Request<'_>) {
        match req.op {
            Operation::Forget { nlookup } => self.virt.forget(req.header.nodeid, nlookup),
            Operation::BatchForget { nodes } => {
                for (id, n) in nodes {
                    self.virt.forget(id, n);
                }
            }
            _ => {}
        }
    }

    fn destroy(&self) {
        self.virt.stop();
    }
}

/// GETXATTR/LISTXATTR: size 0 asks for the length only.
fn xattr_reply(reply: Reply, value: &[u8], size: u32) {
    if size == 0 {
        reply.value(&abi::FuseGetxattrOut {
            size: value.len() as u32,
            padding: 0,
        })
    } else if (size as usize) < value.len() {
        reply.error(libc::ERANGE)
    } else {
        reply.bytes(value)
    }
}
