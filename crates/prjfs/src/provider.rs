//! The provider side of the model: the [`Provider`] trait with its eight callbacks,
//! [`CallbackData`], results, and the [`InstanceHandle`] a provider talks back through.
//!
//! # Contract
//!
//! * Every callback except [`Provider::cancel_command`] may return
//!   [`Outcome::Pending`] after keeping `cb.command_id`; the worker thread is then free
//!   at once. The provider finishes later, from any thread, with
//!   [`InstanceHandle::complete_command`]. A pended enumeration fills the
//!   [`DirEntryBuffer`] it was given (a clone shares it) and completes with
//!   `None`: the library reads the buffer it handed out
//!   ([`Extended::Enumeration`] of that same buffer is accepted too).
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
//!
//! # When callbacks are invoked on Linux
//!
//! Each callback's documentation says which client operations invoke it; the
//! full table (request by request, state by state) is "Which operations call
//! which callbacks" in the repository's `SEMANTICS.md`. In short: lookups of
//! names not on disk ask [`Provider::get_placeholder_info`], the first read of
//! a placeholder file (or a change that needs its old bytes) asks
//! [`Provider::get_file_data`] for the whole file (or, for a provider started
//! with [`crate::StartOptions::ranged_hydration`], for the chunks a read of a
//! big file touches), listings of the root and of
//! placeholder directories run an enumeration session, and a client that gives
//! up (Ctrl-C, kill) or an instance that stops brings
//! [`Provider::cancel_command`]. [`Provider::notification`] is invoked only
//! when the instance was started with notification mappings
//! ([`crate::StartOptions::notification_mappings`]); see
//! [`crate::notifications`] for which operation raises which kind.
//! [`Provider::query_file_name`] is never invoked today. Requests answered
//! from disk (hydrated and full files, names already placed) never reach the
//! provider.

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::enumeration::DirEntryBuffer;
pub use crate::notifications::Notification;
use crate::types::{
    Collation, FileKind, OnDiskState, PlaceholderInfo, UpdateFailure, UpdateFlags, VersionInfo,
};

/// Identifies one callback invocation (ProjFS's CommandId): unique per instance.
pub type CommandId = u64;

/// Identifies one directory enumeration session (ProjFS uses a GUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnumerationId(pub u64);

/// Flags passed with a callback (ProjFS's `PRJ_CALLBACK_DATA_FLAGS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackFlags {
    /// Rewind the enumeration and capture the search expression again. Set by
    /// the library on the first Get after a client rewinds a directory handle
    /// (`rewinddir`, `lseek` to 0).
    pub restart_scan: bool,
    /// Hint: one entry is enough. Never set by the library on Linux (POSIX
    /// listings have no such request).
    pub return_single_entry: bool,
}

/// What a callback knows about its invocation. Valid during the callback; a provider
/// that pends clones what it needs (the type is cheap to clone).
///
/// Built by the library; tests of providers build one with
/// [`crate::testing::CallbackDataBuilder`] (the struct is `#[non_exhaustive]`,
/// so that fields can be added without breaking providers).
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// The root's collation ([`crate::StartOptions::collation`]): the order
    /// enumeration entries must come in and how names are matched.
    pub collation: Collation,
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

/// Notification kinds, by their ProjFS values (`PRJ_NOTIFICATION`), which are
/// also their bits in a notification mask. Which Linux operation raises which
/// kind, and when, is written in [`crate::notifications`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
///
/// Callbacks run on the instance's callback threads (at most
/// [`crate::StartOptions::concurrent_threads`] at once) or inline on a request
/// thread; none runs for a request of the process hosting the instance.
/// [`crate::enumeration::Enumerations`] implements the three enumeration
/// callbacks for a provider that can list a directory whole.
pub trait Provider: Send + Sync + 'static {
    /// A client starts listing the directory `cb.path`.
    ///
    /// **Invoked** when a client opens the root or a placeholder directory
    /// (`opendir`; with [`crate::StartOptions::cache_listings`], at its first
    /// `readdir` instead, and not at all while the kernel still holds the
    /// listing), and for the emptiness check of an `rmdir` of (or a rename
    /// over) such a directory that holds nothing but tombstones on disk. Never
    /// for a directory created locally. `cb.path` is where the directory was
    /// placed (its *origin*; it stays the same after a local rename) and
    /// `cb.version` its VersionInfo. An error fails the client's `opendir` with
    /// its errno ([`ProviderError::errno`]); no End follows it.
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult;

    /// Fill `buffer` with the next entries of session `id`, in `cb.collation`
    /// order, filtered by the search expression captured at the first Get of the
    /// session or at a restart scan (`None` matches everything). Adding nothing
    /// ends the listing; an entry that does not fit waits for the next Get; when
    /// not even one fits, answer [`ProviderError::InsufficientBuffer`].
    ///
    /// **Invoked** when a client reads a directory handle at offset 0 (its
    /// first `readdir`, and again after a rewind, then with
    /// `cb.flags.restart_scan`), repeatedly until a call adds nothing: the
    /// library takes the whole listing at once, merges it with what is on
    /// disk and serves the client's `getdents` from that. Also during the
    /// emptiness check of an `rmdir`. On Linux `search_expression` is always
    /// `None` and `cb.flags.return_single_entry` is never set (POSIX listings
    /// have neither); [`crate::testing::EnumerationDriver`] exercises them. The
    /// buffer holds 64 KiB of entries ([`DirEntryBuffer::entry_size`]); after
    /// InsufficientBuffer the library asks again with twice the room, up to
    /// 4 MiB.
    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult;

    /// Session `id` is over.
    ///
    /// **Invoked** once after every successful Start: when the client closes
    /// the directory handle (`closedir`; the kernel's RELEASEDIR), also after a
    /// cancelled or failed Get, at the end of an emptiness check, and for every
    /// open handle when the instance stops. Its result is only logged.
    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult;

    /// Describe `cb.path` by writing its placeholder with
    /// [`InstanceHandle::write_placeholder_info`] (under the store's spelling
    /// of the name), or answer [`ProviderError::NotFound`].
    ///
    /// **Invoked** when a client looks up a name that is not on disk in the
    /// root or a placeholder directory: a path walk (`stat`, `open`, `cd`),
    /// also the lookup the kernel makes before creating a new name there
    /// (usually answered `NotFound`); and at the first open of a file that a
    /// listing placed without VersionInfo. Not for names on disk, names in
    /// locally created directories, tombstoned names, or names the negative
    /// path cache holds ([`crate::StartOptions::negative_path_cache`]).
    /// `NotFound` is the client's `ENOENT`.
    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult;

    /// Write at least `[byte_offset, byte_offset + length)` of the file's
    /// content on `cb.data_stream_id` ([`InstanceHandle::write_file_data`] or
    /// [`InstanceHandle::copy_file_data`]), in any order and pieces.
    ///
    /// **Invoked** when a placeholder file that is neither hydrated nor empty
    /// needs its content: its first `read`, or a change that keeps its old
    /// bytes (the first write through a handle opened for writing without
    /// `O_TRUNC`, a truncation to a non-zero size, a hard link, an `fallocate`
    /// that keeps bytes). For the whole file (offset 0, the placeholder's
    /// size), at its origin path with its VersionInfo in `cb.version`, and at
    /// most one at a time per file: other clients wait for the same command.
    /// With [`crate::StartOptions::ranged_hydration`], reads of a file of at
    /// least its `min_file_size` ask instead for runs of whole chunks (the
    /// last may end at the size): several commands per file may then be in
    /// flight, for disjoint ranges, each with a `data_stream_id` of its own
    /// onto the one partly present file, and every range of one placeholder
    /// must come from the version `cb.version` names (or fail), since they
    /// are fetched at different times. A change that needs the whole file
    /// asks for every run still missing.
    /// Hydrated and full files are read from disk and never reach the provider.
    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult;

    /// Existence check without creating a placeholder (ProjFS's QueryFileName).
    /// Default: not supported (reported as not found).
    ///
    /// **Never invoked** on Linux today: no operation asks whether a name
    /// exists without placing it.
    fn query_file_name(&self, _cb: &CallbackData) -> CallbackResult {
        Err(ProviderError::NotFound)
    }

    /// A client changed (or is about to change) the projection: `n.kind` for
    /// `cb.path` (ProjFS's `PRJ_NOTIFICATION_CB`). Default: accept.
    ///
    /// **Invoked** only when the instance was started with
    /// [`crate::StartOptions::notification_mappings`], for the kinds the mask
    /// of `cb.path` selects (the deepest mapping containing it; a handle's
    /// mask once a reply set one), at the moments listed in
    /// [`crate::notifications`]: after an open (`FileOpened`, or
    /// `FileOverwritten` for `O_TRUNC`) or create, before and after a rename
    /// or hard link (`n.destination` is the new path), before an
    /// `unlink`/`rmdir` and at the close of a deleted item, at the last close
    /// of each handle, before a placeholder becomes full. Never for the I/O
    /// of the process hosting the instance.
    ///
    /// `cb.triggering_pid` / `cb.triggering_process_name` name the client; for
    /// the close kinds, the process that *opened* the handle. `cb.file_id` is
    /// the handle (0 for name operations).
    ///
    /// An error vetoes a "pre" kind and `FileOpened` ([`NotificationKind::is_vetoable`]):
    /// the client's operation fails with `EPERM` and nothing changed (a vetoed
    /// open leaves no handle). For other kinds an error is only logged. The
    /// client waits for the answer of every kind except the close kinds, which
    /// the kernel sends after `close` returned. A notification may pend like
    /// any callback (and is cancelled like one when its client is interrupted
    /// or killed). A reply to `FileOpened`, `NewFileCreated`, `FileOverwritten`
    /// or `FileRenamed` may set a new mask for the item's handles until they
    /// all close: [`Notification::set_new_mask`] when answering `Done`,
    /// [`Extended::NotificationMask`] when completing a pended one.
    fn notification(&self, _cb: &CallbackData, _n: &Notification) -> CallbackResult {
        Ok(Outcome::Done)
    }

    /// The client behind command `cb.command_id` went away. Default: nothing.
    ///
    /// **Invoked** when the client of a command whose callback was already
    /// invoked is interrupted or killed (Ctrl-C, SIGKILL: the kernel's
    /// FUSE_INTERRUPT; for a file several clients wait for, when any of them
    /// gives up: the others start over with a new GetFileData), and for every
    /// live command when the instance stops. The client has been answered
    /// `EINTR` before; a later `complete_command` of the id is ignored. Called
    /// on the thread that noticed (a request thread, or the one stopping the
    /// instance), possibly while the callback still runs on another: must not
    /// block.
    fn cancel_command(&self, _cb: &CallbackData) {}
}

/// Extra data a completion carries (ProjFS's `PRJ_COMPLETE_COMMAND_EXTENDED_PARAMETERS`).
#[derive(Clone, Debug)]
pub enum Extended {
    /// The same buffer the pended get-enumeration received, now filled. Optional:
    /// completing a pended Get with `None` means the same.
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
    /// A provider-driven change was refused: the item is in local states the
    /// call's [`UpdateFlags`] did not allow (ProjFS's
    /// `ERROR_FILE_SYSTEM_VIRTUALIZATION_INVALID_OPERATION` with its failure
    /// cause). Nothing was changed.
    #[error("refused: the item has local changes ({0})")]
    UpdateFailed(UpdateFailure),
    /// A provider-driven change of a directory that still holds items
    /// (tombstones and placeholders included): change its children first.
    #[error("directory {0:?} is not empty")]
    DirectoryNotEmpty(PathBuf),
    /// An error of the underlying file system.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Calls a provider makes into its virtualization instance.
///
/// Implemented by the library; tests of providers may implement it with a mock.
pub trait InstanceApi: Send + Sync + 'static {
    /// Write (or replace) the placeholder of `path` (ProjFS's WritePlaceholderInfo).
    fn write_placeholder_info(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
    ) -> Result<(), InstanceError>;

    /// Write content for a hydration in progress (ProjFS's WriteFileData).
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
    /// fewer than `length` only where `src` ends. An extension of ProjFS's
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

    /// Finish a pended command (ProjFS's CompleteCommand), from any thread.
    fn complete_command(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion;

    /// Drop every negative path cache entry; returns how many were dropped.
    fn clear_negative_path_cache(&self) -> usize;

    /// ProjFS's UpdateFileIfNeeded: the store's item at `path` (relative to the
    /// root, where it is now) changed to `info`. A placeholder that already
    /// has `info`'s ContentId (non-empty) is left alone; any other local item
    /// becomes a placeholder with `info`, its local content and metadata
    /// discarded, unless it is in a local state `flags` do not allow
    /// ([`InstanceError::UpdateFailed`] with every such cause; nothing
    /// changes). A directory must be empty
    /// ([`InstanceError::DirectoryNotEmpty`]). An item that is not on disk
    /// (virtual) needs nothing: `Ok`. Either way the kernel forgets what it
    /// cached of the name and its directory's listing, so clients see the new
    /// view at their next access.
    fn update_file_if_needed(
        &self,
        _path: &Path,
        _info: &PlaceholderInfo,
        _flags: UpdateFlags,
    ) -> Result<(), InstanceError> {
        Err(InstanceError::InvalidRequest(
            "update_file_if_needed is not supported by this instance".into(),
        ))
    }

    /// ProjFS's DeleteFile: the local item at `path` is removed, under the
    /// same rules as [`InstanceApi::update_file_if_needed`], so the name is
    /// virtual again (shown if the provider still has it). `Ok` for a virtual
    /// item.
    fn delete_file(&self, _path: &Path, _flags: UpdateFlags) -> Result<(), InstanceError> {
        Err(InstanceError::InvalidRequest(
            "delete_file is not supported by this instance".into(),
        ))
    }

    /// ProjFS's MarkDirectoryAsPlaceholder inside a running root: the local
    /// directory at `path` becomes a placeholder directory with `version`, so
    /// its listings merge the provider's enumeration (of `path`) with what it
    /// holds. Already a placeholder: its version is replaced.
    fn mark_directory_as_placeholder(
        &self,
        _path: &Path,
        _version: &VersionInfo,
    ) -> Result<(), InstanceError> {
        Err(InstanceError::InvalidRequest(
            "mark_directory_as_placeholder is not supported by this instance".into(),
        ))
    }

    /// The items placed locally below the directory `path` (on disk or as
    /// placeholder records; tombstones included), sorted by name: what a
    /// provider walks, depth first, to apply a view change below a directory
    /// whose old content it no longer knows. An extension of ProjFS (whose
    /// providers keep such a list themselves).
    fn placed_children(&self, _path: &Path) -> Result<Vec<PlacedItem>, InstanceError> {
        Err(InstanceError::InvalidRequest(
            "placed_children is not supported by this instance".into(),
        ))
    }
}

/// An item placed locally, as [`InstanceApi::placed_children`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedItem {
    /// Its name in the directory.
    pub name: OsString,
    /// File, directory or symlink (a tombstone: the kind its record says).
    pub kind: FileKind,
    /// Its on-disk state.
    pub state: OnDiskState,
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

    /// See [`InstanceApi::update_file_if_needed`].
    pub fn update_file_if_needed(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
        flags: UpdateFlags,
    ) -> Result<(), InstanceError> {
        self.0.update_file_if_needed(path, info, flags)
    }

    /// See [`InstanceApi::delete_file`].
    pub fn delete_file(&self, path: &Path, flags: UpdateFlags) -> Result<(), InstanceError> {
        self.0.delete_file(path, flags)
    }

    /// See [`InstanceApi::mark_directory_as_placeholder`].
    pub fn mark_directory_as_placeholder(
        &self,
        path: &Path,
        version: &VersionInfo,
    ) -> Result<(), InstanceError> {
        self.0.mark_directory_as_placeholder(path, version)
    }

    /// See [`InstanceApi::placed_children`].
    pub fn placed_children(&self, path: &Path) -> Result<Vec<PlacedItem>, InstanceError> {
        self.0.placed_children(path)
    }

    /// Every item placed below the directory `dir` (not `dir` itself), as its
    /// path and what [`InstanceHandle::placed_children`] says of it, children
    /// before their directory (depth first, post-order): the order in which a
    /// provider deletes a subtree whose old content it no longer knows, so that
    /// each directory is empty of projected items when its turn comes. A
    /// snapshot: items placed while the caller works through it are not in it.
    pub fn placed_below(&self, dir: &Path) -> Result<Vec<(PathBuf, PlacedItem)>, InstanceError> {
        let mut out = Vec::new();
        self.collect_below(dir, &mut out)?;
        Ok(out)
    }

    fn collect_below(
        &self,
        dir: &Path,
        out: &mut Vec<(PathBuf, PlacedItem)>,
    ) -> Result<(), InstanceError> {
        for child in self.placed_children(dir)? {
            let path = dir.join(&child.name);
            if child.kind == FileKind::Directory && !child.state.contains(OnDiskState::TOMBSTONE) {
                self.collect_below(&path, out)?;
            }
            out.push((path, child));
        }
        Ok(())
    }
}

/// Convenience for providers: the last component of `cb.path` as an owned name.
pub fn file_name_of(path: &Path) -> OsString {
    path.file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default()
}
