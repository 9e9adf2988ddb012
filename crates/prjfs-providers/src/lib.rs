//! Built-in prjfs providers.
//!
//! * [`dir`]: [`DirProvider`] projects a source directory, answering inline
//!   ([`DirMode::Sync`]) or pended on a tokio runtime ([`DirMode::Async`]), with a
//!   configurable store latency and per-callback counters.
//! * [`archive`]: [`ArchiveProvider`] projects the members of a tar, tar.gz,
//!   tar.zst or zip file, with an index of members and resume points kept
//!   beside the root's metadata.
//! * [`git`]: [`git::GitProvider`] projects a revision of a local repository.
//! * [`s3`]: [`s3::S3Provider`] projects an S3-compatible bucket (or a prefix).
//! * [`testing`]: providers the library's tests use (never completing, slow,
//!   misbehaving, panicking) over an in-memory tree. The test kit for providers
//!   (mock instance, callback data builder, enumeration driver) is
//!   [`prjfs::testing`].
#![deny(missing_docs)]

mod applied;
pub mod archive;
pub mod dir;
pub mod git;
pub mod readahead;
pub mod s3;
pub mod testing;

pub use archive::{ArchiveError, ArchiveProvider};
pub use dir::{CallbackCounts, DirMode, DirOptions, DirProvider};
