//! [`Enumerations`]: the enumeration sessions of a provider that can list a
//! directory whole, so that its three enumeration callbacks are one line each.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Mutex, MutexGuard};

use super::{DirEntryBuffer, EnumerationSession};
use crate::provider::{CallbackData, CallbackResult, EnumerationId, Outcome, ProviderError};
use crate::types::DirEntry;

/// The open enumeration sessions of one provider, keyed by [`EnumerationId`].
///
/// A provider that can list a directory (`list(path) -> entries`) keeps one of
/// these and forwards its enumeration callbacks to it; search expressions,
/// restart scans, `return_single_entry`, buffer-full resume and the collation
/// order (taken from [`CallbackData::collation`]) are then handled here, by
/// an [`EnumerationSession`] per id:
///
/// ```
/// # use prjfs::{CallbackData, CallbackResult, DirEntry, DirEntryBuffer, EnumerationId, ProviderError};
/// # use prjfs::enumeration::Enumerations;
/// # use std::ffi::OsStr;
/// # struct MyProvider { enumerations: Enumerations }
/// # impl MyProvider { fn list(&self, _: &std::path::Path) -> Result<Vec<DirEntry>, ProviderError> { Ok(vec![]) } }
/// # impl MyProvider {
/// fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
///     self.enumerations.start(cb, id, self.list(&cb.path)?)
/// }
/// fn get_directory_enumeration(
///     &self,
///     cb: &CallbackData,
///     id: EnumerationId,
///     search_expression: Option<&OsStr>,
///     buffer: &DirEntryBuffer,
/// ) -> CallbackResult {
///     self.enumerations.get(cb, id, search_expression, buffer)
/// }
/// fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
///     self.enumerations.end(id)
/// }
/// # }
/// ```
///
/// An [`AsyncProvider`](crate::AsyncProvider) does the same from its `async fn`s
/// (awaiting its listing before [`Enumerations::start`]); every method here is
/// quick and never blocks on I/O.
///
/// Invariant: an id is present from a successful [`Enumerations::start`] until
/// [`Enumerations::end`] of it; the session under an id only changes through
/// [`EnumerationSession::fill`], which keeps its cursor within bounds even when
/// it panics half-way, so a poisoned lock carries no broken state.
#[derive(Debug, Default)]
pub struct Enumerations {
    sessions: Mutex<HashMap<EnumerationId, EnumerationSession>>,
}

impl Enumerations {
    /// No session open.
    pub fn new() -> Self {
        Self::default()
    }

    /// StartDirectoryEnumeration: open session `id` over `entries` (the whole
    /// directory `cb.path`, in any order; sorted here by `cb.collation`, exact
    /// duplicates dropped). A session already open under `id` is replaced.
    /// Returns `Ok(Outcome::Done)`.
    pub fn start(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        entries: Vec<DirEntry>,
    ) -> CallbackResult {
        let session = EnumerationSession::new(entries, cb.collation);
        self.lock().insert(id, session);
        Ok(Outcome::Done)
    }

    /// GetDirectoryEnumeration: fill `buffer` from session `id` with
    /// `cb.flags` (see [`EnumerationSession::fill`] for the rules). An id that
    /// is not open fails with [`ProviderError::Other`].
    pub fn get(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        let mut sessions = self.lock();
        let session = sessions.get_mut(&id).ok_or_else(|| {
            ProviderError::Other(format!("no enumeration session {id:?} is open"))
        })?;
        session.fill(search_expression, cb.flags, buffer)
    }

    /// EndDirectoryEnumeration: drop session `id`. Ending an id that is not
    /// open is harmless. Returns `Ok(Outcome::Done)`.
    pub fn end(&self, id: EnumerationId) -> CallbackResult {
        self.lock().remove(&id);
        Ok(Outcome::Done)
    }

    /// How many sessions are open (started and not ended).
    pub fn open_sessions(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<EnumerationId, EnumerationSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}
