//! `async fn` providers: the [`AsyncProvider`] trait and the [`AsyncAdapter`] that
//! runs its futures on a tokio runtime, pends every callback, and cancels by dropping.
//!
//! # Contract for an [`AsyncProvider`]
//!
//! * Each method is called once per callback invocation and returns a future. The
//!   adapter spawns it on its runtime and returns [`Outcome::Pending`] to the library at
//!   once; the worker thread that delivered the callback never waits for the future.
//! * When the future finishes, the adapter finishes the command for the provider:
//!   `get_placeholder_info` returns the [`PlaceholderInfo`] and the adapter writes it
//!   for `cb.path` (with [`InstanceHandle::write_placeholder_info`]) before completing;
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

    /// Describe `cb.path`; the adapter writes the returned placeholder for `cb.path`.
    fn get_placeholder_info(
        &self,
        cb: CallbackData,
    ) -> impl Future<Output = Result<PlaceholderInfo, ProviderError>> + Send;

    /// Write at least `[byte_offset, byte_offset + length)` of the file's content
    /// through `writer` (to end of file at most).
    fn get_file_data(
        &self,
        cb: CallbackData,
        byte_offset: u64,
        length: u64,
        writer: FileDataWriter,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
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
                FinishedCommand::plain(r.and_then(|info| {
                    instance
                        .write_placeholder_info(&path, &info)
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
