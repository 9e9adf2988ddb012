//! `async fn` providers: the [`AsyncProvider`] trait and the [`AsyncAdapter`] that
//! runs its futures on a tokio runtime, pends every callback, and cancels by dropping.
//!
//! # Contract for an [`AsyncProvider`]
//!
//! * Each method is called once per callback invocation and returns a future. The
//!   adapter spawns it on its runtime and returns [`Outcome::Pending`] to the library at
//!   once; the worker thread that delivered the callback never waits for the future.
//! * When the future finishes, the adapter finishes the command for the provider:
//!   `get_placeholder_info` returns a [`Placeholder`] and the adapter writes it for
//!   `cb.path` (with [`InstanceHandle::write_placeholder_info`]) before completing;
//!   `get_directory_enumeration` fills the buffer it was given and the adapter
//!   completes with [`Extended::Enumeration`] of that same buffer; `get_file_data`
//!   writes at least `[offset, offset + length)` through its [`FileDataWriter`] before
//!   returning `Ok`. A provider never calls `complete_command` itself.
//! * **Cancellation drops the future.** When the library cancels a command, the
//!   adapter aborts its task: the future is dropped at the await point where it is
//!   suspended (or before its first poll), so code after that point never runs, and
//!   `Drop` of the values it holds does run. A future that is inside a synchronous
//!   section (between two awaits) finishes that section first. After
//!   [`Provider::cancel_command`] returns, the adapter never completes that command,
//!   even if the future had already produced its result.
//! * Work handed to `tokio::task::spawn_blocking` is *not* stopped by cancellation;
//!   its result is simply discarded. Keep blocking sections short or make them check
//!   for a closed writer ([`ProviderError::Cancelled`] from [`FileDataWriter::write`]).
//! * The provider may assume: the futures run on a multi-thread tokio runtime (timers
//!   enabled, `spawn_blocking` available); `cb` is an owned copy, valid for as long as
//!   the future lives; `start`/`get`/`end` of one enumeration id are invoked in that
//!   order (but a pended get may still run when `end` arrives, as in ProjFS); `end`
//!   follows every successful `start`, also after a cancelled get.
//! * A future that panics fails its command with [`ProviderError::Other`]; the
//!   runtime and the mount stay up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

use crate::enumeration::DirEntryBuffer;
use crate::provider::{
    CallbackData, CallbackResult, CommandId, EnumerationId, Extended, InstanceError,
    InstanceHandle, Outcome, Provider, ProviderError,
};
use crate::types::PlaceholderInfo;

/// A provider whose callbacks are `async fn`s. See the module documentation for the
/// contract; wrap it in an [`AsyncAdapter`] to obtain a [`Provider`].
pub trait AsyncProvider: Send + Sync + 'static {
    /// A client starts listing the directory `cb.path`. `NotFound` if it is not in
    /// the store; on error no end follows.
    fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Fill `buffer` with the next entries of session `id` (spec §5). The adapter
    /// completes with this same buffer.
    fn get_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
        search_expression: Option<OsString>,
        buffer: DirEntryBuffer,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// The listing handle of session `id` was closed.
    fn end_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Describe `cb.path`; the adapter writes the returned placeholder for `cb.path`
    /// (renamed to [`Placeholder::store_name`] when that is set).
    fn get_placeholder_info(
        &self,
        cb: CallbackData,
    ) -> impl Future<Output = Result<Placeholder, ProviderError>> + Send;

    /// Write at least `[byte_offset, byte_offset + length)` of the file's content
    /// through `writer` (to end of file at most).
    fn get_file_data(
        &self,
        cb: CallbackData,
        byte_offset: u64,
        length: u64,
        writer: FileDataWriter,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Told that command `id` was cancelled, right after its task was aborted (or,
    /// when the id is unknown to the adapter, merely recorded). Called on the
    /// library's thread; must not block. Default: nothing.
    fn command_cancelled(&self, _id: CommandId) {}
}

/// The answer of [`AsyncProvider::get_placeholder_info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// What to write.
    pub info: PlaceholderInfo,
    /// The item's name in the store's spelling when it differs from the last
    /// component of `cb.path` (case-insensitive roots, spec §3); `None` keeps it.
    pub store_name: Option<OsString>,
}

impl From<PlaceholderInfo> for Placeholder {
    fn from(info: PlaceholderInfo) -> Self {
        Self {
            info,
            store_name: None,
        }
    }
}

/// Writes content for one hydration in progress: an [`InstanceHandle`] bound to the
/// data stream of a `get_file_data` command. Cheap to clone; may move to any thread.
#[derive(Clone, Debug)]
pub struct FileDataWriter {
    instance: InstanceHandle,
    stream_id: u64,
}

impl FileDataWriter {
    /// Bind `instance` to the data stream `stream_id` (`cb.data_stream_id`).
    pub fn new(instance: InstanceHandle, stream_id: u64) -> Self {
        Self {
            instance,
            stream_id,
        }
    }

    /// The data stream this writer feeds.
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Write `data` at `offset` of the file being hydrated. Fails with
    /// [`ProviderError::Cancelled`] once the hydration is gone (cancelled or
    /// finished).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), ProviderError> {
        self.instance
            .write_file_data(self.stream_id, offset, data)
            .map_err(ProviderError::from)
    }
}

/// How an instance error looks to the provider that caused it: an unknown stream
/// means the hydration was cancelled or already finished.
impl From<InstanceError> for ProviderError {
    fn from(e: InstanceError) -> Self {
        match e {
            InstanceError::InvalidName(s) => ProviderError::InvalidName(s),
            InstanceError::InvalidRequest(s) => ProviderError::Other(s),
            InstanceError::UnknownStream(_) => ProviderError::Cancelled,
            InstanceError::Stopped => {
                ProviderError::Unavailable("virtualization is stopped".into())
            }
            InstanceError::Io(e) => ProviderError::Io(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// How many cancels of commands the adapter has not (yet) seen are remembered. A
/// cancel can only precede its command's registration by the few instructions between
/// the library invoking the callback and the adapter locking its table, so a small
/// bound suffices; the bound keeps cancels of finished or unknown ids from piling up.
const EARLY_CANCELS_KEPT: usize = 4096;

/// The adapter's record of commands in flight.
///
/// Invariant: an id is in `running` from the moment its task is spawned (spawn and
/// insert happen under the lock) until either the task claims it for completion or a
/// cancel removes it; whoever removes it decides the command's fate, so a command is
/// completed at most once and never after its cancel returned.
#[derive(Default)]
struct TaskTable {
    running: HashMap<CommandId, AbortHandle>,
    /// Cancels that found no running task: the command is still being registered, or
    /// has finished, or never existed. Bounded FIFO (`early_order` mirrors the set).
    early_cancels: HashSet<CommandId>,
    early_order: VecDeque<CommandId>,
}

impl TaskTable {
    fn remember_early_cancel(&mut self, id: CommandId) {
        if !self.early_cancels.insert(id) {
            return;
        }
        self.early_order.push_back(id);
        if self.early_order.len() > EARLY_CANCELS_KEPT {
            if let Some(old) = self.early_order.pop_front() {
                self.early_cancels.remove(&old);
            }
        }
    }

    fn take_early_cancel(&mut self, id: CommandId) -> bool {
        if self.early_cancels.remove(&id) {
            self.early_order.retain(|&x| x != id);
            true
        } else {
            false
        }
    }
}

type SharedTable = Arc<Mutex<TaskTable>>;

fn lock(table: &SharedTable) -> MutexGuard<'_, TaskTable> {
    // The table holds no invariant a panicking holder could break half-way (each
    // critical section is a single insert/remove), so a poisoned lock is still usable.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs an [`AsyncProvider`] as a [`Provider`]: every callback is spawned as a task and
/// answered `Pending`; the task completes the command; `cancel_command` aborts it.
pub struct AsyncAdapter<P: AsyncProvider> {
    provider: Arc<P>,
    /// The runtime the adapter created, if it did (`None` when given a handle); shut
    /// down without waiting when the adapter is dropped.
    runtime: Option<Runtime>,
    /// Where tasks are spawned.
    handle: Handle,
    table: SharedTable,
}

/// Worker threads of the runtime [`AsyncAdapter::new`] creates. The futures mostly
/// wait (timers, network, `spawn_blocking`), so a few threads serve many commands.
pub const DEFAULT_WORKER_THREADS: usize = 4;

impl<P: AsyncProvider> AsyncAdapter<P> {
    /// Adapt `provider`, with an owned multi-thread runtime of
    /// [`DEFAULT_WORKER_THREADS`] workers.
    pub fn new(provider: P) -> std::io::Result<Self> {
        Self::with_worker_threads(Arc::new(provider), DEFAULT_WORKER_THREADS)
    }

    /// Adapt a shared `provider`, with an owned multi-thread runtime of `workers`
    /// worker threads (at least one).
    pub fn with_worker_threads(provider: Arc<P>, workers: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("prjfs-async")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            provider,
            runtime: Some(runtime),
            handle,
            table: SharedTable::default(),
        })
    }

    /// Adapt a shared `provider`, spawning on an existing runtime. The runtime must be
    /// multi-threaded with timers enabled if the provider uses them, and must outlive
    /// the commands (tasks dropped by a runtime shutdown are never completed).
    pub fn with_handle(provider: Arc<P>, handle: Handle) -> Self {
        Self {
            provider,
            runtime: None,
            handle,
            table: SharedTable::default(),
        }
    }

    /// The adapted provider.
    pub fn provider(&self) -> &Arc<P> {
        &self.provider
    }

    /// How many commands have a task that is neither finished nor cancelled.
    pub fn in_flight(&self) -> usize {
        lock(&self.table).running.len()
    }

    /// Spawn `work` for command `id`, which completes with `finish(result)`.
    ///
    /// `work` and `finish` are what is left of the callback once its arguments are
    /// copied; `finish` runs only if the command was not cancelled, and its return
    /// value (the extended parameter) goes to `complete_command`.
    fn spawn<T, W, F>(&self, cb: &CallbackData, work: W, finish: F) -> CallbackResult
    where
        T: Send + 'static,
        W: Future<Output = Result<T, ProviderError>> + Send + 'static,
        F: FnOnce(&InstanceHandle, Result<T, ProviderError>) -> FinishedCommand + Send + 'static,
    {
        let id = cb.command_id;
        let instance = cb.instance.clone();
        let table = Arc::clone(&self.table);
        let task_table = Arc::clone(&self.table);
        let task = async move {
            let result = match CatchUnwind(Box::pin(work)).await {
                Ok(r) => r,
                Err(()) => Err(ProviderError::Other("the provider panicked".into())),
            };
            // Claim the command. If a cancel removed it first, its result is dropped
            // without side effects.
            if lock(&task_table).running.remove(&id).is_none() {
                return;
            }
            let done = finish(&instance, result);
            instance.complete_command(id, done.result, done.extended);
        };

        // Spawning and registering under one lock: the task cannot claim its id before
        // it is registered, and a concurrent cancel either ran before (and left an
        // early-cancel mark, checked here) or runs after (and finds the task).
        let mut guard = lock(&table);
        if guard.take_early_cancel(id) {
            return Err(ProviderError::Cancelled);
        }
        let join = self.handle.spawn(task);
        guard.running.insert(id, join.abort_handle());
        Ok(Outcome::Pending)
    }
}

/// What a finished task reports to `complete_command`.
struct FinishedCommand {
    result: Result<(), ProviderError>,
    extended: Option<Extended>,
}

impl FinishedCommand {
    fn plain(result: Result<(), ProviderError>) -> Self {
        Self {
            result,
            extended: None,
        }
    }
}

impl<P: AsyncProvider> Drop for AsyncAdapter<P> {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which panics inside another
        // runtime; shutting down in the background never blocks. Pending commands are
        // then never completed: the library answers them when virtualization stops.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl<P: AsyncProvider> Provider for AsyncAdapter<P> {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let provider = Arc::clone(&self.provider);
        let owned = cb.clone();
        self.spawn(
            cb,
            async move { provider.start_directory_enumeration(owned, id).await },
            |_, r| FinishedCommand::plain(r),
        )
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        let provider = Arc::clone(&self.provider);
        let owned = cb.clone();
        let search = search_expression.map(OsStr::to_os_string);
        let buffer = buffer.clone();
        let filled = buffer.clone();
        self.spawn(
            cb,
            async move {
                provider
                    .get_directory_enumeration(owned, id, search, buffer)
                    .await
            },
            move |_, r| FinishedCommand {
                result: r,
                extended: Some(Extended::Enumeration(filled)),
            },
        )
    }

    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let provider = Arc::clone(&self.provider);
        let owned = cb.clone();
        self.spawn(
            cb,
            async move { provider.end_directory_enumeration(owned, id).await },
            |_, r| FinishedCommand::plain(r),
        )
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        let provider = Arc::clone(&self.provider);
        let owned = cb.clone();
        let path = cb.path.clone();
        self.spawn(
            cb,
            async move { provider.get_placeholder_info(owned).await },
            move |instance, r| {
                FinishedCommand::plain(r.and_then(|answer| {
                    let path = match &answer.store_name {
                        Some(name) => path.with_file_name(name),
                        None => path,
                    };
                    instance
                        .write_placeholder_info(&path, &answer.info)
                        .map_err(ProviderError::from)
                }))
            },
        )
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        let provider = Arc::clone(&self.provider);
        let owned = cb.clone();
        let writer = FileDataWriter::new(cb.instance.clone(), cb.data_stream_id);
        self.spawn(
            cb,
            async move {
                provider
                    .get_file_data(owned, byte_offset, length, writer)
                    .await
            },
            |_, r| FinishedCommand::plain(r),
        )
    }

    fn cancel_command(&self, cb: &CallbackData) {
        let aborted = {
            let mut table = lock(&self.table);
            match table.running.remove(&cb.command_id) {
                Some(handle) => Some(handle),
                None => {
                    table.remember_early_cancel(cb.command_id);
                    None
                }
            }
        };
        // Outside the lock: abort never runs the future's drop inline today, but
        // nothing here depends on that.
        if let Some(handle) = aborted {
            handle.abort();
        }
        self.provider.command_cancelled(cb.command_id);
    }
}

/// Polls a boxed future, turning a panic into `Err(())`.
struct CatchUnwind<T>(Pin<Box<dyn Future<Output = T> + Send>>);

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{CallbackFlags, Completion, InstanceApi};
    use crate::types::{DirEntry, FileBasicInfo, VersionInfo};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Condvar;
    use std::time::Duration;

    type Recorded = (CommandId, Result<(), ProviderError>, Option<Extended>);

    /// Records what the adapter does to the instance.
    #[derive(Default)]
    struct Mock {
        completions: Mutex<Vec<Recorded>>,
        changed: Condvar,
        placeholders: Mutex<Vec<(PathBuf, PlaceholderInfo)>>,
        writes: Mutex<Vec<(u64, u64, Vec<u8>)>>,
    }

    impl InstanceApi for Mock {
        fn write_placeholder_info(
            &self,
            path: &Path,
            info: &PlaceholderInfo,
        ) -> Result<(), InstanceError> {
            let mut p = self.placeholders.lock().unwrap();
            p.push((path.to_path_buf(), info.clone()));
            Ok(())
        }
        fn write_file_data(&self, stream: u64, off: u64, data: &[u8]) -> Result<(), InstanceError> {
            self.writes
                .lock()
                .unwrap()
                .push((stream, off, data.to_vec()));
            Ok(())
        }
        fn complete_command(
            &self,
            id: CommandId,
            result: Result<(), ProviderError>,
            extended: Option<Extended>,
        ) -> Completion {
            self.completions
                .lock()
                .unwrap()
                .push((id, result, extended));
            self.changed.notify_all();
            Completion::Completed
        }
        fn clear_negative_path_cache(&self) -> usize {
            0
        }
    }

    impl Mock {
        fn wait_completions(&self, n: usize) -> Vec<Recorded> {
            let guard = self.completions.lock().unwrap();
            let (guard, timeout) = self
                .changed
                .wait_timeout_while(guard, Duration::from_secs(10), |c| c.len() < n)
                .unwrap();
            assert!(
                !timeout.timed_out(),
                "expected {n} completions, got {}",
                guard.len()
            );
            guard.clone()
        }
        fn count(&self) -> usize {
            self.completions.lock().unwrap().len()
        }
    }

    /// Sets its flag when dropped: proves a future was dropped.
    struct DropGuard(Arc<AtomicUsize>);
    impl Drop for DropGuard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// What `get_file_data` of [`TestProvider`] does.
    #[derive(Clone, Copy, PartialEq)]
    enum DataMode {
        /// Write 3 bytes and succeed.
        Immediate,
        /// Wait for a permit of the gate, then write and succeed.
        Gate,
        /// Never finish.
        Forever,
        /// Panic.
        Panic,
    }

    struct TestProvider {
        mode: DataMode,
        gate: Arc<tokio::sync::Semaphore>,
        dropped: Arc<AtomicUsize>,
        started: Arc<AtomicUsize>,
        cancelled: Mutex<Vec<CommandId>>,
    }

    impl TestProvider {
        fn new(mode: DataMode) -> Self {
            Self {
                mode,
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
                dropped: Arc::default(),
                started: Arc::default(),
                cancelled: Mutex::default(),
            }
        }
    }

    fn entry(name: &str) -> DirEntry {
        DirEntry {
            name: name.into(),
            basic: FileBasicInfo::file(1),
            symlink_target: None,
        }
    }

    impl AsyncProvider for TestProvider {
        async fn start_directory_enumeration(
            &self,
            cb: CallbackData,
            _id: EnumerationId,
        ) -> Result<(), ProviderError> {
            if cb.path.as_os_str() == "missing" {
                return Err(ProviderError::NotFound);
            }
            Ok(())
        }
        async fn get_directory_enumeration(
            &self,
            _cb: CallbackData,
            _id: EnumerationId,
            search: Option<OsString>,
            buffer: DirEntryBuffer,
        ) -> Result<(), ProviderError> {
            assert_eq!(search.as_deref(), Some(OsStr::new("*.txt")));
            tokio::task::yield_now().await;
            buffer.add(entry("a.txt")).unwrap();
            Ok(())
        }
        async fn end_directory_enumeration(
            &self,
            _cb: CallbackData,
            _id: EnumerationId,
        ) -> Result<(), ProviderError> {
            Ok(())
        }
        async fn get_placeholder_info(
            &self,
            cb: CallbackData,
        ) -> Result<Placeholder, ProviderError> {
            let info = PlaceholderInfo {
                basic: FileBasicInfo::file(3),
                version: VersionInfo::default(),
                symlink_target: None,
            };
            let store_name = (cb.path.as_os_str() == "dir/FOO").then(|| "foo".into());
            Ok(Placeholder { info, store_name })
        }
        async fn get_file_data(
            &self,
            _cb: CallbackData,
            offset: u64,
            _length: u64,
            writer: FileDataWriter,
        ) -> Result<(), ProviderError> {
            let _guard = DropGuard(Arc::clone(&self.dropped));
            self.started.fetch_add(1, Ordering::SeqCst);
            match self.mode {
                DataMode::Immediate => {}
                DataMode::Gate => self.gate.acquire().await.expect("gate open").forget(),
                DataMode::Forever => std::future::pending::<()>().await,
                DataMode::Panic => panic!("deliberate"),
            }
            writer.write(offset, b"abc")
        }
        fn command_cancelled(&self, id: CommandId) {
            self.cancelled.lock().unwrap().push(id);
        }
    }

    fn cb(mock: &Arc<Mock>, id: CommandId, path: &str) -> CallbackData {
        CallbackData {
            command_id: id,
            path: path.into(),
            file_id: 1,
            data_stream_id: 100 + id,
            version: None,
            triggering_pid: 0,
            triggering_process_name: None,
            flags: CallbackFlags::default(),
            instance: InstanceHandle::new(Arc::clone(mock) as Arc<dyn InstanceApi>),
        }
    }

    fn adapter(mode: DataMode) -> AsyncAdapter<TestProvider> {
        AsyncAdapter::with_worker_threads(Arc::new(TestProvider::new(mode)), 2).unwrap()
    }

    /// Wait until `cond` holds (the adapter's tasks run on other threads).
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn file_data_pends_then_completes_after_writing() {
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Immediate);
        assert_eq!(
            a.get_file_data(&cb(&mock, 1, "f"), 7, 3),
            Ok(Outcome::Pending)
        );
        let done = mock.wait_completions(1);
        assert_eq!(done[0].0, 1);
        assert_eq!(done[0].1, Ok(()));
        assert!(done[0].2.is_none());
        assert_eq!(
            *mock.writes.lock().unwrap(),
            vec![(101, 7, b"abc".to_vec())]
        );
        eventually("table empty", || a.in_flight() == 0);
    }

    #[test]
    fn placeholder_is_written_before_completion_with_store_spelling() {
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Immediate);
        assert_eq!(
            a.get_placeholder_info(&cb(&mock, 1, "dir/x")),
            Ok(Outcome::Pending)
        );
        mock.wait_completions(1);
        assert_eq!(
            a.get_placeholder_info(&cb(&mock, 2, "dir/FOO")),
            Ok(Outcome::Pending)
        );
        let done = mock.wait_completions(2);
        assert!(done.iter().all(|c| c.1.is_ok()));
        let paths: Vec<PathBuf> = mock
            .placeholders
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.0.clone())
            .collect();
        assert_eq!(
            paths,
            vec![PathBuf::from("dir/x"), PathBuf::from("dir/foo")]
        );
    }

    #[test]
    fn enumeration_completes_with_the_same_buffer() {
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Immediate);
        let id = EnumerationId(9);
        assert_eq!(
            a.start_directory_enumeration(&cb(&mock, 1, "missing"), id),
            Ok(Outcome::Pending)
        );
        assert_eq!(mock.wait_completions(1)[0].1, Err(ProviderError::NotFound));

        let buffer = DirEntryBuffer::new(4096);
        let pattern = OsStr::new("*.txt");
        assert_eq!(
            a.get_directory_enumeration(&cb(&mock, 2, "d"), id, Some(pattern), &buffer),
            Ok(Outcome::Pending)
        );
        let done = mock.wait_completions(2);
        assert_eq!(done[1].1, Ok(()));
        match &done[1].2 {
            Some(Extended::Enumeration(b)) => assert!(b.same_buffer(&buffer)),
            other => panic!("expected the enumeration buffer, got {other:?}"),
        }
        assert_eq!(buffer.take_entries(), vec![entry("a.txt")]);
        assert_eq!(
            a.end_directory_enumeration(&cb(&mock, 3, "d"), id),
            Ok(Outcome::Pending)
        );
        assert_eq!(mock.wait_completions(3)[2].1, Ok(()));
    }

    #[test]
    fn cancel_drops_the_future_and_nothing_completes() {
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Gate);
        let p = Arc::clone(a.provider());
        let c = cb(&mock, 5, "f");
        assert_eq!(a.get_file_data(&c, 0, 3), Ok(Outcome::Pending));
        eventually("future started", || p.started.load(Ordering::SeqCst) == 1);
        a.cancel_command(&c);
        eventually("future dropped", || p.dropped.load(Ordering::SeqCst) == 1);
        // Opening the gate now would let a surviving future finish; nothing may follow.
        p.gate.add_permits(1);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(mock.count(), 0);
        assert!(mock.writes.lock().unwrap().is_empty());
        assert_eq!(a.in_flight(), 0);
        assert_eq!(*p.cancelled.lock().unwrap(), vec![5]);
    }

    #[test]
    fn cancel_of_unknown_or_finished_ids_is_harmless() {
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Immediate);
        a.cancel_command(&cb(&mock, 77, "f"));
        let c = cb(&mock, 1, "f");
        assert_eq!(a.get_file_data(&c, 0, 3), Ok(Outcome::Pending));
        mock.wait_completions(1);
        eventually("table empty", || a.in_flight() == 0);
        a.cancel_command(&c);
        a.cancel_command(&c);
        // Many stale cancels stay bounded.
        for id in 1000..(1000 + 2 * EARLY_CANCELS_KEPT as u64) {
            a.cancel_command(&cb(&mock, id, "f"));
        }
        let table = lock(&a.table);
        assert!(table.early_cancels.len() <= EARLY_CANCELS_KEPT);
        assert_eq!(table.early_cancels.len(), table.early_order.len());
        drop(table);
        assert_eq!(mock.count(), 1);
    }

    #[test]
    fn cancel_racing_the_callback_never_lets_it_complete() {
        let mock = Arc::new(Mock::default());
        let a = Arc::new(adapter(DataMode::Forever));
        let p = Arc::clone(a.provider());
        let mut early = 0;
        for id in 0..500u64 {
            let c = cb(&mock, id, "f");
            let (a2, c2) = (Arc::clone(&a), c.clone());
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let b2 = Arc::clone(&barrier);
            let canceller = std::thread::spawn(move || {
                b2.wait();
                a2.cancel_command(&c2);
            });
            barrier.wait();
            match a.get_file_data(&c, 0, 3) {
                Err(ProviderError::Cancelled) => early += 1,
                Ok(Outcome::Pending) => {}
                other => panic!("unexpected {other:?}"),
            }
            canceller.join().unwrap();
        }
        // Every spawned future is dropped; none completes; nothing stays registered.
        let spawned = 500 - early;
        eventually("all spawned futures dropped", || {
            p.dropped.load(Ordering::SeqCst) == p.started.load(Ordering::SeqCst)
        });
        assert!(p.started.load(Ordering::SeqCst) <= spawned);
        assert_eq!(a.in_flight(), 0);
        assert_eq!(mock.count(), 0);
        let table = lock(&a.table);
        // Early marks were consumed by their callback; a mark may remain only for a
        // cancel that arrived after its command was already gone (none here).
        assert!(
            table.early_cancels.is_empty(),
            "{} stale marks",
            table.early_cancels.len()
        );
    }

    #[test]
    fn a_panicking_future_fails_its_command() {
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Panic);
        assert_eq!(
            a.get_file_data(&cb(&mock, 1, "f"), 0, 3),
            Ok(Outcome::Pending)
        );
        let done = mock.wait_completions(1);
        assert!(matches!(done[0].1, Err(ProviderError::Other(_))));
        // The runtime still serves commands.
        assert_eq!(
            a.get_placeholder_info(&cb(&mock, 2, "g")),
            Ok(Outcome::Pending)
        );
        assert_eq!(mock.wait_completions(2)[1].1, Ok(()));
    }

    #[test]
    fn many_commands_pend_at_once_without_holding_threads() {
        // Two worker threads serve 64 commands that all wait: every callback returns
        // Pending before any completes, and all complete once released.
        let mock = Arc::new(Mock::default());
        let a = adapter(DataMode::Gate);
        let p = Arc::clone(a.provider());
        for id in 0..64 {
            assert_eq!(
                a.get_file_data(&cb(&mock, id, "f"), 0, 3),
                Ok(Outcome::Pending)
            );
        }
        eventually("all futures waiting", || {
            p.started.load(Ordering::SeqCst) == 64
        });
        assert_eq!(mock.count(), 0);
        assert_eq!(a.in_flight(), 64);
        p.gate.add_permits(64);
        let done = mock.wait_completions(64);
        assert!(done.iter().all(|c| c.1.is_ok()));
    }

    #[test]
    fn adapter_on_a_borrowed_runtime_and_dropped_inside_it() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mock = Arc::new(Mock::default());
        let a = AsyncAdapter::with_handle(
            Arc::new(TestProvider::new(DataMode::Immediate)),
            rt.handle().clone(),
        );
        assert_eq!(
            a.get_file_data(&cb(&mock, 1, "f"), 0, 3),
            Ok(Outcome::Pending)
        );
        mock.wait_completions(1);
        // An owned adapter dropped on a runtime thread must not panic.
        let owned = adapter(DataMode::Forever);
        assert_eq!(
            owned.get_file_data(&cb(&mock, 2, "f"), 0, 3),
            Ok(Outcome::Pending)
        );
        rt.block_on(async move { drop(owned) });
    }
}
