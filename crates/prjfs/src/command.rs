//! The command table: ids of callback invocations, pending commands, completion and
//! cancellation, and the counters `prjfs status` shows.
//!
//! Invariant: a command is answered exactly once. Removing its entry from the table
//! is the single point that decides who answers — the callback's own return, a
//! `complete_command`, or a cancellation — so any of them may race the others and
//! the loser sees no entry and does nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::provider::{CallbackData, CommandId, Completion, Extended, ProviderError};

/// Which callback a command invokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallbackKind {
    /// StartDirectoryEnumeration.
    StartEnumeration,
    /// GetDirectoryEnumeration.
    GetEnumeration,
    /// EndDirectoryEnumeration.
    EndEnumeration,
    /// GetPlaceholderInfo.
    GetPlaceholderInfo,
    /// GetFileData.
    GetFileData,
    /// QueryFileName.
    QueryFileName,
    /// Notification.
    Notification,
}

impl CallbackKind {
    /// All kinds, in a fixed order.
    pub const ALL: [CallbackKind; 7] = [
        CallbackKind::StartEnumeration,
        CallbackKind::GetEnumeration,
        CallbackKind::EndEnumeration,
        CallbackKind::GetPlaceholderInfo,
        CallbackKind::GetFileData,
        CallbackKind::QueryFileName,
        CallbackKind::Notification,
    ];

    /// A stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            CallbackKind::StartEnumeration => "start_directory_enumeration",
            CallbackKind::GetEnumeration => "get_directory_enumeration",
            CallbackKind::EndEnumeration => "end_directory_enumeration",
            CallbackKind::GetPlaceholderInfo => "get_placeholder_info",
            CallbackKind::GetFileData => "get_file_data",
            CallbackKind::QueryFileName => "query_file_name",
            CallbackKind::Notification => "notification",
        }
    }

    fn index(self) -> usize {
        CallbackKind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is in ALL")
    }
}

/// How a command ended, as its continuation sees it.
#[derive(Debug)]
pub enum CommandOutcome {
    /// The provider finished (inline or through `complete_command`).
    Finished(Result<(), ProviderError>, Option<Extended>),
    /// The client went away; the command was cancelled.
    Cancelled,
}

/// Runs once when a command ends. It may do blocking local I/O; it must not wait
/// for another command.
pub type Continuation = Box<dyn FnOnce(CommandOutcome) + Send>;

enum Phase {
    /// Waiting for a callback slot; the provider has not seen it.
    Queued,
    /// The callback was invoked and has not returned.
    Running,
    /// The callback returned Pending.
    Pending,
}

struct Entry {
    kind: CallbackKind,
    data: CallbackData,
    phase: Phase,
    continuation: Continuation,
}

/// Counter snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandStats {
    /// Callbacks invoked.
    pub invoked: u64,
    /// Commands whose callback returned Pending and that are not finished yet.
    pub pending: u64,
    /// Commands whose callback was invoked and has not returned yet (with
    /// `pending`: the callbacks in flight).
    pub running: u64,
    /// Commands finished with success (or "not found", a normal answer).
    pub completed: u64,
    /// Commands cancelled because the client went away (or at stop).
    pub cancelled: u64,
    /// Commands finished with an error other than "not found".
    pub failed: u64,
    /// Invocations per callback kind, in [`CallbackKind::ALL`] order.
    pub by_kind: Vec<(CallbackKind, u64)>,
}

/// Run a continuation; a panic in it is logged, never passed on to the thread
/// that ended the command (which may be the provider's own).
fn run_continuation(continuation: Continuation, outcome: CommandOutcome) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| continuation(outcome))).is_err() {
        tracing::error!("a command continuation panicked; its client got EIO");
    }
}

/// The table of live commands.
pub struct CommandTable {
    next_id: AtomicU64,
    entries: Mutex<HashMap<CommandId, Entry>>,
    invoked: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    by_kind: [AtomicU64; 7],
}

impl Default for CommandTable {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandTable {
    /// An empty table; ids start at 1.
    pub fn new() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            entries: Mutex::new(HashMap::new()),
            invoked: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            by_kind: Default::default(),
        }
    }

    /// A fresh command id.
    pub fn allocate_id(&self) -> CommandId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Register a queued command. `data.command_id` is its id.
    pub fn insert(&self, kind: CallbackKind, data: CallbackData, continuation: Continuation) {
        let id = data.command_id;
        let entry = Entry {
            kind,
            data,
            phase: Phase::Queued,
            continuation,
        };
        self.lock().insert(id, entry);
    }

    /// The callback is about to be invoked. Returns its data, or `None` when the
    /// command was cancelled while queued (then the provider never hears of it).
    pub fn start(&self, id: CommandId) -> Option<(CallbackKind, CallbackData)> {
        let mut map = self.lock();
        let entry = map.get_mut(&id)?;
        entry.phase = Phase::Running;
        self.invoked.fetch_add(1, Ordering::Relaxed);
        self.by_kind[entry.kind.index()].fetch_add(1, Ordering::Relaxed);
        Some((entry.kind, entry.data.clone()))
    }

    /// The callback returned Pending.
    pub fn mark_pending(&self, id: CommandId) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.phase = Phase::Pending;
        }
    }

    /// Finish a command with the provider's result (its return value or its
    /// `complete_command`). Runs the continuation on this thread.
    pub fn finish(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion {
        let Some(entry) = self.lock().remove(&id) else {
            return Completion::Ignored;
        };
        // "Not found" is an answer, not a failure: lookups of names the store
        // does not have end that way.
        if matches!(result, Ok(()) | Err(ProviderError::NotFound)) {
            self.completed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        run_continuation(
            entry.continuation,
            CommandOutcome::Finished(result, extended),
        );
        Completion::Completed
    }

    /// Cancel a command. Runs its continuation with `Cancelled` and returns the
    /// callback data when the provider had already been invoked (so the caller
    /// sends CancelCommand), `None` when it was unknown or never invoked.
    pub fn cancel(&self, id: CommandId) -> Option<CallbackData> {
        let entry = self.lock().remove(&id)?;
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        let invoked = !matches!(entry.phase, Phase::Queued);
        run_continuation(entry.continuation, CommandOutcome::Cancelled);
        invoked.then_some(entry.data)
    }

    /// Ids of every live command.
    pub fn live_ids(&self) -> Vec<CommandId> {
        self.lock().keys().copied().collect()
    }

    /// Counter snapshot.
    pub fn stats(&self) -> CommandStats {
        let (pending, running) = {
            let entries = self.lock();
            let count = |phase: fn(&Phase) -> bool| {
                entries.values().filter(|e| phase(&e.phase)).count() as u64
            };
            (
                count(|p| matches!(p, Phase::Pending)),
                count(|p| matches!(p, Phase::Running)),
            )
        };
        CommandStats {
            invoked: self.invoked.load(Ordering::Relaxed),
            pending,
            running,
            completed: self.completed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            by_kind: CallbackKind::ALL
                .iter()
                .map(|k| (*k, self.by_kind[k.index()].load(Ordering::Relaxed)))
                .collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CommandId, Entry>> {
        self.entries.lock().expect("command table lock")
    }
}
