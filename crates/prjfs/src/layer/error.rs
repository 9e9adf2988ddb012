//! The layer's error type and its one errno table.

use std::path::PathBuf;

/// Errors of the on-disk layer. [`LayerError::errno`] maps each to the errno a
/// client of the mount sees.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The path is absolute, has a `..` component, or names the hidden directory.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: PathBuf,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An item's metadata record (or the root marker) failed its checks.
    #[error("corrupt prjfs metadata on {path:?}: {reason}")]
    CorruptMeta {
        /// The item carrying the record (empty: the root).
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// `finish_hydration` was called before `[0, size)` was written.
    #[error("hydration of {path:?} is incomplete: bytes [{missing_start}, {missing_end}) of {size} were not written")]
    IncompleteData {
        /// The placeholder being hydrated.
        path: PathBuf,
        /// The placeholder's size.
        size: u64,
        /// Start of the first range that was not written.
        missing_start: u64,
        /// End of that range.
        missing_end: u64,
    },
    /// The item is not in the state the operation needs (e.g. hydrating an item
    /// that is not a non-hydrated placeholder file).
    #[error("{path:?} is in the wrong state: {reason}")]
    InvalidState {
        /// The item.
        path: PathBuf,
        /// What was expected.
        reason: String,
    },
    /// The item (or its parent) is not on disk.
    #[error("{path:?} does not exist in the layer")]
    NotFound {
        /// The missing item.
        path: PathBuf,
    },
    /// An argument is out of range (e.g. a version id longer than 128 bytes).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A system call failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// The operation (e.g. `"renameat"`).
        op: &'static str,
        /// The item concerned (relative to the root; may name a temp file).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl LayerError {
    /// The errno a client sees for this error.
    pub fn errno(&self) -> i32 {
        match self {
            LayerError::InvalidPath { .. } => libc::EINVAL,
            LayerError::CorruptMeta { .. } => libc::EIO,
            LayerError::IncompleteData { .. } => libc::EIO,
            LayerError::InvalidState { .. } => libc::EINVAL,
            LayerError::NotFound { .. } => libc::ENOENT,
            LayerError::InvalidArgument(_) => libc::EINVAL,
            LayerError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// An [`LayerError::Io`] from a rustix errno.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: rustix::io::Errno) -> Self {
        LayerError::Io {
            op,
            path: path.into(),
            source: e.into(),
        }
    }
}

/// Result of layer operations.
pub type Result<T> = std::result::Result<T, LayerError>;
