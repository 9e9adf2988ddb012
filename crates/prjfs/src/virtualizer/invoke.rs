//! Callbacks as commands: whether a request may reach the provider, the
//! [`CallbackData`] it is given, and queueing the callback with its
//! continuation ([`Inner::invoke`]) or cancelling it.
//!
//! Invariant: a command's continuation runs exactly once — when the provider
//! finishes (at once or by `complete_command`), when its call panics, or when
//! it is cancelled — and a command cancelled while queued never reaches the
//! provider.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{callers, Errno, Inner, RequestCtx};
use crate::cancel::CancelSlot;
use crate::command::{CallbackKind, CommandOutcome};
use crate::provider::{
    CallbackData, CallbackFlags, CallbackResult, CommandId, Outcome, Provider, ProviderError,
};

/// Whether the calling thread `pid` belongs to this process (the provider's own
/// I/O never reaches the provider).
pub(super) fn is_own_thread(pid: u32) -> bool {
    pid != 0 && callers::lookup(pid).own
}

pub(super) fn process_name(pid: u32) -> Option<String> {
    callers::lookup(pid).name.map(|n| n.to_string())
}

impl Inner {
    /// Whether a request from `ctx` may reach the provider; `Err` when it may not.
    pub(super) fn may_call_provider(&self, ctx: &RequestCtx) -> Result<(), Errno> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(libc::EIO);
        }
        if is_own_thread(ctx.pid) {
            return Err(libc::EIO);
        }
        Ok(())
    }

    pub(super) fn callback_data(&self, ctx: &RequestCtx, path: PathBuf) -> CallbackData {
        CallbackData {
            command_id: 0,
            path,
            file_id: 0,
            data_stream_id: 0,
            version: None,
            triggering_pid: ctx.pid,
            triggering_process_name: if ctx.pid != 0 {
                process_name(ctx.pid)
            } else {
                None
            },
            flags: CallbackFlags::default(),
            collation: self.options.collation,
            instance: self.handle.clone(),
        }
    }

    /// Queue one callback as a command. `call` runs on a callback thread unless
    /// the command is cancelled first; `continuation` runs exactly once.
    pub(super) fn invoke(
        self: &Arc<Self>,
        kind: CallbackKind,
        mut data: CallbackData,
        cancel: Option<&CancelSlot>,
        call: impl FnOnce(&dyn Provider, &CallbackData) -> CallbackResult + Send + 'static,
        continuation: impl FnOnce(CommandOutcome) + Send + 'static,
    ) -> CommandId {
        let id = self.commands.allocate_id();
        data.command_id = id;
        self.commands.insert(kind, data, Box::new(continuation));
        if let Some(slot) = cancel {
            let weak = Arc::downgrade(self);
            slot.arm(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.cancel_command(id);
                }
            });
        }
        let inner = self.clone();
        let job = move || {
            let Some((kind, data)) = inner.commands.start(id) else {
                return; // cancelled while queued: the provider never hears of it
            };
            let result =
                std::panic::catch_unwind(AssertUnwindSafe(|| call(&*inner.provider, &data)));
            // The provider call is over: the continuation may start the next
            // callback in this job's slot (crate::scheduler::lend_slot).
            match result {
                Ok(Ok(Outcome::Pending)) => inner.commands.mark_pending(id),
                Ok(Ok(Outcome::Done)) => {
                    crate::scheduler::lend_slot(|| inner.commands.finish(id, Ok(()), None));
                }
                Ok(Err(e)) => {
                    crate::scheduler::lend_slot(|| inner.commands.finish(id, Err(e), None));
                }
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(
                        "provider panicked in {} for {:?}: {msg}",
                        kind.name(),
                        data.path
                    );
                    inner.commands.finish(
                        id,
                        Err(ProviderError::Other(format!("provider panicked: {msg}"))),
                        None,
                    );
                }
            }
        };
        if self.options.inline_callbacks {
            self.scheduler.run_or_submit(job);
        } else {
            self.scheduler.submit(job);
        }
        id
    }

    /// Cancel a command: its client is answered `EINTR` at once, then the provider
    /// hears CancelCommand if its callback was already invoked.
    pub(crate) fn cancel_command(&self, id: CommandId) {
        if let Some(data) = self.commands.cancel(id) {
            let provider = self.provider.clone();
            if let Err(panic) =
                std::panic::catch_unwind(AssertUnwindSafe(|| provider.cancel_command(&data)))
            {
                tracing::error!("provider panicked in cancel_command: {panic:?}");
            }
        }
    }
}
