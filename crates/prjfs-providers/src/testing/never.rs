//! [`NeverCompletes`]: pends placeholder and data callbacks forever, records cancels,
//! and completes a recorded command only when a test asks.

use std::ffi::OsStr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use prjfs::{
    CallbackData, CallbackResult, CommandId, Completion, DirEntryBuffer, EnumerationId, Outcome,
    Provider,
};

use super::tree::{MemProvider, MemTree};

/// A callback [`NeverCompletes`] pended.
#[derive(Clone, Debug)]
pub enum PendedCommand {
    /// A `get_placeholder_info`.
    PlaceholderInfo(CallbackData),
    /// A `get_file_data` for `[offset, offset + length)`.
    FileData {
        /// The callback data (copied).
        cb: CallbackData,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        length: u64,
    },
}

impl PendedCommand {
    /// The command id.
    pub fn id(&self) -> CommandId {
        self.callback().command_id
    }

    /// The callback data.
    pub fn callback(&self) -> &CallbackData {
        match self {
            PendedCommand::PlaceholderInfo(cb) | PendedCommand::FileData { cb, .. } => cb,
        }
    }
}

#[derive(Default)]
struct State {
    pended: Vec<PendedCommand>,
    cancelled: Vec<CommandId>,
}

/// Pends `get_placeholder_info` and `get_file_data` (each can be switched to answer
/// inline) and never completes them on its own; enumeration is answered inline from
/// the tree. Records every pended command and every `cancel_command` id, in order.
/// [`NeverCompletes::complete`] finishes a recorded command later, e.g. to prove that
/// completing a cancelled command is a no-op.
pub struct NeverCompletes {
    mem: MemProvider,
    pend_placeholder_info: bool,
    pend_file_data: bool,
    state: Mutex<State>,
    /// Signalled whenever a command is pended or cancelled.
    changed: Condvar,
}

impl NeverCompletes {
    /// Pend both placeholder info and file data over `tree`.
    pub fn new(tree: MemTree) -> Self {
        Self {
            mem: MemProvider::new(tree),
            pend_placeholder_info: true,
            pend_file_data: true,
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    /// Whether `get_placeholder_info` pends (`false`: answered inline from the tree).
    pub fn pend_placeholder_info(mut self, pend: bool) -> Self {
        self.pend_placeholder_info = pend;
        self
    }

    /// Whether `get_file_data` pends (`false`: answered inline from the tree).
    pub fn pend_file_data(mut self, pend: bool) -> Self {
        self.pend_file_data = pend;
        self
    }

    /// The provider answering what is not pended.
    pub fn mem(&self) -> &MemProvider {
        &self.mem
    }

    /// Commands pended so far, in order (completed ones included).
    pub fn pended(&self) -> Vec<PendedCommand> {
        self.lock().pended.clone()
    }

    /// Ids given to `cancel_command`, in order.
    pub fn cancelled(&self) -> Vec<CommandId> {
        self.lock().cancelled.clone()
    }

    /// Wait until at least `n` commands were pended; false on timeout.
    pub fn wait_for_pended(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |s| s.pended.len() >= n)
    }

    /// Wait until `cancel_command` was called at least `n` times; false on timeout.
    pub fn wait_for_cancels(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |s| s.cancelled.len() >= n)
    }

    /// Do the work of the pended command `id` (write its placeholder or data; a
    /// write refused because the command is gone becomes its error result) and call
    /// `complete_command`. Returns what the instance said, `None` if `id` was never
    /// pended. Completing twice is allowed (the instance ignores the second).
    pub fn complete(&self, id: CommandId) -> Option<Completion> {
        let command = self.lock().pended.iter().find(|c| c.id() == id).cloned()?;
        let result = match &command {
            PendedCommand::PlaceholderInfo(cb) => self.mem.write_placeholder(cb),
            PendedCommand::FileData { cb, offset, length } => {
                self.mem.write_data(cb, *offset, *length)
            }
        };
        Some(
            command
                .callback()
                .instance
                .complete_command(id, result, None),
        )
    }

    fn record(&self, command: PendedCommand) -> CallbackResult {
        self.lock().pended.push(command);
        self.changed.notify_all();
        Ok(Outcome::Pending)
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| !done(s))
            .unwrap_or_else(|e| e.into_inner());
        done(&guard)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only pushes under the lock: poisoning breaks nothing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Provider for NeverCompletes {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.mem.start_directory_enumeration(cb, id)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.mem
            .get_directory_enumeration(cb, id, search_expression, buffer)
    }

    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.mem.end_directory_enumeration(cb, id)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        if !self.pend_placeholder_info {
            return self.mem.get_placeholder_info(cb);
        }
        self.record(PendedCommand::PlaceholderInfo(cb.clone()))
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        if !self.pend_file_data {
            return self.mem.get_file_data(cb, byte_offset, length);
        }
        self.record(PendedCommand::FileData {
            cb: cb.clone(),
            offset: byte_offset,
            length,
        })
    }

    fn query_file_name(&self, cb: &CallbackData) -> CallbackResult {
        self.mem.query_file_name(cb)
    }

    fn cancel_command(&self, cb: &CallbackData) {
        self.lock().cancelled.push(cb.command_id);
        self.changed.notify_all();
    }
}
