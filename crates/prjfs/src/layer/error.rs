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
    /// Something other than a tombstone is already at the name (`EEXIST`).
    #[error("{path:?} already exists")]
    Exists {
        /// The name.
        path: PathBuf,
    },
    /// The directory still holds items other than tombstones (`ENOTEMPTY`).
    #[error("directory {path:?} is not empty")]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// The operation is not allowed, e.g. changing the layer's own xattrs
    /// (`EPERM`).
    #[error("{path:?}: {reason}")]
    Denied {
        /// The item.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A directory was needed (`ENOTDIR`): a parent on the path, or the
    /// destination of a directory's rename, is something else.
    #[error("{path:?} is not a directory")]
    NotADirectory {
        /// The item that is not a directory.
        path: PathBuf,
    },
    /// A non-directory was needed (`EISDIR`).
    #[error("{path:?} is a directory")]
    IsADirectory {
        /// The directory.
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
            LayerError::Exists { .. } => libc::EEXIST,
            LayerError::NotEmpty { .. } => libc::ENOTEMPTY,
            LayerError::Denied { .. } => libc::EPERM,
            LayerError::NotADirectory { .. } => libc::ENOTDIR,
            LayerError::IsADirectory { .. } => libc::EISDIR,
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

    /// Whether this is the system error `errno`.
    pub(crate) fn is_errno(&self, errno: i32) -> bool {
        matches!(self, LayerError::Io { source, .. } if source.raw_os_error() == Some(errno))
    }
}

/// Result of layer operations.
pub type Result<T> = std::result::Result<T, LayerError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table() {
        let p = || PathBuf::from("x");
        let cases = [
            (LayerError::Exists { path: p() }, libc::EEXIST),
            (LayerError::NotEmpty { path: p() }, libc::ENOTEMPTY),
            (
                LayerError::Denied {
                    path: p(),
                    reason: "no".into(),
                },
                libc::EPERM,
            ),
            (LayerError::NotFound { path: p() }, libc::ENOENT),
            (LayerError::NotADirectory { path: p() }, libc::ENOTDIR),
            (LayerError::IsADirectory { path: p() }, libc::EISDIR),
            (
                LayerError::InvalidState {
                    path: p(),
                    reason: "misuse".into(),
                },
                libc::EINVAL,
            ),
            (LayerError::InvalidArgument("bad".into()), libc::EINVAL),
            (
                LayerError::CorruptMeta {
                    path: p(),
                    reason: "crc".into(),
                },
                libc::EIO,
            ),
            (
                LayerError::io("renameat", "x", rustix::io::Errno::XDEV),
                libc::EXDEV,
            ),
            (
                LayerError::Io {
                    op: "read",
                    path: p(),
                    source: std::io::Error::other("no errno"),
                },
                libc::EIO,
            ),
        ];
        for (e, errno) in cases {
            assert_eq!(e.errno(), errno, "{e}");
        }
    }
}
