//! Directory enumeration: the entry buffer providers fill (spec §5), a provider-side
//! session helper, and the library-side merge of local and projected items (spec §4).

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::iter::Peekable;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::names::{compare_with, file_name_match_with, validate_name};
use crate::provider::{CallbackFlags, CallbackResult, Outcome, ProviderError};
use crate::types::{Collation, DirEntry};

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
    /// ([`AddEntryError::InvalidName`]), then the capacity ([`AddEntryError::Full`]);
    /// on error nothing is added.
    pub fn add(&self, entry: DirEntry) -> Result<(), AddEntryError> {
        if let Err(msg) = validate_name(&entry.name) {
            self.lock().rejected.get_or_insert_with(|| msg.clone());
            return Err(AddEntryError::InvalidName(msg));
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

/// Provider-side helper implementing spec §5 rules 2–6 over a sorted list of
/// entries: one value per enumeration session.
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

    /// One GetDirectoryEnumeration (spec §5).
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalItem<L> {
    /// A real item (placeholder, full file, directory, ...), with the caller's data.
    Present(L),
    /// A tombstone: hides the projected item of the same name.
    Tombstone,
}

/// One item of a merged directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged<L> {
    /// An item on disk, by its on-disk name.
    Local(OsString, L),
    /// An item only the provider knows of.
    Projected(DirEntry),
}

/// Library-side merge of on-disk items and projected items (spec §4 "Enumeration
/// merge").
///
/// Both inputs are sorted by `collation`; the output is in collation order. A local
/// item wins a name clash (names equal under the collation); a tombstone hides the
/// projected item of the same name and is itself not emitted. Does not panic on
/// unsorted input (a name may then show twice, as ProjFS says).
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
mod tests {
    use super::*;
    use crate::types::FileBasicInfo;

    fn entry(name: &str) -> DirEntry {
        DirEntry {
            name: name.into(),
            basic: FileBasicInfo::file(0),
            symlink_target: None,
        }
    }

    fn names(entries: &[DirEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect()
    }

    /// Cost of an entry with a short (at most 8 bytes) name and no target.
    const SMALL: usize = 72;
    const FLAGS: CallbackFlags = CallbackFlags {
        restart_scan: false,
        return_single_entry: false,
    };
    const RESTART: CallbackFlags = CallbackFlags {
        restart_scan: true,
        return_single_entry: false,
    };

    fn session(list: &[&str]) -> EnumerationSession {
        EnumerationSession::new(
            list.iter().map(|n| entry(n)).collect(),
            Collation::CaseInsensitive,
        )
    }

    /// One get with a fresh buffer of `capacity`; the names added and the result.
    fn get(
        s: &mut EnumerationSession,
        expr: Option<&str>,
        flags: CallbackFlags,
        capacity: usize,
    ) -> (CallbackResult, Vec<String>) {
        let buffer = DirEntryBuffer::new(capacity);
        let result = s.fill(expr.map(OsStr::new), flags, &buffer);
        (result, names(&buffer.take_entries()))
    }

    #[test]
    fn entry_size_is_header_name_target_rounded_to_8() {
        assert_eq!(DirEntryBuffer::entry_size(&entry("a")), 72);
        assert_eq!(DirEntryBuffer::entry_size(&entry("abcdefgh")), 72);
        assert_eq!(DirEntryBuffer::entry_size(&entry("abcdefghi")), 80);
        let mut link = entry("l");
        link.symlink_target = Some("target/of/link".into()); // 14 bytes
        assert_eq!(DirEntryBuffer::entry_size(&link), 80); // 64 + 1 + 14 = 79
    }

    #[test]
    fn add_respects_capacity_and_adds_nothing_on_full() {
        let buffer = DirEntryBuffer::new(2 * SMALL);
        assert!(buffer.is_empty());
        assert_eq!(buffer.capacity(), 2 * SMALL);
        buffer.add(entry("a")).expect("first entry should fit");
        buffer
            .add(entry("b"))
            .expect("second entry should fit exactly");
        assert_eq!(buffer.used_bytes(), 2 * SMALL);
        assert_eq!(buffer.add(entry("c")), Err(AddEntryError::Full));
        assert_eq!(buffer.len(), 2);
        assert_eq!(buffer.used_bytes(), 2 * SMALL);
        assert_eq!(names(&buffer.take_entries()), ["a", "b"]);
        // Draining frees the capacity again.
        assert!(buffer.is_empty());
        assert_eq!(buffer.used_bytes(), 0);
        buffer
            .add(entry("c"))
            .expect("drained buffer should take entries");
        assert_eq!(buffer.len(), 1);
    }

    #[test]
    fn add_rejects_invalid_names_before_checking_capacity() {
        let empty = DirEntryBuffer::new(0);
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            match empty.add(entry(bad)) {
                Err(AddEntryError::InvalidName(msg)) => assert!(!msg.is_empty()),
                other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
            }
        }
        assert_eq!(empty.add(entry("ok")), Err(AddEntryError::Full));
        let roomy = DirEntryBuffer::new(4096);
        assert!(matches!(
            roomy.add(entry(&"x".repeat(256))),
            Err(AddEntryError::InvalidName(_))
        ));
        assert!(roomy.is_empty());
        assert_eq!(roomy.used_bytes(), 0);
    }

    #[test]
    fn clones_share_one_buffer() {
        let buffer = DirEntryBuffer::new(10 * SMALL);
        let clone = buffer.clone();
        assert!(buffer.same_buffer(&clone));
        assert!(!buffer.same_buffer(&DirEntryBuffer::new(10 * SMALL)));
        let handle = std::thread::spawn(move || clone.add(entry("from-thread")));
        handle
            .join()
            .expect("thread should not panic")
            .expect("entry should fit");
        assert_eq!(buffer.len(), 1);
        let debug = format!("{buffer:?}");
        assert!(
            debug.contains("capacity: 720") && debug.contains("len: 1"),
            "{debug}"
        );
    }

    #[test]
    fn concurrent_adds_never_exceed_capacity() {
        let buffer = DirEntryBuffer::new(10 * SMALL);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = buffer.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .filter(|i| b.add(entry(&format!("t{t}-{i}"))).is_ok())
                        .count()
                })
            })
            .collect();
        let added: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(added, 10);
        assert_eq!(buffer.len(), 10);
        assert_eq!(buffer.used_bytes(), 10 * SMALL);
    }

    #[test]
    fn session_sorts_by_collation_and_drops_exact_duplicates() {
        let list = ["c", "B", "_x", "a", "c"];
        let mut ci = session(&list);
        assert_eq!(get(&mut ci, None, FLAGS, 4096).1, ["a", "B", "c", "_x"]);
        let mut cs = EnumerationSession::new(
            list.iter().map(|n| entry(n)).collect(),
            Collation::CaseSensitive,
        );
        assert_eq!(get(&mut cs, None, FLAGS, 4096).1, ["B", "_x", "a", "c"]);
        // Same name, other metadata: not an exact duplicate, both kept.
        let mut big = entry("c");
        big.basic.size = 7;
        let mut s = EnumerationSession::new(
            vec![entry("c"), big.clone(), entry("c")],
            Collation::CaseInsensitive,
        );
        let buffer = DirEntryBuffer::new(4096);
        s.fill(None, FLAGS, &buffer).unwrap();
        assert_eq!(buffer.take_entries(), vec![entry("c"), big]);
    }

    #[test]
    fn entry_that_does_not_fit_is_kept_for_next_call() {
        let mut s = session(&["a", "b", "c", "d", "e"]);
        assert!(!s.is_finished(), "not finished before the first get");
        assert_eq!(
            get(&mut s, None, FLAGS, 2 * SMALL),
            (Ok(Outcome::Done), names_of(&["a", "b"]))
        );
        assert!(!s.is_finished());
        assert_eq!(get(&mut s, None, FLAGS, 2 * SMALL).1, ["c", "d"]);
        assert_eq!(get(&mut s, None, FLAGS, 2 * SMALL).1, ["e"]);
        assert!(s.is_finished());
        // Ok with nothing added: the end, and it stays the end.
        assert_eq!(
            get(&mut s, None, FLAGS, 2 * SMALL),
            (Ok(Outcome::Done), vec![])
        );
        assert_eq!(
            get(&mut s, None, FLAGS, 2 * SMALL),
            (Ok(Outcome::Done), vec![])
        );
    }

    fn names_of(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn insufficient_buffer_only_when_nothing_fits() {
        let long = "l".repeat(100); // costs 168 bytes
        let mut s = session(&["a", &long, "z"]);
        // "a" fits, the long name does not: Ok, and the long name waits.
        assert_eq!(
            get(&mut s, None, FLAGS, 2 * SMALL),
            (Ok(Outcome::Done), names_of(&["a"]))
        );
        // Now nothing fits at all.
        assert_eq!(
            get(&mut s, None, FLAGS, 2 * SMALL),
            (Err(ProviderError::InsufficientBuffer), vec![])
        );
        assert!(!s.is_finished());
        // The entry was not lost: a bigger buffer gets it next.
        assert_eq!(get(&mut s, None, FLAGS, 168).1, [long.as_str()]);
        assert_eq!(get(&mut s, None, FLAGS, 168).1, ["z"]);
        assert_eq!(get(&mut s, None, FLAGS, 168), (Ok(Outcome::Done), vec![]));
    }

    #[test]
    fn buffer_already_partly_filled_counts_only_this_call() {
        let mut s = session(&["b", "c"]);
        let buffer = DirEntryBuffer::new(2 * SMALL);
        buffer.add(entry("x")).unwrap();
        assert_eq!(s.fill(None, FLAGS, &buffer), Ok(Outcome::Done));
        assert_eq!(names(&buffer.take_entries()), ["x", "b"]);
        buffer.add(entry("x")).unwrap();
        buffer.add(entry("y")).unwrap();
        assert_eq!(
            s.fill(None, FLAGS, &buffer),
            Err(ProviderError::InsufficientBuffer)
        );
    }

    #[test]
    fn nothing_matching_is_ok_with_an_empty_buffer() {
        let mut s = session(&["a.txt", "b.rs"]);
        assert_eq!(
            get(&mut s, Some("*.zip"), FLAGS, 4096),
            (Ok(Outcome::Done), vec![])
        );
        assert!(s.is_finished());
        let mut empty = session(&[]);
        assert_eq!(
            get(&mut empty, None, FLAGS, 4096),
            (Ok(Outcome::Done), vec![])
        );
        assert!(empty.is_finished());
    }

    #[test]
    fn first_call_captures_expression_and_later_calls_ignore_it() {
        let mut s = session(&["a.txt", "b.rs", "c.txt", "d.TXT", "e.rs"]);
        // The first call captures "*.txt" even without RESTART_SCAN.
        assert_eq!(get(&mut s, Some("*.txt"), FLAGS, SMALL).1, ["a.txt"]);
        // Later expressions are ignored: still "*.txt", also with None.
        assert_eq!(get(&mut s, Some("*.rs"), FLAGS, SMALL).1, ["c.txt"]);
        assert_eq!(get(&mut s, None, FLAGS, SMALL).1, ["d.TXT"]);
        assert!(s.is_finished(), "no .txt entry left");
        assert_eq!(get(&mut s, Some("*"), FLAGS, SMALL).1, Vec::<String>::new());
    }

    #[test]
    fn restart_scan_rewinds_and_recaptures() {
        let mut s = session(&["a.txt", "b.rs", "c.txt", "e.rs"]);
        assert_eq!(
            get(&mut s, Some("*.txt"), FLAGS, 4096).1,
            ["a.txt", "c.txt"]
        );
        assert!(s.is_finished());
        // Like rewinddir: back to the start, with the new expression.
        assert_eq!(get(&mut s, Some("*.rs"), RESTART, SMALL).1, ["b.rs"]);
        assert_eq!(get(&mut s, Some("*.txt"), FLAGS, SMALL).1, ["e.rs"]);
        assert_eq!(get(&mut s, None, FLAGS, SMALL).1, Vec::<String>::new());
        // A restart with no expression matches everything again.
        assert_eq!(
            get(&mut s, None, RESTART, 4096).1,
            ["a.txt", "b.rs", "c.txt", "e.rs"]
        );
        // A restart in the middle of a listing starts over.
        assert_eq!(get(&mut s, None, RESTART, SMALL).1, ["a.txt"]);
        assert_eq!(get(&mut s, None, RESTART, SMALL).1, ["a.txt"]);
        assert_eq!(get(&mut s, None, FLAGS, SMALL).1, ["b.rs"]);
    }

    #[test]
    fn return_single_entry_is_honoured_as_a_hint() {
        let single = CallbackFlags {
            restart_scan: false,
            return_single_entry: true,
        };
        let mut s = session(&["a", "b", "c"]);
        assert_eq!(
            get(&mut s, None, single, 4096),
            (Ok(Outcome::Done), names_of(&["a"]))
        );
        // Without the hint the rest comes at once.
        assert_eq!(get(&mut s, None, FLAGS, 4096).1, ["b", "c"]);
        assert!(s.is_finished());
        // With a restart too: one entry, from the start.
        let both = CallbackFlags {
            restart_scan: true,
            return_single_entry: true,
        };
        assert_eq!(get(&mut s, None, both, 4096).1, ["a"]);
        // The hint never turns "nothing fits" into success.
        assert_eq!(
            get(&mut s, None, single, 8).0,
            Err(ProviderError::InsufficientBuffer)
        );
    }

    #[test]
    fn invalid_entry_name_fails_the_get() {
        let mut s = session(&["a/b", "ok"]);
        let (result, added) = get(&mut s, None, FLAGS, 4096);
        match result {
            Err(ProviderError::InvalidName(msg)) => assert!(msg.contains("a/b"), "{msg}"),
            other => panic!("expected InvalidName, got {other:?}"),
        }
        assert!(added.is_empty());
        // The bad entry stays at the cursor: the error repeats.
        assert!(matches!(
            get(&mut s, None, FLAGS, 4096).0,
            Err(ProviderError::InvalidName(_))
        ));
        // Filtered out by the expression, it does no harm.
        assert_eq!(
            get(&mut s, Some("ok"), RESTART, 4096),
            (Ok(Outcome::Done), names_of(&["ok"]))
        );
    }

    #[test]
    fn session_collation_governs_the_filter() {
        let list = vec![entry("A.TXT"), entry("b.txt")];
        let mut ci = EnumerationSession::new(list.clone(), Collation::CaseInsensitive);
        assert_eq!(
            get(&mut ci, Some("*.txt"), FLAGS, 4096).1,
            ["A.TXT", "b.txt"]
        );
        let mut cs = EnumerationSession::new(list, Collation::CaseSensitive);
        assert_eq!(get(&mut cs, Some("*.txt"), FLAGS, 4096).1, ["b.txt"]);
    }

    #[test]
    fn pended_get_fills_the_same_buffer_from_another_thread() {
        let buffer = DirEntryBuffer::new(4096);
        let mut s = session(&["x", "y"]);
        let handle = buffer.clone();
        let worker = std::thread::spawn(move || s.fill(None, FLAGS, &handle));
        assert_eq!(worker.join().unwrap(), Ok(Outcome::Done));
        assert_eq!(names(&buffer.take_entries()), ["x", "y"]);
    }

    type L = u32;

    fn local(name: &str, v: L) -> (OsString, LocalItem<L>) {
        (name.into(), LocalItem::Present(v))
    }

    fn tomb(name: &str) -> (OsString, LocalItem<L>) {
        (name.into(), LocalItem::Tombstone)
    }

    /// The merged listing as strings: `name=L<v>` for local, `name` for projected.
    fn show(merged: &[Merged<L>]) -> Vec<String> {
        merged
            .iter()
            .map(|m| match m {
                Merged::Local(n, v) => format!("{}=L{v}", n.to_string_lossy()),
                Merged::Projected(e) => e.name.to_string_lossy().into_owned(),
            })
            .collect()
    }

    fn projected(list: &[&str]) -> Vec<DirEntry> {
        list.iter().map(|n| entry(n)).collect()
    }

    #[test]
    fn merge_interleaves_in_order() {
        let merged = merge_listing(
            vec![local("a", 1), local("c", 2), local("e", 3)],
            projected(&["b", "d", "f"]),
            Collation::CaseSensitive,
        );
        assert_eq!(show(&merged), ["a=L1", "b", "c=L2", "d", "e=L3", "f"]);
        assert_eq!(merged[1], Merged::Projected(entry("b")));
        let none: Vec<Merged<L>> = merge_listing(vec![], vec![], Collation::CaseSensitive);
        assert!(none.is_empty());
    }

    #[test]
    fn merge_local_item_wins_a_clash() {
        let merged = merge_listing(
            vec![local("b", 9)],
            projected(&["a", "b", "c"]),
            Collation::CaseSensitive,
        );
        assert_eq!(show(&merged), ["a", "b=L9", "c"]);
    }

    #[test]
    fn merge_tombstone_hides_projected_name_and_is_not_emitted() {
        let merged = merge_listing(
            vec![tomb("b"), tomb("zz"), local("d", 4)],
            projected(&["a", "b", "c"]),
            Collation::CaseSensitive,
        );
        assert_eq!(show(&merged), ["a", "c", "d=L4"]);
    }

    #[test]
    fn merge_follows_the_collation() {
        // "Old" < "README" < "_x" under both collations.
        let local_items = || vec![tomb("Old"), local("README", 1), local("_x", 2)];
        let proj = || projected(&["b", "old", "readme"]);
        // Case-insensitive: names equal ignoring case clash; `_` after letters.
        let ci = merge_listing(local_items(), proj(), Collation::CaseInsensitive);
        assert_eq!(show(&ci), ["b", "README=L1", "_x=L2"]);
        // Byte order: upper case first, no clash between spellings.
        let cs = merge_listing(local_items(), proj(), Collation::CaseSensitive);
        assert_eq!(show(&cs), ["README=L1", "_x=L2", "b", "old", "readme"]);
    }

    #[test]
    fn merge_of_unsorted_input_does_not_panic() {
        // Out of order: "a" shows twice, as ProjFS warns.
        let merged = merge_listing(
            vec![local("b", 1), local("a", 2)],
            projected(&["a"]),
            Collation::CaseSensitive,
        );
        assert_eq!(show(&merged), ["a", "b=L1", "a=L2"]);
    }

    #[test]
    fn check_order_accepts_strictly_increasing_batches() {
        let ci = Collation::CaseInsensitive;
        let cs = Collation::CaseSensitive;
        assert_eq!(check_order(None, &[], ci), Ok(()));
        assert_eq!(check_order(None, &projected(&["a", "B", "c"]), ci), Ok(()));
        assert_eq!(
            check_order(Some(OsStr::new("a")), &projected(&["b"]), cs),
            Ok(())
        );
        assert_eq!(check_order(None, &projected(&["abc", "a_b"]), ci), Ok(()));
        assert_eq!(check_order(None, &projected(&["a_b", "abc"]), cs), Ok(()));
        assert_eq!(check_order(None, &projected(&["A", "a"]), cs), Ok(()));
    }

    #[test]
    fn check_order_names_the_offending_pair() {
        let ci = Collation::CaseInsensitive;
        let cs = Collation::CaseSensitive;
        let err = check_order(None, &projected(&["a", "c", "b"]), cs).unwrap_err();
        assert!(err.contains("\"c\"") && err.contains("\"b\""), "{err}");
        // Equal names are not strictly increasing.
        let err = check_order(None, &projected(&["A", "a"]), ci).unwrap_err();
        assert!(err.contains("\"A\"") && err.contains("\"a\""), "{err}");
        assert!(check_order(None, &projected(&["x", "x"]), cs).is_err());
        // The collations disagree about `_`.
        assert!(check_order(None, &projected(&["a_b", "abc"]), ci).is_err());
        assert!(check_order(None, &projected(&["abc", "a_b"]), cs).is_err());
        // The previous batch's last name counts.
        let err = check_order(Some(OsStr::new("m")), &projected(&["a"]), cs).unwrap_err();
        assert!(err.contains("\"m\"") && err.contains("\"a\""), "{err}");
        assert!(check_order(Some(OsStr::new("a")), &projected(&["a"]), cs).is_err());
    }

    #[test]
    fn session_output_passes_check_order() {
        for collation in [Collation::CaseInsensitive, Collation::CaseSensitive] {
            let list = ["Zeta", "alpha", "_u", "Beta", "beta2", "éclair", "Alpha2"];
            let mut s = EnumerationSession::new(list.iter().map(|n| entry(n)).collect(), collation);
            let mut previous: Option<OsString> = None;
            let mut total = 0;
            loop {
                let buffer = DirEntryBuffer::new(2 * SMALL);
                s.fill(None, FLAGS, &buffer).unwrap();
                let batch = buffer.take_entries();
                if batch.is_empty() {
                    break;
                }
                check_order(previous.as_deref(), &batch, collation).unwrap();
                previous = batch.last().map(|e| e.name.clone());
                total += batch.len();
            }
            assert_eq!(total, list.len());
        }
    }
}
