//! The thin adapter from kernel requests to the virtualizer: decode arguments,
//! call the virtualizer, encode its answer. No file-system logic lives here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use prjfs_fuse::encode::{attr_out, entry_out, statfs_out, DirBuf, FileAttr, StatFs};
use prjfs_fuse::request::{Operation, TimeOrNow};
use prjfs_fuse::{abi, Filesystem, Reply, Request};
use zerocopy::IntoBytes;

use crate::cancel::CancelSlot;
use crate::layer::{Attr, Item, SetAttr, TimeSpec};
use crate::types::{FileKind, OnDiskState};
use crate::virtualizer::{Creator, RequestCtx, Virtualizer};

/// Name of the synthesized, read-only xattr holding an item's state.
pub const STATE_XATTR: &str = "user.prjfs.state";

/// How long the kernel may cache names and attributes. Changes made through the
/// mount update the kernel's caches as they happen.
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
                        Ok((id, item)) => reply.value(&entry_out(
                            id,
                            0,
                            &file_attr(&item.attr),
                            TTL,
                            attr_ttl(&item),
                        )),
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::GetAttr { fh } => match self.virt.getattr_fh(node, fh) {
                Ok(item) => reply.value(&attr_out(&file_attr(&item.attr), attr_ttl(&item))),
                Err(e) => reply.error(e),
            },
            Operation::ReadLink => match self.virt.readlink(node) {
                Ok(target) => reply.bytes(target.as_bytes()),
                Err(e) => reply.error(e),
            },
            Operation::Open { flags, .. } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                self.virt.open(
                    &ctx,
                    node,
                    flags as i32,
                    Box::new(move |r: Result<u64, i32>| match r {
                        Ok(fh) => {
                            // The kernel may keep its page cache across opens only
                            // for projected content, which changes only through this
                            // node. A full file may also change through another name
                            // (a hard link is another kernel inode with its own cache).
                            let projected = virt
                                .getattr(node)
                                .is_ok_and(|i| i.state.contains(OnDiskState::PLACEHOLDER));
                            let mut out = open_out(fh);
                            if !projected {
                                out.open_flags &= !abi::FOPEN_KEEP_CACHE;
                            }
                            reply.value(&out)
                        }
                        Err(e) => reply.error(e),
                    }),
                );
            }
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
                let value = if name == OsStr::new(STATE_XATTR) {
                    self.virt.state(node).map(|s| render_state(s).into_bytes())
                } else {
                    self.virt.get_xattr(node, name)
                };
                match value {
                    Ok(v) => xattr_reply(reply, &v, size),
                    Err(e) => reply.error(e),
                }
            }
            Operation::ListXattr { size } => match self.virt.list_xattr(node) {
                Ok(names) => {
                    let mut buf = Vec::new();
                    for n in names {
                        buf.extend_from_slice(n.as_bytes());
                        buf.push(0);
                    }
                    xattr_reply(reply, &buf, size)
                }
                Err(e) => reply.error(e),
            },
            Operation::SetXattr { name, value, flags } => {
                if name == OsStr::new(STATE_XATTR) {
                    return reply.error(libc::EPERM);
                }
                empty_reply(reply, self.virt.set_xattr(node, name, value, flags as i32))
            }
            Operation::RemoveXattr { name } => {
                if name == OsStr::new(STATE_XATTR) {
                    return reply.error(libc::EPERM);
                }
                empty_reply(reply, self.virt.remove_xattr(node, name))
            }
            Operation::Access { .. } => reply.error(libc::ENOSYS),
            Operation::Fsync { fh, datasync } => empty_reply(reply, self.virt.fsync(fh, datasync)),
            Operation::FsyncDir { .. } => reply.ok(),
            Operation::Write {
                fh, offset, data, ..
            } => match self.virt.write(fh, offset, data) {
                Ok(n) => reply.value(&abi::FuseWriteOut {
                    size: n,
                    padding: 0,
                }),
                Err(e) => reply.error(e),
            },
            Operation::Create { name, mode, .. } => {
                match self.virt.create(node, name, mode, creator(&req)) {
                    Ok((id, item, fh)) => {
                        let entry = entry_out(id, 0, &file_attr(&item.attr), TTL, attr_ttl(&item));
                        let mut body = entry.as_bytes().to_vec();
                        body.extend_from_slice(open_out(fh).as_bytes());
                        reply.bytes(&body)
                    }
                    Err(e) => reply.error(e),
                }
            }
            Operation::MkDir { name, mode, .. } => {
                entry_reply(reply, self.virt.mkdir(node, name, mode, creator(&req)))
            }
            Operation::MkNod {
                name, mode, rdev, ..
            } => entry_reply(
                reply,
                self.virt.mknod(node, name, mode, rdev, creator(&req)),
            ),
            Operation::Symlink { name, target } => {
                entry_reply(reply, self.virt.symlink(node, name, target, creator(&req)))
            }
            Operation::Link { oldnodeid, newname } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.link(
                    &ctx,
                    oldnodeid,
                    node,
                    newname,
                    Box::new(move |r| entry_reply(reply, r)),
                );
            }
            Operation::Unlink { name } => empty_reply(reply, self.virt.unlink(node, name)),
            Operation::RmDir { name } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt
                    .rmdir(&ctx, node, name, Box::new(move |r| empty_reply(reply, r)));
            }
            Operation::Rename {
                newdir,
                name,
                newname,
                flags,
            } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.rename(
                    &ctx,
                    node,
                    name,
                    newdir,
                    newname,
                    flags,
                    Box::new(move |r| empty_reply(reply, r)),
                );
            }
            Operation::SetAttr {
                size,
                mode,
                uid,
                gid,
                atime,
                mtime,
                ..
            } => {
                let ctx = Self::ctx(&req, &reply);
                let attr = SetAttr {
                    mode,
                    uid,
                    gid,
                    size,
                    atime: atime.map(time_spec),
                    mtime: mtime.map(time_spec),
                };
                self.virt.setattr(
                    &ctx,
                    node,
                    attr,
                    Box::new(move |r: Result<Item, i32>| match r {
                        Ok(item) => reply.value(&attr_out(&file_attr(&item.attr), attr_ttl(&item))),
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::Fallocate { .. } | Operation::CopyFileRange { .. } => {
                reply.error(libc::EOPNOTSUPP)
            }
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

/// Attributes of a file with several hard links are not cached: each name is its
/// own node for the kernel, so a change through one name would leave the others'
/// cached attributes stale.
fn attr_ttl(item: &Item) -> Duration {
    if item.kind != FileKind::Directory && item.attr.nlink > 1 {
        Duration::ZERO
    } else {
        TTL
    }
}

fn open_out(fh: u64) -> abi::FuseOpenOut {
    abi::FuseOpenOut {
        fh,
        open_flags: abi::FOPEN_KEEP_CACHE,
        backing_id: 0,
    }
}

fn creator(req: &Request<'_>) -> Creator {
    Creator {
        uid: req.header.uid,
        gid: req.header.gid,
    }
}

fn time_spec(t: TimeOrNow) -> TimeSpec {
    match t {
        TimeOrNow::Now => TimeSpec::Now,
        TimeOrNow::Time { secs, nsecs } => TimeSpec::At(secs, nsecs),
    }
}

fn entry_reply(reply: Reply, r: Result<(u64, Item), i32>) {
    match r {
        Ok((id, item)) => reply.value(&entry_out(
            id,
            0,
            &file_attr(&item.attr),
            TTL,
            attr_ttl(&item),
        )),
        Err(e) => reply.error(e),
    }
}

fn empty_reply(reply: Reply, r: Result<(), i32>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
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
