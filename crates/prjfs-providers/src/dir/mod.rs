//! The directory provider: projects a source directory (files, directories, symlinks
//! with their modes, sizes, times and owners), answering inline or asynchronously.
//!
//! ```no_run
//! use prjfs_providers::dir::{DirMode, DirOptions, DirProvider};
//! use std::time::Duration;
//!
//! let options = DirOptions { mode: DirMode::Async, latency: Duration::from_millis(5), ..Default::default() };
//! let provider = DirProvider::open("/srv/source", options)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`DirMode::Sync`] answers every callback on the calling worker thread, after
//! sleeping the configured latency there (a slow store holding threads).
//! [`DirMode::Async`] pends every callback through [`AsyncAdapter`]: the latency is a
//! timer (no thread held while waiting), the I/O runs in `spawn_blocking`, then the
//! command completes — the way VFS for Git pends.

pub mod store;
pub mod watch;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::readahead::{PrefetchCounters, ReadAhead};
use prjfs::{
    AsyncAdapter, AsyncProvider, CallbackData, CallbackResult, Collation, DirEntryBuffer,
    EnumerationId, Enumerations, FileDataWriter, Notification, Outcome, Placeholder, Provider,
    ProviderError,
};

/// What [`DirProvider::on_notification`] calls for each notification.
pub type NotificationHook = Box<dyn Fn(&CallbackData, &Notification) + Send + Sync>;

/// How the directory provider answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirMode {
    /// Inline on the worker thread ([`Outcome::Done`]).
    #[default]
    Sync,
    /// Pended, on a tokio runtime ([`Outcome::Pending`] then `complete_command`).
    Async,
}

/// Options of a [`DirProvider`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirOptions {
    /// Inline or pended answers.
    pub mode: DirMode,
    /// Simulated store latency before each callback that reads the source
    /// (start-enumeration, placeholder info, file data).
    pub latency: Duration,
    /// How names in callback paths are matched to the source's names; set it
    /// to the root's collation ([`prjfs::StartOptions::collation`]). Listings
    /// come in the order of the callbacks' collation (the root's).
    pub collation: Collation,
    /// Read the listings of a listed directory's subdirectories ahead, on a
    /// thread of the provider's ([`crate::readahead`]): a walk then finds them ready.
    /// Ignored with a `latency` (which simulates a slow store on every
    /// enumeration).
    pub prefetch: bool,
}

/// Invocation counters, one per callback kind; incremented when the callback's work
/// begins (in async mode: when its task first runs), whatever its result.
#[derive(Debug, Default)]
pub struct CallbackCounters {
    /// `get_placeholder_info` calls.
    pub placeholder_info: AtomicU64,
    /// `get_file_data` calls.
    pub file_data: AtomicU64,
    /// `start_directory_enumeration` calls.
    pub start_enum: AtomicU64,
    /// `get_directory_enumeration` calls.
    pub get_enum: AtomicU64,
    /// `end_directory_enumeration` calls.
    pub end_enum: AtomicU64,
    /// `cancel_command` calls.
    pub cancel: AtomicU64,
}

/// A snapshot of [`CallbackCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackCounts {
    /// `get_placeholder_info` calls.
    pub placeholder_info: u64,
    /// `get_file_data` calls.
    pub file_data: u64,
    /// `start_directory_enumeration` calls.
    pub start_enum: u64,
    /// `get_directory_enumeration` calls.
    pub get_enum: u64,
    /// `end_directory_enumeration` calls.
    pub end_enum: u64,
    /// `cancel_command` calls.
    pub cancel: u64,
}

impl CallbackCounters {
    /// Read every counter.
    pub fn snapshot(&self) -> CallbackCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CallbackCounts {
            placeholder_info: get(&self.placeholder_info),
            file_data: get(&self.file_data),
            start_enum: get(&self.start_enum),
            get_enum: get(&self.get_enum),
            end_enum: get(&self.end_enum),
            cancel: get(&self.cancel),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Mirrors a source directory. A cheap handle: clones share the counters and the
/// enumeration sessions, so a test can keep one to read [`DirProvider::stats`] while
/// the instance owns the `Arc<dyn Provider>` from [`DirProvider::to_provider`].
///
/// Implements [`Provider`] with the [`DirMode::Sync`] behaviour and [`AsyncProvider`]
/// with the [`DirMode::Async`] one; [`DirProvider::to_provider`] picks by the mode.
#[derive(Clone)]
pub struct DirProvider {
    inner: Arc<Inner>,
}

struct Inner {
    /// Canonical path of the source directory.
    source: PathBuf,
    options: DirOptions,
    counters: CallbackCounters,
    /// Open enumeration sessions, each over a listing taken whole at its start.
    enumerations: Enumerations,
    /// Told of every notification (which are all accepted).
    notification_hook: std::sync::OnceLock<NotificationHook>,
    /// The listing read-ahead, when on.
    prefetch: Option<Arc<ReadAhead<store::DirLister>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(p) = &self.prefetch {
            p.stop();
        }
    }
}

impl DirProvider {
    /// A provider for the directory `source` (which must exist).
    pub fn new(source: impl AsRef<Path>, options: DirOptions) -> std::io::Result<Self> {
        let source = std::fs::canonicalize(source)?;
        if !std::fs::metadata(&source)?.is_dir() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                counters: CallbackCounters::default(),
                enumerations: Enumerations::new(),
                notification_hook: std::sync::OnceLock::new(),
                prefetch: (options.prefetch && options.latency.is_zero()).then(|| {
                    ReadAhead::new(store::DirLister {
                        source: source.clone(),
                        collation: options.collation,
                    })
                }),
                source,
            }),
        })
    }

    /// The provider for `source` in the mode of `options`, ready for an instance.
    pub fn open(
        source: impl AsRef<Path>,
        options: DirOptions,
    ) -> std::io::Result<Arc<dyn Provider>> {
        Self::new(source, options)?.to_provider()
    }

    /// This provider as the instance consumes it: itself in [`DirMode::Sync`], an
    /// [`AsyncAdapter`] with its own runtime in [`DirMode::Async`].
    pub fn to_provider(&self) -> std::io::Result<Arc<dyn Provider>> {
        Ok(match self.inner.options.mode {
            DirMode::Sync => Arc::new(self.clone()),
            DirMode::Async => Arc::new(AsyncAdapter::new(self.clone())?),
        })
    }

    /// How often each callback was invoked so far.
    pub fn stats(&self) -> CallbackCounts {
        self.inner.counters.snapshot()
    }

    /// The live counters.
    pub fn counters(&self) -> &CallbackCounters {
        &self.inner.counters
    }

    /// The source directory (canonical).
    pub fn source(&self) -> &Path {
        &self.inner.source
    }

    /// The options given at creation.
    pub fn options(&self) -> DirOptions {
        self.inner.options
    }

    /// Call `hook` for every notification the instance sends (set once; a
    /// later call is ignored). The provider accepts every notification and
    /// never sets a new mask; which kinds it hears is chosen by the instance's
    /// `StartOptions::notification_mappings`. The hook runs on a callback
    /// thread (or, in [`DirMode::Async`], a runtime thread) and must not block.
    pub fn on_notification(&self, hook: NotificationHook) {
        let _ = self.inner.notification_hook.set(hook);
    }

    fn notified(&self, cb: &CallbackData, n: &Notification) {
        if let Some(hook) = self.inner.notification_hook.get() {
            hook(cb, n);
        }
    }

    /// The listing read-ahead's counters, when it is on.
    pub fn prefetch_counters(&self) -> Option<&Arc<PrefetchCounters>> {
        self.inner.prefetch.as_deref().map(ReadAhead::counters)
    }

    /// How many enumeration sessions are open (started and not ended).
    pub fn open_sessions(&self) -> usize {
        self.inner.enumerations.open_sessions()
    }

    /// List `cb.path` whole into session `id`; searching, restarts and
    /// resuming after a full buffer are the session's ([`Enumerations`]).
    fn start_session(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let entries = match &self.inner.prefetch {
            Some(p) => p.list(&cb.path)?,
            None => store::list_dir(&self.inner.source, &cb.path, self.inner.options.collation)?,
        };
        self.inner.enumerations.start(cb, id, entries)
    }

    /// The placeholder for `cb.path` and the store's spelling of its name when that
    /// differs.
    fn describe(&self, rel: &Path) -> Result<Placeholder, ProviderError> {
        let (info, item) =
            store::placeholder_info(&self.inner.source, rel, self.inner.options.collation)?;
        let store_name = (rel.file_name() != Some(item.name.as_os_str()) && !item.name.is_empty())
            .then_some(item.name);
        Ok(Placeholder { info, store_name })
    }

    fn read(
        &self,
        rel: &Path,
        offset: u64,
        length: u64,
        writer: &FileDataWriter,
    ) -> Result<(), ProviderError> {
        store::read_file(
            &self.inner.source,
            rel,
            self.inner.options.collation,
            offset,
            length,
            |file, at, len| {
                use std::os::fd::AsFd;
                writer.copy_from(at, file.as_fd(), at, len)
            },
        )
    }

    /// Sleep the configured latency on this thread.
    fn stall(&self) {
        if !self.inner.options.latency.is_zero() {
            std::thread::sleep(self.inner.options.latency);
        }
    }

    /// Wait the configured latency without holding a thread.
    async fn stall_async(&self) {
        if !self.inner.options.latency.is_zero() {
            tokio::time::sleep(self.inner.options.latency).await;
        }
    }

    /// Run store I/O off the runtime's worker threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(DirProvider) -> Result<T, ProviderError> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(this))
            .await
            .map_err(|e| ProviderError::Other(format!("store task failed: {e}")))?
    }
}

/// [`DirMode::Sync`]: sleep, then answer inline.
impl Provider for DirProvider {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        bump(&self.inner.counters.start_enum);
        self.stall();
        self.start_session(cb, id)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        bump(&self.inner.counters.get_enum);
        self.inner
            .enumerations
            .get(cb, id, search_expression, buffer)
    }

    fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        bump(&self.inner.counters.end_enum);
        self.inner.enumerations.end(id)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        bump(&self.inner.counters.placeholder_info);
        self.stall();
        let answer = self.describe(&cb.path)?;
        let path = match &answer.store_name {
            Some(name) => cb.path.with_file_name(name),
            None => cb.path.clone(),
        };
        cb.instance.write_placeholder_info(&path, &answer.info)?;
        Ok(Outcome::Done)
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        bump(&self.inner.counters.file_data);
        self.stall();
        let writer = FileDataWriter::new(cb.instance.clone(), cb.data_stream_id);
        self.read(&cb.path, byte_offset, length, &writer)?;
        Ok(Outcome::Done)
    }

    fn notification(&self, cb: &CallbackData, n: &Notification) -> CallbackResult {
        self.notified(cb, n);
        Ok(Outcome::Done)
    }

    fn cancel_command(&self, _cb: &CallbackData) {
        // Inline answers leave nothing to cancel.
        bump(&self.inner.counters.cancel);
    }
}

/// [`DirMode::Async`]: a timer for the latency, then the I/O in `spawn_blocking`.
impl AsyncProvider for DirProvider {
    async fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        bump(&self.inner.counters.start_enum);
        self.stall_async().await;
        self.blocking(move |this| this.start_session(&cb, id).map(drop))
            .await
    }

    async fn get_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
        search_expression: Option<OsString>,
        buffer: DirEntryBuffer,
    ) -> Result<(), ProviderError> {
        bump(&self.inner.counters.get_enum);
        // The session is in memory: no latency, no blocking.
        self.inner
            .enumerations
            .get(&cb, id, search_expression.as_deref(), &buffer)
            .map(drop)
    }

    async fn end_directory_enumeration(
        &self,
        _cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        bump(&self.inner.counters.end_enum);
        self.inner.enumerations.end(id).map(drop)
    }

    async fn get_placeholder_info(&self, cb: CallbackData) -> Result<Placeholder, ProviderError> {
        bump(&self.inner.counters.placeholder_info);
        self.stall_async().await;
        self.blocking(move |this| this.describe(&cb.path)).await
    }

    async fn get_file_data(
        &self,
        cb: CallbackData,
        byte_offset: u64,
        length: u64,
        writer: FileDataWriter,
    ) -> Result<(), ProviderError> {
        bump(&self.inner.counters.file_data);
        self.stall_async().await;
        // A cancel aborts this future but not the blocking read; the read stops at
        // its next write, which fails once the library dropped the stream.
        self.blocking(move |this| this.read(&cb.path, byte_offset, length, &writer))
            .await
    }

    async fn notification(&self, cb: CallbackData, n: Notification) -> Result<u32, ProviderError> {
        self.notified(&cb, &n);
        Ok(0)
    }

    fn cancelled(&self, _cb: &CallbackData) {
        bump(&self.inner.counters.cancel);
    }
}

#[cfg(test)]
mod tests;
