//! [`CallbackDataBuilder`]: [`CallbackData`] as the library would pass it, for
//! calling a provider's callbacks directly.

use std::path::{Path, PathBuf};

use crate::provider::{CallbackData, CallbackFlags, CommandId, InstanceHandle};
use crate::types::{Collation, VersionInfo};

/// Builds a [`CallbackData`]. Defaults: command id 1, the root's path (empty),
/// file id and data stream id equal to the command id, no version, no
/// triggering process, no flags, [`Collation::CaseSensitive`].
///
/// ```
/// use prjfs::testing::{CallbackDataBuilder, RecordingInstance};
///
/// let instance = RecordingInstance::new();
/// let cb = CallbackDataBuilder::new(instance.handle())
///     .command_id(7)
///     .path("dir/file.txt")
///     .restart_scan(true)
///     .build();
/// assert_eq!(cb.data_stream_id, 7);
/// assert!(cb.flags.restart_scan);
/// ```
#[derive(Clone, Debug)]
pub struct CallbackDataBuilder {
    data: CallbackData,
    /// Whether `data_stream_id` / `file_id` were set explicitly; if not they
    /// follow the command id.
    stream_set: bool,
    file_set: bool,
}

impl CallbackDataBuilder {
    /// Callback data for a provider talking to `instance` (a mock such as
    /// [`super::RecordingInstance`], or a real instance's handle).
    pub fn new(instance: InstanceHandle) -> Self {
        Self {
            data: CallbackData {
                command_id: 1,
                path: PathBuf::new(),
                file_id: 1,
                data_stream_id: 1,
                version: None,
                triggering_pid: 0,
                triggering_process_name: None,
                flags: CallbackFlags::default(),
                collation: Collation::CaseSensitive,
                instance,
            },
            stream_set: false,
            file_set: false,
        }
    }

    /// The command id (also the data stream and file id unless set).
    pub fn command_id(mut self, id: CommandId) -> Self {
        self.data.command_id = id;
        self
    }

    /// The path relative to the root (empty: the root).
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.data.path = path.as_ref().to_path_buf();
        self
    }

    /// The client's handle id.
    pub fn file_id(mut self, id: u64) -> Self {
        self.data.file_id = id;
        self.file_set = true;
        self
    }

    /// The data stream of a `get_file_data`.
    pub fn data_stream_id(mut self, id: u64) -> Self {
        self.data.data_stream_id = id;
        self.stream_set = true;
        self
    }

    /// The item's VersionInfo.
    pub fn version(mut self, version: VersionInfo) -> Self {
        self.data.version = Some(version);
        self
    }

    /// The process whose I/O triggered the callback, and its name.
    pub fn triggering_process(mut self, pid: u32, name: Option<&str>) -> Self {
        self.data.triggering_pid = pid;
        self.data.triggering_process_name = name.map(str::to_string);
        self
    }

    /// All flags at once.
    pub fn flags(mut self, flags: CallbackFlags) -> Self {
        self.data.flags = flags;
        self
    }

    /// [`CallbackFlags::restart_scan`].
    pub fn restart_scan(mut self, on: bool) -> Self {
        self.data.flags.restart_scan = on;
        self
    }

    /// [`CallbackFlags::return_single_entry`].
    pub fn return_single_entry(mut self, on: bool) -> Self {
        self.data.flags.return_single_entry = on;
        self
    }

    /// The root's collation.
    pub fn collation(mut self, collation: Collation) -> Self {
        self.data.collation = collation;
        self
    }

    /// The callback data.
    pub fn build(self) -> CallbackData {
        let mut data = self.data;
        if !self.stream_set {
            data.data_stream_id = data.command_id;
        }
        if !self.file_set {
            data.file_id = data.command_id;
        }
        data
    }
}
