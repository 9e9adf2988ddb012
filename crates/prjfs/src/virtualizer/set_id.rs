//! Set-ID bits and file capabilities under `FUSE_HANDLE_KILLPRIV_V2`: the
//! kernel checks `security.capability` once per inode instead of at every
//! write, and leaves dropping the set-ID bits to the daemon (SEMANTICS.md,
//! "Set-ID bits and file capabilities").

use std::ffi::OsStr;

use super::{Errno, Inner};
use crate::layer::{Item, SetAttr};
use crate::types::{FileKind, OnDiskState};

/// Whether `mode` has the set-user-ID or set-group-ID bit. Such a file is
/// never opened with passthrough: its writes must reach the daemon.
pub(super) fn has_set_id(mode: u32) -> bool {
    mode & (libc::S_ISUID | libc::S_ISGID) != 0
}

impl Inner {
    /// What the kernel leaves to the daemon with `FUSE_HANDLE_KILLPRIV_V2`
    /// when a writer without `CAP_FSETID` writes, truncates or changes the owner
    /// of a regular file: clear its set-user-ID bit, its set-group-ID bit when
    /// group-execute is set (without it the bit is a locking mark, which stays),
    /// and its `security.capability`, as a local file system does. Answers the
    /// item as it now is; a directory or an item with none of these is left alone.
    pub(super) fn drop_set_id(&self, node: u64) -> Result<Item, Errno> {
        let (path, item) = self.node_item(node)?;
        if item.kind != FileKind::File {
            return Ok(item);
        }
        let mode = item.attr.mode & 0o7777;
        let mut clear = 0;
        if mode & libc::S_ISUID != 0 {
            clear |= libc::S_ISUID;
        }
        if mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0 {
            clear |= libc::S_ISGID;
        }
        if clear != 0 {
            let attr = SetAttr {
                mode: Some(mode & !clear),
                ..SetAttr::default()
            };
            self.layer.set_attr(&path, &attr).map_err(|e| e.errno())?;
        }
        // Only a client sets xattrs, and setting one makes a placeholder dirty:
        // a clean placeholder (hydrated or not) has no capability to drop.
        let client_xattrs = item.state.contains(OnDiskState::FULL)
            || item.state.contains(OnDiskState::DIRTY_PLACEHOLDER);
        if client_xattrs {
            match self
                .layer
                .remove_xattr(&path, OsStr::new("security.capability"))
            {
                Ok(()) => {}
                Err(e) if matches!(e.errno(), libc::ENODATA | libc::EOPNOTSUPP) => {}
                Err(e) => return Err(e.errno()),
            }
        }
        if clear == 0 && !client_xattrs {
            return Ok(item);
        }
        if clear != 0 {
            // Changed behind the kernel's back (the request that asked caches
            // no mode of its own): its cached mode goes.
            self.file_changed(node);
        }
        self.item(&path)
    }

    /// [`Inner::drop_set_id`] of `node` when `drop` (a write by a writer
    /// without `CAP_FSETID`). A node whose last name went (still open) has
    /// nothing to look up; its bits stay.
    pub(super) fn dropping_set_id(&self, drop: bool, node: u64) -> Result<(), Errno> {
        if !drop {
            return Ok(());
        }
        match self.drop_set_id(node) {
            Ok(_) | Err(libc::ESTALE | libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
