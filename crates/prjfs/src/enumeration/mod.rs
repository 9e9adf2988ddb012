//! Directory enumeration: the entry buffer providers fill, the provider-side
//! session helpers ([`EnumerationSession`] for one listing, [`Enumerations`] for
//! all of a provider's), and the library-side merge of local and projected items.
//!
//! The rules a listing follows (ProjFS's): entries in collation order, filtered by
//! the search expression captured at the first call of a session or at a restart
//! scan; an entry that does not fit the buffer is handed out by the next call; a
//! call that adds nothing ends the listing. On Linux the library itself never
//! sends a search expression (POSIX listings have none) and asks a restart scan
//! only when a client rewinds a directory handle; a provider that follows the
//! rules through these helpers is correct for the rest too, and
//! [`crate::testing::EnumerationDriver`] exercises them without a mount.

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::iter::Peekable;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::names::{compare_with, file_name_match_with, validate_name};
use crate::provider::{CallbackFlags, CallbackResult, Outcome, ProviderError};
use crate::types::{Collation, DirEntry};

mod sessions;

pub use sessions::Enumerations;

/// Fixed cost of one entry in a [`DirEntryBuffer`], before its name and target.
const ENTRY_HEADER_BYTES: usize = 64;

/// Why [`DirEntryBuffer::add`] refused an entry. Nothing was added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddEntryError {
    /// The entry does not fit into the remaining capacity.
    #[error("the directory entry buffer is full")]
    Full,
    /// The entry's name is not a valid path component.
    #[error("invalid entry name: {0}")]
    InvalidName(String),
    /// The entry's version has an id over [`crate::types::VERSION_ID_MAX`]
    /// bytes (as [`crate::InstanceApi::write_placeholder_info`] refuses).
    #[error("invalid entry version: {0}")]
    InvalidVersion(String),
}

/// The shared state of a buffer.
///
/// Invariant: `used == entries.iter().map(entry_size).sum()` and `used <= capacity`.
#[derive(Debug)]
struct BufferState {
    capacity: usize,
    used: usize,
    entries: Vec<DirEntry>,
    /// The first name `add` refused, kept so the library can report a provider
    /// that produced an invalid name even when it ignored the error.
    rejected: Option<String>,
}

/// Cloneable handle (`Arc<Mutex<..>>`) to one enumeration buffer; clones share the
/// buffer.
///
/// A provider fills it with [`DirEntryBuffer::add`] during a get-enumeration
/// callback, or later from another thread when it pended the callback; the library
/// drains it with [`DirEntryBuffer::take_entries`].
#[derive(Clone)]
pub struct DirEntryBuffer {
    inner: Arc<Mutex<BufferState>>,
}

impl fmt::Debug for DirEntryBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("DirEntryBuffer")
            .field("capacity", &state.capacity)
            .field("used", &state.used)
            .field("len", &state.entries.len())
            .finish()
    }
}

impl DirEntryBuffer {
    /// An empty buffer that holds entries worth `capacity_bytes` (see
    /// [`DirEntryBuffer::entry_size`]).
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(BufferState {
                capacity: capacity_bytes,
                used: 0,
                entries: Vec::new(),
                rejected: None,
            })),
        }
    }

    /// The cost of one entry: a 64-byte header plus the name and the symlink target,
    /// rounded up to a multiple of 8 (like a `dirent` record).
    pub fn entry_size(entry: &DirEntry) -> usize {
        let target = entry
            .symlink_target
            .as_ref()
            .map_or(0, |t| t.as_bytes().len());
        (ENTRY_HEADER_BYTES + entry.name.as_bytes().len() + target).next_multiple_of(8)
    }

    /// Add one entry. The name is validated first
    /// ([`AddEntryError::InvalidName`]), then its version
    /// ([`AddEntryError::InvalidVersion`]), then the capacity
    /// ([`AddEntryError::Full`]); on error nothing is added.
    pub fn add(&self, entry: DirEntry) -> Result<(), AddEntryError> {
        if let Err(msg) = validate_name(&entry.name) {
            self.lock().rejected.get_or_insert_with(|| msg.clone());
            return Err(AddEntryError::InvalidName(msg));
        }
        if let Some(v) = &entry.version {
            let max = crate::types::VERSION_ID_MAX;
            if v.provider_id.len() > max || v.content_id.len() > max {
                let msg = format!(
                    "{}: version ids are limited to {max} bytes",
                    entry.name.to_string_lossy()
                );
                self.lock().rejected.get_or_insert_with(|| msg.clone());
                return Err(AddEntryError::InvalidVersion(msg));
            }
        }
        let size = Self::entry_size(&entry);
        let mut state = self.lock();
        if size > state.capacity - state.used {
            return Err(AddEntryError::Full);
        }
        state.used += size;
        state.entries.push(entry);
        Ok(())
    }

    /// Number of entries in the buffer.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the buffer holds no entry.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Total capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Bytes taken by the entries in the buffer.
    pub fn used_bytes(&self) -> usize {
        self.lock().used
    }

    /// Remove and return every entry, in the order they were added; the full
    /// capacity is free again afterwards (library side).
    pub fn take_entries(&self) -> Vec<DirEntry> {
        let mut state = self.lock();
        state.used = 0;
        std::mem::take(&mut state.entries)
    }

    /// The first invalid name `add` refused since the last call, if any.
    pub fn take_rejected(&self) -> Option<String> {
        self.lock().rejected.take()
    }

    /// Whether `self` and `other` are handles to the same buffer.
    pub fn same_buffer(&self, other: &DirEntryBuffer) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Lock the state. A panic while the lock was held cannot break the invariant
    /// (every update is a single step after the checks), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, BufferState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Provider-side helper for one enumeration session over a directory's entries:
/// collation order, search expression, restart scan, single entry and
/// buffer-full resume. [`Enumerations`] keeps one per open session.
///
/// Invariant: `entries` is sorted by `compare_with(collation)` and holds no two
/// equal entries; `cursor <= entries.len()`; after a call to
/// [`EnumerationSession::fill`], `cursor` rests on a matching entry or at the end.
#[derive(Debug, Clone)]
pub struct EnumerationSession {
    entries: Vec<DirEntry>,
    collation: Collation,
    cursor: usize,
    /// The captured search expression; `None` matches everything.
    expression: Option<OsString>,
    /// Whether the first get of the session (the implicit restart scan) happened.
    started: bool,
}

impl EnumerationSession {
    /// A session over `entries`, which are sorted by [`compare_with`] under
    /// `collation`; exact duplicates (equal in every field) are dropped.
    pub fn new(mut entries: Vec<DirEntry>, collation: Collation) -> Self {
        // Stable sort; ties under the collation are ordered by bytes so that equal
        // names sit next to each other whatever their case.
        entries.sort_by(|a, b| {
            compare_with(&a.name, &b.name, collation).then_with(|| a.name.cmp(&b.name))
        });
        // Equal entries have equal names, hence are adjacent after the sort, though
        // entries with the same name and other metadata may sit between them.
        let mut kept: Vec<DirEntry> = Vec::with_capacity(entries.len());
        let mut group_start = 0;
        for entry in entries {
            if kept
                .last()
                .is_none_or(|last: &DirEntry| last.name != entry.name)
            {
                group_start = kept.len();
            }
            if !kept[group_start..].contains(&entry) {
                kept.push(entry);
            }
        }
        Self {
            entries: kept,
            collation,
            cursor: 0,
            expression: None,
            started: false,
        }
    }

    /// One GetDirectoryEnumeration.
    ///
    /// The first call of a session acts as RESTART_SCAN and captures
    /// `search_expression` (`None` = match all); later calls ignore it unless
    /// `flags.restart_scan` is set, which rewinds and captures it again. Matching
    /// entries are added in order from the cursor. An entry that does not fit stays
    /// for the next call, and the call returns `Ok(Outcome::Done)`; only when no
    /// entry fitted at all is the result [`ProviderError::InsufficientBuffer`].
    /// `Ok` with nothing added means the end. With `flags.return_single_entry` at
    /// most one entry is added. An entry with an invalid name fails the call with
    /// [`ProviderError::InvalidName`] and stays at the cursor.
    pub fn fill(
        &mut self,
        search_expression: Option<&OsStr>,
        flags: CallbackFlags,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        if !self.started || flags.restart_scan {
            self.started = true;
            self.cursor = 0;
            self.expression = search_expression.map(OsStr::to_os_string);
        }
        let mut added = 0usize;
        self.skip_unmatched();
        while self.cursor < self.entries.len() {
            if flags.return_single_entry && added == 1 {
                break;
            }
            match buffer.add(self.entries[self.cursor].clone()) {
                Ok(()) => {
                    added += 1;
                    self.cursor += 1;
                    self.skip_unmatched();
                }
                Err(AddEntryError::Full) if added == 0 => {
                    return Err(ProviderError::InsufficientBuffer);
                }
                Err(AddEntryError::Full) => break,
                Err(AddEntryError::InvalidName(msg)) => {
                    return Err(ProviderError::InvalidName(msg));
                }
                Err(AddEntryError::InvalidVersion(msg)) => {
                    return Err(ProviderError::Other(msg));
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// Whether every matching entry has been handed out: the next
    /// [`EnumerationSession::fill`] without restart adds nothing. False before the
    /// first call.
    pub fn is_finished(&self) -> bool {
        self.started && self.cursor >= self.entries.len()
    }

    /// Move the cursor past entries the captured expression does not match.
    fn skip_unmatched(&mut self) {
        let pattern = self.expression.as_deref();
        while let Some(entry) = self.entries.get(self.cursor) {
            if file_name_match_with(&entry.name, pattern, self.collation) {
                break;
            }
            self.cursor += 1;
        }
    }
}

/// An item found on disk in a directory of the root, for [`merge_listing`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalItem<L> {
    /// A real item (placeholder, full file, directory, ...), with the caller's data.
    Present(L),
    /// A tombstone: hides the projected item of the same name.
    Tombstone,
}

/// One item of a merged directory listing.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged<L> {
    /// An item on disk, by its on-disk name.
    Local(OsString, L),
    /// An item only the provider knows of.
    Projected(DirEntry),
}

/// Library-side merge of on-disk items and projected items (ProjFS's
/// enumeration merge; see SEMANTICS.md).
///
/// Both inputs are sorted by `collation`; the output is in collation order. A local
/// item wins a name clash (names equal under the collation); a tombstone hides the
/// projected item of the same name and is itself not emitted. Does not panic on
/// unsorted input (a name may then show twice, as ProjFS says).
#[doc(hidden)]
pub fn merge_listing<L>(
    local: Vec<(OsString, LocalItem<L>)>,
    projected: Vec<DirEntry>,
    collation: Collation,
) -> Vec<Merged<L>> {
    let mut out = Vec::with_capacity(local.len() + projected.len());
    let mut local = local.into_iter().peekable();
    let mut projected = projected.into_iter().peekable();

    fn emit_local<L>(out: &mut Vec<Merged<L>>, name: OsString, item: LocalItem<L>) {
        if let LocalItem::Present(l) = item {
            out.push(Merged::Local(name, l));
        }
    }

    loop {
        let order = match (local.peek(), projected.peek()) {
            (Some((name, _)), Some(p)) => compare_with(name, &p.name, collation),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => {
                let (name, item) = next_of(&mut local);
                emit_local(&mut out, name, item);
            }
            Ordering::Greater => out.push(Merged::Projected(next_of(&mut projected))),
            Ordering::Equal => {
                // The projected item is shadowed by the local one or the tombstone.
                next_of(&mut projected);
                let (name, item) = next_of(&mut local);
                emit_local(&mut out, name, item);
            }
        }
    }
    out
}

/// The next item of an iterator that was just peeked.
fn next_of<I: Iterator>(it: &mut Peekable<I>) -> I::Item {
    it.next().expect("the iterator was peeked non-empty")
}

/// Check that `entries` are strictly increasing under `collation`, continuing from
/// `previous` (the last name of an earlier batch). The error names the two
/// offending names.
pub fn check_order(
    previous: Option<&OsStr>,
    entries: &[DirEntry],
    collation: Collation,
) -> Result<(), String> {
    let mut last = previous;
    for entry in entries {
        let name = entry.name.as_os_str();
        if let Some(prev) = last {
            if compare_with(prev, name, collation) != Ordering::Less {
                return Err(format!(
                    "entries out of {collation:?} order: {name:?} does not sort after {prev:?}"
                ));
            }
        }
        last = Some(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
