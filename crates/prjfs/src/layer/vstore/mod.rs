//! Placeholder files without an on-disk item: kept in memory, one map per
//! directory, and in one append-only log per root (`.prjfs/placeholders`)
//! written in batches.
//!
//! # Why
//!
//! A placeholder file holds no content, so an ext4 file with its xattrs per
//! looked-up or listed name (≈60 system calls) buys nothing but persistence. Here
//! a placeholder file costs a map insert and a few dozen bytes appended to a
//! buffer; the buffer reaches the log when it is large or at the next tick of a
//! flusher thread (group commit), and at [`VStore::sync`].
//!
//! # Invariants
//!
//! * A record describes a pure placeholder file: projected, neither hydrated,
//!   dirty nor full. Anything a client changes about it first gives it an on-disk
//!   item (the layer *materializes* it) and then removes the record, in that order.
//!   So an on-disk item at the same path always wins, and a record lost with an
//!   unwritten batch only makes a name that the provider still projects come back
//!   from the provider as before.
//! * Records live only in directories that exist on disk as projected directories;
//!   [`VStore::open`] drops the ones whose directory is gone or no longer
//!   projected, and those shadowed by an on-disk item, and rewrites the log
//!   compacted.
//! * The log is a sequence of entries `len u32 | body | crc32(body) u32`; a torn
//!   or corrupt tail ends the replay (a crash mid-append loses that batch only).
//! * Entries reach the log in the order they were appended: one buffer, written
//!   whole under the store's lock.
//! * A removal is written at once, with everything before it, except that of
//!   a record whose path got an on-disk item ([`VStore::remove_shadowed`]:
//!   a hydrated file), which waits for the next batch: a record replayed
//!   beside an on-disk item is dropped at open. The layer writes such
//!   waiting removals ([`VStore::settle`]) before any item leaves a path.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

mod codec;

use self::codec::{
    decode, encode_paths, encode_put, frame, frame_put_at, Entry, OP_DEL, OP_MOVE_TREE,
};
use super::meta::crc32;
use super::vstore_hold::{self, Why};
use crate::types::VersionInfo;

/// Name of the log in `.prjfs`.
pub(crate) const LOG_NAME: &str = "placeholders";
const LOG_MAGIC: &[u8; 8] = b"PJPLOG01";
/// Pending bytes that make an append write at once instead of at the next tick.
const FLUSH_BYTES: usize = 256 * 1024;
/// How long appended records may wait for the flusher.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// One placeholder file without an on-disk item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VRec {
    /// Projected size.
    pub size: u64,
    /// Projected modification time.
    pub mtime: (i64, u32),
    /// Projected access time.
    pub atime: (i64, u32),
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The store's version; `None` while the placeholder comes from a listing
    /// and GetPlaceholderInfo has not been asked yet.
    pub version: Option<Box<VersionInfo>>,
    /// The path the provider knows it by, when not its own path (it was moved
    /// with a renamed directory).
    pub origin: Option<Box<PathBuf>>,
    /// Set by the store when the record is put (never persisted): tells a
    /// record from a later one at the same path.
    pub serial: u64,
}

/// Where the records are and what the log still needs.
struct State {
    /// Directory (relative to the root) → name → record.
    /// Names are shared (16 bytes, not 24: there is one per record; a
    /// listing's record shares its name with the listing and the node).
    dirs: HashMap<PathBuf, BTreeMap<Arc<OsStr>, VRec>>,
    len: usize,
    next_serial: u64,
    /// Encoded entries not yet written.
    pending: Vec<u8>,
    /// Entries in `pending`, and where the last one starts.
    pending_entries: u64,
    last_entry: usize,
    /// Batches written, and the log's length (the compacted image plus them).
    batches: u64,
    log_len: u64,
    log: Option<File>,
    /// `pending` holds the removal of a record whose path has an on-disk
    /// item now ([`VStore::remove_shadowed`]): written with the next batch,
    /// or before an item leaves a path ([`VStore::settle`]).
    shadowed: bool,
    stopping: bool,
    /// The test-only hold ([`vstore_hold`]): a FIFO, when enabled.
    hold: Option<PathBuf>,
}

/// The placeholder log's counters ([`super::Layer::log_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaceholderLogStats {
    /// Records (placeholder files without an on-disk item) in memory.
    pub records: u64,
    /// Log entries (records put, removed, or moved with a directory) appended
    /// since the last batch was written: what a crash now would lose.
    pub pending_entries: u64,
    /// Their encoded bytes.
    pub pending_bytes: u64,
    /// Batches written since the log was opened (and compacted).
    pub batches_written: u64,
    /// The log's length in bytes: the compacted image and the batches since.
    pub log_bytes: u64,
}

/// The records of one root. `Send + Sync`.
pub(crate) struct VStore {
    state: Mutex<State>,
    tick: Condvar,
}

impl std::fmt::Debug for VStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VStore({} records)", self.len())
    }
}

/// Split a path into (directory, name); `None` for the root.
fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    Some((path.parent()?, path.file_name()?))
}

impl State {
    /// No record and no log; `stopping` and `hold` as given.
    fn empty(stopping: bool, hold: Option<PathBuf>) -> Self {
        State {
            dirs: HashMap::new(),
            len: 0,
            next_serial: 0,
            pending: Vec::new(),
            pending_entries: 0,
            last_entry: 0,
            batches: 0,
            log_len: 0,
            log: None,
            shadowed: false,
            stopping,
            hold,
        }
    }

    fn apply(&mut self, e: Entry) {
        match e {
            Entry::Put(path, mut rec) => {
                self.next_serial += 1;
                rec.serial = self.next_serial;
                if let Some((dir, name)) = split(&path) {
                    let old = self
                        .dirs
                        .entry(dir.to_path_buf())
                        .or_default()
                        .insert(name.into(), rec);
                    if old.is_none() {
                        self.len += 1;
                    }
                }
            }
            Entry::Del(path) => {
                self.remove(&path);
            }
            Entry::MoveTree(from, to) => self.move_tree(&from, &to),
        }
    }

    fn remove(&mut self, path: &Path) -> Option<VRec> {
        let (dir, name) = split(path)?;
        let names = self.dirs.get_mut(dir)?;
        let old = names.remove(name)?;
        if names.is_empty() {
            self.dirs.remove(dir);
        }
        self.len -= 1;
        Some(old)
    }

    /// Move every record at or below the directory `from` to `to`; records
    /// moved keep the path the provider knows them by as their origin.
    fn move_tree(&mut self, from: &Path, to: &Path) {
        let keys: Vec<PathBuf> = self
            .dirs
            .keys()
            .filter(|d| d.starts_with(from))
            .cloned()
            .collect();
        for old_dir in keys {
            let mut names = self.dirs.remove(&old_dir).expect("key listed above");
            let rest = old_dir.strip_prefix(from).expect("filtered by prefix");
            for (name, rec) in names.iter_mut() {
                if rec.origin.is_none() {
                    rec.origin = Some(Box::new(old_dir.join(&**name)));
                }
            }
            let new_dir = to.join(rest);
            // The target held no records (it was absent or only tombstones).
            let slot = self.dirs.entry(new_dir).or_default();
            for (name, rec) in names {
                if slot.insert(name, rec).is_some() {
                    self.len -= 1;
                }
            }
        }
    }

    /// Write what is pending. On a write error the records stay in memory and
    /// the log is abandoned: later batches cannot be replayed after a gap.
    fn flush(&mut self, why: Why) {
        if self.pending.is_empty() {
            return;
        }
        let Some(log) = self.log.as_mut() else {
            self.clear_pending();
            return;
        };
        if let Some(fifo) = &self.hold {
            vstore_hold::hold_if_armed(fifo, log, &self.pending, self.last_entry, why);
        }
        match log.write_all(&self.pending) {
            Ok(()) => {
                self.batches += 1;
                self.log_len += self.pending.len() as u64;
            }
            Err(e) => {
                tracing::error!(
                    "writing the placeholder log failed ({e}); placeholders not yet fetched \
                     will come from the provider again after a remount"
                );
                self.log = None;
            }
        }
        self.clear_pending();
    }

    fn clear_pending(&mut self) {
        self.shadowed = false;
        self.pending.clear();
        self.pending_entries = 0;
        self.last_entry = 0;
    }

    fn append(&mut self, body: &[u8]) -> bool {
        self.last_entry = self.pending.len();
        self.pending_entries += 1;
        frame(&mut self.pending, body);
        self.pending.len() >= FLUSH_BYTES
    }
}

impl VStore {
    /// Open (or create) the log in the hidden directory `hidden`, replay it,
    /// keep the records `keep` accepts (path, record), and rewrite the log with
    /// only those. Starts the flusher thread.
    pub(crate) fn open(
        hidden: BorrowedFd<'_>,
        keep: impl Fn(&Path, &VRec) -> bool,
    ) -> std::io::Result<Arc<VStore>> {
        let mut state = State::empty(false, vstore_hold::from_env());
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(hidden, LOG_NAME, flags, Mode::empty()) {
            Ok(fd) => {
                let mut bytes = Vec::new();
                File::from(fd).read_to_end(&mut bytes)?;
                let replayed = replay(&bytes, &mut state);
                if !replayed {
                    tracing::warn!(
                        "the placeholder log ends in a torn or corrupt entry; the placeholders \
                         it held come from the provider again"
                    );
                }
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        // Drop what the disk now answers for, then compact.
        let mut dropped = Vec::new();
        for (dir, names) in &state.dirs {
            for (name, rec) in names {
                let path = dir.join(&**name);
                if !keep(&path, rec) {
                    dropped.push(path);
                }
            }
        }
        for p in dropped {
            state.remove(&p);
        }
        let mut image = LOG_MAGIC.to_vec();
        for (dir, names) in &state.dirs {
            for (name, rec) in names {
                frame_put_at(&mut image, dir, name, rec);
            }
        }
        let tmp = format!("{LOG_NAME}.new");
        let wflags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(hidden, tmp.as_str(), wflags, Mode::from_raw_mode(0o600))?;
        let mut f = File::from(fd);
        f.write_all(&image)?;
        rustix::fs::renameat(hidden, tmp.as_str(), hidden, LOG_NAME)?;
        state.log_len = image.len() as u64;
        let afd = rustix::fs::openat(
            hidden,
            LOG_NAME,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        state.log = Some(File::from(afd));
        let store = Arc::new(VStore {
            state: Mutex::new(state),
            tick: Condvar::new(),
        });
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("prjfs-vstore".into())
            .spawn(move || flusher(weak))?;
        Ok(store)
    }

    /// A store with no log (nothing persists), for a layer being opened.
    pub(crate) fn detached() -> Arc<VStore> {
        Arc::new(VStore {
            state: Mutex::new(State::empty(true, None)),
            tick: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves at worst an unwritten batch.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many records there are.
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }

    /// The counters of the store and its log.
    pub(crate) fn stats(&self) -> PlaceholderLogStats {
        let st = self.lock();
        PlaceholderLogStats {
            records: st.len as u64,
            pending_entries: st.pending_entries,
            pending_bytes: st.pending.len() as u64,
            batches_written: st.batches,
            log_bytes: st.log_len,
        }
    }

    /// The record at `path`.
    pub(crate) fn get(&self, path: &Path) -> Option<VRec> {
        let (dir, name) = split(path)?;
        self.lock().dirs.get(dir)?.get(name).cloned()
    }

    /// Whether the directory `dir` holds any record.
    pub(crate) fn has_children(&self, dir: &Path) -> bool {
        self.lock().dirs.contains_key(dir)
    }

    /// The records of the directory `dir`, by name.
    pub(crate) fn children(&self, dir: &Path) -> Vec<(OsString, VRec)> {
        self.lock()
            .dirs
            .get(dir)
            .map(|n| {
                n.iter()
                    .map(|(k, v)| (k.to_os_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Put (or replace) the record at `path`.
    pub(crate) fn put(&self, path: &Path, rec: VRec) {
        let body = encode_put(path, &rec);
        let mut st = self.lock();
        st.apply(Entry::Put(path.to_path_buf(), rec));
        if st.append(&body) {
            st.flush(Why::Full);
        }
    }

    /// Put the record at `path` unless one is there; whether it was put.
    pub(crate) fn put_new(&self, path: &Path, rec: VRec) -> bool {
        let Some((dir, name)) = split(path) else {
            return false;
        };
        let mut st = self.lock();
        if st.dirs.get(dir).is_some_and(|n| n.contains_key(name)) {
            return false;
        }
        let body = encode_put(path, &rec);
        st.apply(Entry::Put(path.to_path_buf(), rec));
        if st.append(&body) {
            st.flush(Why::Full);
        }
        true
    }

    /// Put the records of a listing of `dir` that are not there yet, under one
    /// lock; for each name, `view` of the record there now.
    pub(crate) fn put_listed<T>(
        &self,
        dir: &Path,
        recs: Vec<(Arc<OsStr>, VRec)>,
        mut view: impl FnMut(&VRec) -> T,
    ) -> Vec<T> {
        let mut guard = self.lock();
        let State {
            dirs,
            len,
            next_serial,
            pending,
            pending_entries,
            last_entry,
            ..
        } = &mut *guard;
        let mut out = Vec::with_capacity(recs.len());
        let names = dirs.entry(dir.to_path_buf()).or_default();
        if names.is_empty() {
            // The first listing of a directory: built in one go, so that the
            // map's nodes are full (inserting sorted names one by one leaves
            // them half empty, about 100 bytes more per record).
            let mut built = Vec::with_capacity(recs.len());
            for (name, mut rec) in recs {
                *next_serial += 1;
                rec.serial = *next_serial;
                *last_entry = pending.len();
                *pending_entries += 1;
                frame_put_at(pending, dir, &name, &rec);
                out.push(view(&rec));
                built.push((name, rec));
            }
            *names = built.into_iter().collect();
            *len += names.len();
        } else {
            for (name, mut rec) in recs {
                match names.entry(name) {
                    std::collections::btree_map::Entry::Occupied(e) => out.push(view(e.get())),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        *next_serial += 1;
                        rec.serial = *next_serial;
                        *last_entry = pending.len();
                        *pending_entries += 1;
                        frame_put_at(pending, dir, e.key(), &rec);
                        out.push(view(&rec));
                        e.insert(rec);
                        *len += 1;
                    }
                }
            }
        }
        if names.is_empty() {
            dirs.remove(dir);
        }
        if guard.pending.len() >= FLUSH_BYTES {
            guard.flush(Why::Full);
        }
        out
    }

    /// Remove the record at `path` (its item is on disk now, or gone).
    ///
    /// Written at once, with everything before it: a record is removed when its
    /// item gets an on-disk form (hydrated, materialized for a change), and what
    /// the client does next (a rename, an unlink) may leave no tombstone where
    /// the record was — a record whose origin is elsewhere is not projected at
    /// its path. A lost removal would then bring the record back there after a
    /// crash, over what the client did.
    pub(crate) fn remove(&self, path: &Path) -> Option<VRec> {
        let mut st = self.lock();
        let old = st.remove(path)?;
        st.append(&encode_paths(OP_DEL, &[path]));
        st.flush(Why::Remove);
        Some(old)
    }

    /// [`VStore::remove`] of a record whose path now has an on-disk item
    /// (its file was hydrated): written with the next batch rather than at
    /// once. Until then a crash leaves the record beside that item, which
    /// wins when the store is opened again — as long as an item stays at
    /// the path: before an item leaves one (an unlink, a rename away, a
    /// provider-driven removal), the layer calls [`VStore::settle`].
    pub(crate) fn remove_shadowed(&self, path: &Path) -> Option<VRec> {
        let mut st = self.lock();
        let old = st.remove(path)?;
        st.shadowed = true;
        if st.append(&encode_paths(OP_DEL, &[path])) {
            st.flush(Why::Full);
        }
        Some(old)
    }

    /// Write the removals of [`VStore::remove_shadowed`] still pending, with
    /// everything before them: an item is about to leave its path.
    pub(crate) fn settle(&self) {
        let mut st = self.lock();
        if st.shadowed {
            st.flush(Why::Remove);
        }
    }

    /// The directory `from` was renamed to `to`: its records follow. Written at
    /// once, since a lost move would leave the records where no directory is.
    pub(crate) fn move_tree(&self, from: &Path, to: &Path) {
        let mut st = self.lock();
        if from == to || !st.dirs.keys().any(|d| d.starts_with(from)) {
            return;
        }
        st.move_tree(from, to);
        st.append(&encode_paths(OP_MOVE_TREE, &[from, to]));
        st.flush(Why::Move);
    }

    /// Two directories swapped names (`RENAME_EXCHANGE`).
    pub(crate) fn exchange_trees(&self, a: &Path, b: &Path, scratch: &Path) {
        self.move_tree(a, scratch);
        self.move_tree(b, a);
        self.move_tree(scratch, b);
    }

    /// Write every pending record now.
    pub(crate) fn sync(&self) {
        self.lock().flush(Why::Sync);
    }
}

impl Drop for VStore {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        st.flush(Why::Sync);
    }
}

/// Replay a whole log image; `false` when it ended in a bad entry.
fn replay(bytes: &[u8], state: &mut State) -> bool {
    let Some(mut rest) = bytes.strip_prefix(LOG_MAGIC.as_slice()) else {
        return bytes.is_empty();
    };
    while !rest.is_empty() {
        if rest.len() < 8 {
            return false;
        }
        let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 8 + n {
            return false;
        }
        let body = &rest[4..4 + n];
        let crc = u32::from_le_bytes(rest[4 + n..8 + n].try_into().expect("4 bytes"));
        if crc32(body) != crc {
            return false;
        }
        match decode(body) {
            Some(e) => state.apply(e),
            None => return false,
        }
        rest = &rest[8 + n..];
    }
    true
}

/// Writes pending records every [`FLUSH_INTERVAL`] until the store is dropped.
fn flusher(store: Weak<VStore>) {
    loop {
        let Some(s) = store.upgrade() else { return };
        let st = s.lock();
        if st.stopping {
            return;
        }
        let (mut st, _) = s
            .tick
            .wait_timeout(st, FLUSH_INTERVAL)
            .unwrap_or_else(|e| e.into_inner());
        st.flush(Why::Tick);
        drop(st);
        drop(s);
    }
}

impl VStore {
    /// Stop the flusher thread (after a last flush).
    pub(crate) fn stop(&self) {
        let mut st = self.lock();
        st.flush(Why::Sync);
        st.stopping = true;
        drop(st);
        self.tick.notify_all();
    }
}

#[cfg(test)]
mod tests;
