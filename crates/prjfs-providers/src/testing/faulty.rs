//! Providers that are slow, wrong or crash: [`SlowSync`], [`Misbehaving`],
//! [`Panicking`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prjfs::enumeration::AddEntryError;
use prjfs::{
    CallbackData, CallbackResult, DirEntry, DirEntryBuffer, EnumerationId, Notification, Outcome,
    Provider, ProviderError,
};

use super::tree::{MemProvider, MemTree};

/// Wraps another provider and sleeps `delay` on the calling thread before every
/// callback except `cancel_command` (which must stay quick), so that each callback
/// holds its worker for that long. Counts callbacks running at once.
pub struct SlowSync {
    inner: Arc<dyn Provider>,
    /// The sleep before each callback.
    pub delay: Duration,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

impl SlowSync {
    /// Delay every callback of `inner` by `delay`.
    pub fn new(inner: Arc<dyn Provider>, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        }
    }

    /// A slow [`MemProvider`] over `tree`.
    pub fn over_tree(tree: MemTree, delay: Duration) -> Self {
        Self::new(Arc::new(MemProvider::new(tree)), delay)
    }

    /// Callbacks running right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// The most callbacks that ran at the same time.
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    fn slowly<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        // Decrement even if the inner provider panics.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.active);
        std::thread::sleep(self.delay);
        f()
    }
}

impl Provider for SlowSync {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.slowly(|| self.inner.start_directory_enumeration(cb, id))
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.slowly(|| {
            self.inner
                .get_directory_enumeration(cb, id, search_expression, buffer)
        })
    }

    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.slowly(|| self.inner.end_directory_enumeration(cb, id))
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.slowly(|| self.inner.get_placeholder_info(cb))
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.slowly(|| self.inner.get_file_data(cb, byte_offset, length))
    }

    fn query_file_name(&self, cb: &CallbackData) -> CallbackResult {
        self.slowly(|| self.inner.query_file_name(cb))
    }

    fn notification(&self, cb: &CallbackData, n: &Notification) -> CallbackResult {
        self.slowly(|| self.inner.notification(cb, n))
    }

    fn cancel_command(&self, cb: &CallbackData) {
        self.inner.cancel_command(cb);
    }
}

/// What a [`Misbehaving`] provider gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehavior {
    /// Every listing also offers an entry named `a/b`.
    NameWithSlash,
    /// ... named `..`.
    DotDotName,
    /// ... named `a\0b`.
    NameWithNul,
    /// ... with an empty name.
    EmptyName,
    /// ... with a 256-byte name.
    LongName,
    /// Listings are in reverse order.
    OutOfOrder,
    /// `get_placeholder_info` writes the placeholder under a different name
    /// (`NAME.wrong`) and reports success.
    WrongPlaceholderName,
    /// `get_placeholder_info` reports success without writing a placeholder.
    NoPlaceholder,
}

impl Misbehavior {
    /// The invalid name this kind adds to every listing, if it adds one.
    pub fn bad_name(self) -> Option<OsString> {
        use std::os::unix::ffi::OsStringExt;
        Some(match self {
            Misbehavior::NameWithSlash => "a/b".into(),
            Misbehavior::DotDotName => "..".into(),
            Misbehavior::NameWithNul => OsString::from_vec(b"a\0b".to_vec()),
            Misbehavior::EmptyName => OsString::new(),
            Misbehavior::LongName => "x".repeat(256).into(),
            _ => return None,
        })
    }
}

/// A listing in progress: the entries as the provider (wrongly) produces them.
struct Listing {
    entries: Vec<DirEntry>,
    cursor: usize,
}

/// A provider over a [`MemTree`] that gets one thing wrong (see [`Misbehavior`]).
///
/// Listings are produced without an [`prjfs::enumeration::EnumerationSession`]: the
/// provider adds its entries straight into the buffer. An entry the buffer refuses as
/// invalid is skipped, like a provider that ignores the error; a full buffer keeps the
/// rest for the next get. Search expressions are ignored. Everything else is answered
/// correctly, inline.
pub struct Misbehaving {
    mem: MemProvider,
    kind: Misbehavior,
    listings: Mutex<HashMap<EnumerationId, Listing>>,
    refused: AtomicUsize,
}

impl Misbehaving {
    /// Misbehave in `kind` over `tree`.
    pub fn new(tree: MemTree, kind: Misbehavior) -> Self {
        Self {
            mem: MemProvider::new(tree),
            kind,
            listings: Mutex::default(),
            refused: AtomicUsize::new(0),
        }
    }

    /// The misbehavior.
    pub fn kind(&self) -> Misbehavior {
        self.kind
    }

    /// How many entries the buffer refused as invalid.
    pub fn refused_entries(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn listings(&self) -> MutexGuard<'_, HashMap<EnumerationId, Listing>> {
        // Listings are replaced whole; the cursor only grows within bounds.
        self.listings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Provider for Misbehaving {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let mut entries = self
            .mem
            .tree()
            .children(&cb.path)
            .ok_or(ProviderError::NotFound)?;
        if let Some(name) = self.kind.bad_name() {
            let bad = DirEntry {
                name,
                basic: prjfs::FileBasicInfo::file(1),
                symlink_target: None,
                version: None,
            };
            entries.insert(entries.len() / 2, bad);
        }
        if self.kind == Misbehavior::OutOfOrder {
            entries.reverse();
        }
        self.listings().insert(id, Listing { entries, cursor: 0 });
        Ok(Outcome::Done)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        _search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        let mut listings = self.listings();
        let listing = listings
            .get_mut(&id)
            .ok_or_else(|| ProviderError::Other(format!("no enumeration session {id:?}")))?;
        if cb.flags.restart_scan {
            listing.cursor = 0;
        }
        let mut added = 0;
        while let Some(entry) = listing.entries.get(listing.cursor) {
            match buffer.add(entry.clone()) {
                Ok(()) => added += 1,
                Err(AddEntryError::InvalidName(_) | AddEntryError::InvalidVersion(_)) => {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                }
                Err(AddEntryError::Full) if added == 0 => {
                    return Err(ProviderError::InsufficientBuffer)
                }
                Err(AddEntryError::Full) => break,
            }
            listing.cursor += 1;
        }
        Ok(Outcome::Done)
    }

    fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.listings().remove(&id);
        Ok(Outcome::Done)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        match self.kind {
            Misbehavior::WrongPlaceholderName => {
                let info = self.mem.tree().placeholder_info(&cb.path)?;
                let mut name = cb.path.file_name().unwrap_or_default().to_os_string();
                name.push(".wrong");
                cb.instance
                    .write_placeholder_info(&cb.path.with_file_name(name), &info)?;
                Ok(Outcome::Done)
            }
            Misbehavior::NoPlaceholder => {
                self.mem.tree().placeholder_info(&cb.path)?;
                Ok(Outcome::Done)
            }
            _ => self.mem.get_placeholder_info(cb),
        }
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.mem.get_file_data(cb, byte_offset, length)
    }
}

/// Which callback a [`Panicking`] provider panics in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicIn {
    /// `start_directory_enumeration`.
    StartEnumeration,
    /// `get_directory_enumeration`.
    GetEnumeration,
    /// `end_directory_enumeration`.
    EndEnumeration,
    /// `get_placeholder_info`.
    PlaceholderInfo,
    /// `get_file_data`.
    FileData,
    /// `query_file_name`.
    QueryFileName,
    /// `notification`.
    Notification,
    /// `cancel_command`.
    CancelCommand,
}

/// A correct [`MemProvider`] that panics in one chosen callback (for every path, or
/// only for one). The panic message starts with `prjfs test provider`.
pub struct Panicking {
    mem: MemProvider,
    at: PanicIn,
    only_path: Option<std::path::PathBuf>,
    panics: AtomicUsize,
}

impl Panicking {
    /// Panic in `at` over `tree`.
    pub fn new(tree: MemTree, at: PanicIn) -> Self {
        Self {
            mem: MemProvider::new(tree),
            at,
            only_path: None,
            panics: AtomicUsize::new(0),
        }
    }

    /// Panic only when the callback is about `path`.
    pub fn only_path(mut self, path: impl AsRef<Path>) -> Self {
        self.only_path = Some(path.as_ref().to_path_buf());
        self
    }

    /// How many times it panicked.
    pub fn panics(&self) -> usize {
        self.panics.load(Ordering::SeqCst)
    }

    fn maybe_panic(&self, here: PanicIn, cb: &CallbackData) {
        if here == self.at && self.only_path.as_ref().is_none_or(|p| *p == cb.path) {
            self.panics.fetch_add(1, Ordering::SeqCst);
            panic!(
                "prjfs test provider: deliberate panic in {here:?} for {:?}",
                cb.path
            );
        }
    }
}

impl Provider for Panicking {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.maybe_panic(PanicIn::StartEnumeration, cb);
        self.mem.start_directory_enumeration(cb, id)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.maybe_panic(PanicIn::GetEnumeration, cb);
        self.mem
            .get_directory_enumeration(cb, id, search_expression, buffer)
    }

    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.maybe_panic(PanicIn::EndEnumeration, cb);
        self.mem.end_directory_enumeration(cb, id)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.maybe_panic(PanicIn::PlaceholderInfo, cb);
        self.mem.get_placeholder_info(cb)
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.maybe_panic(PanicIn::FileData, cb);
        self.mem.get_file_data(cb, byte_offset, length)
    }

    fn query_file_name(&self, cb: &CallbackData) -> CallbackResult {
        self.maybe_panic(PanicIn::QueryFileName, cb);
        self.mem.query_file_name(cb)
    }

    fn notification(&self, cb: &CallbackData, _n: &Notification) -> CallbackResult {
        self.maybe_panic(PanicIn::Notification, cb);
        Ok(Outcome::Done)
    }

    fn cancel_command(&self, cb: &CallbackData) {
        self.maybe_panic(PanicIn::CancelCommand, cb);
    }
}
