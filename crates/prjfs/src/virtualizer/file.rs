//! Open files: hydration through GetFileData (on first read, or before a write
//! that keeps content), reads and writes on the on-disk file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fetch::Wake;
use super::reads::{checked_read, read_in_place};
use super::{is_own_thread, Errno, Inner, RequestCtx, Responder};
use crate::layer::{Item, LayerError};
use crate::types::{FileKind, OnDiskState};

/// One open file.
pub(crate) struct FileHandle {
    pub(crate) node: u64,
    /// Opened for writing (the item is full).
    pub(super) writable: bool,
    /// The content was complete on disk when the handle was opened.
    local: bool,
    /// Opened for writing while a placeholder: the first write hydrates it (if
    /// needed) and makes it full. Opening alone changes nothing (`touch`, or an
    /// `ftruncate` that follows, must not fetch content).
    convert_on_write: std::sync::atomic::AtomicBool,
    /// Invariant: once set, the file holds the item's complete content.
    data: Mutex<Option<Arc<File>>>,
}

impl FileHandle {
    /// The on-disk file, when this handle has one open.
    pub(crate) fn file(&self) -> Option<Arc<File>> {
        self.data.lock().expect("handle lock").clone()
    }

    /// The handle's on-disk file: the one it has, else `file` (the item's
    /// hydrated file, just put in place), which it keeps from now on.
    fn adopt(&self, file: Arc<File>) -> Arc<File> {
        self.data
            .lock()
            .expect("handle lock")
            .get_or_insert(file)
            .clone()
    }
}

/// An open file handle.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The handle.
    pub fh: u64,
    /// The item was a placeholder when opened: its content is the provider's
    /// and changes only through this node (a page cache may be kept across opens).
    pub placeholder: bool,
    /// The content is complete on disk (hydrated or full): reads and writes of
    /// the handle may go straight to the on-disk file
    /// ([`super::Virtualizer::local_file`]). False for a placeholder whose
    /// content the first read fetches.
    pub local: bool,
    /// Writes through this handle must come to the daemon (no passthrough):
    /// it is open for writing and a close notification must tell whether it
    /// was written through, or the file has a set-ID bit, which a write by a
    /// writer without `CAP_FSETID` drops.
    pub observe_writes: bool,
}

/// Whether a placeholder file still needs its content from the provider.
pub(crate) fn needs_data(item: &Item) -> bool {
    item.kind == FileKind::File
        && item.state.contains(OnDiskState::PLACEHOLDER)
        && !item.state.contains(OnDiskState::HYDRATED_PLACEHOLDER)
}

fn is_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl Inner {
    /// Open a file. Opening a placeholder with `O_TRUNC` makes it full and empty
    /// without fetching; opening it for write otherwise changes nothing until
    /// the first write, which hydrates it (if needed) and makes it full.
    ///
    /// A placeholder file that came from a listing has no VersionInfo yet: its
    /// first open asks GetPlaceholderInfo (as a first lookup would) before
    /// anything else.
    pub(super) fn open(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        flags: i32,
        done: Responder<Opened>,
    ) {
        let (path, item) = match self.node_item(node) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        match item.kind {
            FileKind::Directory => return done(Err(libc::EISDIR)),
            FileKind::Symlink => return done(Err(libc::ELOOP)),
            FileKind::File => {}
        }
        if item.attr.mode & libc::S_IFMT != libc::S_IFREG {
            // A FIFO, socket or device node (made by MKNOD): the kernel opens
            // those itself and never sends OPEN for one. A forged OPEN must not
            // make the daemon open it: a FIFO blocks the worker in open(2), a
            // device is the machine's. ENXIO, as open(2) of a socket answers.
            return done(Err(libc::ENXIO));
        }
        if item.state.contains(OnDiskState::PLACEHOLDER)
            && item.version.is_none()
            && !is_own_thread(ctx.pid)
            && !self.stopped.load(std::sync::atomic::Ordering::SeqCst)
        {
            let inner = self.clone();
            let ctx2 = ctx.clone();
            return self.ask_placeholder_info(
                ctx,
                &path,
                &item,
                Box::new(move |r| match r {
                    Ok(()) => inner.open_item(&ctx2, node, flags, done),
                    Err(e) => done(Err(e)),
                }),
            );
        }
        self.open_with(ctx, node, flags, path, item, done)
    }

    /// [`Inner::open`] once the VersionInfo is known (or could not be asked).
    fn open_item(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        flags: i32,
        done: Responder<Opened>,
    ) {
        match self.node_item(node) {
            Ok((path, item)) => self.open_with(ctx, node, flags, path, item, done),
            Err(e) => done(Err(e)),
        }
    }

    fn open_with(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        flags: i32,
        path: PathBuf,
        item: Item,
        done: Responder<Opened>,
    ) {
        let done = match self.notifying(ctx) {
            Some(who) => {
                let truncate = flags & libc::O_TRUNC != 0 && is_write(flags);
                self.notify_open(ctx, who, node, path.clone(), truncate, done)
            }
            None => done,
        };
        let placeholder = item.state.contains(OnDiskState::PLACEHOLDER);
        // A set-ID file is never opened with passthrough: its writes must reach
        // the daemon, which drops the bits (FUSE_HANDLE_KILLPRIV_V2 leaves that
        // to it, and a passthrough write is not seen). Passthrough is per node,
        // so this holds for reading handles too.
        let set_id = super::set_id::has_set_id(item.attr.mode);
        if !is_write(flags) {
            // The on-disk file is opened at the first read, or when the kernel is
            // to read it directly (local_file).
            let local = !needs_data(&item);
            let fh = self.new_file_handle(node, false, local, None);
            return done(Ok(Opened {
                fh,
                placeholder,
                local,
                observe_writes: set_id,
            }));
        }
        let truncate = flags & libc::O_TRUNC != 0;
        if placeholder && !truncate {
            // Served by the daemon (no direct access): the first write converts.
            let fh = self.new_file_handle(node, true, false, None);
            if let Some(h) = self.file_handle(fh) {
                h.convert_on_write
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            return done(Ok(Opened {
                fh,
                placeholder,
                local: false,
                observe_writes: set_id,
            }));
        }
        let inner = self.clone();
        let item_path = path.clone();
        let finish = move |r: Result<(), Errno>| {
            let r = r
                .and_then(|()| inner.make_full(&path, truncate))
                .and_then(|()| {
                    // O_APPEND is the kernel's business: it sends the offset to write at.
                    let mut oflags = rustix::fs::OFlags::RDWR;
                    if truncate {
                        oflags |= rustix::fs::OFlags::TRUNC;
                    }
                    inner.layer.open_file(&path, oflags).map_err(|e| e.errno())
                });
            if placeholder {
                // Hydrated and made full behind the kernel's back: new ctime and
                // blocks, and the times now come from the file itself.
                inner.file_changed(node);
            }
            done(r.map(|f| {
                let fh = inner.register_file_handle(node, true, Some(Arc::new(f)));
                Opened {
                    fh,
                    placeholder: false,
                    local: true,
                    observe_writes: set_id,
                }
            }))
        };
        if needs_data(&item) && !truncate {
            self.ensure_hydrated(ctx, &item_path, &item, 0, Box::new(finish));
        } else {
            // A placeholder here is opened with O_TRUNC: it becomes full.
            self.before_convert(ctx, Some(node), &item_path, &item, Box::new(finish));
        }
    }

    /// A handle on the open on-disk `file` (content local).
    pub(super) fn register_file_handle(
        &self,
        node: u64,
        writable: bool,
        file: Option<Arc<File>>,
    ) -> u64 {
        let local = file.is_some();
        self.new_file_handle(node, writable, local, file)
    }

    fn new_file_handle(
        &self,
        node: u64,
        writable: bool,
        local: bool,
        file: Option<Arc<File>>,
    ) -> u64 {
        let fh = self.new_handle_id();
        self.files.lock().expect("files lock").insert(
            fh,
            Arc::new(FileHandle {
                node,
                writable,
                local,
                convert_on_write: std::sync::atomic::AtomicBool::new(false),
                data: Mutex::new(file),
            }),
        );
        fh
    }

    pub(crate) fn file_handle(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.files.lock().expect("files lock").get(&fh).cloned()
    }

    /// The on-disk file of a handle whose content is local, opened now if the
    /// handle has none yet.
    pub(crate) fn local_file(&self, fh: u64) -> Result<Arc<File>, Errno> {
        let handle = self.file_handle(fh).ok_or(libc::EBADF)?;
        if let Some(f) = handle.file() {
            return Ok(f);
        }
        let path = self.path(handle.node)?;
        // Content local at open stays local: a placeholder is hydrated once, and
        // a full file never becomes one again.
        if !handle.local && needs_data(&self.item(&path)?) {
            return Err(libc::ENODATA);
        }
        self.open_local(&handle, &path)
    }

    /// The on-disk file of some open handle of `node` (for a node that lost its
    /// last name while open).
    pub(crate) fn open_file_of_node(&self, node: u64) -> Option<Arc<File>> {
        let files = self.files.lock().expect("files lock");
        files
            .values()
            .filter(|h| h.node == node)
            .find_map(|h| h.file())
    }

    /// Open handles of `node` that still reach their content through its path:
    /// no on-disk file yet, or a write that will convert it first.
    pub(super) fn handles_needing_path(&self, node: u64) -> Vec<Arc<FileHandle>> {
        let files = self.files.lock().expect("files lock");
        files
            .values()
            .filter(|h| h.node == node)
            .filter(|h| {
                h.file().is_none() || h.convert_on_write.load(std::sync::atomic::Ordering::SeqCst)
            })
            .cloned()
            .collect()
    }

    /// Before the last name of `path` goes: give an open handle its on-disk file
    /// (converted to full first when it was opened for writing), so it keeps
    /// working without a path. The content must be local already.
    pub(super) fn keep_open(&self, handle: &FileHandle, path: &Path) -> Result<(), Errno> {
        if handle
            .convert_on_write
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.make_full(path, false)?;
            let f = self
                .layer
                .open_file(path, rustix::fs::OFlags::RDWR)
                .map_err(|e| e.errno())?;
            *handle.data.lock().expect("handle lock") = Some(Arc::new(f));
            handle
                .convert_on_write
                .store(false, std::sync::atomic::Ordering::SeqCst);
            return Ok(());
        }
        self.open_local(handle, path).map(|_| ())
    }

    /// `keep_unnamed_files`: before the last name of the file `item` at `path`
    /// (node `node`, if the kernel holds one) goes, open its on-disk content
    /// as a handle that outlives the name (kept in `keepers`); `None`
    /// when nothing needs keeping or can be kept (a placeholder whose content
    /// was never fetched: it is not fetched for this). Committed with
    /// [`Inner::commit_keeper`] once the name is gone.
    pub(super) fn keeper_for(
        &self,
        node: Option<u64>,
        path: &Path,
        item: &Item,
    ) -> Option<(u64, u64)> {
        let node = node.filter(|_| self.options.keep_unnamed_files)?;
        if item.kind != FileKind::File || needs_data(item) {
            return None;
        }
        let file = self.layer.open_file(path, rustix::fs::OFlags::RDWR).ok()?;
        Some((
            node,
            self.register_file_handle(node, true, Some(Arc::new(file))),
        ))
    }

    /// The name went (`ok`): keep the handle; else drop it.
    pub(super) fn commit_keeper(&self, keeper: Option<(u64, u64)>, ok: bool) {
        let Some((node, fh)) = keeper else { return };
        if !ok {
            return self.discard(fh);
        }
        let old = self.keepers.lock().expect("keepers lock").insert(node, fh);
        if let Some(old) = old {
            self.discard(old);
        }
    }

    /// Turn the item at `path` into a full file (content is local or truncated).
    pub(super) fn make_full(&self, path: &Path, truncate: bool) -> Result<(), Errno> {
        self.layer.convert_to_full(path, truncate).map_err(|e| {
            tracing::error!("{}: converting to full failed: {e}", path.display());
            e.errno()
        })
    }

    pub(super) fn read(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        size: u32,
        done: Responder<Vec<u8>>,
    ) {
        let Some(handle) = self.file_handle(fh) else {
            return done(Err(libc::EBADF));
        };
        if let Some(file) = handle.file() {
            return done(read_in_place(&file, offset, size, handle.node));
        }
        let (path, item) = match self.node_item(handle.node) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        // Only bytes the item has: what lies beyond is never written.
        let end = offset.saturating_add(u64::from(size)).min(item.attr.size);
        let start = offset.min(end);
        let inner = self.clone();
        let ctx2 = ctx.clone();
        self.wait_for_content(
            ctx,
            handle.node,
            &path.clone(),
            &item,
            fh,
            Some((start, end)),
            Box::new(move |wake| match wake {
                Wake::Covered(file) => {
                    let len = u32::try_from(end - start).unwrap_or(size);
                    done(checked_read(
                        &file,
                        start,
                        len,
                        end - start,
                        &path,
                        "arrived",
                    ))
                }
                Wake::Done => {
                    done(inner.open_local(&handle, &path).and_then(|f| {
                        checked_read(&f, offset, size, end - start, &path, "in place")
                    }))
                }
                Wake::Placed(file) => {
                    let file = handle.adopt(file);
                    done(checked_read(
                        &file,
                        offset,
                        size,
                        end - start,
                        &path,
                        "placed",
                    ))
                }
                Wake::Failed(e) => done(Err(e)),
                Wake::Interrupted => done(Err(libc::EINTR)),
                Wake::Retry => inner.read(&ctx2, fh, offset, size, done),
            }),
        );
    }

    /// Make sure the content of the file `item` at `path` is on disk: nothing to
    /// do for local content, no callback for an empty placeholder, else wait for
    /// the node's fetch (GetFileData into a temp file that replaces the
    /// placeholder when complete), joining it or starting it.
    pub(super) fn ensure_hydrated(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        path: &Path,
        item: &Item,
        fh: u64,
        done: Responder<()>,
    ) {
        if !needs_data(item) {
            return done(Ok(()));
        }
        // Fetches are joined by node; a path the kernel holds no node for (none
        // known here) gets a fetch of its own under a key no node has.
        let node = self
            .nodes
            .find_path(path)
            .unwrap_or_else(|| u64::MAX - self.new_handle_id());
        let inner = self.clone();
        let ctx2 = ctx.clone();
        let path2 = path.to_path_buf();
        self.wait_for_content(
            ctx,
            node,
            path,
            item,
            fh,
            None,
            Box::new(move |wake| match wake {
                Wake::Done | Wake::Placed(_) | Wake::Covered(_) => done(Ok(())),
                Wake::Failed(e) => done(Err(e)),
                Wake::Interrupted => done(Err(libc::EINTR)),
                Wake::Retry => match inner.item(&path2) {
                    Ok(item) => inner.ensure_hydrated(&ctx2, &path2, &item, fh, done),
                    Err(e) => done(Err(e)),
                },
            }),
        );
    }

    /// Put a finished hydration in place; `Ok(true)` when it was its file
    /// that went in place, `Ok(false)` when another hydration of the item
    /// had put one there first.
    pub(super) fn finish_hydration(
        &self,
        hydration: Option<Arc<crate::layer::Hydration>>,
        path: &Path,
        length: u64,
    ) -> Result<bool, Errno> {
        let Some(h) = hydration else {
            return Err(libc::EIO);
        };
        // The streams table no longer has it, so only a write racing this very
        // completion could still hold a clone.
        let h = match Arc::try_unwrap(h) {
            Ok(h) => h,
            Err(_) => {
                tracing::error!("{}: hydration still in use at completion", path.display());
                return Err(libc::EIO);
            }
        };
        let r = self.layer.finish_hydration(h, path);
        let placed = r.is_ok();
        self.hydration_result(r, path, length).map(|()| placed)
    }

    /// What finishing the hydration of `path` (`length` bytes) with result `r`
    /// means for the requests waiting for it.
    pub(super) fn hydration_result(
        &self,
        r: Result<(), LayerError>,
        path: &Path,
        length: u64,
    ) -> Result<(), Errno> {
        match r {
            Ok(()) => Ok(()),
            Err(LayerError::IncompleteData { .. }) => {
                tracing::error!(
                    "provider reported success for get_file_data of {} but did not write all {length} bytes",
                    path.display()
                );
                Err(libc::EIO)
            }
            Err(e) => {
                // Another reader may have hydrated it first; that is success.
                match self.layer.state(path) {
                    Ok(s)
                        if !s.contains(OnDiskState::PLACEHOLDER)
                            || s.contains(OnDiskState::HYDRATED_PLACEHOLDER) =>
                    {
                        Ok(())
                    }
                    _ => {
                        tracing::error!("{}: finishing hydration failed: {e}", path.display());
                        Err(e.errno())
                    }
                }
            }
        }
    }

    pub(super) fn hydrate_empty(&self, path: &Path) -> Result<(), Errno> {
        let h = self.layer.begin_hydration(path).map_err(|e| e.errno())?;
        self.finish_hydration(Some(Arc::new(h)), path, 0).map(drop)
    }

    fn open_local(&self, handle: &FileHandle, path: &Path) -> Result<Arc<File>, Errno> {
        let mut slot = handle.data.lock().expect("handle lock");
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(
            self.layer
                .open_file(path, rustix::fs::OFlags::RDONLY)
                .map_err(|e| e.errno())?,
        );
        *slot = Some(f.clone());
        Ok(f)
    }

    pub(super) fn write(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        data: &[u8],
        drop_set_id: bool,
        done: Responder<u32>,
    ) {
        let Some(handle) = self.file_handle(fh) else {
            return done(Err(libc::EBADF));
        };
        if !handle.writable {
            return done(Err(libc::EBADF));
        }
        let done = self.modifying(fh, done);
        let node = handle.node;
        if !handle
            .convert_on_write
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return done(
                handle
                    .file()
                    .ok_or(libc::EBADF)
                    .and_then(|f| self.dropping_set_id(drop_set_id, node).map(|()| f))
                    .and_then(|f| write_at(&f, offset, data)),
            );
        }
        // First write through a handle opened on a placeholder: hydrate (unless
        // already local), make it full, then write to the on-disk file.
        let data = data.to_vec();
        let inner = self.clone();
        self.convert_handle(
            ctx,
            fh,
            handle,
            false,
            Box::new(move |r| {
                done(
                    r.and_then(|f| inner.dropping_set_id(drop_set_id, node).map(|()| f))
                        .and_then(|f| write_at(&f, offset, &data)),
                )
            }),
        );
    }

    /// The first change of content through `handle`, opened for writing on a
    /// placeholder (`convert_on_write`): hydrate it unless its content is local
    /// (or `discard`: the change overwrites all of it, so an empty full file of
    /// the projected size, all zeros, is as good), make it full, and give the
    /// handle the on-disk file, opened for reading and writing. A handle already
    /// converted answers its file.
    fn convert_handle(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        handle: Arc<FileHandle>,
        discard: bool,
        done: Responder<Arc<File>>,
    ) {
        if !handle
            .convert_on_write
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return done(handle.file().ok_or(libc::EBADF));
        }
        let (path, item) = match self.node_item(handle.node) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        let inner = self.clone();
        let item_path = path.clone();
        let handle_node = handle.node;
        let discard = discard && needs_data(&item);
        let size = item.attr.size;
        let finish = move |r: Result<(), Errno>| {
            let r = r
                .and_then(|()| inner.make_full(&path, discard))
                .and_then(|()| {
                    inner
                        .layer
                        .open_file(&path, rustix::fs::OFlags::RDWR)
                        .map_err(|e| e.errno())
                })
                .and_then(|f| {
                    if discard {
                        // The projected size, as zeros (sparse): what the
                        // change that discards it all starts from.
                        f.set_len(size)
                            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
                    }
                    Ok(f)
                })
                .map(|f| {
                    let f = Arc::new(f);
                    *handle.data.lock().expect("handle lock") = Some(f.clone());
                    handle
                        .convert_on_write
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                    inner.file_changed(handle.node);
                    f
                });
            done(r)
        };
        let inner = self.clone();
        let ctx2 = ctx.clone();
        let item2 = item.clone();
        let node = handle_node;
        self.before_convert(
            ctx,
            Some(node),
            &item_path.clone(),
            &item,
            Box::new(move |r| match r {
                Ok(()) if !discard => {
                    inner.ensure_hydrated(&ctx2, &item_path, &item2, fh, Box::new(finish))
                }
                r => finish(r),
            }),
        );
    }

    /// `fallocate(2)` through a handle opened for writing, on its on-disk file
    /// (whatever the underlying file system supports, with its errno). The
    /// first one through a handle opened on a placeholder converts it as a
    /// first write does; a hole punched or a range zeroed over the whole
    /// projected content of a placeholder never read needs no fetch.
    pub(super) fn fallocate(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        done: Responder<()>,
    ) {
        let Some(handle) = self.file_handle(fh) else {
            return done(Err(libc::EBADF));
        };
        if !handle.writable {
            return done(Err(libc::EBADF));
        }
        let done = self.modifying(fh, done);
        let discards = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) as u32 != 0
            && offset == 0
            && self
                .node_item(handle.node)
                .is_ok_and(|(_, item)| length >= item.attr.size);
        self.convert_handle(
            ctx,
            fh,
            handle,
            discards,
            Box::new(move |r| done(r.and_then(|f| fallocate_file(&f, mode, offset, length)))),
        );
    }

    pub(super) fn fsync(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        let handle = self.file_handle(fh).ok_or(libc::EBADF)?;
        let Some(file) = handle.file() else {
            return Ok(());
        };
        let r = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }
}

fn fallocate_file(file: &File, mode: u32, offset: u64, length: u64) -> Result<(), Errno> {
    let flags = rustix::fs::FallocateFlags::from_bits_retain(mode);
    rustix::fs::fallocate(file, flags, offset, length).map_err(|e| e.raw_os_error())
}

fn write_at(file: &File, offset: u64, data: &[u8]) -> Result<u32, Errno> {
    file.write_all_at(data, offset)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(data.len() as u32)
}

/// The item an open file descriptor refers to (for `fstat` of a file unlinked
/// while open): a full item with on-disk attributes.
pub(crate) fn item_of_file(file: &File) -> Result<Item, Errno> {
    let st = rustix::fs::fstat(file).map_err(|e| e.raw_os_error())?;
    let mode = st.st_mode;
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::File,
    };
    Ok(Item {
        kind,
        attr: crate::layer::Attr {
            ino: st.st_ino,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: (st.st_atime, st.st_atime_nsec as u32),
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
            mode,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
        },
        state: OnDiskState::FULL,
        version: None,
        origin: None,
    })
}
