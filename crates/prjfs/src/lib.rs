//! prjfs: the ProjFS provider model on Linux.
//!
//! A [`Provider`] owns a backing store; a virtualization instance projects it into a
//! directory (the *root*). Names become placeholders on disk when a client first
//! reaches them, content is hydrated on first read, local changes stay local.
//!
//! Core types: [`Provider`] (the callbacks), [`CallbackData`], [`InstanceHandle`]
//! (how a provider answers: write placeholders and data, complete pended commands),
//! [`DirEntryBuffer`] (enumeration results), and the name rules in [`names`].
//! [`AsyncProvider`] is the `async fn` form of the callbacks; [`AsyncAdapter`] runs it
//! as a [`Provider`] on a tokio runtime (pending every callback, cancel = drop).
#![deny(missing_docs)]

pub mod async_provider;
pub mod cancel;
pub mod command;
pub mod enumeration;
pub mod fuse_fs;
pub mod instance;
mod io_modes;
pub mod layer;
pub mod names;
pub mod provider;
pub mod scheduler;
pub mod types;
pub mod virtualizer;

pub use async_provider::{AsyncAdapter, AsyncProvider, FileDataWriter, Placeholder};
pub use enumeration::{DirEntryBuffer, EnumerationSession};
pub use instance::{instance_mounts, unmount, StartError, StartOptions, VirtualizationInstance};
pub use layer::RootMarker;
pub use provider::{
    CallbackData, CallbackFlags, CallbackResult, CommandId, Completion, EnumerationId, Extended,
    InstanceApi, InstanceError, InstanceHandle, NotificationKind, Outcome, Provider, ProviderError,
};
pub use types::{
    Collation, DirEntry, FileBasicInfo, FileKind, OnDiskState, PlaceholderInfo, VersionInfo,
};
