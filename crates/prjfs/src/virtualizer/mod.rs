//! The virtualizer: file operations → provider callbacks + on-disk transitions.
//! Knows nothing of FUSE; the kernel channel adapter (`crate::fuse_fs`) calls it.
//!
//! Every operation either answers from the layer at once or queues a callback; a
//! queued callback finishes through a continuation that runs on whichever thread
//! ends the command (the callback thread, the provider's thread calling
//! `complete_command`, or the thread that delivered the client's interrupt).

mod api;
mod callers;
mod dir;
mod fetch;
mod file;
mod invoke;
mod lookup;
pub mod nodes;
mod notify;
mod prefetch;
mod present;
mod ranged;
mod reads;
mod rename;
mod set_id;
mod update;
mod write;

use invoke::{is_own_thread, process_name};

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::cancel::CancelSlot;
use crate::command::{CommandStats, CommandTable};
use crate::layer::{Item, Layer};
use crate::names::validate_name;
use crate::provider::{InstanceHandle, Provider};
use crate::scheduler::Scheduler;
use crate::types::{Collation, OnDiskState};

pub(crate) use present::{present, synthetic_ino_at};

pub use dir::{DirItem, DirSlice};
pub use file::Opened;
pub use nodes::ROOT_ID;
pub use prefetch::Prefetched;
pub use write::Creator;

/// An errno value (positive).
pub type Errno = i32;

/// Receives the answer of an operation, once, from any thread.
pub type Responder<T> = Box<dyn FnOnce(Result<T, Errno>) + Send>;

/// Who asked, and how to learn that they gave up.
#[derive(Clone, Debug, Default)]
pub struct RequestCtx {
    /// Calling thread id as the kernel reports it (0 when unknown).
    pub pid: u32,
    /// Caller's uid.
    pub uid: u32,
    /// Caller's gid.
    pub gid: u32,
    /// Fired when the client's request is interrupted.
    pub cancel: CancelSlot,
}

/// Settings of a virtualizer.
#[derive(Clone, Debug)]
pub struct VirtualizerOptions {
    /// ConcurrentThreadCount: callbacks that may run at once.
    pub concurrent_threads: usize,
    /// Remember not-found answers of GetPlaceholderInfo.
    pub negative_path_cache: bool,
    /// Name collation of the root.
    pub collation: Collation,
    /// Capacity of the buffer handed to GetDirectoryEnumeration, in bytes.
    pub enumeration_buffer_bytes: usize,
    /// Run a callback on the thread that asked for it when a slot is free and
    /// none waits (no hand-off to a callback thread). Only safe where that
    /// thread is one of more request threads than callback slots.
    pub inline_callbacks: bool,
    /// Start a directory's enumeration session at its first READDIR rather
    /// than at OPENDIR, so that a listing the kernel serves from its cache
    /// costs the provider nothing.
    pub lazy_enumeration: bool,
    /// Notification mappings (`StartOptions::notification_mappings`): `None`
    /// raises no notification at all.
    pub notification_mappings: Option<Vec<crate::notifications::NotificationMapping>>,
    /// Demand-driven hydration of big files ([`ranged`]); `None`: whole files.
    pub ranged_hydration: Option<crate::types::RangedHydration>,
    /// No-open mode (`StartOptions::no_open`): the kernel's open files carry no
    /// handle, so a file node whose last name goes (unlink, rename over it)
    /// while its content is on disk keeps that content through a handle of
    /// its own ([`Virtualizer::kept_handle`]) until the kernel forgets the node.
    pub keep_unnamed_files: bool,
}

impl Default for VirtualizerOptions {
    fn default() -> Self {
        Self {
            concurrent_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            negative_path_cache: false,
            collation: Collation::CaseSensitive,
            enumeration_buffer_bytes: 64 * 1024,
            inline_callbacks: false,
            lazy_enumeration: false,
            notification_mappings: None,
            ranged_hydration: None,
            keep_unnamed_files: false,
        }
    }
}

/// Counters of a running virtualizer.
#[derive(Clone, Debug, Default)]
pub struct VirtualizerStats {
    /// Command counters.
    pub commands: CommandStats,
    /// Callbacks waiting for a slot.
    pub queued: usize,
    /// Nodes the kernel holds.
    pub nodes: usize,
    /// Requests waiting for content that a fetch in progress is bringing.
    pub content_waiters: usize,
    /// File handles open (released by the kernel's RELEASE).
    pub open_files: usize,
    /// Notifications raised, by kind, every kind listed (all 0 when the
    /// instance has no mappings).
    pub notifications: Vec<(crate::provider::NotificationKind, u64)>,
    /// Provider-driven changes (update, delete) that changed the layer.
    pub updates_applied: u64,
    /// Provider-driven changes refused because of local changes.
    pub updates_refused: u64,
}

/// The shared state behind a virtualizer and its instance handles.
pub(crate) struct Inner {
    pub(crate) layer: Layer,
    provider: Arc<dyn Provider>,
    pub(crate) commands: CommandTable,
    scheduler: Scheduler,
    pub(crate) nodes: nodes::NodeTable,
    pub(crate) options: VirtualizerOptions,
    files: Mutex<HashMap<u64, Arc<file::FileHandle>>>,
    dirs: Mutex<HashMap<u64, Arc<dir::DirHandle>>>,
    next_handle: AtomicU64,
    next_enum_id: AtomicU64,
    streams: Mutex<HashMap<u64, fetch::Stream>>,
    /// The fetch in progress of each placeholder file node ([`fetch`]).
    fetching: Mutex<HashMap<u64, Arc<fetch::Fetch>>>,
    negative: Mutex<HashSet<PathBuf>>,
    /// Pending GetPlaceholderInfo whose provider path differs from the client's
    /// path (an item inside a renamed placeholder directory): provider path →
    /// where the placeholder goes.
    placeholder_targets: Mutex<HashMap<PathBuf, PathBuf>>,
    /// Provider paths with a GetPlaceholderInfo in progress, and how many: a
    /// placeholder written for one of them answers a lookup; any other was
    /// written proactively, and the kernel must learn of it.
    asking: Mutex<HashMap<PathBuf, usize>>,
    /// Provider-driven changes applied and refused ([`update`]).
    pub(crate) updates: update::UpdateCounters,
    stopped: AtomicBool,
    handle: InstanceHandle,
    /// Told of the nodes whose attributes the virtualizer changed on its own,
    /// for the kernel's attribute cache.
    changed: OnceLock<ChangeHook>,
    /// Notification state; `None` when the provider asked for none.
    notify: Option<notify::Notify>,
    /// With `keep_unnamed_files`: node → the handle that keeps the content of
    /// a file whose last name went; removed when the kernel forgets the node.
    keepers: Mutex<HashMap<u64, u64>>,
}

type ChangeHook = Box<dyn Fn(Changed) + Send + Sync>;

/// Attributes the virtualizer changed on its own, outside any request on that
/// node, and names a provider changed: what the kernel's caches must drop.
#[derive(Clone, Debug)]
pub enum Changed {
    /// A file was hydrated (or made full while hydrating): new ctime and
    /// allocated blocks, times now from the file itself.
    File(u64),
    /// A directory got a new placeholder or a hydrated child: new ctime, and
    /// where they come from disk, mtime, nlink and size.
    Dir(u64),
    /// A provider changed the view at `name` in directory `parent`: the
    /// kernel must forget the name (its next use is a LOOKUP), and the
    /// directory's attributes and cached listing, now.
    Entry {
        /// The directory's node.
        parent: u64,
        /// The changed name.
        name: OsString,
    },
    /// A provider changed the view of a directory's listing (a name added):
    /// drop its attributes and cached listing now.
    Listing(u64),
    /// Answer on the sender once everything before it was sent to the kernel.
    Flush(std::sync::mpsc::Sender<()>),
}

/// File operations over one virtualization root.
#[derive(Clone)]
pub struct Virtualizer {
    inner: Arc<Inner>,
}

/// The provider-facing side ([`InstanceApi`]); holds the virtualizer weakly so a
/// provider keeping handles does not keep a stopped instance alive.
struct Api(Weak<Inner>);

impl Virtualizer {
    /// A virtualizer over `layer`, served by `provider`.
    pub fn new(layer: Layer, provider: Arc<dyn Provider>, options: VirtualizerOptions) -> Self {
        let notify = options
            .notification_mappings
            .as_deref()
            .map(notify::Notify::new);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            layer,
            provider,
            commands: CommandTable::new(),
            scheduler: Scheduler::new(options.concurrent_threads),
            nodes: nodes::NodeTable::new(),
            options,
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            next_enum_id: AtomicU64::new(1),
            streams: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashSet::new()),
            placeholder_targets: Mutex::new(HashMap::new()),
            asking: Mutex::new(HashMap::new()),
            updates: update::UpdateCounters::default(),
            stopped: AtomicBool::new(false),
            handle: InstanceHandle::new(Arc::new(Api(weak.clone()))),
            changed: OnceLock::new(),
            notify,
            keepers: Mutex::new(HashMap::new()),
        });
        Self { inner }
    }

    /// The handle a provider uses to answer.
    pub fn handle(&self) -> InstanceHandle {
        self.inner.handle.clone()
    }

    /// The on-disk layer.
    pub fn layer(&self) -> &Layer {
        &self.inner.layer
    }

    /// Counters.
    pub fn stats(&self) -> VirtualizerStats {
        VirtualizerStats {
            commands: self.inner.commands.stats(),
            queued: self.inner.scheduler.queued(),
            nodes: self.inner.nodes.len(),
            content_waiters: self.inner.content_waiters(),
            open_files: self.inner.files.lock().expect("files lock").len(),
            notifications: match &self.inner.notify {
                Some(n) => n.counts(),
                None => crate::provider::NotificationKind::ALL
                    .iter()
                    .map(|k| (*k, 0))
                    .collect(),
            },
            updates_applied: self.inner.updates.applied(),
            updates_refused: self.inner.updates.refused(),
        }
    }

    /// Stop virtualizing: cancel every live command (the provider hears
    /// CancelCommand for those it was running), end open enumerations, stop the
    /// callback threads. I/O that would need the provider then fails with `EIO`.
    pub fn stop(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for id in self.inner.commands.live_ids() {
            self.inner.cancel_command(id);
        }
        let dirs: Vec<_> = self.inner.dirs.lock().expect("dirs lock").drain().collect();
        for (_, d) in dirs {
            self.inner.end_enumeration(&d);
        }
        self.inner.scheduler.stop();
        self.inner.layer.sync();
        self.inner.layer.release_spares();
    }

    /// Path of a node.
    pub fn path_of(&self, node: u64) -> Option<PathBuf> {
        self.inner.nodes.path(node)
    }

    /// The node of `name` under `parent` for an entry handed to the kernel with
    /// its attributes (READDIRPLUS): one lookup counted, as for [`Virtualizer::lookup`].
    pub fn count_lookup(&self, parent: u64, name: &OsStr) -> u64 {
        self.inner.nodes.lookup(parent, name)
    }

    /// [`Virtualizer::count_lookup`] of a listing's entry, whose name a new
    /// node shares.
    pub fn count_listed(&self, parent: u64, item: &DirItem) -> u64 {
        self.inner.nodes.lookup_shared(parent, &item.name)
    }

    /// [`Virtualizer::count_listed`] of each of `items` (entries of one
    /// listing of `parent`), at once.
    pub fn count_listed_all<'a>(
        &self,
        parent: u64,
        items: impl Iterator<Item = &'a DirItem>,
    ) -> Vec<u64> {
        self.inner
            .nodes
            .lookup_shared_all(parent, items.map(|it| &it.name))
    }

    /// The kernel dropped `n` lookups of `node`.
    pub fn forget(&self, node: u64, n: u64) {
        self.inner.nodes.forget(node, n);
        if self.inner.options.keep_unnamed_files && !self.inner.nodes.is_live(node) {
            let kept = self
                .inner
                .keepers
                .lock()
                .expect("keepers lock")
                .remove(&node);
            if let Some(fh) = kept {
                self.inner.discard(fh);
            }
        }
        if self.inner.options.ranged_hydration.is_some() && self.inner.nodes.path(node).is_none() {
            self.inner.forget_partial(node);
        }
    }

    /// The handle that keeps the content of `node`, a file whose last name
    /// went while the kernel still held it (`keep_unnamed_files` only).
    pub fn kept_handle(&self, node: u64) -> Option<u64> {
        self.inner
            .keepers
            .lock()
            .expect("keepers lock")
            .get(&node)
            .copied()
    }

    /// Metadata of a node.
    pub fn getattr(&self, node: u64) -> Result<Item, Errno> {
        let path = self.inner.path(node)?;
        self.inner.item(&path)
    }

    /// Target of a symlink node.
    pub fn readlink(&self, node: u64) -> Result<OsString, Errno> {
        let path = self.inner.path(node)?;
        self.inner.layer.read_link(&path).map_err(|e| e.errno())
    }

    /// The on-disk state of a node.
    pub fn state(&self, node: u64) -> Result<OnDiskState, Errno> {
        let path = self.inner.path(node)?;
        self.inner.state(&path)
    }

    /// The on-disk state of a path relative to the root, without any callback.
    pub fn state_of_path(&self, rel: &Path) -> Result<OnDiskState, Errno> {
        check_rel_path(rel).map_err(|_| libc::EINVAL)?;
        self.inner.state(rel)
    }

    /// Look `name` up under `parent`: from disk, or through GetPlaceholderInfo.
    /// Answers the node id and its item (one lookup counted).
    pub fn lookup(
        &self,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        done: Responder<(u64, Item)>,
    ) {
        self.inner.lookup(ctx, parent, name, done)
    }

    /// Open a file node. Opening for write makes a placeholder full (hydrating it
    /// first unless `O_TRUNC`).
    pub fn open(&self, ctx: &RequestCtx, node: u64, flags: i32, done: Responder<Opened>) {
        self.inner.open(ctx, node, flags, done)
    }

    /// Hydrate the placeholder file at `rel` (relative to the root) as a read
    /// of it would, without any open: GetPlaceholderInfo first if its record
    /// has no VersionInfo, then GetFileData, sharing the fetch with readers.
    /// `ctx` names who asked (the callbacks' triggering process) and can
    /// cancel it. What `prjfs hydrate` runs in the daemon.
    pub fn prefetch(&self, ctx: &RequestCtx, rel: &Path, done: Responder<Prefetched>) {
        self.inner.prefetch(ctx, rel, done)
    }

    /// The on-disk file of an open handle whose content is local (see
    /// [`Opened::local`]), opened now if the handle has none yet; `ENODATA` for
    /// a placeholder that needs its content first.
    pub fn local_file(&self, fh: u64) -> Result<Arc<std::fs::File>, Errno> {
        self.inner.local_file(fh)
    }

    /// Call `f` whenever the virtualizer itself changes a node's attributes
    /// (hydration, placeholder creation), so cached attributes can be dropped.
    /// Set once; `f` runs on request and callback threads and must not block.
    pub fn on_changed(&self, f: impl Fn(Changed) + Send + Sync + 'static) {
        let _ = self.inner.changed.set(Box::new(f));
    }

    /// Metadata of a node, or of an open handle's file when the node has no path
    /// any more (unlinked while open).
    pub fn getattr_fh(&self, node: u64, fh: Option<u64>) -> Result<Item, Errno> {
        match self.getattr(node) {
            Err(e @ (libc::ENOENT | libc::ESTALE)) => {
                // fstat reaches us without the handle (the kernel sends one only
                // for its own size refreshes): any open file of the node will do.
                let file = fh
                    .and_then(|fh| self.inner.file_handle(fh))
                    .and_then(|h| h.file())
                    .or_else(|| self.inner.open_file_of_node(node))
                    .ok_or(e)?;
                file::item_of_file(&file)
            }
            r => r,
        }
    }

    /// Write to a handle opened for writing.
    ///
    /// `drop_set_id`: the writer lacks `CAP_FSETID` (`FUSE_WRITE_KILL_SUIDGID`);
    /// the file's set-ID bits and capability go before the data is written
    /// ([`Virtualizer::drop_set_id`]).
    pub fn write(
        &self,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        data: &[u8],
        drop_set_id: bool,
        done: Responder<u32>,
    ) {
        self.inner.write(ctx, fh, offset, data, drop_set_id, done)
    }

    /// `fallocate(2)` (`mode`: the `FALLOC_FL_*` bits) through a handle opened
    /// for writing; the first one through a handle opened on a placeholder
    /// makes it full, as a first write does.
    pub fn fallocate(
        &self,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        done: Responder<()>,
    ) {
        self.inner.fallocate(ctx, fh, offset, length, mode, done)
    }

    /// Flush a handle's file to stable storage.
    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        self.inner.fsync(fh, datasync)
    }

    /// Hard link `node` as `new_name` in `new_parent`.
    pub fn link(
        &self,
        ctx: &RequestCtx,
        node: u64,
        new_parent: u64,
        new_name: &OsStr,
        done: Responder<(u64, Item)>,
    ) {
        self.inner.link(ctx, node, new_parent, new_name, done)
    }

    /// Remove a non-directory (a projected name leaves a tombstone).
    pub fn unlink(&self, ctx: &RequestCtx, parent: u64, name: &OsStr, done: Responder<()>) {
        self.inner.unlink(ctx, parent, name, done)
    }

    /// Remove an empty directory (virtual children count).
    pub fn rmdir(&self, ctx: &RequestCtx, parent: u64, name: &OsStr, done: Responder<()>) {
        self.inner.rmdir(ctx, parent, name, done)
    }

    /// Rename with `renameat2` flags.
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &self,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
        done: Responder<()>,
    ) {
        self.inner
            .rename(ctx, parent, name, new_parent, new_name, flags, done)
    }

    /// Change attributes (size changes may hydrate first). `fh`: the open
    /// handle the change was made through (`ftruncate`), if the kernel names
    /// one; a node whose last name is gone is changed through its open file.
    pub fn setattr(
        &self,
        ctx: &RequestCtx,
        node: u64,
        fh: Option<u64>,
        attr: crate::layer::SetAttr,
        done: Responder<Item>,
    ) {
        self.inner.setattr(ctx, node, fh, attr, done)
    }

    /// Drop the set-user-ID bit, the set-group-ID bit (when group-execute is
    /// set) and `security.capability` of a regular file, as a write, truncation
    /// or owner change by a writer without `CAP_FSETID` does on a local file
    /// system (the kernel leaves it to the daemon: `FUSE_HANDLE_KILLPRIV_V2`).
    /// Answers the item as it now is.
    pub fn drop_set_id(&self, node: u64) -> Result<Item, Errno> {
        self.inner.drop_set_id(node)
    }

    /// A user xattr.
    pub fn get_xattr(&self, node: u64, name: &OsStr) -> Result<Vec<u8>, Errno> {
        self.inner.get_xattr(node, name)
    }

    /// User xattr names.
    pub fn list_xattr(&self, node: u64) -> Result<Vec<OsString>, Errno> {
        self.inner.list_xattr(node)
    }

    /// Set a user xattr.
    pub fn set_xattr(
        &self,
        node: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        self.inner.set_xattr(node, name, value, flags)
    }

    /// Remove a user xattr.
    pub fn remove_xattr(&self, node: u64, name: &OsStr) -> Result<(), Errno> {
        self.inner.remove_xattr(node, name)
    }

    /// Read from an open file; hydrates a placeholder first (GetFileData).
    pub fn read(
        &self,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        size: u32,
        done: Responder<Vec<u8>>,
    ) {
        self.inner.read(ctx, fh, offset, size, done)
    }

    /// Close a file handle (its close notification follows, if one is asked for).
    pub fn release(&self, fh: u64) {
        let handle = self.inner.files.lock().expect("files lock").remove(&fh);
        if self.inner.notify.is_some() {
            self.inner.notify_release(fh, handle.and_then(|h| h.file()));
        }
    }

    /// Forget a handle whose open answer never reached the kernel: no
    /// notification, as if it had never been opened.
    pub fn discard(&self, fh: u64) {
        self.inner.discard(fh);
    }

    /// Open a directory: starts an enumeration session with the provider when the
    /// directory is a placeholder.
    pub fn opendir(&self, ctx: &RequestCtx, node: u64, done: Responder<u64>) {
        self.inner.opendir(ctx, node, done)
    }

    /// At most `max` entries of an open directory from `offset` on (offset 0
    /// again = restart scan). Each item carries the offset of the entry after it.
    pub fn readdir(
        &self,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        max: usize,
        done: Responder<DirSlice>,
    ) {
        self.inner.readdir(ctx, fh, offset, max, done)
    }

    /// Close a directory handle; EndDirectoryEnumeration follows a started session.
    pub fn releasedir(&self, fh: u64) {
        let d = self.inner.dirs.lock().expect("dirs lock").remove(&fh);
        if let Some(d) = d {
            self.inner.end_enumeration(&d);
        }
    }

    /// File-system statistics of the layer.
    pub fn statfs(&self) -> Result<rustix::fs::StatVfs, Errno> {
        self.inner.layer.statfs().map_err(|e| e.errno())
    }
}

/// Paths given by providers and the CLI: relative, no `.`/`..`, every component a
/// valid name.
pub(crate) fn check_rel_path(path: &Path) -> Result<(), String> {
    for c in path.components() {
        match c {
            Component::Normal(name) => validate_name(name)?,
            other => return Err(format!("{:?} is not allowed in {}", other, path.display())),
        }
    }
    Ok(())
}

impl Inner {
    /// The placeholder file `node` was hydrated by a read (replaced on disk in
    /// its directory, still clean): what it shows is unchanged ([`present`]),
    /// only its directory changed on disk; see [`Virtualizer::on_changed`].
    pub(crate) fn file_hydrated(&self, node: u64) {
        if let (Some(f), Some(parent)) = (self.changed.get(), self.nodes.parent(node)) {
            f(Changed::Dir(parent));
        }
    }

    /// The file `node` was hydrated and made full (replaced on disk in its
    /// directory; its ctime, blocks and inode number changed); see
    /// [`Virtualizer::on_changed`].
    pub(crate) fn file_changed(&self, node: u64) {
        if let Some(f) = self.changed.get() {
            f(Changed::File(node));
            if let Some(parent) = self.nodes.parent(node) {
                f(Changed::Dir(parent));
            }
        }
    }

    /// A placeholder appeared in the directory `node`.
    pub(crate) fn dir_changed(&self, node: u64) {
        if let Some(f) = self.changed.get() {
            f(Changed::Dir(node));
        }
    }

    pub(crate) fn path(&self, node: u64) -> Result<PathBuf, Errno> {
        self.nodes.path(node).ok_or(libc::ESTALE)
    }

    /// The on-disk state; the root is the virtualization root, a placeholder
    /// directory by definition (ProjFS MarkDirectoryAsPlaceholder).
    fn state(&self, path: &Path) -> Result<OnDiskState, Errno> {
        if path.as_os_str().is_empty() {
            return Ok(OnDiskState::PLACEHOLDER);
        }
        self.layer.state(path).map_err(|e| e.errno())
    }

    /// The path of a node and its item as clients see it.
    pub(crate) fn node_item(&self, node: u64) -> Result<(PathBuf, Item), Errno> {
        let path = self.path(node)?;
        let item = self.item(&path)?;
        Ok((path, item))
    }

    pub(crate) fn item(&self, path: &Path) -> Result<Item, Errno> {
        match self.layer.lookup(path) {
            Ok(Some(mut item)) if path.as_os_str().is_empty() => {
                // The root lists the provider's items: its subdirectories are
                // not all on disk.
                item.attr.nlink = 1;
                Ok(item)
            }
            r => found(path, r),
        }
    }

    /// [`Inner::item`] for a hydration about to begin
    /// ([`crate::layer::Layer::lookup_to_hydrate`]).
    pub(crate) fn item_to_hydrate(&self, path: &Path) -> Result<Item, Errno> {
        if path.as_os_str().is_empty() {
            return self.item(path);
        }
        found(path, self.layer.lookup_to_hydrate(path))
    }

    fn new_handle_id(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }
}

/// A directory whose listing includes the provider's items: the root and
/// placeholder directories (a directory created locally is full and has no
/// virtual children).
fn is_projected_dir(item: &Item, node: u64) -> bool {
    node == ROOT_ID
        || (item.state.contains(OnDiskState::PLACEHOLDER)
            && !item.state.contains(OnDiskState::FULL))
}

/// The item a layer lookup of `path` found, as a client sees it: a tombstone
/// or nothing is `ENOENT`; a layer error is logged and its errno answered.
fn found(path: &Path, r: crate::layer::Result<Option<Item>>) -> Result<Item, Errno> {
    match r {
        Ok(Some(item)) if !item.state.contains(OnDiskState::TOMBSTONE) => Ok(present(item)),
        Ok(_) => Err(libc::ENOENT),
        Err(e) => {
            tracing::error!("{}: {e}", path.display());
            Err(e.errno())
        }
    }
}
