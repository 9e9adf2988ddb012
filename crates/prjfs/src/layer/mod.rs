//! The on-disk layer: placeholders, hydration, tombstones and state queries, kept in
//! the virtualization root's own directory and reached only through one fd.
//!
//! # Model
//!
//! A placeholder file that nothing changed yet is a record only (in memory and
//! in the root's placeholder log, `vstore`): it has no on-disk item until
//! something changes it (`virt`). Every other item under the root is a real
//! file, directory or symlink. An item with a metadata record (one xattr,
//! [`Layer::xattr_name`]) is a placeholder, a hydrated placeholder, a dirty
//! placeholder, a tombstone, or a full item marked as projected; an item
//! without one was created locally and is *Full*. A placeholder file holds no data (its projected size and
//! times live in the record) until [`Layer::finish_hydration`] atomically replaces it
//! with a complete copy. A tombstone is an empty file whose record hides a projected
//! name.
//!
//! Clients change the tree through [`Layer::create_file`], [`Layer::mkdir`],
//! [`Layer::symlink`], [`Layer::mknod`], [`Layer::link`] (each replacing a
//! tombstone), [`Layer::delete`] (optionally leaving one), [`Layer::rename`],
//! [`Layer::set_attr`], [`Layer::convert_to_full`] and the user-xattr calls
//! ([`Layer::set_xattr`], ...). A placeholder touched by a metadata change, and a
//! placeholder directory whose entries change, become dirty; a file whose content
//! changes becomes full.
//!
//! # Invariants
//!
//! * After [`Layer::open`], the layer reaches items only with `*at()` calls relative
//!   to the root fd, never following symlinks and never leaving the root, so a FUSE
//!   mount over the root path changes nothing for it.
//! * Items come into place only by `renameat2` from `.prjfs/tmp` (a hydration
//!   that filled a spare file: from `.prjfs/spare`), fully formed
//!   (mode, owner, times, record, user xattrs): a killed process leaves either the
//!   old item or the new one, plus garbage in `tmp/` (or `spare/`) that the next
//!   [`Layer::open`] removes. Items leave by being renamed over, or swapped into `tmp/`
//!   (`RENAME_EXCHANGE`) and removed there. A record never claims content the item
//!   does not hold: content changes drop the record first, metadata changes set the
//!   Dirty bit first.
//! * Renames move records with their items: a placeholder keeps its VersionInfo
//!   and its origin (the path it was created at, which GetFileData is told).
//!   A record may leave its origin out when it is the item's own path
//!   (`meta`): such records are written only for an item known to land at
//!   that path, and get the origin stored before anything moves them (a
//!   rename of the item or of a directory above it, a hard link;
//!   `Layer::pin_origins`).
//! * A record that fails its checks is [`LayerError::CorruptMeta`], never a panic.
//! * Every mutation ([`Layer::finish_hydration`], [`Layer::write_tombstone`],
//!   [`Layer::create_file`], [`Layer::rename`], [`Layer::delete`],
//!   [`Layer::set_attr`], ...) holds one lock from its checks to its last rename,
//!   so two of them never interleave. [`Layer::write_placeholder`] needs no lock: it
//!   never replaces anything (it takes it for its final rename when its record
//!   leaves the origin out, to know that no directory above moved meanwhile).

mod attr;
#[cfg(test)]
mod crash_tests;
mod error;
mod hydrate;
mod meta;
mod ops;
mod path;
mod place;
mod rename;
mod spare;
mod temp;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_attr;
#[cfg(test)]
mod tests_origin;
#[cfg(test)]
mod tests_placing;
#[cfg(test)]
mod tests_rw;
mod update;
mod virt;
mod vstore;
mod vstore_hold;
mod xattr;
mod xattr_user;

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec};
use rustix::io::Errno;

pub use attr::{SetAttr, TimeSpec};
pub use error::{LayerError, Result};
pub(crate) use hydrate::insert_range;
pub use hydrate::Hydration;
pub use rename::RenameFlags;
pub use update::{refusal, UpdateOutcome};
pub use virt::ListedEntry;
pub use vstore::PlaceholderLogStats;

use crate::types::{FileKind, OnDiskState, VersionInfo};
use meta::Record;
use path::Loc;

/// Name of the layer's hidden directory in the root. The layer keeps `tmp/` and
/// the placeholder log there; other names are free for the layer's users (the
/// `prjfs` daemon keeps its log in `log/`), reached through [`Layer::hidden_dir`].
/// Clients never see it: lookups of it in the root answer `ENOENT`.
pub const HIDDEN_DIR: &str = ".prjfs";
const TMP_DIR: &str = "tmp";
/// Spare inodes made ahead of need ([`spare`]).
const SPARE_DIR: &str = "spare";

/// Attributes of an item as a client should see them (projected values for
/// placeholders, on-disk values otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number on the underlying file system.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Last access (seconds, nanoseconds).
    pub atime: (i64, u32),
    /// Last modification (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Last status change (seconds, nanoseconds), always from disk.
    pub ctime: (i64, u32),
    /// File type (`S_IFMT` bits) and permissions.
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number, in the kernel's `new_encode_dev` form (as FUSE carries it).
    pub rdev: u32,
    /// Preferred I/O size.
    pub blksize: u32,
}

/// One item on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// File, directory or symlink. Tombstones report the kind in their record;
    /// special files created locally (FIFOs, sockets, devices) report
    /// [`FileKind::File`] and carry their type in `attr.mode`.
    pub kind: FileKind,
    /// Attributes.
    pub attr: Attr,
    /// State bits; [`OnDiskState::FULL`] when the item has no record.
    pub state: OnDiskState,
    /// The store's version, for placeholders (any state with the Placeholder bit).
    pub version: Option<VersionInfo>,
    /// The path (relative to the root) the item had when its placeholder was
    /// written: the path GetFileData is told, wherever the item has been renamed
    /// to since. For placeholders; `None` for records written before the format
    /// kept it.
    pub origin: Option<PathBuf>,
}

/// What a root is virtualizing, stored as an xattr on the root directory so that a
/// later mount can check it projects the same thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootMarker {
    /// Provider-defined description of the backing store (e.g. a path or URL).
    pub source: String,
    /// Provider name.
    pub provider: String,
}

/// How many items are in each state. Each item counts once, in its most advanced
/// state: tombstone, else full, else dirty, else hydrated, else placeholder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Placeholders neither hydrated nor dirty (files and directories).
    pub placeholder: u64,
    /// Hydrated placeholders (files, and symlinks whose target is their content).
    pub hydrated: u64,
    /// Dirty placeholders.
    pub dirty: u64,
    /// Items created or modified locally.
    pub full: u64,
    /// Tombstones.
    pub tombstone: u64,
}

/// The on-disk layer of one virtualization root. `Send + Sync`; every method takes
/// `&self`.
#[derive(Debug)]
pub struct Layer {
    /// The root directory, opened before any mount covers it.
    root: OwnedFd,
    /// `.prjfs/tmp`, shared with in-flight [`Hydration`]s.
    tmp: Arc<OwnedFd>,
    /// `<ns>.prjfs.meta`.
    meta_name: CString,
    /// `<ns>.prjfs.root`.
    marker_name: CString,
    /// Running with euid 0 (`trusted.` namespace, chown allowed).
    is_root: bool,
    xattrs: xattr::Xattrs,
    /// Source of temp-file names and hydration stream ids; unique per layer.
    next_id: AtomicU64,
    /// Serializes check-then-replace operations: each holds it for writing.
    /// Only the placing of a hydrated file kept as a record holds it for
    /// reading ([`Layer::share`]): such placings never replace anything
    /// (a link that fails on an existing name) and touch only their own
    /// record, so they may overlap one another, never anything else.
    mutate: RwLock<()>,
    /// Placeholder files without an on-disk item.
    vstore: Arc<vstore::VStore>,
    /// Empty files and directories made ahead of need.
    spares: spare::Spares,
    /// Parent directories kept open by path ([`path::DirCache`]).
    dirs: path::DirCache,
}

impl Drop for Layer {
    fn drop(&mut self) {
        self.vstore.stop();
        self.spares.release();
        self.dirs.stop();
    }
}

/// `(secs, nsecs)` of a [`SystemTime`], also before the epoch.
pub(crate) fn time_pair(t: SystemTime) -> (i64, u32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
            match d.subsec_nanos() {
                0 => (secs, 0),
                ns => (secs.saturating_sub(1), 1_000_000_000 - ns),
            }
        }
    }
}

fn timespec((secs, nsecs): (i64, u32)) -> Timespec {
    Timespec {
        tv_sec: secs,
        tv_nsec: nsecs.into(),
    }
}

/// The kind of an on-disk item from its mode (special files count as files).
fn disk_kind(mode: u32) -> FileKind {
    match FileType::from_raw_mode(mode) {
        FileType::Directory => FileKind::Directory,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::File,
    }
}

/// The kernel's `new_encode_dev`, the form FUSE attributes carry.
fn encode_dev(dev: u64) -> u32 {
    let major = rustix::fs::major(dev);
    let minor = rustix::fs::minor(dev);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

// Field widths of `struct stat` differ between architectures; the casts are exact on
// each (non-negative sizes, nanoseconds below 10^9).
#[allow(clippy::unnecessary_cast)]
fn attr_from_stat(st: &Stat) -> Attr {
    Attr {
        ino: st.st_ino as u64,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: (st.st_atime as i64, st.st_atime_nsec as u32),
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as u32),
        mode: st.st_mode as u32,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: encode_dev(st.st_rdev as u64),
        blksize: st.st_blksize as u32,
    }
}

/// Create `name` in `dir` as a directory if it is not there yet, and open it.
fn ensure_dir(dir: BorrowedFd<'_>, name: &str, what: &str) -> Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(LayerError::io("mkdirat", what, e)),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty())
        .map_err(|e| LayerError::io("openat", what, e))
}

/// Remove everything inside `dir` (not following symlinks). Directories are made
/// writable first, so that a directory a client locked (mode 0o500) does not keep
/// garbage in `tmp` forever when the daemon is not root.
pub(super) fn remove_contents(dir: BorrowedFd<'_>) -> std::result::Result<(), Errno> {
    let _ = rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700));
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let sub = rustix::fs::openat(dir, name, flags, Mode::empty())?;
            remove_contents(sub.as_fd())?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
    }
    Ok(())
}

impl Layer {
    /// Open the layer of the directory `root`: keep an fd to it, create
    /// `.prjfs/tmp`, and remove what a crashed process left in `tmp/`.
    pub fn open(root: &Path) -> Result<Layer> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root_fd = rustix::fs::openat(rustix::fs::CWD, root, flags, Mode::empty())
            .map_err(|e| LayerError::io("open root", root, e))?;
        let is_root = rustix::process::geteuid().is_root();
        let ns = if is_root { "trusted" } else { "user" };
        let hidden = ensure_dir(root_fd.as_fd(), HIDDEN_DIR, HIDDEN_DIR)?;
        let tmp = ensure_dir(hidden.as_fd(), TMP_DIR, ".prjfs/tmp")?;
        remove_contents(tmp.as_fd()).map_err(|e| LayerError::io("clean", ".prjfs/tmp", e))?;
        let spare = ensure_dir(hidden.as_fd(), SPARE_DIR, ".prjfs/spare")?;
        remove_contents(spare.as_fd()).map_err(|e| LayerError::io("clean", ".prjfs/spare", e))?;
        let mut layer = Layer {
            root: root_fd,
            tmp: Arc::new(tmp),
            meta_name: CString::new(format!("{ns}.prjfs.meta")).expect("no NUL"),
            marker_name: CString::new(format!("{ns}.prjfs.root")).expect("no NUL"),
            is_root,
            xattrs: xattr::Xattrs::default(),
            next_id: AtomicU64::new(1),
            mutate: RwLock::new(()),
            vstore: vstore::VStore::detached(),
            spares: spare::Spares::new(spare),
            dirs: path::DirCache::default(),
        };
        let store = vstore::VStore::open(hidden.as_fd(), |p, rec| layer.keeps_virtual(p, rec))
            .map_err(|e| LayerError::Io {
                op: "open placeholder log",
                path: PathBuf::from(HIDDEN_DIR).join(vstore::LOG_NAME),
                source: e,
            })?;
        layer.vstore = store;
        Ok(layer)
    }

    /// A new fd on the root's hidden directory ([`HIDDEN_DIR`]), reached through
    /// the root fd, so it is valid also while a FUSE mount covers the root. Names
    /// the layer uses (`tmp`, the placeholder log) must not be touched through it.
    pub fn hidden_dir(&self) -> Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(self.root.as_fd(), HIDDEN_DIR, flags, Mode::empty())
            .map_err(|e| LayerError::io("openat", HIDDEN_DIR, e))
    }

    /// Stop making spare inodes and remove those made (at unmount: a root at
    /// rest keeps none). Placing and hydrating still work, allocating inodes
    /// on their own time as without spares.
    pub fn release_spares(&self) {
        self.spares.release();
    }

    /// Write the placeholder records still in memory to the log now (they are
    /// otherwise written within 50 ms, and when the layer is dropped).
    pub fn sync(&self) {
        self.vstore.sync();
    }

    /// Parent directories kept open now (closed after a second unused): fds
    /// the daemon holds only while busy.
    pub fn kept_dirs(&self) -> usize {
        self.dirs.kept()
    }

    /// The placeholder log's counters: records, entries not written yet,
    /// batches written, the log's length.
    pub fn log_stats(&self) -> PlaceholderLogStats {
        self.vstore.stats()
    }

    /// The xattr holding each item's record: `trusted.prjfs.meta` as root, else
    /// `user.prjfs.meta`.
    pub fn xattr_name(&self) -> &str {
        self.meta_name.to_str().expect("ASCII name")
    }

    /// The root marker, if one was set.
    pub fn root_marker(&self) -> Result<Option<RootMarker>> {
        let mut buf = vec![0u8; 65536];
        let n = xattr::fget(self.root.as_fd(), &self.marker_name, &mut buf)
            .map_err(|e| LayerError::io("fgetxattr", "", e))?;
        let Some(n) = n else { return Ok(None) };
        let (source, provider) =
            meta::decode_root_marker(&buf[..n]).map_err(|reason| LayerError::CorruptMeta {
                path: PathBuf::new(),
                reason,
            })?;
        Ok(Some(RootMarker { source, provider }))
    }

    /// Store the root marker (replacing any previous one).
    pub fn set_root_marker(&self, m: &RootMarker) -> Result<()> {
        if m.source.len() + m.provider.len() > 60_000 {
            return Err(LayerError::InvalidArgument("root marker too long".into()));
        }
        let bytes = meta::encode_root_marker(&m.source, &m.provider);
        xattr::fset(self.root.as_fd(), &self.marker_name, &bytes)
            .map_err(|e| LayerError::io("fsetxattr", "", e))
    }

    /// Whether the root holds nothing but the hidden directory.
    pub fn is_empty_root(&self) -> Result<bool> {
        let mut dir = rustix::fs::Dir::read_from(self.root.as_fd())
            .map_err(|e| LayerError::io("opendir", "", e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| LayerError::io("readdir", "", e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." && name != HIDDEN_DIR.as_bytes() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The item at `rel` (empty: the root), `None` when nothing is on disk there.
    ///
    /// Placeholder files that are not hydrated report the record's size (blocks =
    /// ⌈size/512⌉); items with a record that are neither dirty nor full report the
    /// record's atime and mtime. Tombstones are returned with state
    /// [`OnDiskState::TOMBSTONE`].
    pub fn lookup(&self, rel: &Path) -> Result<Option<Item>> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            let st = rustix::fs::fstat(&self.root).map_err(|e| LayerError::io("fstat", "", e))?;
            let mut buf = [0u8; meta::MAX_RECORD_LEN];
            let n = xattr::fget(self.root.as_fd(), &self.meta_name, &mut buf)
                .map_err(|e| LayerError::io("fgetxattr", "", e))?;
            let rec = n.map(|n| self.decode(rel, &buf[..n])).transpose()?;
            return self.make_item(rel, &st, rec).map(Some);
        }
        let Some(loc) = self.locate(rel, &comps)? else {
            return Ok(None);
        };
        let dir = loc.dir(self.root.as_fd());
        // The record is read before the disk: materializing and hydrating put
        // the on-disk item in place before they remove the record, so with no
        // record read, an item made from one is on disk by then. An item on
        // disk wins over a record (one may stand beside it for a moment).
        let rec = self.vstore.get(rel);
        if let Some(item) = self.lookup_at(dir, &loc.name, rel)? {
            return Ok(Some(item));
        }
        Ok(rec.map(|rec| virt::item(rel, &rec)))
    }

    /// [`Layer::lookup`] for a hydration about to begin: a placeholder file
    /// kept as a record is taken as it is, without looking at the disk.
    ///
    /// An on-disk item stands beside a record only while an operation that
    /// made it is still under way (it removes the record before it ends);
    /// the hydration that follows finds it when it puts its file in place
    /// (which never replaces an item) and acts on it then.
    pub fn lookup_to_hydrate(&self, rel: &Path) -> Result<Option<Item>> {
        path::components(rel)?;
        match self.vstore.get(rel) {
            Some(rec) => Ok(Some(virt::item(rel, &rec))),
            None => self.lookup(rel),
        }
    }

    /// [`Layer::lookup`] of what is on disk only (records are not consulted).
    pub(super) fn lookup_disk(&self, rel: &Path) -> Result<Option<Item>> {
        let comps = path::components(rel)?;
        let Some(loc) = self.locate(rel, &comps)? else {
            return Ok(None);
        };
        self.lookup_at(loc.dir(self.root.as_fd()), &loc.name, rel)
    }

    /// [`Layer::lookup`] of `name` in an open directory.
    fn lookup_at(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<Option<Item>> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(LayerError::io("statat", rel, e)),
        };
        let rec = match self.read_record(dir, name, rel) {
            Ok(rec) => rec,
            // Removed between the stat and the xattr read.
            Err(LayerError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        self.make_item(rel, &st, rec).map(Some)
    }

    /// The record of `dir/name`, if it has one.
    fn read_record(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<Option<Record>> {
        let mut buf = [0u8; meta::MAX_RECORD_LEN];
        match self.xattrs.get(dir, name, &self.meta_name, &mut buf) {
            Ok(Some(n)) => self.decode(rel, &buf[..n]).map(Some),
            Ok(None) => Ok(None),
            Err(Errno::RANGE) => Err(LayerError::CorruptMeta {
                path: rel.to_path_buf(),
                reason: format!("record longer than {} bytes", meta::MAX_RECORD_LEN),
            }),
            Err(e) => Err(LayerError::io("getxattrat", rel, e)),
        }
    }

    /// Decode the record of the item at `rel`. A record that leaves its
    /// origin out (format 3) has `rel`, in its normal form, as origin.
    fn decode(&self, rel: &Path, bytes: &[u8]) -> Result<Record> {
        let normal;
        let at = if meta::origin_is_implicit(bytes) {
            normal = path::join(&path::components(rel)?);
            normal.as_path()
        } else {
            rel
        };
        Record::decode(bytes, at).map_err(|reason| LayerError::CorruptMeta {
            path: rel.to_path_buf(),
            reason,
        })
    }

    /// Combine a stat and an optional record into what a client sees.
    fn make_item(&self, rel: &Path, st: &Stat, rec: Option<Record>) -> Result<Item> {
        let mut attr = attr_from_stat(st);
        let on_disk = disk_kind(attr.mode);
        let Some(rec) = rec else {
            return Ok(Item {
                kind: on_disk,
                attr,
                state: OnDiskState::FULL,
                version: None,
                origin: None,
            });
        };
        let state = rec.state;
        let corrupt = |reason: String| LayerError::CorruptMeta {
            path: rel.to_path_buf(),
            reason,
        };
        if state.contains(OnDiskState::TOMBSTONE) {
            if FileType::from_raw_mode(attr.mode) != FileType::RegularFile {
                return Err(corrupt("tombstone record on a non-regular file".into()));
            }
        } else if rec.kind != on_disk {
            return Err(corrupt(format!(
                "record says {:?}, disk has {on_disk:?}",
                rec.kind
            )));
        }
        let local = OnDiskState(OnDiskState::DIRTY_PLACEHOLDER.0 | OnDiskState::FULL.0);
        if state.0 & local.0 == 0 {
            attr.atime = rec.atime;
            attr.mtime = rec.mtime;
        }
        if rec.kind == FileKind::File
            && state.contains(OnDiskState::PLACEHOLDER)
            && !state.contains(OnDiskState::HYDRATED_PLACEHOLDER)
        {
            attr.size = rec.size;
            attr.blocks = rec.size.div_ceil(512);
        }
        let placeholder = state.contains(OnDiskState::PLACEHOLDER);
        let version = (placeholder && !rec.listed).then_some(rec.version);
        let origin = if placeholder { rec.origin } else { None };
        Ok(Item {
            kind: rec.kind,
            attr,
            state,
            version,
            origin,
        })
    }

    /// A fresh name in `.prjfs/tmp` (unique per process and layer).
    fn temp_name(&self, prefix: &str) -> CString {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        CString::new(format!("{prefix}-{}-{n}", std::process::id())).expect("no NUL")
    }

    /// Best-effort removal of a temp item (file, symlink or empty directory).
    fn discard_temp(&self, name: &CStr) {
        if let Err(Errno::ISDIR) = rustix::fs::unlinkat(&*self.tmp, name, AtFlags::empty()) {
            let _ = rustix::fs::unlinkat(&*self.tmp, name, AtFlags::REMOVEDIR);
        }
    }

    /// Locate a non-root item: `Ok(None)` when its parent directory is absent.
    fn locate(&self, rel: &Path, comps: &[&OsStr]) -> Result<Option<Loc>> {
        path::locate(self.root.as_fd(), &self.dirs, rel, comps)
    }

    /// Locate a non-root item whose parent must exist.
    fn locate_existing_parent(&self, rel: &Path, comps: &[&OsStr]) -> Result<Loc> {
        self.locate(rel, comps)?
            .ok_or_else(|| LayerError::NotFound {
                path: rel.parent().map(Path::to_path_buf).unwrap_or_default(),
            })
    }

    fn lock(&self) -> RwLockWriteGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it cannot leave it broken.
        self.mutate.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock held for reading, by placings that may overlap one another
    /// (see the field `mutate`).
    fn share(&self) -> RwLockReadGuard<'_, ()> {
        self.mutate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Open the item at `rel` (never following a final symlink; `O_NOFOLLOW` and
    /// `O_CLOEXEC` are added; with `O_CREAT` the mode is 0o666 less the umask).
    pub fn open_file(&self, rel: &Path, flags: OFlags) -> Result<std::fs::File> {
        let comps = path::components(rel)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if self.virtual_at(rel).is_some() {
            // The caller wants the on-disk file of a placeholder kept as a record.
            let _guard = self.lock();
            self.materialize(rel)?;
        }
        let fd = if comps.is_empty() {
            rustix::fs::openat(&self.root, c".", flags, Mode::empty())
        } else {
            let loc = self.locate_existing_parent(rel, &comps)?;
            rustix::fs::openat(
                loc.dir(self.root.as_fd()),
                &loc.name,
                flags,
                Mode::from_raw_mode(0o666),
            )
        };
        fd.map(std::fs::File::from)
            .map_err(|e| LayerError::io("openat", rel, e))
    }

    /// The target of the symlink at `rel`.
    pub fn read_link(&self, rel: &Path) -> Result<OsString> {
        let comps = path::components(rel)?;
        let loc = self.locate_existing_parent(rel, &comps)?;
        rustix::fs::readlinkat(loc.dir(self.root.as_fd()), &loc.name, Vec::new())
            .map(|t| OsString::from_vec(t.into_bytes()))
            .map_err(|e| LayerError::io("readlinkat", rel, e))
    }

    /// The items of the directory `rel`, sorted by name bytes, tombstones included,
    /// the hidden directory excluded.
    pub fn list_dir(&self, rel: &Path) -> Result<Vec<(OsString, Item)>> {
        let comps = path::components(rel)?;
        let fd = path::open_dir(self.root.as_fd(), &comps, OFlags::RDONLY).map_err(|e| {
            if path::is_absent(e) {
                LayerError::NotFound {
                    path: rel.to_path_buf(),
                }
            } else {
                LayerError::io("opendir", rel, e)
            }
        })?;
        let at_root = comps.is_empty();
        let mut dir = rustix::fs::Dir::new(fd).map_err(|e| LayerError::io("opendir", rel, e))?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| LayerError::io("readdir", rel, e))?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." || (at_root && bytes == HIDDEN_DIR.as_bytes()) {
                continue;
            }
            names.push(name.to_owned());
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let dir_fd = dir.fd().map_err(|e| LayerError::io("dirfd", rel, e))?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let name = OsString::from_vec(name.into_bytes());
            let child = rel.join(&name);
            let cname = CString::new(name.as_bytes()).expect("readdir names have no NUL");
            // An entry removed since readdir is simply gone.
            if let Some(item) = self.lookup_at(dir_fd, &cname, &child)? {
                out.push((name, item));
            }
        }
        self.merge_virtual(rel, &mut out);
        Ok(out)
    }

    /// The state bits of `rel`; [`OnDiskState::VIRTUAL`] when nothing is on disk.
    pub fn state(&self, rel: &Path) -> Result<OnDiskState> {
        Ok(self
            .lookup(rel)?
            .map_or(OnDiskState::VIRTUAL, |item| item.state))
    }

    /// Count the items under the root by state (the root itself excluded; symlinks
    /// not followed; the hidden directory skipped). Not a snapshot while
    /// clients change the tree: a directory renamed or removed after its
    /// parent was listed is skipped.
    pub fn count_states(&self) -> Result<StateCounts> {
        let mut counts = StateCounts::default();
        let mut pending = vec![PathBuf::new()];
        while let Some(dir) = pending.pop() {
            let items = match self.list_dir(&dir) {
                Ok(items) => items,
                Err(LayerError::NotFound { .. }) if !dir.as_os_str().is_empty() => continue,
                Err(e) => return Err(e),
            };
            for (name, item) in items {
                let s = item.state;
                let slot = if s.contains(OnDiskState::TOMBSTONE) {
                    &mut counts.tombstone
                } else if s.contains(OnDiskState::FULL) {
                    &mut counts.full
                } else if s.contains(OnDiskState::DIRTY_PLACEHOLDER) {
                    &mut counts.dirty
                } else if s.contains(OnDiskState::HYDRATED_PLACEHOLDER) {
                    &mut counts.hydrated
                } else {
                    &mut counts.placeholder
                };
                *slot += 1;
                if FileType::from_raw_mode(item.attr.mode) == FileType::Directory {
                    pending.push(dir.join(name));
                }
            }
        }
        Ok(counts)
    }

    /// File-system statistics of the underlying file system.
    pub fn statfs(&self) -> Result<rustix::fs::StatVfs> {
        rustix::fs::fstatvfs(&self.root).map_err(|e| LayerError::io("fstatvfs", "", e))
    }
}
