//! Notifications (ProjFS `PRJ_NOTIFICATION`): the masks and mappings that
//! select what a provider hears, and the [`Notification`] it is handed.
//!
//! # Which Linux operation raises which kind
//!
//! | Client operation (FUSE request) | Kinds, in order | Client waits | Veto |
//! |---|---|---|---|
//! | `open` of an existing file (OPEN) | `FileOpened` after the handle exists | yes | yes: `EPERM`, no handle |
//! | `open(O_TRUNC)` of an existing file | [`FilePreConvertToFull`] if a placeholder, then `FileOverwritten` | yes | pre-convert only |
//! | `creat`/`open(O_CREAT)` of a new name, `mkdir`, `symlink`, `mknod` | `NewFileCreated` after it exists | yes | no |
//! | first `write`/`fallocate` through a handle on a placeholder, `truncate` of one, `link` of one | [`FilePreConvertToFull`] before anything changes (once per file while its handles are open) | yes | yes |
//! | `unlink`, `rmdir` | `PreDelete`; then `FileHandleClosedFileDeleted` at once when the item has no open handle | yes | `PreDelete` |
//! | `rename` | `PreRename`, then `FileRenamed` (both with the destination) | yes | `PreRename` |
//! | `link` | `PreSetHardlink`, then `HardlinkCreated` (both with the destination) | yes | `PreSetHardlink` |
//! | last `close` of a handle (RELEASE) | `FileHandleClosedFileModified` if written through it, else `FileHandleClosedNoModification`; `FileHandleClosedFileDeleted` instead for the last handle of an item deleted while open | no (RELEASE is asynchronous) | no |
//!
//! [`FilePreConvertToFull`]: NotificationKind::FilePreConvertToFull
//!
//! Rules:
//! * The mask of a path is that of the deepest mapping whose root contains it
//!   (component-wise); with mappings but none containing the path, nothing; with
//!   an empty mapping list, [`DEFAULT_MASK`]. A mask with [`SUPPRESS_NOTIFICATIONS`]
//!   silences its subtree. Rename and link notifications follow the source path's mask.
//! * A new mask set by a reply to `FileOpened`, `NewFileCreated`,
//!   `FileOverwritten` or `FileRenamed` replaces the mapping's for every
//!   notification about that item until all its handles close.
//! * Close notifications carry the pid and process name of the process that
//!   opened the handle (RELEASE carries none).
//! * Requests of the process hosting the instance raise nothing, and no
//!   notification is raised when the instance has no mappings at all
//!   (`StartOptions::notification_mappings` is `None`, the default).
//! * Directory handles (`opendir`) raise none: a directory is opened on Linux
//!   only to list it.
//! * Inside one mount a rename or link never reaches outside the root, so
//!   `destination` is never empty for them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::provider::NotificationKind;

/// Mask bit that silences a subtree (`PRJ_NOTIFY_SUPPRESS_NOTIFICATIONS`).
pub const SUPPRESS_NOTIFICATIONS: u32 = 0x1;

/// The mask everywhere when a provider gives no mapping: opened, created,
/// overwritten.
pub const DEFAULT_MASK: u32 = NotificationKind::FileOpened as u32
    | NotificationKind::NewFileCreated as u32
    | NotificationKind::FileOverwritten as u32;

/// Every kind's bit.
pub const ALL_KINDS: u32 = 0x1ffe;

/// The close kinds: a handle whose mask has one of them is served by the
/// daemon when opened for writing, so that its writes are seen.
pub(crate) const CLOSE_KINDS: u32 = NotificationKind::FileHandleClosedNoModification as u32
    | NotificationKind::FileHandleClosedFileModified as u32
    | NotificationKind::FileHandleClosedFileDeleted as u32;

/// One mapping (`PRJ_NOTIFICATION_MAPPING`): `mask` for `root` and below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationMapping {
    /// Kinds' bits, possibly with [`SUPPRESS_NOTIFICATIONS`].
    pub mask: u32,
    /// Relative to the virtualization root; empty for the whole root.
    pub root: PathBuf,
}

impl NotificationMapping {
    /// A mapping of `mask` for `root`.
    pub fn new(mask: u32, root: impl Into<PathBuf>) -> Self {
        Self {
            mask,
            root: root.into(),
        }
    }
}

impl NotificationKind {
    /// Every kind, in value order.
    pub const ALL: [NotificationKind; 12] = [
        NotificationKind::FileOpened,
        NotificationKind::NewFileCreated,
        NotificationKind::FileOverwritten,
        NotificationKind::PreDelete,
        NotificationKind::PreRename,
        NotificationKind::PreSetHardlink,
        NotificationKind::FileRenamed,
        NotificationKind::HardlinkCreated,
        NotificationKind::FileHandleClosedNoModification,
        NotificationKind::FileHandleClosedFileModified,
        NotificationKind::FileHandleClosedFileDeleted,
        NotificationKind::FilePreConvertToFull,
    ];

    /// Its bit in a mask.
    pub fn bit(self) -> u32 {
        self as u32
    }

    /// A stable snake_case name (`file_opened`, …), as `prjfs` prints it.
    pub fn name(self) -> &'static str {
        match self {
            NotificationKind::FileOpened => "file_opened",
            NotificationKind::NewFileCreated => "new_file_created",
            NotificationKind::FileOverwritten => "file_overwritten",
            NotificationKind::PreDelete => "pre_delete",
            NotificationKind::PreRename => "pre_rename",
            NotificationKind::PreSetHardlink => "pre_set_hardlink",
            NotificationKind::FileRenamed => "file_renamed",
            NotificationKind::HardlinkCreated => "hardlink_created",
            NotificationKind::FileHandleClosedNoModification => {
                "file_handle_closed_no_modification"
            }
            NotificationKind::FileHandleClosedFileModified => "file_handle_closed_file_modified",
            NotificationKind::FileHandleClosedFileDeleted => "file_handle_closed_file_deleted",
            NotificationKind::FilePreConvertToFull => "file_pre_convert_to_full",
        }
    }

    /// The kind named `name` ([`NotificationKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether an error answer vetoes the operation (the client gets `EPERM`).
    pub fn is_vetoable(self) -> bool {
        matches!(
            self,
            NotificationKind::FileOpened
                | NotificationKind::PreDelete
                | NotificationKind::PreRename
                | NotificationKind::PreSetHardlink
                | NotificationKind::FilePreConvertToFull
        )
    }

    /// Whether a reply may set a new mask for the item's handles.
    pub fn may_set_mask(self) -> bool {
        matches!(
            self,
            NotificationKind::FileOpened
                | NotificationKind::NewFileCreated
                | NotificationKind::FileOverwritten
                | NotificationKind::FileRenamed
        )
    }

    pub(crate) fn index(self) -> usize {
        self.bit().trailing_zeros() as usize - 1
    }
}

/// What a provider is told with [`crate::Provider::notification`]
/// (ProjFS's `isDirectory`, `notification`, `destinationFileName` and
/// `PRJ_NOTIFICATION_PARAMETERS`). Cheap to clone; clones share the new-mask slot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Notification {
    /// What happened or is about to.
    pub kind: NotificationKind,
    /// The item is a directory.
    pub is_directory: bool,
    /// For rename and link kinds, the new path relative to the root (empty when
    /// outside the root); `None` for the other kinds.
    pub destination: Option<PathBuf>,
    /// `FileHandleClosedFileDeleted`: the item was written through one of its
    /// handles. False for the other kinds.
    pub file_modified: bool,
    new_mask: Arc<AtomicU32>,
}

impl Notification {
    /// A notification (the library builds them; tests of providers too).
    pub fn new(kind: NotificationKind, is_directory: bool) -> Self {
        Self {
            kind,
            is_directory,
            destination: None,
            file_modified: false,
            new_mask: Arc::new(AtomicU32::new(0)),
        }
    }

    /// With a destination path.
    pub fn with_destination(mut self, destination: impl Into<PathBuf>) -> Self {
        self.destination = Some(destination.into());
        self
    }

    /// With the "modified" flag of a close of a deleted item.
    pub fn with_file_modified(mut self, modified: bool) -> Self {
        self.file_modified = modified;
        self
    }

    /// Answering `Done` to a kind that allows it ([`NotificationKind::may_set_mask`]):
    /// use `mask` for this item's notifications until all its handles close
    /// (0 keeps the current mask).
    pub fn set_new_mask(&self, mask: u32) {
        self.new_mask.store(mask, Ordering::SeqCst);
    }

    /// The mask set with [`Notification::set_new_mask`] (0: none).
    pub fn new_mask(&self) -> u32 {
        self.new_mask.load(Ordering::SeqCst)
    }
}

/// Mappings in effect for one instance: masks by subtree, deepest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mappings {
    /// Sorted by depth, deepest first.
    by_depth: Vec<NotificationMapping>,
}

impl Mappings {
    pub(crate) fn new(mappings: &[NotificationMapping]) -> Self {
        if mappings.is_empty() {
            return Self {
                by_depth: vec![NotificationMapping::new(DEFAULT_MASK, "")],
            };
        }
        let mut by_depth = mappings.to_vec();
        by_depth.sort_by_key(|m| std::cmp::Reverse(m.root.components().count()));
        Self { by_depth }
    }

    /// The mask of `path` (relative to the root): the deepest mapping
    /// containing it, 0 when none does.
    pub(crate) fn mask_of(&self, path: &Path) -> u32 {
        self.by_depth
            .iter()
            .find(|m| path.starts_with(&m.root))
            .map_or(0, |m| m.mask)
    }
}

/// Whether `mask` selects `kind`.
pub(crate) fn selects(mask: u32, kind: NotificationKind) -> bool {
    mask & SUPPRESS_NOTIFICATIONS == 0 && mask & kind.bit() != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepest_mapping_wins_and_suppress_silences() {
        let m = Mappings::new(&[
            NotificationMapping::new(ALL_KINDS, ""),
            NotificationMapping::new(SUPPRESS_NOTIFICATIONS, "quiet"),
            NotificationMapping::new(NotificationKind::PreDelete.bit(), "quiet/loud"),
        ]);
        assert_eq!(m.mask_of(Path::new("a")), ALL_KINDS);
        assert_eq!(m.mask_of(Path::new("")), ALL_KINDS);
        assert!(!selects(
            m.mask_of(Path::new("quiet/x")),
            NotificationKind::PreDelete
        ));
        assert!(selects(
            m.mask_of(Path::new("quiet/loud/x")),
            NotificationKind::PreDelete
        ));
        assert!(!selects(
            m.mask_of(Path::new("quiet/loud/x")),
            NotificationKind::FileOpened
        ));
        // Component-wise: "quieter" is not under "quiet".
        assert_eq!(m.mask_of(Path::new("quieter")), ALL_KINDS);
    }

    #[test]
    fn no_mappings_means_the_default_mask_and_unmapped_paths_nothing() {
        let m = Mappings::new(&[]);
        assert_eq!(m.mask_of(Path::new("x/y")), DEFAULT_MASK);
        let m = Mappings::new(&[NotificationMapping::new(ALL_KINDS, "only")]);
        assert_eq!(m.mask_of(Path::new("other")), 0);
        assert_eq!(m.mask_of(Path::new("only/a")), ALL_KINDS);
    }

    #[test]
    fn names_round_trip_and_indexes_are_dense() {
        for (i, k) in NotificationKind::ALL.into_iter().enumerate() {
            assert_eq!(NotificationKind::from_name(k.name()), Some(k));
            assert_eq!(k.index(), i);
        }
    }
}
