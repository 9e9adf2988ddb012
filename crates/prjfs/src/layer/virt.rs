//! Placeholder files kept as records ([`super::vstore`]) rather than on-disk
//! items: how they show as items, enter listings, and get an on-disk item
//! (*materialize*) the moment anything but a read touches them.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::RenameFlags;

use super::error::{LayerError, Result};
use super::meta::Record;
use super::vstore::VRec;
use super::{path, Attr, Item, Layer};
use crate::types::{FileBasicInfo, FileKind, OnDiskState, PlaceholderInfo, VersionInfo};

/// A file of a listing for [`Layer::put_listed`]: its name, metadata and
/// the version the listing gave, if any.
pub type ListedEntry = (
    std::sync::Arc<std::ffi::OsStr>,
    FileBasicInfo,
    Option<Box<VersionInfo>>,
);

/// The item a record shows: a placeholder file with its projected attributes.
/// Its inode number is set by the virtualizer from the origin, like every
/// placeholder's; ctime is the projected mtime.
pub(super) fn item(rel: &Path, rec: &VRec) -> Item {
    Item {
        kind: FileKind::File,
        attr: attr(rec),
        state: OnDiskState::PLACEHOLDER,
        version: rec.version.as_deref().cloned(),
        origin: Some(
            rec.origin
                .as_deref()
                .map_or_else(|| rel.to_path_buf(), |p| p.to_path_buf()),
        ),
    }
}

/// The attributes a record shows (inode number 0: the caller's to set).
pub(super) fn attr(rec: &VRec) -> Attr {
    Attr {
        ino: 0,
        size: rec.size,
        blocks: rec.size.div_ceil(512),
        atime: rec.atime,
        mtime: rec.mtime,
        ctime: rec.mtime,
        mode: libc::S_IFREG | u32::from(rec.perm),
        nlink: 1,
        uid: rec.uid,
        gid: rec.gid,
        rdev: 0,
        blksize: 4096,
    }
}

/// The on-disk record of a materialized [`VRec`] at `rel`.
pub(super) fn record(rel: &Path, rec: &VRec) -> Record {
    Record {
        state: OnDiskState::PLACEHOLDER,
        kind: FileKind::File,
        size: rec.size,
        mtime: rec.mtime,
        atime: rec.atime,
        version: rec.version.as_deref().cloned().unwrap_or_default(),
        origin: Some(
            rec.origin
                .as_deref()
                .map_or_else(|| rel.to_path_buf(), |p| p.to_path_buf()),
        ),
        listed: rec.version.is_none(),
    }
}

impl Layer {
    /// Whether a replayed record at `rel` still stands: its directory is on disk
    /// and projected (the root, or a placeholder directory not made full), the
    /// provider knows the record by a path in that directory's (its origin's
    /// parent is the directory's origin), and nothing is on disk at its name.
    ///
    /// The origin check matters after a crash between a directory rename on
    /// disk and the log's entry moving its records: the records are then
    /// replayed where the directory was, and after a `RENAME_EXCHANGE` the
    /// other directory is there. Dropped, they come back from a listing of
    /// the directory that is there, as the provider projects it.
    pub(super) fn keeps_virtual(&self, rel: &Path, rec: &VRec) -> bool {
        let Some(parent) = rel.parent() else {
            return false;
        };
        if !parent.as_os_str().is_empty() {
            match self.lookup(parent) {
                Ok(Some(p))
                    if p.kind == FileKind::Directory
                        && p.state.contains(OnDiskState::PLACEHOLDER)
                        && !p.state.contains(OnDiskState::FULL)
                        && !p.state.contains(OnDiskState::TOMBSTONE) =>
                {
                    let provider_path = rec.origin.as_deref().map_or(rel, |o| o.as_path());
                    // A directory record without an origin (format 1) is not checked.
                    if p.origin.is_some() && p.origin.as_deref() != provider_path.parent() {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        matches!(self.lookup(rel), Ok(None))
    }

    /// Add the records of the directory `rel` that have no on-disk item to `out`
    /// (sorted by name bytes, as [`Layer::list_dir`] returns it).
    pub(super) fn merge_virtual(&self, rel: &Path, out: &mut Vec<(OsString, Item)>) {
        let children = self.vstore.children(rel);
        if children.is_empty() {
            return;
        }
        let before = out.len();
        for (name, rec) in children {
            let on_disk = out[..before]
                .binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
                .is_ok();
            if !on_disk {
                let item = item(&rel.join(&name), &rec);
                out.push((name, item));
            }
        }
        out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }

    /// Store a placeholder file at `rel` as a record (no on-disk item). `false`
    /// when a record is there already — unless that record came from a
    /// listing and `rec` has the version, which then replaces it.
    ///
    /// The caller found nothing on disk at `rel` just before (no lock makes
    /// the two one step either way: an item created since wins over the
    /// record, as [`Layer::lookup`] reads them).
    pub(super) fn put_virtual(&self, rel: &Path, rec: VRec) -> Result<bool> {
        if rec.version.is_some() {
            if let Some(old) = self.vstore.get(rel) {
                if old.version.is_some() {
                    return Ok(false);
                }
                let origin = old.origin.clone();
                self.vstore.put(rel, VRec { origin, ..rec });
                return Ok(true);
            }
        }
        Ok(self.vstore.put_new(rel, rec))
    }

    /// Record the files of a listing of the projected directory `dir` (known
    /// to the provider as `provider_dir`) as placeholders with the version
    /// the listing gave, if any (else GetPlaceholderInfo is asked at their
    /// first open), and return
    /// the attributes now at each name (inode number 0: the caller's to set):
    /// the new placeholder's, or those of what was recorded before; `None` for
    /// entries that are not files. The caller listed `dir` on disk just before
    /// and passes only names it did not find there; an item created since wins
    /// over its record.
    pub fn put_listed(
        &self,
        dir: &Path,
        provider_dir: &Path,
        entries: Vec<ListedEntry>,
    ) -> Result<Vec<Option<Attr>>> {
        let owner = self.default_owner()?;
        let moved = dir != provider_dir;
        let files: Vec<bool> = entries
            .iter()
            .map(|(_, b, _)| b.kind == FileKind::File)
            .collect();
        let mut recs: Vec<(std::sync::Arc<std::ffi::OsStr>, VRec)> =
            Vec::with_capacity(files.iter().filter(|f| **f).count());
        recs.extend(
            entries
                .into_iter()
                .filter(|(_, b, _)| b.kind == FileKind::File)
                .map(|(name, basic, version)| {
                    let (uid, gid) = basic.owner.unwrap_or(owner);
                    let origin = moved.then(|| Box::new(provider_dir.join(&*name)));
                    let rec = VRec {
                        size: basic.size,
                        mtime: super::time_pair(basic.mtime),
                        atime: super::time_pair(basic.atime),
                        perm: (basic.mode & 0o7777) as u16,
                        uid,
                        gid,
                        version,
                        origin,
                        serial: 0,
                    };
                    (name, rec)
                }),
        );
        let mut attrs = self.vstore.put_listed(dir, recs, attr).into_iter();
        Ok(files
            .into_iter()
            .map(|file| if file { attrs.next() } else { None })
            .collect())
    }

    /// Owner of items whose provider gives none: the root's.
    pub(super) fn default_owner(&self) -> Result<(u32, u32)> {
        let st = rustix::fs::fstat(&self.root).map_err(|e| LayerError::io("fstat", "", e))?;
        Ok((st.st_uid, st.st_gid))
    }

    /// Whether the item at `rel` is a record without an on-disk item (it has no
    /// user xattrs then).
    pub(super) fn is_virtual(&self, rel: &Path) -> bool {
        self.vstore.get(rel).is_some() && matches!(self.lookup_disk(rel), Ok(None))
    }

    /// The record at `rel`, if the item there is one.
    pub(super) fn virtual_at(&self, rel: &Path) -> Option<VRec> {
        self.vstore.get(rel)
    }

    /// Give the record at `rel` an on-disk item (an empty placeholder file with
    /// its record, formed in `tmp` and renamed into place), then drop the record.
    /// Nothing to do without a record. Callers hold the layer's lock.
    pub(super) fn materialize(&self, rel: &Path) -> Result<()> {
        let Some(rec) = self.vstore.get(rel) else {
            return Ok(());
        };
        let comps = path::components(rel)?;
        let loc = self.locate_existing_parent(rel, &comps)?;
        let record = record(rel, &rec);
        let info = PlaceholderInfo {
            basic: FileBasicInfo::file(rec.size),
            version: VersionInfo::default(),
            symlink_target: None,
        };
        let tmp_name = self.temp_name("ph");
        let built = self.build_placeholder(
            &tmp_name,
            &info,
            (rec.uid, rec.gid),
            u32::from(rec.perm),
            &record,
            Some(rel),
        );
        let placed = built.and_then(|()| {
            rustix::fs::renameat_with(
                &*self.tmp,
                &tmp_name,
                loc.dir(self.root.as_fd()),
                &loc.name,
                RenameFlags::NOREPLACE,
            )
            .map_err(|e| LayerError::io("renameat", rel, e))
        });
        match placed {
            Ok(()) => {}
            // Something got there first: it wins, the record goes.
            Err(e) if e.is_errno(libc::EEXIST) => self.discard_temp(&tmp_name),
            Err(e) => {
                self.discard_temp(&tmp_name);
                return Err(e);
            }
        }
        self.vstore.remove(rel);
        Ok(())
    }
}
