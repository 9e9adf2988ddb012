//! Provider-driven changes (ProjFS's UpdateFileIfNeeded, DeleteFile and
//! MarkDirectoryAsPlaceholder): the store moved on, and what the root holds
//! locally must follow unless the user changed it.
//!
//! Invariants:
//! * Nothing the user changed is discarded unless the caller's [`UpdateFlags`]
//!   name that state: a dirty placeholder, a full item, a tombstone, a read-only
//!   item. Plain and hydrated placeholders need no flag (their content is the
//!   store's, and can be fetched again).
//! * A refusal changes nothing and reports every state that was not allowed.
//! * A directory is changed only when empty: no item on disk (tombstones
//!   included) and no placeholder record below it. The provider works depth
//!   first.
//! * Crash safety: the old item is removed first and the new placeholder
//!   written after. A crash in between leaves nothing at the name, which the
//!   provider projects again at the next lookup, with the new view.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::meta::Record;
use super::{path, Item, Layer, HIDDEN_DIR};
use crate::types::{
    FileKind, OnDiskState, PlaceholderInfo, UpdateFailure, UpdateFlags, VersionInfo,
};

/// What a provider-driven change did to the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Nothing local at the name (the item is virtual): the next lookup or
    /// listing asks the provider, which answers with its new view.
    Virtual,
    /// The placeholder already has that ContentId: nothing to do.
    Unchanged,
    /// The local item was replaced by a placeholder with the new info.
    Replaced,
    /// The local item was removed: the name is virtual again.
    Removed,
    /// Refused: the item is in local states the flags did not allow.
    Refused(UpdateFailure),
}

/// The causes that stop a change of `item` under `flags`.
pub fn refusal(item: &Item, flags: UpdateFlags) -> UpdateFailure {
    let s = item.state;
    let mut causes = 0;
    if s.contains(OnDiskState::TOMBSTONE) {
        if !flags.contains(UpdateFlags::ALLOW_TOMBSTONE) {
            causes |= UpdateFailure::TOMBSTONE.0;
        }
        return UpdateFailure(causes);
    }
    if s.contains(OnDiskState::FULL) && !flags.contains(UpdateFlags::ALLOW_DIRTY_DATA) {
        causes |= UpdateFailure::DIRTY_DATA.0;
    }
    if s.contains(OnDiskState::DIRTY_PLACEHOLDER)
        && !flags.contains(UpdateFlags::ALLOW_DIRTY_METADATA)
    {
        causes |= UpdateFailure::DIRTY_METADATA.0;
    }
    // Read-only as Windows means it: no write permission for anyone. A
    // directory's bits say who may change its entries, not the item itself.
    if item.kind == FileKind::File
        && item.attr.mode & 0o222 == 0
        && !flags.contains(UpdateFlags::ALLOW_READ_ONLY)
    {
        causes |= UpdateFailure::READ_ONLY.0;
    }
    UpdateFailure(causes)
}

impl Layer {
    /// ProjFS's UpdateFileIfNeeded for the item at `rel`: unless it is a
    /// placeholder that already has `info`'s ContentId (non-empty), it becomes a
    /// placeholder with `info`, its local content and metadata discarded, as far
    /// as `flags` allow.
    pub fn update_item(
        &self,
        rel: &Path,
        info: &PlaceholderInfo,
        flags: UpdateFlags,
    ) -> Result<UpdateOutcome> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            return Err(LayerError::InvalidArgument(
                "the root cannot be updated; mark it instead".into(),
            ));
        }
        {
            let _guard = self.lock();
            let Some(item) = self.lookup(rel)? else {
                return Ok(UpdateOutcome::Virtual);
            };
            let causes = refusal(&item, flags);
            if causes.0 != 0 {
                return Ok(UpdateOutcome::Refused(causes));
            }
            let same_content = item.state.contains(OnDiskState::PLACEHOLDER)
                && !item.state.contains(OnDiskState::TOMBSTONE)
                && item.kind == info.basic.kind
                && !info.version.content_id.is_empty()
                && item.version.as_ref().map(|v| &v.content_id) == Some(&info.version.content_id);
            if same_content {
                return Ok(UpdateOutcome::Unchanged);
            }
            self.remove_for_update(rel, &comps, &item)?;
        }
        // Written without the lock: a placeholder already at the name (a client
        // created one meanwhile) is left alone, as `write_placeholder` does.
        self.write_placeholder(rel, info)?;
        Ok(UpdateOutcome::Replaced)
    }

    /// ProjFS's DeleteFile for the item at `rel`: removed as far as `flags`
    /// allow, so the name is virtual again (the provider's view decides whether
    /// it shows).
    pub fn delete_item(&self, rel: &Path, flags: UpdateFlags) -> Result<UpdateOutcome> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            return Err(LayerError::InvalidArgument(
                "the root cannot be deleted".into(),
            ));
        }
        let _guard = self.lock();
        let Some(item) = self.lookup(rel)? else {
            return Ok(UpdateOutcome::Virtual);
        };
        let causes = refusal(&item, flags);
        if causes.0 != 0 {
            return Ok(UpdateOutcome::Refused(causes));
        }
        self.remove_for_update(rel, &comps, &item)?;
        Ok(UpdateOutcome::Removed)
    }

    /// Remove `item` at `rel` for a provider-driven change: a record, a file, a
    /// symlink, a tombstone, or an empty directory ([`LayerError::NotEmpty`]
    /// otherwise). The caller holds the lock.
    fn remove_for_update(&self, rel: &Path, comps: &[&OsStr], item: &Item) -> Result<()> {
        self.vstore.settle();
        let loc = self.locate_existing_parent(rel, comps)?;
        let dir = loc.dir(self.root.as_fd());
        let st = match rustix::fs::statat(dir, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // A placeholder file kept as a record only.
            Err(Errno::NOENT) => {
                self.vstore.remove(rel);
                return Ok(());
            }
            Err(e) => return Err(LayerError::io("statat", rel, e)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory
            && !item.state.contains(OnDiskState::TOMBSTONE);
        if is_dir {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, &loc.name, flags, Mode::empty())
                .map_err(|e| LayerError::io("opendir", rel, e))?;
            if self.has_any_child(fd.as_fd(), rel)? {
                return Err(LayerError::NotEmpty {
                    path: rel.to_path_buf(),
                });
            }
            rustix::fs::unlinkat(dir, &loc.name, AtFlags::REMOVEDIR)
                .map_err(|e| LayerError::io("rmdir", rel, e))?;
            self.dirs.moved();
        } else {
            rustix::fs::unlinkat(dir, &loc.name, AtFlags::empty())
                .map_err(|e| LayerError::io("unlinkat", rel, e))?;
        }
        // A record left behind by a materialization in progress would bring
        // the old placeholder back.
        self.vstore.remove(rel);
        Ok(())
    }

    /// Whether the directory `fd` (at `rel`) holds anything: an on-disk entry
    /// (tombstones included) or a placeholder record.
    fn has_any_child(&self, fd: BorrowedFd<'_>, rel: &Path) -> Result<bool> {
        if self.vstore.has_children(rel) {
            return Ok(true);
        }
        let at_root = rel.as_os_str().is_empty();
        let mut entries =
            rustix::fs::Dir::read_from(fd).map_err(|e| LayerError::io("opendir", rel, e))?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(|e| LayerError::io("readdir", rel, e))?;
            let bytes = entry.file_name().to_bytes();
            if bytes == b"." || bytes == b".." || (at_root && bytes == HIDDEN_DIR.as_bytes()) {
                continue;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// The names placed below the directory `rel` (on disk, tombstones
    /// included, or as placeholder records), with their state: what a provider
    /// walks depth first to apply a view change under a directory it no longer
    /// knows the contents of. Sorted by name.
    pub fn placed_children(&self, rel: &Path) -> Result<Vec<(std::ffi::OsString, Item)>> {
        let mut out: Vec<(std::ffi::OsString, Item)> = Vec::new();
        let comps = path::components(rel)?;
        let fd = if comps.is_empty() {
            rustix::fs::openat(
                &self.root,
                c".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| LayerError::io("opendir", rel, e))?
        } else {
            let Some(loc) = self.locate(rel, &comps)? else {
                return Ok(out);
            };
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(loc.dir(self.root.as_fd()), &loc.name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(out),
                Err(e) => return Err(LayerError::io("opendir", rel, e)),
            }
        };
        let at_root = comps.is_empty();
        let mut entries =
            rustix::fs::Dir::read_from(&fd).map_err(|e| LayerError::io("opendir", rel, e))?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(|e| LayerError::io("readdir", rel, e))?;
            let bytes = entry.file_name().to_bytes();
            if bytes == b"." || bytes == b".." || (at_root && bytes == HIDDEN_DIR.as_bytes()) {
                continue;
            }
            let name = OsStr::from_bytes(bytes).to_os_string();
            if let Some(item) = self.lookup(&rel.join(&name))? {
                out.push((name, item));
            }
        }
        for (name, _) in self.vstore.children(rel) {
            if out.iter().all(|(n, _)| *n != name) {
                if let Some(item) = self.lookup(&rel.join(&name))? {
                    out.push((name, item));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// ProjFS's MarkDirectoryAsPlaceholder for a directory inside the root: the
    /// directory at `rel` (created locally, or a placeholder already) becomes a
    /// placeholder directory with `version`, so its listings merge the
    /// provider's enumeration of `rel` again. What it holds stays as it is.
    #[allow(clippy::unnecessary_cast)]
    pub fn mark_dir_placeholder(&self, rel: &Path, version: &VersionInfo) -> Result<()> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            return Err(LayerError::InvalidArgument(
                "the root is marked when the instance starts".into(),
            ));
        }
        let _guard = self.lock();
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let st = match rustix::fs::statat(dir, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                return Err(LayerError::NotFound {
                    path: rel.to_path_buf(),
                })
            }
            Err(e) => return Err(LayerError::io("statat", rel, e)),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(LayerError::NotADirectory {
                path: rel.to_path_buf(),
            });
        }
        let old = self.read_record(dir, &loc.name, rel)?;
        let record = match old {
            Some(mut rec) if rec.state.contains(OnDiskState::PLACEHOLDER) => {
                rec.version = version.clone();
                rec
            }
            _ => Record {
                state: OnDiskState::PLACEHOLDER | OnDiskState::DIRTY_PLACEHOLDER,
                kind: FileKind::Directory,
                size: 0,
                mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
                atime: (st.st_atime as i64, st.st_atime_nsec as u32),
                version: version.clone(),
                origin: Some(rel.to_path_buf()),
                listed: false,
            },
        };
        self.xattrs
            .set(dir, &loc.name, &self.meta_name, &record.encode_at(rel))
            .map_err(|e| LayerError::io("setxattrat", rel, e))
    }
}
