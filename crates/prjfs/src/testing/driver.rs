//! [`EnumerationDriver`]: runs a provider's enumeration callbacks the way the
//! library (or a ProjFS client) does, with any search expression, restart scan,
//! single-entry request and buffer size, and returns what a client would see.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::RecordingInstance;
use crate::enumeration::{check_order, DirEntryBuffer};
use crate::provider::{
    CallbackData, CallbackResult, CommandId, EnumerationId, Extended, Outcome, Provider,
    ProviderError,
};
use crate::types::{Collation, DirEntry};

/// The buffer the library offers first (64 KiB of entries).
pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;

/// The largest buffer the library offers after InsufficientBuffer.
pub const MAX_BUFFER_BYTES: usize = 4 << 20;

/// Why a listing failed, as the driver saw it. [`EnumerationError::errno`] is
/// what a client of a mount would get.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnumerationError {
    /// A callback failed (directly, or in its completion).
    #[error("{callback}: {error}")]
    Provider {
        /// The callback, e.g. `get_directory_enumeration`.
        callback: &'static str,
        /// Its error.
        error: ProviderError,
    },
    /// The provider added an entry whose name is not a valid path component
    /// (even if it ignored the buffer's refusal).
    #[error("invalid entry name: {0}")]
    InvalidName(String),
    /// Entries came out of collation order within one scan.
    #[error("{0}")]
    OutOfOrder(String),
    /// A pended command was not completed within the driver's timeout; the
    /// driver cancelled it (as the library does at stop).
    #[error("command {0} was pended and not completed in time")]
    Timeout(CommandId),
    /// A pended Get completed with a buffer other than the one it was given.
    #[error("command {0} completed with another buffer")]
    ForeignBuffer(CommandId),
}

impl EnumerationError {
    /// The errno a client listing through a mount gets for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            EnumerationError::Provider { error, .. } => error.errno(),
            EnumerationError::Timeout(_) => libc::EINTR,
            _ => libc::EIO,
        }
    }
}

/// One GetDirectoryEnumeration as a client asks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetRequest {
    /// The search expression (`None`: match everything). Captured by the
    /// provider at the first Get of a session and at a restart scan only.
    pub search_expression: Option<OsString>,
    /// [`crate::CallbackFlags::restart_scan`].
    pub restart_scan: bool,
    /// [`crate::CallbackFlags::return_single_entry`].
    pub return_single_entry: bool,
    /// The buffer's capacity in bytes; `None`: the driver's.
    pub buffer_bytes: Option<usize>,
}

impl GetRequest {
    /// A plain Get: no search expression, no flags.
    pub fn next() -> Self {
        Self::default()
    }

    /// A Get with search expression `pattern`.
    pub fn matching(pattern: impl Into<OsString>) -> Self {
        Self {
            search_expression: Some(pattern.into()),
            ..Self::default()
        }
    }

    /// The same with [`GetRequest::restart_scan`] set.
    pub fn restart(mut self) -> Self {
        self.restart_scan = true;
        self
    }

    /// The same with [`GetRequest::return_single_entry`] set.
    pub fn single(mut self) -> Self {
        self.return_single_entry = true;
        self
    }

    /// The same with a buffer of `bytes`.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer_bytes = Some(bytes);
        self
    }
}

/// A whole listing: every entry in the order handed out, and how it came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The entries, in the order the provider added them.
    pub entries: Vec<DirEntry>,
    /// Entries per Get call, in order, the final empty one included (a Get
    /// answered InsufficientBuffer counts as 0).
    pub batches: Vec<usize>,
}

impl Listing {
    /// The entry names, lossily as UTF-8 (for assertions).
    pub fn names(&self) -> Vec<String> {
        names(&self.entries)
    }
}

/// The names of `entries`, lossily as UTF-8.
pub fn names(entries: &[DirEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

/// Drives a provider's enumeration callbacks without a mount.
///
/// Callbacks get [`CallbackData`] from a [`RecordingInstance`], so a provider
/// may pend them: the driver then waits (up to its timeout) for the
/// completion, as the library would. It checks what the library checks
/// (names valid, collation order within a scan, a pended Get completed with its
/// own buffer) and, for whole listings, answers InsufficientBuffer with a
/// doubled buffer up to 4 MiB like the library.
///
/// ```
/// use prjfs::testing::{EnumerationDriver, GetRequest};
/// # use prjfs::enumeration::Enumerations;
/// # use prjfs::*;
/// # use std::ffi::OsStr;
/// # struct Three(Enumerations);
/// # impl Provider for Three {
/// #     fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
/// #         let e = |n: &str| DirEntry { name: n.into(), basic: FileBasicInfo::file(1), symlink_target: None, version: None };
/// #         self.0.start(cb, id, vec![e("b.txt"), e("a.txt"), e("c.rs")])
/// #     }
/// #     fn get_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId, s: Option<&OsStr>, b: &DirEntryBuffer) -> CallbackResult {
/// #         self.0.get(cb, id, s, b)
/// #     }
/// #     fn end_directory_enumeration(&self, _: &CallbackData, id: EnumerationId) -> CallbackResult { self.0.end(id) }
/// #     fn get_placeholder_info(&self, _: &CallbackData) -> CallbackResult { Err(ProviderError::NotFound) }
/// #     fn get_file_data(&self, _: &CallbackData, _: u64, _: u64) -> CallbackResult { Err(ProviderError::NotFound) }
/// # }
/// # let provider = Three(Enumerations::new());
/// let driver = EnumerationDriver::new(&provider);
/// assert_eq!(driver.list("")?.names(), ["a.txt", "b.txt", "c.rs"]);
/// assert_eq!(driver.list_matching("", "*.txt")?.names(), ["a.txt", "b.txt"]);
///
/// // One Get at a time: a single entry, then a restart with another pattern.
/// let mut session = driver.start("")?;
/// assert_eq!(prjfs::testing::names(&session.get(GetRequest::next().single())?), ["a.txt"]);
/// let again = session.get(GetRequest::matching("c*").restart())?;
/// assert_eq!(prjfs::testing::names(&again), ["c.rs"]);
/// session.end()?;
/// # Ok::<(), prjfs::testing::EnumerationError>(())
/// ```
pub struct EnumerationDriver<'p> {
    provider: &'p dyn Provider,
    instance: Arc<RecordingInstance>,
    collation: Collation,
    buffer_bytes: usize,
    timeout: Duration,
    next_command: AtomicU64,
    next_session: AtomicU64,
}

impl<'p> EnumerationDriver<'p> {
    /// A driver for `provider` with its own [`RecordingInstance`], a 64 KiB
    /// buffer, case-sensitive collation and a 10 s timeout for pended commands.
    pub fn new(provider: &'p dyn Provider) -> Self {
        Self {
            provider,
            instance: RecordingInstance::new(),
            collation: Collation::CaseSensitive,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            timeout: Duration::from_secs(10),
            next_command: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
        }
    }

    /// Use `instance` for the callbacks' [`CallbackData::instance`].
    pub fn with_instance(mut self, instance: Arc<RecordingInstance>) -> Self {
        self.instance = instance;
        self
    }

    /// The collation the callbacks carry (and the order checked).
    pub fn collation(mut self, collation: Collation) -> Self {
        self.collation = collation;
        self
    }

    /// The buffer capacity of each Get, in bytes ([`DirEntryBuffer::entry_size`]).
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// How long to wait for a pended command's completion.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The instance the callbacks talk to.
    pub fn instance(&self) -> &Arc<RecordingInstance> {
        &self.instance
    }

    /// Everything a client listing the directory `path` sees: Start, Gets until
    /// one adds nothing, End.
    pub fn list(&self, path: impl AsRef<Path>) -> Result<Listing, EnumerationError> {
        self.list_with(path, None)
    }

    /// The same, with the search expression `pattern` at every Get.
    pub fn list_matching(
        &self,
        path: impl AsRef<Path>,
        pattern: impl AsRef<OsStr>,
    ) -> Result<Listing, EnumerationError> {
        self.list_with(path, Some(pattern.as_ref()))
    }

    fn list_with(
        &self,
        path: impl AsRef<Path>,
        pattern: Option<&OsStr>,
    ) -> Result<Listing, EnumerationError> {
        let mut session = self.start(path)?;
        let listing = session.rest(pattern);
        let ended = session.end();
        let listing = listing?;
        ended?;
        Ok(listing)
    }

    /// StartDirectoryEnumeration of `path` in a new session. Dropping the
    /// session ends it (errors ignored); [`DriverSession::end`] reports them.
    pub fn start(&self, path: impl AsRef<Path>) -> Result<DriverSession<'_, 'p>, EnumerationError> {
        let id = EnumerationId(self.next_session.fetch_add(1, Ordering::Relaxed));
        let path = path.as_ref().to_path_buf();
        let cb = self.callback(&path, false, false);
        self.run("start_directory_enumeration", &cb, |p, cb| {
            p.start_directory_enumeration(cb, id)
        })?;
        Ok(DriverSession {
            driver: self,
            id,
            path,
            last: None,
            ended: false,
        })
    }

    fn callback(&self, path: &Path, restart_scan: bool, single: bool) -> CallbackData {
        let id = self.next_command.fetch_add(1, Ordering::Relaxed);
        self.instance
            .builder()
            .command_id(id)
            .path(path)
            .collation(self.collation)
            .restart_scan(restart_scan)
            .return_single_entry(single)
            .build()
    }

    /// Invoke `call`; wait for the completion of a pended command.
    fn run(
        &self,
        callback: &'static str,
        cb: &CallbackData,
        call: impl FnOnce(&dyn Provider, &CallbackData) -> CallbackResult,
    ) -> Result<Option<Extended>, EnumerationError> {
        let failed = |error| EnumerationError::Provider { callback, error };
        match call(self.provider, cb).map_err(failed)? {
            Outcome::Done => Ok(None),
            Outcome::Pending => {
                match self
                    .instance
                    .wait_for_completion(cb.command_id, self.timeout)
                {
                    Some(done) => done.result.map(|()| done.extended).map_err(failed),
                    None => {
                        self.instance.cancel(cb.command_id);
                        self.provider.cancel_command(cb);
                        Err(EnumerationError::Timeout(cb.command_id))
                    }
                }
            }
        }
    }
}

/// One open enumeration session of an [`EnumerationDriver`].
///
/// Invariant: `last` is the last name handed out since the session's latest
/// scan began (its first Get or a restart), so order is checked across batches.
pub struct DriverSession<'d, 'p> {
    driver: &'d EnumerationDriver<'p>,
    id: EnumerationId,
    path: PathBuf,
    last: Option<OsString>,
    ended: bool,
}

impl DriverSession<'_, '_> {
    /// The session's id.
    pub fn id(&self) -> EnumerationId {
        self.id
    }

    /// One GetDirectoryEnumeration; the entries it added (none: the end).
    /// InsufficientBuffer is returned as the provider's error, not retried.
    pub fn get(&mut self, request: GetRequest) -> Result<Vec<DirEntry>, EnumerationError> {
        let driver = self.driver;
        let capacity = request.buffer_bytes.unwrap_or(driver.buffer_bytes);
        let buffer = DirEntryBuffer::new(capacity);
        let cb = driver.callback(
            &self.path,
            request.restart_scan,
            request.return_single_entry,
        );
        let id = self.id;
        let search = request.search_expression.as_deref();
        let extended = driver.run("get_directory_enumeration", &cb, |p, cb| {
            p.get_directory_enumeration(cb, id, search, &buffer)
        })?;
        if let Some(Extended::Enumeration(other)) = &extended {
            if !other.same_buffer(&buffer) {
                return Err(EnumerationError::ForeignBuffer(cb.command_id));
            }
        }
        if let Some(msg) = buffer.take_rejected() {
            return Err(EnumerationError::InvalidName(msg));
        }
        let entries = buffer.take_entries();
        if request.restart_scan {
            self.last = None;
        }
        check_order(self.last.as_deref(), &entries, driver.collation)
            .map_err(EnumerationError::OutOfOrder)?;
        if let Some(e) = entries.last() {
            self.last = Some(e.name.clone());
        }
        Ok(entries)
    }

    /// Gets until one adds nothing, each with the search expression `pattern`,
    /// as a client reading the rest of the listing does; InsufficientBuffer is
    /// retried with twice the buffer, up to 4 MiB, like the library.
    pub fn rest(&mut self, pattern: Option<&OsStr>) -> Result<Listing, EnumerationError> {
        let mut listing = Listing::default();
        let mut capacity = self.driver.buffer_bytes;
        loop {
            let request = GetRequest {
                search_expression: pattern.map(OsStr::to_os_string),
                buffer_bytes: Some(capacity),
                ..GetRequest::default()
            };
            match self.get(request) {
                Ok(batch) => {
                    listing.batches.push(batch.len());
                    if batch.is_empty() {
                        return Ok(listing);
                    }
                    listing.entries.extend(batch);
                }
                Err(EnumerationError::Provider {
                    error: ProviderError::InsufficientBuffer,
                    ..
                }) if capacity < MAX_BUFFER_BYTES => {
                    listing.batches.push(0);
                    capacity *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// EndDirectoryEnumeration.
    pub fn end(mut self) -> Result<(), EnumerationError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), EnumerationError> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(());
        }
        let driver = self.driver;
        let cb = driver.callback(&self.path, false, false);
        let id = self.id;
        driver
            .run("end_directory_enumeration", &cb, |p, cb| {
                p.end_directory_enumeration(cb, id)
            })
            .map(drop)
    }
}

impl Drop for DriverSession<'_, '_> {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
