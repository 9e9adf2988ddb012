//! Renames within the root. Items keep their records (VersionInfo and origin), so
//! a renamed placeholder still hydrates from the path and version it was created
//! with. A record that leaves its origin out (it is the item's own path, see
//! `meta`) has it stored before the item, or a directory above it, moves
//! ([`Layer::pin_origins`]).

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags as AtRename};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::meta;
use super::ops::{is_dir_mode, Slot};
use super::path;
use super::temp::Temp;
use super::Layer;

/// `renameat2(2)` flags a client may pass to [`Layer::rename`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`: fail with `EEXIST` if an item is at the destination (a
    /// tombstone is not an item).
    pub noreplace: bool,
    /// `RENAME_EXCHANGE`: swap two existing items.
    pub exchange: bool,
}

/// One end of a rename: its parent directory and name.
struct End<'a> {
    dir: BorrowedFd<'a>,
    name: &'a CStr,
    rel: &'a Path,
}

impl Layer {
    /// Rename `from` to `to` (both relative to the root; parents must be
    /// directories on disk).
    ///
    /// * A tombstone at `to` counts as nothing and is replaced, even with
    ///   `noreplace`. Another item at `to` is replaced as `rename(2)` does: a file
    ///   by a non-directory, a directory (holding only tombstones, else
    ///   [`LayerError::NotEmpty`]) by a directory; mismatches are
    ///   [`LayerError::IsADirectory`] / [`LayerError::NotADirectory`].
    /// * `exchange` swaps two existing items (with their records); it cannot be
    ///   combined with `noreplace` or `tombstone_at_from`
    ///   ([`LayerError::InvalidArgument`]).
    /// * `tombstone_at_from` leaves a tombstone at `from`, hiding the projected
    ///   name the item had.
    /// * `from` must hold an item (not a tombstone): else [`LayerError::NotFound`].
    ///   Moving a directory beneath itself is [`LayerError::InvalidArgument`].
    ///   Renaming a name to itself, or between two links of one file, does nothing.
    /// * Placeholder parents become dirty.
    ///
    /// Each name is in its old or its new state at every instant: a plain rename is
    /// one `renameat2`; a tombstone at `from` is put there by swapping it with a
    /// tombstone at `to` (`RENAME_EXCHANGE`), or, for a non-directory, by giving
    /// the item its new name as a hard link first. The one exception: a directory
    /// replacing a directory first swaps a tombstone in for the old one, so a crash
    /// right then shows `to` absent rather than empty.
    pub fn rename(
        &self,
        from: &Path,
        to: &Path,
        flags: RenameFlags,
        tombstone_at_from: bool,
    ) -> Result<()> {
        let _guard = self.lock();
        self.vstore.settle();
        let renamed = self.rename_locked(from, to, flags, tombstone_at_from);
        // Whatever moved (a directory, or one swapped out for a tombstone),
        // before anything else can locate below it.
        self.dirs.moved();
        renamed?;
        // Placeholder files kept as records follow their directory (a file's
        // own record was materialized before it moved).
        if flags.exchange {
            self.vstore
                .exchange_trees(from, to, Path::new(super::HIDDEN_DIR));
        } else {
            self.vstore.move_tree(from, to);
        }
        Ok(())
    }

    fn rename_locked(
        &self,
        from: &Path,
        to: &Path,
        flags: RenameFlags,
        tombstone_at_from: bool,
    ) -> Result<()> {
        if flags.exchange && (flags.noreplace || tombstone_at_from) {
            return Err(LayerError::InvalidArgument(
                "RENAME_EXCHANGE cannot be combined with RENAME_NOREPLACE or a tombstone".into(),
            ));
        }
        let from_comps = path::components(from)?;
        let to_comps = path::components(to)?;
        if to_comps.len() > from_comps.len() && to_comps.starts_with(&from_comps) {
            return Err(LayerError::InvalidArgument(format!(
                "cannot move {} beneath itself",
                from.display()
            )));
        }
        let from_loc = self.locate_in_dir(from, &from_comps)?;
        let to_loc = self.locate_in_dir(to, &to_comps)?;
        let src = End {
            dir: from_loc.dir(self.root.as_fd()),
            name: &from_loc.name,
            rel: from,
        };
        let dst = End {
            dir: to_loc.dir(self.root.as_fd()),
            name: &to_loc.name,
            rel: to,
        };
        let (src_st, src_rec) = self.existing(src.dir, src.name, from)?;
        if from_comps == to_comps {
            return Ok(());
        }
        let src_is_dir = is_dir_mode(src_st.st_mode);
        let slot = self.slot(dst.dir, dst.name, to)?;
        // Whether `to` is a projected name (see `ops`'s "Projected names"): an
        // unmarked full item moving there is marked first; a marked one moving
        // to a free name loses its mark afterwards.
        let to_projected = match &slot {
            Slot::Absent => false,
            Slot::Tombstone => true,
            Slot::Item { st, rec } => self.at_projected_name(st, rec.as_ref()),
        };
        let mark_src = || {
            if to_projected && src_rec.is_none() {
                self.set_mark(src.dir, src.name, from)
            } else {
                Ok(())
            }
        };
        if flags.exchange {
            let Slot::Item { rec: dst_rec, .. } = &slot else {
                return Err(LayerError::NotFound {
                    path: to.to_path_buf(),
                });
            };
            let from_projected = self.at_projected_name(&src_st, src_rec.as_ref());
            self.pin_origins(src.dir, src.name, from)?;
            self.pin_origins(dst.dir, dst.name, to)?;
            mark_src()?;
            if from_projected && dst_rec.is_none() {
                self.set_mark(dst.dir, dst.name, to)?;
            }
            self.dirty_parent(&from_comps)?;
            self.dirty_parent(&to_comps)?;
            rename_at(&src, &dst, AtRename::EXCHANGE)?;
            self.unmark_unless(to_projected, &dst);
            self.unmark_unless(from_projected, &src);
            return Ok(());
        }
        // Set when an old directory at `to` was swapped out into `tmp`: its guard
        // removes it (and its tombstones) once the rename is done.
        let mut old_dir = None;
        let dst_is_tombstone = match &slot {
            Slot::Absent => false,
            Slot::Tombstone => true,
            Slot::Item { st, .. } => {
                if st.st_dev == src_st.st_dev && st.st_ino == src_st.st_ino {
                    return Ok(()); // two links of one file: rename(2) does nothing
                }
                if flags.noreplace {
                    return Err(LayerError::Exists {
                        path: to.to_path_buf(),
                    });
                }
                match (src_is_dir, is_dir_mode(st.st_mode)) {
                    (true, false) => {
                        return Err(LayerError::NotADirectory {
                            path: to.to_path_buf(),
                        })
                    }
                    (false, true) => {
                        return Err(LayerError::IsADirectory {
                            path: to.to_path_buf(),
                        })
                    }
                    (false, false) => {
                        self.pin_origins(src.dir, src.name, from)?;
                        mark_src()?;
                        self.dirty_parent(&from_comps)?;
                        self.dirty_parent(&to_comps)?;
                        return self
                            .move_file(&src, &dst, tombstone_at_from, true)
                            .inspect(|()| self.unmark_unless(to_projected, &dst));
                    }
                    (true, true) => {
                        let flags = rustix::fs::OFlags::RDONLY
                            | rustix::fs::OFlags::DIRECTORY
                            | rustix::fs::OFlags::NOFOLLOW
                            | rustix::fs::OFlags::CLOEXEC;
                        let fd =
                            rustix::fs::openat(dst.dir, dst.name, flags, rustix::fs::Mode::empty())
                                .map_err(|e| LayerError::io("opendir", to, e))?;
                        if !self.only_tombstones(fd.as_fd(), to)? {
                            return Err(LayerError::NotEmpty {
                                path: to.to_path_buf(),
                            });
                        }
                        self.pin_origins(src.dir, src.name, from)?;
                        mark_src()?;
                        self.dirty_parent(&from_comps)?;
                        self.dirty_parent(&to_comps)?;
                        let tb = self.new_tombstone(to)?;
                        swap_with_tmp(self, &tb, &dst)?;
                        old_dir = Some(tb);
                        true
                    }
                }
            }
        };
        if old_dir.is_none() {
            self.pin_origins(src.dir, src.name, from)?;
            mark_src()?;
            self.dirty_parent(&from_comps)?;
            self.dirty_parent(&to_comps)?;
        }
        let result = match (dst_is_tombstone, tombstone_at_from, src_is_dir) {
            // The tombstone at `to` moves to `from` in the same step.
            (true, true, _) => rename_at(&src, &dst, AtRename::EXCHANGE),
            (true, false, false) => rename_at(&src, &dst, AtRename::empty()),
            (true, false, true) => {
                // A directory cannot replace a file: swap, then drop the tombstone,
                // which hides nothing at `from` (no tombstone was asked for).
                rename_at(&src, &dst, AtRename::EXCHANGE)?;
                rustix::fs::unlinkat(src.dir, src.name, AtFlags::empty())
                    .map_err(|e| LayerError::io("unlinkat", from, e))
            }
            (false, false, _) => rename_at(&src, &dst, AtRename::NOREPLACE),
            (false, true, false) => self.move_file(&src, &dst, true, false),
            (false, true, true) => {
                // Put a tombstone at `to` first (nothing there either way), then
                // swap it with the directory.
                let tb = self.new_tombstone(to)?;
                rustix::fs::renameat_with(
                    &*self.tmp,
                    tb.name(),
                    dst.dir,
                    dst.name,
                    AtRename::NOREPLACE,
                )
                .map_err(|e| map_exists(e, to, "renameat"))?;
                tb.placed();
                rename_at(&src, &dst, AtRename::EXCHANGE).inspect_err(|_| {
                    let _ = rustix::fs::unlinkat(dst.dir, dst.name, AtFlags::empty());
                })
            }
        };
        if let (Err(_), Some(old)) = (&result, &old_dir) {
            // Put the old directory back; the guard then removes the tombstone.
            let _ = swap_with_tmp(self, old, &dst);
        }
        if result.is_ok() {
            self.unmark_unless(to_projected, &dst);
        }
        result
    }

    /// Store the origin in every record that leaves it out (format 3: the
    /// origin is the item's own path) of `dir/name` (at `rel`) and, for a
    /// directory, of everything below it: before a rename or a hard link
    /// gives the item, or what is below it, another path. The record means
    /// the same before and after, so a crash anywhere in between changes
    /// nothing; the caller holds the lock, so no record is written meanwhile
    /// (`write_placeholder` checks under it, see there). Costs a read of
    /// every record below a renamed directory.
    pub(super) fn pin_origins(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<()> {
        let mut buf = vec![0u8; meta::MAX_RECORD_LEN];
        self.pin_origin(dir, name, rel, &mut buf)?;
        if !is_dir(dir, name, rel, FileType::Unknown)? {
            return Ok(());
        }
        let Some(fd) = open_below(dir, name, rel)? else {
            return Ok(());
        };
        let mut pending: Vec<(OwnedFd, PathBuf)> = vec![(fd, rel.to_path_buf())];
        while let Some((fd, rel)) = pending.pop() {
            let mut entries =
                rustix::fs::Dir::read_from(&fd).map_err(|e| LayerError::io("opendir", &rel, e))?;
            while let Some(entry) = entries.read() {
                let entry = entry.map_err(|e| LayerError::io("readdir", &rel, e))?;
                let name = entry.file_name();
                if name == c"." || name == c".." {
                    continue;
                }
                let child = rel.join(OsStr::from_bytes(name.to_bytes()));
                self.pin_origin(fd.as_fd(), name, &child, &mut buf)?;
                if is_dir(fd.as_fd(), name, &child, entry.file_type())? {
                    if let Some(sub) = open_below(fd.as_fd(), name, &child)? {
                        pending.push((sub, child));
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Layer::pin_origins`] of `dir/name` alone (nothing if it is gone).
    fn pin_origin(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        buf: &mut [u8],
    ) -> Result<()> {
        let n = match self.xattrs.get(dir, name, &self.meta_name, buf) {
            Ok(n) => n,
            Err(Errno::NOENT) => return Ok(()),
            // Symlinks where records cannot be read have none.
            Err(Errno::LOOP) | Err(Errno::PERM) => None,
            Err(Errno::RANGE) => {
                return Err(LayerError::CorruptMeta {
                    path: rel.to_path_buf(),
                    reason: format!("record longer than {} bytes", meta::MAX_RECORD_LEN),
                })
            }
            Err(e) => return Err(LayerError::io("getxattrat", rel, e)),
        };
        if let Some(n) = n.filter(|&n| meta::origin_is_implicit(&buf[..n])) {
            let rec = self.decode(rel, &buf[..n])?;
            self.xattrs
                .set(dir, name, &self.meta_name, &rec.encode())
                .map_err(|e| LayerError::io("setxattrat", rel, e))?;
        }
        Ok(())
    }

    /// After a rename: unless the name `end` is a projected one, the full item
    /// now there needs no mark. A mark left behind only costs a tombstone too
    /// many later, so a failure is logged, not returned (the rename is done).
    fn unmark_unless(&self, projected: bool, end: &End<'_>) {
        if projected {
            return;
        }
        if let Err(e) = self.clear_mark(end.dir, end.name, end.rel) {
            tracing::warn!(
                "{}: cannot remove the projected-name mark: {e}",
                end.rel.display()
            );
        }
    }

    /// Move the non-directory `src` to `dst` (over a file when `replace`, else
    /// where nothing is), leaving a tombstone at `src` when `tombstone`.
    ///
    /// With a tombstone and nothing at `dst`, a tombstone is placed at `dst` and
    /// swapped with the item (`RENAME_EXCHANGE`): atomic. When `dst` exists, the
    /// item first gets a second name in `tmp` (a hard link), which is renamed
    /// over `dst`; then a tombstone is renamed over `src`. Until then `src` still
    /// shows the item, so each name is old or new at every instant. Items that cannot take another link (`EMLINK`) are moved, then the
    /// tombstone placed.
    fn move_file(
        &self,
        src: &End<'_>,
        dst: &End<'_>,
        tombstone: bool,
        replace: bool,
    ) -> Result<()> {
        let flags = if replace {
            AtRename::empty()
        } else {
            AtRename::NOREPLACE
        };
        if !tombstone {
            return rename_at(src, dst, flags);
        }
        let tb = self.new_tombstone(src.rel)?;
        // Nothing at `dst` yet: place the tombstone there (a tombstone shows as
        // absent), then swap it with the item in one step — no instant where
        // both names show the item.
        match rustix::fs::renameat_with(
            &*self.tmp,
            tb.name(),
            dst.dir,
            dst.name,
            AtRename::NOREPLACE,
        ) {
            Ok(()) => {
                tb.placed();
                return rustix::fs::renameat_with(
                    src.dir,
                    src.name,
                    dst.dir,
                    dst.name,
                    AtRename::EXCHANGE,
                )
                .map_err(|e| LayerError::io("renameat", src.rel, e));
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(LayerError::io("renameat", dst.rel, e)),
        }
        let link = Temp::new(self, "mv");
        match rustix::fs::linkat(src.dir, src.name, &*self.tmp, link.name(), AtFlags::empty()) {
            Ok(()) => {
                rustix::fs::renameat_with(&*self.tmp, link.name(), dst.dir, dst.name, flags)
                    .map_err(|e| map_exists(e, dst.rel, "renameat"))?;
                link.placed();
                rustix::fs::renameat(&*self.tmp, tb.name(), src.dir, src.name)
                    .map_err(|e| LayerError::io("renameat", src.rel, e))?;
            }
            Err(Errno::MLINK) => {
                rename_at(src, dst, flags)?;
                rustix::fs::renameat_with(
                    &*self.tmp,
                    tb.name(),
                    src.dir,
                    src.name,
                    AtRename::NOREPLACE,
                )
                .map_err(|e| LayerError::io("renameat", src.rel, e))?;
            }
            Err(e) => return Err(LayerError::io("linkat", src.rel, e)),
        }
        tb.placed();
        Ok(())
    }
}

/// Whether `dir/name` is a directory, from `known` (a listing's entry type)
/// or, when that is `Unknown`, a stat; `false` if it is gone.
fn is_dir(dir: BorrowedFd<'_>, name: &CStr, rel: &Path, known: FileType) -> Result<bool> {
    if known != FileType::Unknown {
        return Ok(known == FileType::Directory);
    }
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(LayerError::io("statat", rel, e)),
    }
}

/// The directory `dir/name` opened for reading; `None` if it is gone.
fn open_below(dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(LayerError::io("opendir", rel, e)),
    }
}

/// `renameat2(src, dst, flags)`.
fn rename_at(src: &End<'_>, dst: &End<'_>, flags: AtRename) -> Result<()> {
    rustix::fs::renameat_with(src.dir, src.name, dst.dir, dst.name, flags)
        .map_err(|e| map_exists(e, dst.rel, "renameat"))
}

/// Swap the temp item `tb` with `dst` (`RENAME_EXCHANGE`).
fn swap_with_tmp(layer: &Layer, tb: &Temp<'_>, dst: &End<'_>) -> Result<()> {
    rustix::fs::renameat_with(
        &*layer.tmp,
        tb.name(),
        dst.dir,
        dst.name,
        AtRename::EXCHANGE,
    )
    .map_err(|e| LayerError::io("renameat", dst.rel, e))
}

fn map_exists(e: Errno, rel: &Path, op: &'static str) -> LayerError {
    match e {
        Errno::EXIST => LayerError::Exists {
            path: rel.to_path_buf(),
        },
        Errno::NOTEMPTY => LayerError::NotEmpty {
            path: rel.to_path_buf(),
        },
        e => LayerError::io(op, rel, e),
    }
}
