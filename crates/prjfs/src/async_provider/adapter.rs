//! [`AsyncAdapter`]: spawns each callback's future, pends it, completes it when the
//! future finishes, and aborts it on cancel (see the parent module for the contract).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

use super::{AsyncProvider, FileDataWriter};
use crate::enumeration::DirEntryBuffer;
use crate::notifications::Notification;
use crate::provider::{
    CallbackData, CallbackResult, CommandId, EnumerationId, Extended, InstanceHandle, Outcome,
    Provider, ProviderError,
};

/// How many cancels of commands the adapter has not (yet) seen are remembered. A
/// cancel can only precede its command's registration by the few instructions between
/// the library invoking the callback and the adapter locking its table, so a small
/// bound suffices; the bound keeps cancels of finished or unknown ids from piling up.
pub(super) const EARLY_CANCELS_KEPT: usize = 4096;

/// The adapter's record of commands in flight.
///
/// Invariant: an id is in `running` from the moment its task is spawned (spawn and
/// insert happen under the lock) until either the task claims it for completion or a
/// cancel removes it; whoever removes it decides the command's fate, so a command is
/// completed at most once and never after its cancel returned.
#[derive(Default)]
pub(super) struct TaskTable {
    pub(super) running: HashMap<CommandId, AbortHandle>,
    /// Cancels that found no running task: the command is still being registered, or
    /// has finished, or never existed. Bounded FIFO (`early_order` mirrors the set).
    pub(super) early_cancels: HashSet<CommandId>,
    pub(super) early_order: VecDeque<CommandId>,
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

pub(super) type SharedTable = Arc<Mutex<TaskTable>>;

pub(super) fn lock(table: &SharedTable) -> MutexGuard<'_, TaskTable> {
    // The table holds no invariant a panicking holder could break half-way (each
    // critical section is a single insert/remove), so a poisoned lock is still usable.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs an [`AsyncProvider`] as a [`Provider`]: every callback is spawned as a task and
/// answered `Pending`; the task completes the command; `cancel_command` aborts it.
///
/// `query_file_name` and `notification` keep the [`Provider`] defaults (not found;
/// accept): the async trait has no form of them yet.
pub struct AsyncAdapter<P: AsyncProvider> {
    provider: Arc<P>,
    /// The runtime the adapter created, if it did (`None` when given a handle); shut
    /// down without waiting when the adapter is dropped.
    runtime: Option<Runtime>,
    /// Where tasks are spawned.
    handle: Handle,
    pub(super) table: SharedTable,
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
        // Completed without the buffer: the library reads the one it handed out.
        self.spawn(
            cb,
            async move {
                provider
                    .get_directory_enumeration(owned, id, search, buffer)
                    .await
            },
            |_, r| FinishedCommand::plain(r),
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

    fn notification(&self, cb: &CallbackData, n: &Notification) -> CallbackResult {
        let provider = Arc::clone(&self.provider);
        let owned = cb.clone();
        let n = n.clone();
        self.spawn(
            cb,
            async move { provider.notification(owned, n).await },
            |_, r| match r {
                Ok(mask) if mask != 0 => FinishedCommand {
                    result: Ok(()),
                    extended: Some(Extended::NotificationMask(mask)),
                },
                r => FinishedCommand::plain(r.map(|_| ())),
            },
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
        self.provider.cancelled(cb);
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
