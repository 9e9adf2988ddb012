//! Local changes to names: create, mkdir, symlink, mknod, link and delete, plus
//! the helpers the other mutations share (what is at a name, tombstones in `tmp`,
//! moving a fully formed item into place).
//!
//! Every operation holds the layer's lock from its checks to its last rename, and
//! each name changes in one `rename`: a crash leaves it in its old or new state.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Stat, Uid};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::meta::Record;
use super::path::{self, Loc};
use super::temp::Temp;
use super::{time_pair, xattr, Layer, HIDDEN_DIR};
use crate::types::{FileKind, OnDiskState, VersionInfo};

/// What is at a name on disk.
#[derive(Debug)]
pub(super) enum Slot {
    /// Nothing.
    Absent,
    /// A tombstone: nothing, to a client.
    Tombstone,
    /// An item, with its record if it has one (never a tombstone's).
    Item {
        /// `lstat` of the item.
        st: Box<Stat>,
        /// Its record.
        rec: Option<Record>,
    },
}

impl Slot {
    /// Whether this is a directory.
    pub(super) fn is_dir(&self) -> bool {
        matches!(self, Slot::Item { st, .. } if is_dir_mode(st.st_mode))
    }
}

pub(super) fn is_dir_mode(mode: u32) -> bool {
    FileType::from_raw_mode(mode) == FileType::Directory
}

fn open_dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Layer {
    /// Locate a non-root item whose parent must be a directory on disk:
    /// [`LayerError::NotFound`] when a parent is missing or a tombstone,
    /// [`LayerError::NotADirectory`] when it is something else.
    pub(super) fn locate_in_dir(&self, rel: &Path, comps: &[&OsStr]) -> Result<Loc> {
        if let Some(loc) = path::locate(self.root.as_fd(), rel, comps)? {
            return Ok(loc);
        }
        // Find the first component that is not a directory, for the right errno.
        for i in 1..comps.len() {
            let prefix = path::join(&comps[..i]);
            match self.lookup(&prefix)? {
                Some(item) if item.state.contains(OnDiskState::TOMBSTONE) => {
                    return Err(LayerError::NotFound { path: prefix })
                }
                Some(item) if is_dir_mode(item.attr.mode) => {}
                Some(_) => return Err(LayerError::NotADirectory { path: prefix }),
                None => return Err(LayerError::NotFound { path: prefix }),
            }
        }
        // Changed since; report the parent.
        Err(LayerError::NotFound {
            path: rel.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// What is at `dir/name`.
    ///
    /// A placeholder file kept as a record is materialized first (the callers
    /// are about to change the name), so the answer is always about disk.
    pub(super) fn slot(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<Slot> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) if self.virtual_at(rel).is_some() => {
                self.materialize(rel)?;
                match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => return Ok(Slot::Absent),
                    Err(e) => return Err(LayerError::io("statat", rel, e)),
                }
            }
            Err(Errno::NOENT) => return Ok(Slot::Absent),
            Err(e) => return Err(LayerError::io("statat", rel, e)),
        };
        let rec = match self.read_record(dir, name, rel) {
            Ok(rec) => rec,
            Err(e) if e.is_errno(libc::ENOENT) => return Ok(Slot::Absent),
            Err(e) => return Err(e),
        };
        match rec {
            Some(r) if r.state.contains(OnDiskState::TOMBSTONE) => {
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    return Err(LayerError::CorruptMeta {
                        path: rel.to_path_buf(),
                        reason: "tombstone record on a non-regular file".into(),
                    });
                }
                Ok(Slot::Tombstone)
            }
            rec => Ok(Slot::Item {
                st: Box::new(st),
                rec,
            }),
        }
    }

    /// [`Layer::slot`], where a client needs an item: absent or a tombstone is
    /// [`LayerError::NotFound`].
    pub(super) fn existing(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
    ) -> Result<(Stat, Option<Record>)> {
        match self.slot(dir, name, rel)? {
            Slot::Item { st, rec } => Ok((*st, rec)),
            Slot::Absent | Slot::Tombstone => Err(LayerError::NotFound {
                path: rel.to_path_buf(),
            }),
        }
    }

    /// A fresh tombstone in `tmp`.
    pub(super) fn new_tombstone(&self, rel: &Path) -> Result<Temp<'_>> {
        let now = time_pair(SystemTime::now());
        let record = Record {
            state: OnDiskState::TOMBSTONE,
            kind: FileKind::File,
            size: 0,
            mtime: now,
            atime: now,
            version: VersionInfo::default(),
            origin: None,
            listed: false,
        };
        let tb = Temp::new(self, "tb");
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&*self.tmp, tb.name(), flags, Mode::from_raw_mode(0o600))
            .and_then(|fd| xattr::fset(fd.as_fd(), &self.meta_name, &record.encode()))
            .map_err(|e| LayerError::io("create tombstone", rel, e))?;
        Ok(tb)
    }

    /// Move the fully formed item `new` from `tmp` to `dir/name`, where `slot`
    /// found nothing or a tombstone. Over a tombstone a non-directory replaces it
    /// by `rename`; a directory swaps with it (`RENAME_EXCHANGE`) and the guard
    /// then removes the tombstone from `tmp`. Over nothing: `RENAME_NOREPLACE`.
    pub(super) fn place_new(
        &self,
        new: Temp<'_>,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        slot: &Slot,
        is_dir: bool,
    ) -> Result<()> {
        let flags = match slot {
            Slot::Item { .. } => {
                return Err(LayerError::Exists {
                    path: rel.to_path_buf(),
                })
            }
            Slot::Absent => RenameFlags::NOREPLACE,
            Slot::Tombstone if is_dir => RenameFlags::EXCHANGE,
            Slot::Tombstone => RenameFlags::empty(),
        };
        match rustix::fs::renameat_with(&*self.tmp, new.name(), dir, name, flags) {
            Ok(()) if flags == RenameFlags::EXCHANGE => Ok(()), // `new` now names the tombstone
            Ok(()) => {
                new.placed();
                Ok(())
            }
            Err(Errno::EXIST) => Err(LayerError::Exists {
                path: rel.to_path_buf(),
            }),
            Err(e) => Err(LayerError::io("renameat", rel, e)),
        }
    }

    /// Whether the open directory holds nothing but tombstones (the root's hidden
    /// directory aside).
    pub(super) fn only_tombstones(&self, dir: BorrowedFd<'_>, rel: &Path) -> Result<bool> {
        if self.vstore.has_children(rel) {
            return Ok(false);
        }
        let at_root = rel.as_os_str().is_empty();
        let fd = rustix::fs::openat(dir, c".", open_dir_flags(), Mode::empty())
            .map_err(|e| LayerError::io("opendir", rel, e))?;
        let mut entries =
            rustix::fs::Dir::read_from(&fd).map_err(|e| LayerError::io("opendir", rel, e))?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(|e| LayerError::io("readdir", rel, e))?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." || (at_root && bytes == HIDDEN_DIR.as_bytes()) {
                continue;
            }
            let child = rel.join(OsStr::from_bytes(bytes));
            if matches!(self.slot(fd.as_fd(), name, &child)?, Slot::Item { .. }) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Open `dir/name` as a directory.
    fn open_child_dir(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<OwnedFd> {
        rustix::fs::openat(dir, name, open_dir_flags(), Mode::empty())
            .map_err(|e| LayerError::io("opendir", rel, e))
    }

    /// Checks and the build step shared by the create operations: under the lock,
    /// find the parent, refuse an existing item, mark a placeholder parent dirty,
    /// let `build` form the item in `tmp`, and place it.
    fn create_with(
        &self,
        rel: &Path,
        prefix: &str,
        is_dir: bool,
        build: impl FnOnce(&Temp<'_>) -> std::result::Result<(), Errno>,
    ) -> Result<()> {
        let comps = path::components(rel)?;
        let _guard = self.lock();
        let loc = self.locate_in_dir(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let slot = self.slot(dir, &loc.name, rel)?;
        if let Slot::Item { .. } = slot {
            return Err(LayerError::Exists {
                path: rel.to_path_buf(),
            });
        }
        let new = Temp::new(self, prefix);
        build(&new).map_err(|e| LayerError::io("create", new.rel(), e))?;
        self.dirty_parent(&comps)?;
        self.place_new(new, dir, &loc.name, rel, &slot, is_dir)
    }

    fn owner(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
    }

    /// Create the regular file `rel` (a full item) with permissions `mode & 0o7777`
    /// and owner `uid:gid`, and return it opened `O_RDWR | O_CLOEXEC`.
    ///
    /// The file is formed in `.prjfs/tmp` and renamed into place over a tombstone,
    /// or with `RENAME_NOREPLACE` over nothing. [`LayerError::Exists`] when another
    /// item is there; the parent must be a directory on disk.
    pub fn create_file(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> Result<File> {
        let mut file = None;
        self.create_with(rel, "cr", false, |new| {
            let flags =
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&*self.tmp, new.name(), flags, Mode::from_raw_mode(0o600))?;
            let (u, g) = Self::owner(uid, gid);
            self.ignore_eperm(rustix::fs::fchown(&fd, u, g))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
            file = Some(File::from(fd));
            Ok(())
        })?;
        Ok(file.expect("built"))
    }

    /// Create the directory `rel` (a full item, so never projected) with
    /// permissions `mode & 0o7777` and owner `uid:gid`. Over a tombstone the new
    /// directory is swapped in with `RENAME_EXCHANGE` and the tombstone, now in
    /// `tmp`, removed. Errors as [`Layer::create_file`].
    pub fn mkdir(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> Result<()> {
        self.create_with(rel, "md", true, |new| {
            rustix::fs::mkdirat(&*self.tmp, new.name(), Mode::from_raw_mode(0o700))?;
            let fd = rustix::fs::openat(&*self.tmp, new.name(), open_dir_flags(), Mode::empty())?;
            let (u, g) = Self::owner(uid, gid);
            self.ignore_eperm(rustix::fs::fchown(&fd, u, g))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
        })
    }

    /// Create the symlink `rel` → `target` owned by `uid:gid`. `target` must be
    /// non-empty and free of NUL bytes ([`LayerError::InvalidArgument`]). Errors as
    /// [`Layer::create_file`].
    pub fn symlink(&self, rel: &Path, target: &OsStr, uid: u32, gid: u32) -> Result<()> {
        if target.is_empty() || target.as_bytes().contains(&0) {
            return Err(LayerError::InvalidArgument(
                "a symlink target must be non-empty and free of NUL bytes".into(),
            ));
        }
        self.create_with(rel, "sl", false, |new| {
            rustix::fs::symlinkat(target, &*self.tmp, new.name())?;
            let (u, g) = Self::owner(uid, gid);
            self.ignore_eperm(rustix::fs::chownat(
                &*self.tmp,
                new.name(),
                u,
                g,
                AtFlags::SYMLINK_NOFOLLOW,
            ))
        })
    }

    /// Create a special file `rel`: the type is `mode & S_IFMT` (FIFO, socket,
    /// character or block device, or a regular file when 0), the permissions
    /// `mode & 0o7777` (the process umask does not apply), `rdev` the device number
    /// (`makedev` form) for devices. Directories and symlinks have their own calls
    /// ([`LayerError::InvalidArgument`]). Errors as [`Layer::create_file`].
    pub fn mknod(&self, rel: &Path, mode: u32, rdev: u64, uid: u32, gid: u32) -> Result<()> {
        let file_type = match mode & libc::S_IFMT {
            0 => FileType::RegularFile,
            t => match FileType::from_raw_mode(t) {
                FileType::Directory | FileType::Symlink | FileType::Unknown => {
                    return Err(LayerError::InvalidArgument(format!(
                        "mknod of file type {t:#o}"
                    )))
                }
                ft => ft,
            },
        };
        self.create_with(rel, "mn", false, |new| {
            rustix::fs::mknodat(
                &*self.tmp,
                new.name(),
                file_type,
                Mode::from_raw_mode(0o600),
                rdev,
            )?;
            let (u, g) = Self::owner(uid, gid);
            self.ignore_eperm(rustix::fs::chownat(
                &*self.tmp,
                new.name(),
                u,
                g,
                AtFlags::SYMLINK_NOFOLLOW,
            ))?;
            // Not a symlink: fchmodat without flags does not follow anything.
            rustix::fs::chmodat(
                &*self.tmp,
                new.name(),
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )
        })
    }

    /// Give the item at `existing` the additional name `new` (a hard link; the two
    /// names share the inode and its record). `existing` must not be a directory
    /// ([`LayerError::Denied`]) nor a placeholder file whose content is not on disk
    /// ([`LayerError::InvalidState`]: hydrating one name would replace only that
    /// name's inode). The link is made in `tmp`, then renamed into place as in
    /// [`Layer::create_file`].
    pub fn link(&self, existing: &Path, new: &Path) -> Result<()> {
        let src_comps = path::components(existing)?;
        let comps = path::components(new)?;
        let _guard = self.lock();
        let src = self.locate_in_dir(existing, &src_comps)?;
        let src_dir = src.dir(self.root.as_fd());
        let (st, rec) = self.existing(src_dir, &src.name, existing)?;
        if is_dir_mode(st.st_mode) {
            return Err(LayerError::Denied {
                path: existing.to_path_buf(),
                reason: "hard links to directories are not allowed".into(),
            });
        }
        if let Some(rec) = &rec {
            if rec.kind == FileKind::File
                && rec.state.contains(OnDiskState::PLACEHOLDER)
                && !rec.state.contains(OnDiskState::HYDRATED_PLACEHOLDER)
            {
                return Err(LayerError::InvalidState {
                    path: existing.to_path_buf(),
                    reason: "a placeholder file must be hydrated before it is linked".into(),
                });
            }
        }
        let loc = self.locate_in_dir(new, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let slot = self.slot(dir, &loc.name, new)?;
        if let Slot::Item { .. } = slot {
            return Err(LayerError::Exists {
                path: new.to_path_buf(),
            });
        }
        let tmp = Temp::new(self, "ln");
        rustix::fs::linkat(src_dir, &src.name, &*self.tmp, tmp.name(), AtFlags::empty())
            .map_err(|e| LayerError::io("linkat", new, e))?;
        self.dirty_parent(&comps)?;
        self.place_new(tmp, dir, &loc.name, new, &slot, false)
    }

    /// Delete the item at `rel` as a client's unlink or rmdir does.
    ///
    /// A file, symlink or special file: with `leave_tombstone`, a fresh tombstone
    /// is renamed over it (one step); without, it is unlinked. A directory must hold
    /// nothing but tombstones ([`LayerError::NotEmpty`]): with `leave_tombstone`, a
    /// fresh tombstone is swapped in (`RENAME_EXCHANGE`); without, the directory is
    /// moved into `tmp`; either way the old directory and its tombstones are then
    /// removed from `tmp`. Absent or a tombstone: [`LayerError::NotFound`]. A
    /// placeholder parent becomes dirty.
    pub fn delete(&self, rel: &Path, leave_tombstone: bool) -> Result<()> {
        let comps = path::components(rel)?;
        let _guard = self.lock();
        let loc = self.locate_in_dir(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let (st, _) = self.existing(dir, &loc.name, rel)?;
        let is_dir = is_dir_mode(st.st_mode);
        if is_dir {
            let fd = self.open_child_dir(dir, &loc.name, rel)?;
            if !self.only_tombstones(fd.as_fd(), rel)? {
                return Err(LayerError::NotEmpty {
                    path: rel.to_path_buf(),
                });
            }
        }
        let tombstone = if leave_tombstone {
            Some(self.new_tombstone(rel)?)
        } else {
            None
        };
        self.dirty_parent(&comps)?;
        match (tombstone, is_dir) {
            (Some(tb), false) => {
                rustix::fs::renameat(&*self.tmp, tb.name(), dir, &loc.name)
                    .map_err(|e| LayerError::io("renameat", rel, e))?;
                tb.placed();
            }
            // `tb` then names the old directory, which its guard removes.
            (Some(tb), true) => rustix::fs::renameat_with(
                &*self.tmp,
                tb.name(),
                dir,
                &loc.name,
                RenameFlags::EXCHANGE,
            )
            .map_err(|e| LayerError::io("renameat", rel, e))?,
            (None, true) => {
                let old = Temp::new(self, "rm");
                rustix::fs::renameat_with(
                    dir,
                    &loc.name,
                    &*self.tmp,
                    old.name(),
                    RenameFlags::NOREPLACE,
                )
                .map_err(|e| LayerError::io("renameat", rel, e))?;
            }
            (None, false) => rustix::fs::unlinkat(dir, &loc.name, AtFlags::empty())
                .map_err(|e| LayerError::io("unlinkat", rel, e))?,
        }
        Ok(())
    }

    /// Whether the directory `rel` holds nothing but tombstones on disk (virtual
    /// children are the caller's business). [`LayerError::NotFound`] when absent or
    /// a tombstone, [`LayerError::NotADirectory`] when not a directory.
    pub fn is_dir_empty_on_disk(&self, rel: &Path) -> Result<bool> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            return self.only_tombstones(self.root.as_fd(), rel);
        }
        let loc = self.locate_in_dir(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let (st, _) = self.existing(dir, &loc.name, rel)?;
        if !is_dir_mode(st.st_mode) {
            return Err(LayerError::NotADirectory {
                path: rel.to_path_buf(),
            });
        }
        let fd = self.open_child_dir(dir, &loc.name, rel)?;
        self.only_tombstones(fd.as_fd(), rel)
    }

    /// Mark the parent of the item `comps` dirty if it is a placeholder that is not
    /// yet (spec §4: a directory with local creates or deletes), before the change,
    /// so that the change's own update of the directory's times shows.
    pub(super) fn dirty_parent(&self, comps: &[&OsStr]) -> Result<()> {
        let Some((_, parent)) = comps.split_last() else {
            return Ok(());
        };
        if parent.is_empty() {
            return Ok(());
        }
        let rel: PathBuf = path::join(parent);
        let Some(loc) = path::locate(self.root.as_fd(), &rel, parent)? else {
            return Ok(());
        };
        let dir = loc.dir(self.root.as_fd());
        if let Some(rec) = self.read_record(dir, &loc.name, &rel)? {
            self.make_dirty(dir, &loc.name, &rel, rec)?;
        }
        Ok(())
    }
}
