//! `async fn` providers: the [`AsyncProvider`] trait and the [`AsyncAdapter`] that
//! runs its futures on a tokio runtime, pends every callback, and cancels by dropping.
//!
//! # Contract for an [`AsyncProvider`]
//!
//! * Each method is called once per callback invocation and returns a future. The
//!   adapter spawns it on its runtime and returns [`Outcome::Pending`](crate::Outcome::Pending) to the library at
//!   once; the worker thread that delivered the callback never waits for the future.
//! * When the future finishes, the adapter finishes the command for the provider:
//!   `get_placeholder_info` returns a [`Placeholder`] and the adapter writes it for
//!   `cb.path` (with [`InstanceHandle::write_placeholder_info`]) before completing;
//!   `get_directory_enumeration` fills the buffer it was given and the adapter
//!   completes the command (the library reads that buffer); `get_file_data`
//!   writes at least `[offset, offset + length)` through its [`FileDataWriter`] before
//!   returning `Ok`. A provider never calls `complete_command` itself.
//! * **Cancellation drops the future.** When the library cancels a command, the
//!   adapter aborts its task: the future is dropped at the await point where it is
//!   suspended (or before its first poll), so code after that point never runs, and
//!   `Drop` of the values it holds does run. A future that is inside a synchronous
//!   section (between two awaits) finishes that section first. After
//!   [`Provider::cancel_command`](crate::Provider::cancel_command) returns, the adapter never completes that command,
//!   even if the future had already produced its result.
//! * Work handed to `tokio::task::spawn_blocking` is *not* stopped by cancellation;
//!   its result is simply discarded. Keep blocking sections short or make them check
//!   for a closed writer ([`ProviderError::Cancelled`] from [`FileDataWriter::write`]).
//! * When each callback is invoked on Linux is written on the [`crate::Provider`]
//!   method of the same name; [`crate::enumeration::Enumerations`] serves the
//!   three enumeration callbacks for a provider that can list a directory.
//! * The provider may assume: the futures run on a multi-thread tokio runtime (timers
//!   enabled, `spawn_blocking` available); `cb` is an owned copy, valid for as long as
//!   the future lives; `start`/`get`/`end` of one enumeration id are invoked in that
//!   order (but a pended get may still run when `end` arrives, as in ProjFS); `end`
//!   follows every successful `start`, also after a cancelled get.
//! * A future that panics fails its command with [`ProviderError::Other`]; the
//!   runtime and the mount stay up.

mod adapter;

pub use adapter::{AsyncAdapter, DEFAULT_WORKER_THREADS};

use std::ffi::OsString;
use std::future::Future;

use crate::enumeration::DirEntryBuffer;
use crate::provider::{
    CallbackData, CommandId, EnumerationId, InstanceError, InstanceHandle, ProviderError,
};
use crate::types::PlaceholderInfo;

/// A provider whose callbacks are `async fn`s. See the module documentation for the
/// contract; wrap it in an [`AsyncAdapter`] to obtain a [`Provider`](crate::Provider).
pub trait AsyncProvider: Send + Sync + 'static {
    /// A client starts listing the directory `cb.path`. `NotFound` if it is not in
    /// the store; on error no end follows.
    fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Fill `buffer` with the next entries of session `id` (see
    /// [`Provider::get_directory_enumeration`](crate::Provider::get_directory_enumeration)
    /// for the rules). The library reads this same buffer when the future ends.
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

    /// Told that command `cb.command_id` was cancelled, right after its task was
    /// aborted (or, when the id is unknown to the adapter, merely recorded),
    /// with the same data the callback form
    /// ([`Provider::cancel_command`](crate::Provider::cancel_command)) gets.
    /// Called on the library's thread; must not block. Default:
    /// [`AsyncProvider::command_cancelled`] with the id.
    fn cancelled(&self, cb: &CallbackData) {
        self.command_cancelled(cb.command_id);
    }

    /// Told that command `id` was cancelled: the id-only form of
    /// [`AsyncProvider::cancelled`], which calls it by default (implement one
    /// of the two). Default: nothing.
    fn command_cancelled(&self, _id: CommandId) {}
}

/// The answer of [`AsyncProvider::get_placeholder_info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// What to write.
    pub info: PlaceholderInfo,
    /// The item's name in the store's spelling when it differs from the last
    /// component of `cb.path` (case-insensitive roots); `None` keeps it.
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

impl FileDataWriter {
    /// Copy `length` bytes of `src` from `src_offset` to `offset` of the file being
    /// hydrated, in the kernel where possible ([`InstanceHandle::copy_file_data`]).
    /// Returns the bytes copied (fewer only where `src` ends); fails like
    /// [`FileDataWriter::write`].
    pub fn copy_from(
        &self,
        offset: u64,
        src: std::os::fd::BorrowedFd<'_>,
        src_offset: u64,
        length: u64,
    ) -> Result<u64, ProviderError> {
        self.instance
            .copy_file_data(self.stream_id, offset, src, src_offset, length)
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
            e @ InstanceError::UpdateFailed(_) => ProviderError::Other(e.to_string()),
            InstanceError::DirectoryNotEmpty(_) => ProviderError::Io(libc::ENOTEMPTY),
        }
    }
}

#[cfg(test)]
mod tests;
