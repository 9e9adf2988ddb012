//! Writing items into the layer: placeholders, tombstones, removal, and the
//! Dirty / Full state transitions.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Timestamps};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::meta::{self, Record};
use super::ops::Slot;
use super::{path, spare, time_pair, timespec, xattr, Layer};
use crate::types::{FileKind, OnDiskState, PlaceholderInfo, VERSION_ID_MAX};

impl Layer {
    /// Write a placeholder for `rel`, atomically: it is built in `.prjfs/tmp` with
    /// its mode, owner, times and record, then renamed into place without replacing
    /// anything. Returns `false` (and changes nothing) when something is already
    /// there. The parent directory must exist. The record's origin is `rel`: the
    /// path a later GetFileData is told, wherever the item has moved since.
    pub fn write_placeholder(&self, rel: &Path, info: &PlaceholderInfo) -> Result<bool> {
        self.write_placeholder_with_origin(rel, info, rel)
    }

    /// [`Layer::write_placeholder`] at `rel` of the item the store has at `origin`
    /// (e.g. a projected item a client renamed before it was ever placed). Origins
    /// longer than 3 KiB are refused (`ENAMETOOLONG`): the record must fit in one
    /// xattr block next to the user's xattrs.
    pub fn write_placeholder_with_origin(
        &self,
        rel: &Path,
        info: &PlaceholderInfo,
        origin: &Path,
    ) -> Result<bool> {
        let comps = path::components(rel)?;
        check_info(info)?;
        // Read before the parent is located: see the rename into place below.
        let generation = self.dirs.generation();
        let loc = self.locate_existing_parent(rel, &comps)?;
        let origin_comps = path::components(origin)?;
        if origin_comps.is_empty() {
            return Err(LayerError::InvalidArgument(
                "a placeholder's origin cannot be the root".into(),
            ));
        }
        let origin = path::join(&origin_comps);
        if origin.as_os_str().len() > meta::MAX_ORIGIN_LEN {
            return Err(LayerError::io("write placeholder", rel, Errno::NAMETOOLONG));
        }
        let dir = loc.dir(self.root.as_fd());
        let basic = &info.basic;
        // A file kept as a record (from a listing, most often) is written
        // over without looking at the disk: an on-disk item made from it
        // since keeps the record's state and is asked again at its next use
        // (the record only ever gains a version here). Without an owner of
        // its own it keeps the one the record was given.
        let listed = match basic.kind {
            FileKind::File => self.virtual_at(rel),
            _ => None,
        };
        if listed.is_none() {
            match rustix::fs::statat(dir, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => return self.fill_listed_version(rel, info),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(LayerError::io("statat", rel, e)),
            }
        }
        let owner = match (basic.owner, &listed) {
            (Some(owner), _) => owner,
            (None, Some(old)) => (old.uid, old.gid),
            (None, None) => {
                let st =
                    rustix::fs::fstat(&self.root).map_err(|e| LayerError::io("fstat", "", e))?;
                (st.st_uid, st.st_gid)
            }
        };
        let mut record = Record {
            state: OnDiskState::PLACEHOLDER,
            kind: basic.kind,
            size: basic.size,
            mtime: time_pair(basic.mtime),
            atime: time_pair(basic.atime),
            version: info.version.clone(),
            origin: Some(origin.clone()),
            listed: false,
        };
        if basic.kind == FileKind::File {
            // A placeholder file is a record until something needs it on disk.
            let (uid, gid) = owner;
            let origin = (origin != rel).then(|| Box::new(origin));
            return self.put_virtual(
                rel,
                super::vstore::VRec {
                    size: basic.size,
                    mtime: record.mtime,
                    atime: record.atime,
                    perm: (basic.mode & 0o7777) as u16,
                    uid,
                    gid,
                    version: Some(Box::new(info.version.clone())),
                    origin,
                    serial: 0,
                },
            );
        }
        if basic.kind == FileKind::Symlink {
            // A symlink's content is its target: it is hydrated from the start.
            record.state = record.state | OnDiskState::HYDRATED_PLACEHOLDER;
            record.size = info.symlink_target.as_ref().map_or(0, |t| t.len() as u64);
        } else if basic.kind == FileKind::Directory {
            record.size = 0;
        }
        let tmp_name = self.temp_name("ph");
        let here = origin.as_os_str() == rel.as_os_str();
        let built = self.build_placeholder(
            &tmp_name,
            info,
            owner,
            basic.mode & 0o7777,
            &record,
            here.then_some(rel),
        );
        // A record that leaves its origin out (it is `rel`) must land at
        // `rel`: the parent located above may have been moved since, by a
        // rename that stored the origins of what it moved but not of this
        // item, which was in `tmp` then. Renames hold the lock and bump the
        // generation: with the lock held and the generation unchanged, the
        // parent is still at its path; otherwise the origin is stored.
        let _guard = here.then(|| self.lock());
        let built = built.and_then(|()| {
            if here && self.dirs.generation() != generation {
                self.restore_origin(&tmp_name, &record)
            } else {
                Ok(())
            }
        });
        let result = built.and_then(|()| {
            rustix::fs::renameat_with(
                &*self.tmp,
                &tmp_name,
                dir,
                &loc.name,
                RenameFlags::NOREPLACE,
            )
            .map_err(|e| LayerError::io("renameat", rel, e))
        });
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                self.discard_temp(&tmp_name);
                match e {
                    LayerError::Io { source, .. }
                        if source.raw_os_error() == Some(libc::EEXIST) =>
                    {
                        Ok(false)
                    }
                    e => Err(e),
                }
            }
        }
    }

    /// GetPlaceholderInfo answered for an item on disk: if it is a placeholder
    /// file from a listing (its version not known yet), it takes the version now
    /// (`true`); anything else stays as it is (`false`).
    fn fill_listed_version(&self, rel: &Path, info: &PlaceholderInfo) -> Result<bool> {
        if info.basic.kind != FileKind::File {
            return Ok(false);
        }
        let comps = path::components(rel)?;
        let _guard = self.lock();
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        match self.read_record(dir, &loc.name, rel)? {
            Some(mut rec) if rec.listed && rec.kind == FileKind::File => {
                rec.version = info.version.clone();
                rec.listed = false;
                self.xattrs
                    .set(dir, &loc.name, &self.meta_name, &rec.encode_at(rel))
                    .map_err(|e| LayerError::io("setxattrat", rel, e))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Give the temp item `tmp_name` the record `record` with its origin
    /// stored (see [`Record::encode`]).
    fn restore_origin(&self, tmp_name: &CStr, record: &Record) -> Result<()> {
        match self.xattrs.set(
            self.tmp.as_fd(),
            tmp_name,
            &self.meta_name,
            &record.encode(),
        ) {
            // A symlink that could not take a record at all has none to fix.
            Ok(()) | Err(Errno::LOOP) | Err(Errno::PERM) => Ok(()),
            Err(e) => Err(LayerError::io(
                "setxattrat",
                Path::new(".prjfs/tmp").join(OsStr::from_bytes(tmp_name.to_bytes())),
                e,
            )),
        }
    }

    /// Create the temp item `tmp_name` for a placeholder, fully formed. With
    /// `at`, the item is to be renamed to `at` (under the lock, or checked as
    /// [`Layer::write_placeholder_with_origin`] does) and its record leaves
    /// out an origin equal to `at`.
    pub(super) fn build_placeholder(
        &self,
        tmp_name: &CStr,
        info: &PlaceholderInfo,
        (uid, gid): (u32, u32),
        perm: u32,
        record: &Record,
        at: Option<&Path>,
    ) -> Result<()> {
        let tmp = self.tmp.as_fd();
        let tmp_rel = Path::new(".prjfs/tmp").join(OsStr::from_bytes(tmp_name.to_bytes()));
        let io = |op| {
            let p = tmp_rel.clone();
            move |e| LayerError::io(op, p, e)
        };
        let times = Timestamps {
            last_access: timespec(record.atime),
            last_modification: timespec(record.mtime),
        };
        let encoded = match at {
            Some(at) => record.encode_at(at),
            None => record.encode(),
        };
        match info.basic.kind {
            FileKind::Symlink => {
                let target = info.symlink_target.as_ref().expect("checked by check_info");
                rustix::fs::symlinkat(target.as_os_str(), tmp, tmp_name)
                    .map_err(io("symlinkat"))?;
                self.chown_at(tmp, tmp_name, uid, gid)
                    .map_err(io("fchownat"))?;
                match self.xattrs.set(tmp, tmp_name, &self.meta_name, &encoded) {
                    Ok(()) => {}
                    // No xattrs on symlinks here (old kernel, or the `user.` namespace,
                    // which the kernel refuses on symlinks): the symlink looks Full.
                    Err(Errno::LOOP) | Err(Errno::PERM) => {
                        tracing::debug!(path = ?tmp_rel, "symlink placeholder written without a record");
                    }
                    Err(e) => return Err(io("setxattrat")(e)),
                }
                rustix::fs::utimensat(tmp, tmp_name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io("utimensat"))?;
            }
            kind => {
                let fd = if kind == FileKind::Directory {
                    if !self.spares.take(spare::Kind::Dir, tmp, tmp_name) {
                        rustix::fs::mkdirat(tmp, tmp_name, Mode::from_raw_mode(0o700))
                            .map_err(io("mkdirat"))?;
                    }
                    let flags =
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    rustix::fs::openat(tmp, tmp_name, flags, Mode::empty()).map_err(io("openat"))?
                } else {
                    let mut flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    if !self.spares.take(spare::Kind::File, tmp, tmp_name) {
                        flags |= OFlags::CREATE | OFlags::EXCL;
                    }
                    rustix::fs::openat(tmp, tmp_name, flags, Mode::from_raw_mode(0o600))
                        .map_err(io("openat"))?
                };
                self.form_item(fd.as_fd(), None, (uid, gid), perm, &encoded, &times)
                    .map_err(io("set attributes"))?;
            }
        }
        Ok(())
    }

    /// Give an open item its owner, permissions, record and times, in an order that
    /// keeps each step from undoing the previous one (chown clears set-id bits).
    /// `shape`: the owner and permission bits the item has now, when known; an
    /// owner or mode it has already is not set again.
    pub(super) fn form_item(
        &self,
        fd: BorrowedFd<'_>,
        shape: Option<super::spare::Shape>,
        (uid, gid): (u32, u32),
        perm: u32,
        record: &[u8],
        times: &Timestamps,
    ) -> std::result::Result<(), Errno> {
        let owned = shape.is_some_and(|(u, g, _)| (u, g) == (uid, gid));
        if !owned {
            self.ignore_eperm(rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            ))?;
        }
        // A chown may have cleared set-id bits: the mode is set after it
        // unless it was skipped and the mode is the one the item has.
        if !(owned && shape.is_some_and(|(_, _, p)| p == perm)) {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(perm))?;
        }
        xattr::fset(fd, &self.meta_name, record)?;
        rustix::fs::futimens(fd, times)
    }

    fn chown_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        uid: u32,
        gid: u32,
    ) -> std::result::Result<(), Errno> {
        self.ignore_eperm(rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ))
    }

    /// Without root, giving an item away fails with `EPERM`; the item then keeps the
    /// daemon's owner.
    pub(super) fn ignore_eperm(
        &self,
        r: std::result::Result<(), Errno>,
    ) -> std::result::Result<(), Errno> {
        match r {
            Err(Errno::PERM) if !self.is_root => Ok(()),
            r => r,
        }
    }

    /// Mark `rel` deleted: replace what is there (a file, symlink, a directory
    /// holding only tombstones, or nothing) with a tombstone, an empty file whose
    /// record has state [`OnDiskState::TOMBSTONE`], in one step (a directory is
    /// swapped out with `RENAME_EXCHANGE`, then removed from `.prjfs/tmp`). The
    /// parent must exist. Unlike [`Layer::delete`], the parent does not become
    /// dirty.
    pub fn write_tombstone(&self, rel: &Path) -> Result<()> {
        let comps = path::components(rel)?;
        let _guard = self.lock();
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let slot = self.slot(dir, &loc.name, rel)?;
        if slot.is_dir() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, &loc.name, flags, Mode::empty())
                .map_err(|e| LayerError::io("opendir", rel, e))?;
            if !self.only_tombstones(fd.as_fd(), rel)? {
                return Err(LayerError::NotEmpty {
                    path: rel.to_path_buf(),
                });
            }
        }
        let tb = self.new_tombstone(rel)?;
        let flags = match slot {
            Slot::Absent => RenameFlags::NOREPLACE,
            _ if slot.is_dir() => RenameFlags::EXCHANGE,
            _ => RenameFlags::empty(),
        };
        rustix::fs::renameat_with(&*self.tmp, tb.name(), dir, &loc.name, flags)
            .map_err(|e| LayerError::io("renameat", rel, e))?;
        // After an exchange `tb` names the old directory, which its guard removes.
        if flags != RenameFlags::EXCHANGE {
            tb.placed();
        } else {
            self.dirs.moved();
        }
        Ok(())
    }

    /// Remove the item at `rel` (a directory must be empty), whatever its state,
    /// tombstones included.
    pub fn remove(&self, rel: &Path) -> Result<()> {
        let comps = path::components(rel)?;
        let _guard = self.lock();
        self.vstore.settle();
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let st = match rustix::fs::statat(dir, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) if self.vstore.remove(rel).is_some() => return Ok(()),
            Err(Errno::NOENT) => {
                return Err(LayerError::NotFound {
                    path: rel.to_path_buf(),
                })
            }
            Err(e) => return Err(LayerError::io("statat", rel, e)),
        };
        let flags = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(dir, &loc.name, flags)
            .map_err(|e| LayerError::io("unlinkat", rel, e))?;
        if flags == AtFlags::REMOVEDIR {
            self.dirs.moved();
        }
        Ok(())
    }
}

/// Reject placeholder infos the record cannot hold.
fn check_info(info: &PlaceholderInfo) -> Result<()> {
    let v = &info.version;
    if v.provider_id.len() > VERSION_ID_MAX || v.content_id.len() > VERSION_ID_MAX {
        return Err(LayerError::InvalidArgument(format!(
            "version ids are limited to {VERSION_ID_MAX} bytes"
        )));
    }
    if info.basic.kind == FileKind::Symlink {
        match &info.symlink_target {
            Some(t) if !t.is_empty() && !t.as_bytes().contains(&0) => {}
            _ => {
                return Err(LayerError::InvalidArgument(
                    "a symlink placeholder needs a non-empty target without NUL".into(),
                ))
            }
        }
    }
    Ok(())
}

impl Layer {
    /// Mark the placeholder at `rel` dirty (its metadata changed locally): from now
    /// on its on-disk times are the truth. A no-op for dirty placeholders.
    pub fn mark_dirty(&self, rel: &Path) -> Result<()> {
        let comps = path::components(rel)?;
        let _guard = self.lock();
        self.materialize(rel)?;
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let rec = self.placeholder_record(dir, &loc.name, rel)?;
        self.make_dirty(dir, &loc.name, rel, rec)
    }

    /// If `rec` (the record of `dir/name`) is a placeholder that is not dirty:
    /// first copy its projected times onto the item, so that the on-disk times are
    /// right from now on, then set the Dirty bit. A crash in between leaves a
    /// placeholder that shows the same times either way.
    pub(super) fn make_dirty(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        mut rec: Record,
    ) -> Result<()> {
        let s = rec.state;
        if !s.contains(OnDiskState::PLACEHOLDER)
            || s.contains(OnDiskState::DIRTY_PLACEHOLDER)
            || s.contains(OnDiskState::TOMBSTONE)
            || s.contains(OnDiskState::FULL)
        {
            return Ok(());
        }
        self.copy_projected_times(dir, name, rel, &rec)?;
        rec.state = rec.state | OnDiskState::DIRTY_PLACEHOLDER;
        self.xattrs
            .set(dir, name, &self.meta_name, &rec.encode_at(rel))
            .map_err(|e| LayerError::io("setxattrat", rel, e))
    }

    /// Set the item's on-disk atime and mtime to the record's projected ones.
    pub(super) fn copy_projected_times(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        rec: &Record,
    ) -> Result<()> {
        let times = Timestamps {
            last_access: timespec(rec.atime),
            last_modification: timespec(rec.mtime),
        };
        rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::io("utimensat", rel, e))
    }

    /// Turn the placeholder file or symlink at `rel` into a full item by removing its
    /// record (ProjFS: content changed locally). Its content must be on disk: a
    /// placeholder file that is not hydrated, a directory or a tombstone cannot
    /// become full. A no-op for items already full. Same as
    /// [`Layer::convert_to_full`] without truncation.
    pub fn mark_full(&self, rel: &Path) -> Result<()> {
        self.convert_to_full(rel, false)
    }

    /// The record of an item that must be a placeholder.
    fn placeholder_record(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<Record> {
        match self.read_record(dir, name, rel) {
            Ok(Some(rec)) if rec.state.contains(OnDiskState::PLACEHOLDER) => Ok(rec),
            Ok(_) => Err(LayerError::InvalidState {
                path: rel.to_path_buf(),
                reason: "not a placeholder".into(),
            }),
            Err(LayerError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                Err(LayerError::NotFound {
                    path: rel.to_path_buf(),
                })
            }
            Err(e) => Err(e),
        }
    }
}
