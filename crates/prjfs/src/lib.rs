//! prjfs: the ProjFS provider model on Linux.
//!
//! A [`Provider`] owns a backing store; a [`VirtualizationInstance`] projects it
//! into a directory (the *root*), mounted with FUSE. Names become placeholders on
//! disk when a client first reaches them, content is fetched (hydrated) on first
//! read, local changes stay local. Callbacks may answer inline or return
//! [`Outcome::Pending`] and complete later from any thread; a client that gives
//! up (Ctrl-C, kill) is released at once and the provider hears
//! [`Provider::cancel_command`].
//!
//! # Core types
//!
//! * [`Provider`]: the callbacks, with the contract and when each is invoked on
//!   Linux; [`AsyncProvider`] is the `async fn` form, run by [`AsyncAdapter`].
//! * [`CallbackData`]: what a callback knows (path, command id, flags,
//!   collation, the [`InstanceHandle`] to answer through).
//! * [`InstanceHandle`]: write placeholders and file data, complete pended
//!   commands.
//! * [`enumeration::Enumerations`]: enumeration sessions for a provider that can
//!   list a directory; [`DirEntryBuffer`] is what listings are written into.
//! * [`VirtualizationInstance`]: start on a root ([`StartOptions`]), serve
//!   ([`VirtualizationInstance::run_until_signal`] or
//!   [`VirtualizationInstance::wait`]), stop.
//! * [`testing`]: a mock instance, a [`CallbackData`] builder and an
//!   enumeration driver, to test a provider without a mount.
//! * [`names`]: wildcard matching, collation and name validity; [`logging`]:
//!   what the library logs.
//!
//! # Example
//!
//! A provider serving one file, `hello.txt`, until SIGINT or SIGTERM
//! (`examples/memfs.rs` is a fuller one, with pended and cancelled commands;
//! `examples/async_memfs.rs` the `async fn` form):
//!
//! ```no_run
//! use std::ffi::OsStr;
//! use std::sync::Arc;
//!
//! use prjfs::enumeration::Enumerations;
//! use prjfs::{
//!     CallbackData, CallbackResult, DirEntry, DirEntryBuffer, EnumerationId, FileBasicInfo,
//!     Outcome, PlaceholderInfo, Provider, ProviderError, StartOptions, VersionInfo,
//!     VirtualizationInstance,
//! };
//!
//! const HELLO: &[u8] = b"hello, world\n";
//!
//! struct Hello {
//!     enumerations: Enumerations,
//! }
//!
//! impl Hello {
//!     fn entries(&self, dir: &std::path::Path) -> Result<Vec<DirEntry>, ProviderError> {
//!         if !dir.as_os_str().is_empty() {
//!             return Err(ProviderError::NotFound);
//!         }
//!         let basic = FileBasicInfo::file(HELLO.len() as u64);
//!         Ok(vec![DirEntry { name: "hello.txt".into(), basic, symlink_target: None, version: None }])
//!     }
//! }
//!
//! impl Provider for Hello {
//!     fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
//!         self.enumerations.start(cb, id, self.entries(&cb.path)?)
//!     }
//!
//!     fn get_directory_enumeration(
//!         &self,
//!         cb: &CallbackData,
//!         id: EnumerationId,
//!         search_expression: Option<&OsStr>,
//!         buffer: &DirEntryBuffer,
//!     ) -> CallbackResult {
//!         self.enumerations.get(cb, id, search_expression, buffer)
//!     }
//!
//!     fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
//!         self.enumerations.end(id)
//!     }
//!
//!     fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
//!         if cb.path.as_os_str() != "hello.txt" {
//!             return Err(ProviderError::NotFound);
//!         }
//!         let info = PlaceholderInfo {
//!             basic: FileBasicInfo::file(HELLO.len() as u64),
//!             version: VersionInfo { provider_id: b"hello".to_vec(), content_id: b"1".to_vec() },
//!             symlink_target: None,
//!         };
//!         cb.instance.write_placeholder_info(&cb.path, &info)?;
//!         Ok(Outcome::Done)
//!     }
//!
//!     fn get_file_data(&self, cb: &CallbackData, _offset: u64, _length: u64) -> CallbackResult {
//!         // Always asked for the whole file; writing all of it is always right.
//!         cb.instance.write_file_data(cb.data_stream_id, 0, HELLO)?;
//!         Ok(Outcome::Done)
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let root = std::env::args().nth(1).ok_or("usage: hello ROOT")?;
//!     let provider = Arc::new(Hello { enumerations: Enumerations::new() });
//!     // An empty directory, or a root this provider used before.
//!     let instance = VirtualizationInstance::start(root.as_ref(), provider, StartOptions::default())?;
//!     instance.run_until_signal()?; // unmounts on SIGINT, SIGTERM or SIGHUP
//!     Ok(())
//! }
//! ```
//!
//! The rules a client observes (which operation calls which callback, the
//! on-disk states, what a slow, failing or absent provider means, the errno
//! table) are in `SEMANTICS.md` at the repository's root.
#![deny(missing_docs)]

pub mod async_provider;
pub mod enumeration;
mod instance;
pub mod logging;
pub mod names;
pub mod notifications;
pub mod provider;
mod signals;
pub mod testing;
pub mod types;

// The machinery behind an instance. Public only for the prjfs command and the
// workspace's tests, which inspect it; not part of the provider model, not
// documented, and free to change.
#[doc(hidden)]
pub mod cancel;
#[doc(hidden)]
pub mod command;
#[doc(hidden)]
pub mod fuse_fs;
mod io_modes;
#[doc(hidden)]
pub mod layer;
#[doc(hidden)]
pub mod scheduler;
#[doc(hidden)]
pub mod virtualizer;

pub use async_provider::{AsyncAdapter, AsyncProvider, FileDataWriter, Placeholder};
pub use command::{CallbackKind, CommandStats};
pub use enumeration::{DirEntryBuffer, EnumerationSession, Enumerations};
pub use fuse_fs::OpenStats;
pub use instance::{
    block_stop_signals, instance_mounts, unmount, StartError, StartOptions, StopReason,
    VirtualizationInstance, FS_TYPE,
};
pub use layer::RootMarker;
pub use notifications::{Notification, NotificationMapping};
pub use provider::{
    CallbackData, CallbackFlags, CallbackResult, CommandId, Completion, EnumerationId, Extended,
    InstanceApi, InstanceError, InstanceHandle, NotificationKind, Outcome, PlacedItem, Provider,
    ProviderError,
};
pub use types::{
    Collation, DirEntry, FileBasicInfo, FileKind, OnDiskState, PlaceholderInfo, RangedHydration,
    UpdateFailure, UpdateFlags, VersionInfo,
};
pub use virtualizer::VirtualizerStats;
