//! The provider side of the model: the [`Provider`] trait with its eight callbacks,
//! [`CallbackData`], results, and the [`InstanceHandle`] a provider talks back through.
//!
//! # Contract (spec §2, §3)
//!
//! * Every callback except [`Provider::cancel_command`] may return
//!   [`Outcome::Pending`] after keeping `cb.command_id`; the worker thread is then free
//!   at once. The provider finishes later, from any thread, with
//!   [`InstanceHandle::complete_command`]. A pended enumeration completes with the
//!   same [`DirEntryBuffer`] it was given ([`Extended::Enumeration`]).
//! * [`Provider::cancel_command`] is called only after the callback it targets was
//!   invoked, but may run while that callback is still running on another thread.
//!   Cancelling an unknown id must be harmless; completing a cancelled command is a
//!   no-op for the library.
//! * `get_placeholder_info` must call [`InstanceHandle::write_placeholder_info`] for
//!   `cb.path` (the store's spelling) before it reports success.
//! * `get_file_data` must write at least `[offset, offset + length)` with
//!   [`InstanceHandle::write_file_data`] (or [`InstanceHandle::copy_file_data`] from
//!   a local file) on `cb.data_stream_id` before it reports success; it may write to
//!   end of file, in any number of chunks.
//! * `end_directory_enumeration` follows every successful start, also after a
//!   cancelled get.
//! * A callback that panics fails its command (the client sees `EIO`); the mount
//!   stays up.
//! * The provider's own I/O inside the root never reaches it: requests from the
//!   process hosting the instance are answered from disk only.

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::enumeration::DirEntryBuffer;
use crate::types::{PlaceholderInfo, VersionInfo};

/// Identifies one callback invocation (spec §2: CommandId).
pub type CommandId = u64;

/// Identifies one directory enumeration session (ProjFS uses a GUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnumerationId(pub u64);

/// Flags passed with a callback (spec §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackFlags {
    /// Rewind the enumeration and capture the search expression again.
    pub restart_scan: bool,
    /// Hint: one entry is enough.
    pub return_single_entry: bool,
}

/// What a callback knows about its invocation. Valid during the callback; a provider
/// that pends clones what it needs (the type is cheap to clone).
#[derive(Clone, Debug)]
pub struct CallbackData {
    /// Unique per invocation.
    pub command_id: CommandId,
    /// Path relative to the virtualization root (empty for the root itself). For
    /// `get_file_data`, the path the placeholder had when it was created.
    pub path: PathBuf,
    /// Identifies the client's handle (0 when there is none).
    pub file_id: u64,
    /// Identifies the data stream being hydrated (`get_file_data` only).
    pub data_stream_id: u64,
    /// Version of the item, when it is a placeholder.
    pub version: Option<VersionInfo>,
    /// Process whose I/O triggered the callback (0 when unknown).
    pub triggering_pid: u32,
    /// Name of that process (`/proc/PID/comm`), when known.
    pub triggering_process_name: Option<String>,
    /// Callback flags.
    pub flags: CallbackFlags,
    /// The instance this callback belongs to.
    pub instance: InstanceHandle,
}

/// A callback's successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The callback's work is done.
    Done,
    /// The provider keeps the command id and will call `complete_command`.
    Pending,
}

/// Errors a provider reports. Each maps to one errno ([`ProviderError::errno`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The item does not exist in the store (`ENOENT`).
    #[error("not found in the backing store")]
    NotFound,
    /// No entry fitted into the enumeration buffer.
    #[error("the directory entry buffer is too small for one entry")]
    InsufficientBuffer,
    /// The provider refuses (also: a notification veto) (`EACCES`).
    #[error("access denied by the provider")]
    AccessDenied,
    /// The provider produced a name that is not a valid path component (`EIO`).
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The store is unreachable (`EIO`).
    #[error("the backing store is unavailable: {0}")]
    Unavailable(String),
    /// An I/O error with this errno.
    #[error("I/O error (errno {0})")]
    Io(i32),
    /// The command was cancelled (`EINTR`).
    #[error("the command was cancelled")]
    Cancelled,
    /// Anything else (`EIO`).
    #[error("{0}")]
    Other(String),
}

impl ProviderError {
    /// The one errno table for provider results (see `SEMANTICS.md`).
    pub fn errno(&self) -> i32 {
        match self {
            ProviderError::NotFound => libc::ENOENT,
            ProviderError::InsufficientBuffer => libc::EIO,
            ProviderError::AccessDenied => libc::EACCES,
            ProviderError::InvalidName(_) => libc::EIO,
            ProviderError::Unavailable(_) => libc::EIO,
            ProviderError::Io(e) => *e,
            ProviderError::Cancelled => libc::EINTR,
            ProviderError::Other(_) => libc::EIO,
        }
    }
}

impl From<std::io::Error> for ProviderError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => ProviderError::NotFound,
            _ => ProviderError::Io(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// Result of a callback.
pub type CallbackResult = Result<Outcome, ProviderError>;

/// Notification kinds (spec §7), by their ProjFS values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NotificationKind {
    /// After a handle to an existing item is opened.
    FileOpened = 0x2,
    /// After create.
    NewFileCreated = 0x4,
    /// After open with truncate.
    FileOverwritten = 0x8,
    /// Before delete.
    PreDelete = 0x10,
    /// Before rename.
    PreRename = 0x20,
    /// Before a hard link.
    PreSetHardlink = 0x40,
    /// After rename.
    FileRenamed = 0x80,
    /// After link.
    HardlinkCreated = 0x100,
    /// Last close, unchanged.
    FileHandleClosedNoModification = 0x200,
    /// Last close, changed.
    FileHandleClosedFileModified = 0x400,
    /// Close of a deleted item.
    FileHandleClosedFileDeleted = 0x800,
    /// Before a placeholder becomes full.
    FilePreConvertToFull = 0x1000,
}

/// The provider's callbacks. See the module documentation for the contract.
pub trait Provider: Send + Sync + 'static {
    /// A client starts listing a directory.
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult;

    /// Fill `buffer` with the next entries of session `id`, in collation order,
    /// filtered by the search expression (spec §5).
    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult;

    /// The listing handle was closed.
    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult;

    /// A client reached `cb.path`, which is not on disk yet.
    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult;

    /// Content of `cb.path` is needed.
    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult;

    /// Existence check without creating a placeholder. Default: not supported
    /// (reported as not found).
    fn query_file_name(&self, _cb: &CallbackData) -> CallbackResult {
        Err(ProviderError::NotFound)
    }

    /// A notification (spec §7). Default: accept.
    fn notification(
        &self,
        _cb: &CallbackData,
        _is_directory: bool,
        _kind: NotificationKind,
        _destination: Option<&Path>,
    ) -> CallbackResult {
        Ok(Outcome::Done)
    }

    /// The client I/O behind a pended command went away. Default: nothing.
    fn cancel_command(&self, _cb: &CallbackData) {}
}

/// Extra data a completion carries (spec §2).
#[derive(Clone, Debug)]
pub enum Extended {
    /// The same buffer the pended get-enumeration received, now filled.
    Enumeration(DirEntryBuffer),
    /// A new notification mask for the handle (0 keeps the current one).
    NotificationMask(u32),
}

/// What [`InstanceHandle::complete_command`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The command was pending and is now complete.
    Completed,
    /// The command was cancelled, already completed, or never existed: nothing
    /// happened (completing a cancelled command is harmless).
    Ignored,
}

/// Errors from the instance's provider-facing calls.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// A path or name given by the provider is not valid.
    #[error("invalid name or path: {0}")]
    InvalidName(String),
    /// The item is not in a state that allows the call.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No hydration is in progress for that data stream.
    #[error("unknown data stream {0}")]
    UnknownStream(u64),
    /// The instance has stopped virtualizing.
    #[error("virtualization is stopped")]
    Stopped,
    /// An error of the underlying file system.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Calls a provider makes into its virtualization instance.
///
/// Implemented by the library; tests of providers may implement it with a mock.
pub trait InstanceApi: Send + Sync + 'static {
    /// Write (or replace) the placeholder of `path` (spec §8 WritePlaceholderInfo).
    fn write_placeholder_info(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
    ) -> Result<(), InstanceError>;

    /// Write content for a hydration in progress (spec §8 WriteFileData).
    fn write_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), InstanceError>;

    /// Write content for a hydration in progress by copying `length` bytes of the
    /// file `src` from `src_offset` to `offset` of the stream, without passing them
    /// through the provider: the library's instance copies in the kernel
    /// (`copy_file_range`) where the two files allow it. Returns the bytes copied,
    /// fewer than `length` only where `src` ends. An extension of spec §8
    /// WriteFileData for providers whose content already is in a local file.
    ///
    /// The default copies through a buffer with [`InstanceApi::write_file_data`].
    fn copy_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        src: BorrowedFd<'_>,
        src_offset: u64,
        length: u64,
    ) -> Result<u64, InstanceError> {
        let mut buf = vec![0u8; usize::try_from(length).unwrap_or(usize::MAX).min(1 << 20)];
        let mut done = 0u64;
        while done < length {
            let want = usize::try_from(length - done).map_or(buf.len(), |w| w.min(buf.len()));
            let n = match rustix::io::pread(src, &mut buf[..want], src_offset + done) {
                Ok(0) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(InstanceError::Io(e.into())),
            };
            self.write_file_data(stream_id, offset + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(done)
    }

    /// Finish a pended command (spec §2 CompleteCommand).
    fn complete_command(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion;

    /// Drop every negative path cache entry; returns how many were dropped.
    fn clear_negative_path_cache(&self) -> usize;
}

/// A cheap, cloneable, thread-safe handle to a virtualization instance.
#[derive(Clone)]
pub struct InstanceHandle(Arc<dyn InstanceApi>);

impl std::fmt::Debug for InstanceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceHandle")
    }
}

impl InstanceHandle {
    /// Wrap an implementation.
    pub fn new(api: Arc<dyn InstanceApi>) -> Self {
        Self(api)
    }

    /// See [`InstanceApi::write_placeholder_info`].
    pub fn write_placeholder_info(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
    ) -> Result<(), InstanceError> {
        self.0.write_placeholder_info(path, info)
    }

    /// See [`InstanceApi::write_file_data`].
    pub fn write_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), InstanceError> {
        self.0.write_file_data(stream_id, offset, data)
    }

    /// See [`InstanceApi::copy_file_data`].
    pub fn copy_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        src: BorrowedFd<'_>,
        src_offset: u64,
        length: u64,
    ) -> Result<u64, InstanceError> {
        self.0
            .copy_file_data(stream_id, offset, src, src_offset, length)
    }

    /// See [`InstanceApi::complete_command`].
    pub fn complete_command(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion {
        self.0.complete_command(id, result, extended)
    }

    /// See [`InstanceApi::clear_negative_path_cache`].
    pub fn clear_negative_path_cache(&self) -> usize {
        self.0.clear_negative_path_cache()
    }
}

/// Convenience for providers: the last component of `cb.path` as an owned name.
pub fn file_name_of(path: &Path) -> OsString {
    path.file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default()
}
