//! [`RecordingInstance`]: a mock [`InstanceApi`] that records what a provider does
//! to it, for testing providers without a virtualization instance.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::CallbackDataBuilder;
use crate::provider::PlacedItem;
use crate::provider::{
    CallbackData, CommandId, Completion, Extended, InstanceApi, InstanceError, InstanceHandle,
    ProviderError,
};
use crate::types::{PlaceholderInfo, UpdateFlags, VersionInfo};

/// One `complete_command` call that the instance accepted.
#[derive(Clone, Debug)]
pub struct RecordedCompletion {
    /// The command.
    pub id: CommandId,
    /// Its result.
    pub result: Result<(), ProviderError>,
    /// The extended parameter.
    pub extended: Option<Extended>,
}

#[derive(Default)]
struct State {
    placeholders: Vec<(PathBuf, PlaceholderInfo)>,
    /// Per data stream, every write as `(offset, bytes)`, in call order.
    writes: HashMap<u64, Vec<(u64, Vec<u8>)>>,
    completions: Vec<RecordedCompletion>,
    /// Completions refused: the id was cancelled or already completed.
    ignored: Vec<CommandId>,
    /// Commands that may no longer complete (cancelled or completed).
    closed: HashSet<CommandId>,
    /// Data streams that refuse writes, as after a cancelled hydration.
    closed_streams: HashSet<u64>,
    changes: Vec<RecordedChange>,
}

/// One provider-driven change a [`RecordingInstance`] accepted (it accepts
/// every one: it holds no local state to refuse them for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedChange {
    /// `update_file_if_needed`.
    Update {
        /// The path.
        path: PathBuf,
        /// The new placeholder info.
        info: PlaceholderInfo,
        /// The flags given.
        flags: UpdateFlags,
    },
    /// `delete_file`.
    Delete {
        /// The path.
        path: PathBuf,
        /// The flags given.
        flags: UpdateFlags,
    },
    /// `mark_directory_as_placeholder`.
    MarkDirectory {
        /// The directory.
        path: PathBuf,
        /// Its version.
        version: VersionInfo,
    },
}

/// Records placeholders written, data written per stream and completions, and behaves
/// like the library on the points a provider may rely on: a cancelled or already
/// completed command completes as [`Completion::Ignored`], a closed stream refuses
/// writes with [`InstanceError::UnknownStream`].
#[derive(Default)]
pub struct RecordingInstance {
    state: Mutex<State>,
    /// Signalled on every completion (accepted or ignored).
    changed: Condvar,
}

impl RecordingInstance {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A handle to give providers.
    pub fn handle(self: &Arc<Self>) -> InstanceHandle {
        InstanceHandle::new(Arc::clone(self) as Arc<dyn InstanceApi>)
    }

    /// Callback data for command `id` about `path`, with data stream `id` and no
    /// flags (see [`CallbackDataBuilder`] for more).
    pub fn callback(self: &Arc<Self>, id: CommandId, path: impl AsRef<Path>) -> CallbackData {
        self.builder().command_id(id).path(path).build()
    }

    /// A [`CallbackDataBuilder`] whose callbacks talk to this instance.
    pub fn builder(self: &Arc<Self>) -> CallbackDataBuilder {
        CallbackDataBuilder::new(self.handle())
    }

    /// Act as the library does when the client behind `id` goes away: the command
    /// can no longer complete and its data stream (`id`, as [`Self::callback`] sets
    /// it) refuses writes. The provider's `cancel_command` is the caller's business.
    pub fn cancel(&self, id: CommandId) {
        let mut s = self.lock();
        s.closed.insert(id);
        s.closed_streams.insert(id);
    }

    /// Placeholders written, in order.
    pub fn placeholders(&self) -> Vec<(PathBuf, PlaceholderInfo)> {
        self.lock().placeholders.clone()
    }

    /// Every write to `stream`, as `(offset, bytes)`, in call order.
    pub fn writes(&self, stream: u64) -> Vec<(u64, Vec<u8>)> {
        self.lock().writes.get(&stream).cloned().unwrap_or_default()
    }

    /// The content written to `stream`, assembled by offset (gaps read as zeros).
    pub fn stream_bytes(&self, stream: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (offset, data) in self.writes(stream) {
            let start = usize::try_from(offset).expect("offset fits in memory");
            let end = start + data.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[start..end].copy_from_slice(&data);
        }
        out
    }

    /// Completions accepted so far, in order.
    pub fn completions(&self) -> Vec<RecordedCompletion> {
        self.lock().completions.clone()
    }

    /// Ids whose completion was ignored (cancelled or completed before).
    pub fn ignored_completions(&self) -> Vec<CommandId> {
        self.lock().ignored.clone()
    }

    /// Wait until at least `n` completions were accepted; false on timeout.
    pub fn wait_for_completions(&self, n: usize, timeout: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.completions.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        guard.completions.len() >= n
    }

    /// Wait until command `id` was completed (accepted); its completion, or
    /// `None` on timeout.
    pub fn wait_for_completion(
        &self,
        id: CommandId,
        timeout: Duration,
    ) -> Option<RecordedCompletion> {
        let find = |s: &State| s.completions.iter().find(|c| c.id == id).cloned();
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| find(s).is_none())
            .unwrap_or_else(|e| e.into_inner());
        find(&guard)
    }

    /// Provider-driven changes so far, in order.
    pub fn changes(&self) -> Vec<RecordedChange> {
        self.lock().changes.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is one push/insert; a panicking test thread leaves it whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InstanceApi for RecordingInstance {
    fn write_placeholder_info(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
    ) -> Result<(), InstanceError> {
        self.lock()
            .placeholders
            .push((path.to_path_buf(), info.clone()));
        Ok(())
    }

    fn write_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), InstanceError> {
        let mut s = self.lock();
        if s.closed_streams.contains(&stream_id) {
            return Err(InstanceError::UnknownStream(stream_id));
        }
        s.writes
            .entry(stream_id)
            .or_default()
            .push((offset, data.to_vec()));
        Ok(())
    }

    fn complete_command(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion {
        let mut s = self.lock();
        let outcome = if s.closed.insert(id) {
            s.completions.push(RecordedCompletion {
                id,
                result,
                extended,
            });
            Completion::Completed
        } else {
            s.ignored.push(id);
            Completion::Ignored
        };
        drop(s);
        self.changed.notify_all();
        outcome
    }

    fn clear_negative_path_cache(&self) -> usize {
        0
    }

    fn update_file_if_needed(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
        flags: UpdateFlags,
    ) -> Result<(), InstanceError> {
        self.lock().changes.push(RecordedChange::Update {
            path: path.to_path_buf(),
            info: info.clone(),
            flags,
        });
        Ok(())
    }

    fn delete_file(&self, path: &Path, flags: UpdateFlags) -> Result<(), InstanceError> {
        self.lock().changes.push(RecordedChange::Delete {
            path: path.to_path_buf(),
            flags,
        });
        Ok(())
    }

    fn mark_directory_as_placeholder(
        &self,
        path: &Path,
        version: &VersionInfo,
    ) -> Result<(), InstanceError> {
        self.lock().changes.push(RecordedChange::MarkDirectory {
            path: path.to_path_buf(),
            version: version.clone(),
        });
        Ok(())
    }

    /// Nothing is ever placed in a recording.
    fn placed_children(&self, _path: &Path) -> Result<Vec<PlacedItem>, InstanceError> {
        Ok(Vec::new())
    }
}
