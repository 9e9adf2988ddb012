//! The thin adapter from kernel requests to the virtualizer: decode arguments,
//! call the virtualizer, encode its answer. No file-system logic lives here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prjfs_fuse::encode::{attr_out, entry_out, statfs_out, DirBuf, FileAttr, StatFs};
use prjfs_fuse::request::{Operation, TimeOrNow};
use prjfs_fuse::{abi, Filesystem, InitInfo, Notifier, Reply, Request};
use zerocopy::IntoBytes;

use crate::cancel::CancelSlot;
use crate::io_modes::IoModes;
use crate::layer::{Attr, Item, SetAttr, TimeSpec};
use crate::types::FileKind;
use crate::virtualizer::{Changed, Creator, Opened, RequestCtx, Virtualizer};

mod no_open;
mod notifier;

use notifier::{notifier_loop, Notice, PendingDirs};

/// Name of the synthesized, read-only xattr holding an item's state.
pub const STATE_XATTR: &str = "user.prjfs.state";

/// How long the kernel may cache names and attributes. Changes made through
/// the mount update the kernel's caches as they happen; what prjfs changes on
/// its own (hydration replaces a file in its directory, placeholders appear in
/// directories) is sent as an invalidation.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The smallest `fuse_dirent` record (a name of up to 8 bytes), and the
/// smallest `fuse_direntplus` one: how many entries a reply of a given size can
/// hold at most.
const DIRENT_MIN: usize = 32;
const DIRENTPLUS_MIN: usize = 128 + DIRENT_MIN;

/// The FUSE side of a virtualization instance.
pub struct FuseFs {
    virt: Virtualizer,
    io: Arc<IoModes>,
    /// Feeds the notifier thread (set once connected).
    notices: OnceLock<Sender<Notice>>,
    /// `FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE` on every `opendir`.
    cache_listings: bool,
    /// The largest READ INIT allows ([`InitInfo::max_read`]); a forged larger
    /// one is served up to this size (no kernel sends one), so that its size
    /// cannot make a worker allocate and copy gigabytes.
    max_read: AtomicU32,
    /// No-open mode (`StartOptions::no_open`): OPEN is answered `ENOSYS`, and
    /// a request on a file with handle 0 is served through a handle opened
    /// for it ([`FuseFs::implicit`]).
    no_open: bool,
}

impl FuseFs {
    /// Serve `virt` over the kernel channel, with FUSE passthrough for opens of
    /// local content (hydrated and full files) where the kernel allows it.
    pub fn new(virt: Virtualizer) -> Self {
        Self::with_passthrough(virt, true)
    }

    /// [`FuseFs::new`]; `passthrough: false` serves every read and write itself.
    pub fn with_passthrough(virt: Virtualizer, passthrough: bool) -> Self {
        Self {
            virt,
            io: Arc::new(IoModes::new(passthrough)),
            notices: OnceLock::new(),
            cache_listings: false,
            max_read: AtomicU32::new(u32::MAX),
            no_open: false,
        }
    }

    /// No-open mode (see `StartOptions::no_open`; the session must not
    /// negotiate passthrough or `FUSE_ATOMIC_O_TRUNC`).
    pub fn with_no_open(mut self, on: bool) -> Self {
        self.no_open = on;
        self
    }

    /// Let the kernel keep listings across `opendir`s (see
    /// `StartOptions::cache_listings`).
    pub fn with_listing_cache(mut self, on: bool) -> Self {
        self.cache_listings = on;
        self
    }

    /// Whether opens are answered with FUSE passthrough (negotiated and not
    /// refused by the kernel so far).
    pub fn passthrough_active(&self) -> bool {
        self.io.enabled.load(Ordering::Relaxed)
    }

    /// Whether OPEN is answered `ENOSYS` (no-open mode).
    pub fn no_open(&self) -> bool {
        self.no_open
    }

    /// How opens were answered so far.
    pub fn open_stats(&self) -> OpenStats {
        let st = self.io.state.lock().expect("io lock");
        st.stats
    }
}

/// How file opens (and creates) were answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// With FUSE passthrough: the kernel reads and writes the on-disk file.
    pub passthrough: u64,
    /// Served by the daemon (placeholders to hydrate, passthrough off, or the
    /// node already open in caching mode).
    pub daemon: u64,
    /// `FUSE_DEV_IOC_BACKING_OPEN` calls that failed (the open was then served
    /// by the daemon).
    pub refused: u64,
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
    fn connected(&self, notifier: Notifier) {
        let _ = self.io.channel.set(notifier.clone());
        let (tx, rx) = mpsc::channel();
        let pending = PendingDirs::default();
        let in_loop = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("prjfs-notify".into())
            .spawn(move || notifier_loop(notifier, rx, in_loop));
        if let Err(e) = spawned {
            // Without it, hydrated files keep their placeholder attributes in the
            // kernel's cache until it drops them.
            tracing::error!("cannot start the notifier thread: {e}");
            return;
        }
        let hook = tx.clone();
        self.virt.on_changed(move |changed| {
            if let Changed::Dir(node) = changed {
                if !pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node)
                {
                    return; // already on its way
                }
            }
            let _ = hook.send(match changed {
                Changed::File(node) => Notice::Attr(node),
                Changed::Dir(node) => Notice::DirAttr(node),
                Changed::Entry { parent, name } => Notice::Entry(parent, name),
                Changed::Listing(node) => Notice::Listing(node),
                Changed::Flush(ack) => Notice::Flush(ack),
            });
        });
        let _ = self.notices.set(tx);
    }

    fn init(&self, info: &InitInfo) {
        self.max_read.store(info.max_read, Ordering::Relaxed);
        let granted = info.flags & abi::FUSE_PASSTHROUGH != 0;
        self.io
            .enabled
            .store(self.io.wanted && granted, Ordering::Relaxed);
        if self.io.wanted && !granted {
            tracing::info!(
                "the kernel did not grant FUSE passthrough; reads and writes go through the daemon"
            );
        }
    }

    fn dispatch(&self, req: Request<'_>, reply: Reply) {
        if names_too_long(&req.op) {
            return reply.error(libc::ENAMETOOLONG);
        }
        if self.no_open && no_open::served_here(&req.op) {
            return self.dispatch_no_open(req, reply);
        }
        let node = req.header.nodeid;
        match req.op {
            Operation::Lookup { name } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.lookup(
                    &ctx,
                    node,
                    name,
                    Box::new({
                        let virt = self.virt.clone();
                        move |r: Result<(u64, Item), i32>| entry_reply(&virt, reply, r)
                    }),
                );
            }
            // Handle 0 is never one of ours (they count from 1): the kernel's
            // handle of a file opened in no-open mode.
            Operation::GetAttr { fh } => match self.virt.getattr_fh(node, fh.filter(|&h| h != 0)) {
                Ok(item) => reply.value(&attr_out(&file_attr(&item.attr), attr_ttl(&item))),
                Err(e) => reply.error(e),
            },
            Operation::ReadLink => match self.virt.readlink(node) {
                Ok(target) => reply.bytes(target.as_bytes()),
                Err(e) => reply.error(e),
            },
            Operation::Open { .. } if self.no_open => reply.error(libc::ENOSYS),
            Operation::Open { flags, open_flags } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let io = self.io.clone();
                // An O_TRUNC open by a caller without CAP_FSETID: the
                // truncation drops the set-ID bits (FUSE_HANDLE_KILLPRIV_V2).
                let drop_set_id = open_flags & abi::FUSE_OPEN_KILL_SUIDGID != 0;
                self.virt.open(
                    &ctx,
                    node,
                    flags as i32,
                    Box::new(move |r: Result<Opened, i32>| match r {
                        Ok(opened) => {
                            if drop_set_id {
                                if let Err(e) = virt.drop_set_id(node) {
                                    virt.discard(opened.fh);
                                    return reply.error(e);
                                }
                            }
                            let out = io.open_out(node, &opened, &virt);
                            if reply.try_value(&out).is_err() {
                                // The kernel never saw this handle: no RELEASE follows.
                                io.released(opened.fh);
                                virt.discard(opened.fh);
                            }
                        }
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::Read {
                fh, offset, size, ..
            } => {
                let ctx = Self::ctx(&req, &reply);
                let size = size.min(self.max_read.load(Ordering::Relaxed));
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
                self.io.released(fh);
                self.virt.release(fh);
                reply.ok();
            }
            // Nothing to do at close: ENOSYS makes the kernel stop sending FLUSH
            // (one round trip less per close).
            Operation::Flush { .. } => reply.error(libc::ENOSYS),
            Operation::OpenDir { .. } => {
                let ctx = Self::ctx(&req, &reply);
                // The kernel drops a cached listing itself when a change through
                // the mount touches the directory; nothing changes a listing
                // behind its back (placing and hydrating keep names and types).
                let open_flags = if self.cache_listings {
                    abi::FOPEN_CACHE_DIR | abi::FOPEN_KEEP_CACHE
                } else {
                    0
                };
                self.virt.opendir(
                    &ctx,
                    node,
                    Box::new(move |r: Result<u64, i32>| match r {
                        Ok(fh) => reply.value(&abi::FuseOpenOut {
                            fh,
                            open_flags,
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
                    size / DIRENT_MIN + 1,
                    Box::new(move |r| match r {
                        Ok(items) => {
                            let mut buf = DirBuf::new(size);
                            for it in items.iter() {
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
            Operation::ReadDirPlus { fh, offset, size } => {
                let ctx = Self::ctx(&req, &reply);
                let size = size as usize;
                let virt = self.virt.clone();
                self.virt.readdir(
                    &ctx,
                    fh,
                    offset,
                    size / DIRENTPLUS_MIN + 1,
                    Box::new(move |r| match r {
                        Ok(items) => readdirplus_reply(reply, &virt, node, size, &items),
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
                fh,
                offset,
                data,
                write_flags,
                ..
            } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.write(
                    &ctx,
                    fh,
                    offset,
                    data,
                    write_flags & abi::FUSE_WRITE_KILL_SUIDGID != 0,
                    Box::new(move |r: Result<u32, i32>| match r {
                        Ok(n) => reply.value(&abi::FuseWriteOut {
                            size: n,
                            padding: 0,
                        }),
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::Create { name, mode, .. } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let io = self.io.clone();
                let no_open = self.no_open;
                self.virt.create(
                    &ctx,
                    node,
                    name,
                    mode,
                    creator(&req),
                    Box::new(move |r| match r {
                        Ok((id, item, opened)) => {
                            let entry =
                                entry_out(id, 0, &file_attr(&item.attr), TTL, attr_ttl(&item));
                            let mut body = entry.as_bytes().to_vec();
                            if no_open {
                                // No RELEASE comes on a no-open connection, not
                                // even for a created file: answer handle 0, as
                                // the file's later requests are served.
                                virt.discard(opened.fh);
                                let out = abi::FuseOpenOut {
                                    fh: 0,
                                    open_flags: abi::FOPEN_KEEP_CACHE,
                                    backing_id: 0,
                                };
                                body.extend_from_slice(out.as_bytes());
                                let _ = reply.try_bytes(&body);
                                return;
                            }
                            body.extend_from_slice(io.open_out(id, &opened, &virt).as_bytes());
                            if reply.try_bytes(&body).is_err() {
                                io.released(opened.fh);
                                virt.discard(opened.fh);
                            }
                        }
                        Err(e) => reply.error(e),
                    }),
                );
            }
            Operation::MkDir { name, mode, .. } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let done = Box::new(move |r| entry_reply(&virt, reply, r));
                self.virt.mkdir(&ctx, node, name, mode, creator(&req), done);
            }
            Operation::MkNod {
                name, mode, rdev, ..
            } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let done = Box::new(move |r| entry_reply(&virt, reply, r));
                self.virt
                    .mknod(&ctx, node, name, mode, rdev, creator(&req), done);
            }
            Operation::Symlink { name, target } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let done = Box::new(move |r| entry_reply(&virt, reply, r));
                self.virt
                    .symlink(&ctx, node, name, target, creator(&req), done);
            }
            Operation::Link { oldnodeid, newname } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt.link(
                    &ctx,
                    oldnodeid,
                    node,
                    newname,
                    Box::new({
                        let virt = self.virt.clone();
                        move |r| entry_reply(&virt, reply, r)
                    }),
                );
            }
            Operation::Unlink { name } => {
                let ctx = Self::ctx(&req, &reply);
                self.virt
                    .unlink(&ctx, node, name, Box::new(move |r| empty_reply(reply, r)));
            }
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
                valid,
                fh,
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
                // A truncation or owner change by a caller without
                // CAP_FSETID drops the set-ID bits (FUSE_HANDLE_KILLPRIV_V2).
                let drop_set_id = valid & abi::FATTR_KILL_SUIDGID != 0;
                let virt = self.virt.clone();
                self.virt.setattr(
                    &ctx,
                    node,
                    fh.filter(|&h| h != 0),
                    attr,
                    Box::new(move |r: Result<Item, i32>| {
                        let r = match r {
                            // A node whose last name went keeps its bits.
                            Ok(item) if drop_set_id => match virt.drop_set_id(node) {
                                Err(libc::ESTALE | libc::ENOENT) => Ok(item),
                                r => r,
                            },
                            r => r,
                        };
                        match r {
                            Ok(item) => {
                                reply.value(&attr_out(&file_attr(&item.attr), attr_ttl(&item)))
                            }
                            Err(e) => reply.error(e),
                        }
                    }),
                );
            }
            Operation::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => {
                let ctx = Self::ctx(&req, &reply);
                // FALLOCATE carries no kill flag, and with
                // FUSE_HANDLE_KILLPRIV_V2 the kernel leaves the set-ID bits to
                // the daemon: a caller other than root is taken to lack
                // CAP_FSETID, as ext4 would find (a set-ID file is never
                // opened with passthrough, so this request comes here).
                let drop_set_id = req.header.uid != 0;
                let virt = self.virt.clone();
                self.virt.fallocate(
                    &ctx,
                    fh,
                    offset,
                    length,
                    mode,
                    Box::new(move |r| {
                        let r = r.and_then(|()| match drop_set_id {
                            true => match virt.drop_set_id(node) {
                                Ok(_) | Err(libc::ESTALE | libc::ENOENT) => Ok(()),
                                Err(e) => Err(e),
                            },
                            false => Ok(()),
                        });
                        empty_reply(reply, r)
                    }),
                );
            }
            Operation::CopyFileRange { .. } => reply.error(libc::EOPNOTSUPP),
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
        if let Some(tx) = self.notices.get() {
            let _ = tx.send(Notice::Stop);
        }
    }
}

/// How long the kernel may cache an item's attributes. Attributes of a file
/// with several hard links are not cached: a name made outside this mount's
/// lifetime is its own node for the kernel, so a change through one name would
/// leave the others' cached attributes stale.
fn attr_ttl(item: &Item) -> Duration {
    attr_ttl_of(item.kind, &item.attr)
}

fn attr_ttl_of(kind: FileKind, attr: &Attr) -> Duration {
    if kind != FileKind::Directory && attr.nlink > 1 {
        Duration::ZERO
    } else {
        TTL
    }
}

/// Whether a request names an item by a name longer than `NAME_MAX`: every
/// such request is answered `ENAMETOOLONG`, as ext4 answers it (the kernel
/// passes names of up to 1024 bytes).
fn names_too_long(op: &Operation<'_>) -> bool {
    let too_long = crate::names::name_too_long;
    match op {
        Operation::Lookup { name }
        | Operation::Unlink { name }
        | Operation::RmDir { name }
        | Operation::MkDir { name, .. }
        | Operation::MkNod { name, .. }
        | Operation::Symlink { name, .. }
        | Operation::Create { name, .. } => too_long(name),
        Operation::Link { newname, .. } => too_long(newname),
        Operation::Rename { name, newname, .. } => too_long(name) || too_long(newname),
        _ => false,
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

/// Answer an entry, counting one lookup of its node; when the kernel does not
/// take the answer (the request was interrupted and answered already, or the
/// connection is gone) the lookup is taken back: no FORGET will come for it.
fn entry_reply(virt: &Virtualizer, reply: Reply, r: Result<(u64, Item), i32>) {
    match r {
        Ok((id, item)) => {
            let out = entry_out(id, 0, &file_attr(&item.attr), TTL, attr_ttl(&item));
            if reply.try_value(&out).is_err() {
                virt.forget(id, 1);
            }
        }
        Err(e) => reply.error(e),
    }
}

/// Pack READDIRPLUS records until the buffer is full. An entry with an item
/// counts one lookup of its node, as a LOOKUP would (the kernel takes that
/// reference and FORGETs it later); entries without one go with node id 0, which
/// the kernel takes as a plain directory entry.
fn readdirplus_reply(
    reply: Reply,
    virt: &Virtualizer,
    dir: u64,
    size: usize,
    items: &[crate::virtualizer::DirItem],
) {
    let mut buf = DirBuf::new(size);
    // The entries that fit, and of them those with an item: counted at once.
    let mut room = buf.remaining();
    let fit = items
        .iter()
        .take_while(|it| {
            let len = DirBuf::plus_record_len(it.name.len());
            let fits = len <= room;
            room = room.saturating_sub(len);
            fits
        })
        .count();
    let items = &items[..fit];
    let counted = virt.count_listed_all(dir, items.iter().filter(|it| it.entry.is_some()));
    let mut ids = counted.into_iter();
    let mut sent = Vec::with_capacity(ids.len());
    for it in items {
        let mode = kind_mode(it.kind);
        let (entry, id) = match &it.entry {
            Some(attr) => {
                let id = ids.next().expect("one id per entry with an item");
                let entry = entry_out(id, 0, &file_attr(attr), TTL, attr_ttl_of(it.kind, attr));
                (entry, Some(id))
            }
            None => {
                let mut entry = abi::FuseEntryOut::default();
                entry.attr.ino = it.ino;
                entry.attr.mode = mode;
                (entry, None)
            }
        };
        if !buf.push_plus(&entry, it.next_offset, mode, &it.name) {
            // Measured to fit, so never here; if it were, the counted ids
            // not sent are given back.
            for id in id.into_iter().chain(ids) {
                virt.forget(id, 1);
            }
            break;
        }
        sent.extend(id);
    }
    if reply.try_bytes(buf.as_bytes()).is_err() {
        // The kernel never saw these entries: no FORGET will come for them.
        for id in sent {
            virt.forget(id, 1);
        }
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
