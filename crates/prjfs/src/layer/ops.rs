//! Local changes to names: create, mkdir, symlink, mknod, link and delete, plus
//! the helpers the other mutations share (what is at a name, tombstones in `tmp`,
//! moving a fully formed item into place).
//!
//! Every operation holds the layer's lock from its checks to its last rename, and
//! each name changes in one `rename`: a crash leaves it in its old or new state.
//!
//! # Projected names
//!
//! A delete needs to leave a tombstone only at a name the provider projects. A
//! name is taken to be projected when the item there is a placeholder (any
//! state), a tombstone, or a full item *marked* as standing at a projected
//! name: a record whose state is just [`OnDiskState::FULL`]. An item is marked
//! when it replaces a tombstone (create, mkdir, symlink, mknod, link), when a
//! placeholder becomes full, and when a rename moves it onto a projected name;
//! a rename onto a name that was free removes the mark. A full item without a
//! mark was created where nothing projected was (the kernel looks every name up
//! first, and a name the provider has becomes a placeholder then), so deleting
//! it leaves nothing behind. Where the layer cannot store a record on an item
//! (symlinks and special files without root or without the `*xattrat` calls),
//! every such item counts as projected. Marks only ever err on the side of a
//! tombstone too many: a mark is set before the change that needs it and
//! removed after the change that makes it unneeded, and a placeholder moved to
//! a free name still counts as projected.

use std::ffi::{CStr, CString, OsStr};
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
use super::{disk_kind, time_pair, xattr, Layer, HIDDEN_DIR};
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
        if let Some(loc) = self.locate(rel, comps)? {
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

    /// Whether the name `rel` is a projected one (see the module's "Projected
    /// names"): a placeholder, a tombstone or a marked full item is there, or an
    /// item that cannot carry a mark. `false` when nothing is there. The root
    /// is projected.
    pub fn is_projected_name(&self, rel: &Path) -> Result<bool> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            return Ok(true);
        }
        let Some(loc) = self.locate(rel, &comps)? else {
            return Ok(false);
        };
        Ok(
            match self.slot(loc.dir(self.root.as_fd()), &loc.name, rel)? {
                Slot::Absent => false,
                Slot::Tombstone => true,
                Slot::Item { st, rec } => self.at_projected_name(&st, rec.as_ref()),
            },
        )
    }

    /// Whether the item (`st`, `rec`) stands at a projected name.
    pub(super) fn at_projected_name(&self, st: &Stat, rec: Option<&Record>) -> bool {
        rec.is_some() || !self.marks_stick(st.st_mode)
    }

    /// Whether an item of this mode can carry a record (a mark): regular files
    /// and directories always; symlinks and special files only in the
    /// `trusted.` namespace (the kernel refuses `user.` xattrs on them) through
    /// the `*xattrat` calls.
    fn marks_stick(&self, mode: u32) -> bool {
        matches!(
            FileType::from_raw_mode(mode),
            FileType::RegularFile | FileType::Directory
        ) || (self.is_root && self.xattrs.use_at())
    }

    /// The record that marks a full item as standing at a projected name.
    pub(super) fn mark_record(st: &Stat) -> Record {
        #[allow(clippy::unnecessary_cast)]
        let mtime = (st.st_mtime as i64, st.st_mtime_nsec as u32);
        Record {
            state: OnDiskState::FULL,
            kind: disk_kind(st.st_mode),
            size: 0,
            mtime,
            atime: mtime,
            version: VersionInfo::default(),
            origin: None,
            listed: false,
        }
    }

    /// Mark the full item `dir/name` as standing at a projected name (nothing
    /// to do where marks do not stick: such items count as projected anyway).
    pub(super) fn set_mark(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<()> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::io("statat", rel, e))?;
        if !self.marks_stick(st.st_mode) {
            return Ok(());
        }
        self.xattrs
            .set(dir, name, &self.meta_name, &Self::mark_record(&st).encode())
            .map_err(|e| LayerError::io("setxattrat", rel, e))
    }

    /// Remove the mark of the full item `dir/name`, if it has one (placeholders
    /// keep their records). A file with several names keeps it: the mark is
    /// the inode's, and another name may need it.
    pub(super) fn clear_mark(&self, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<()> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::io("statat", rel, e))?;
        if !is_dir_mode(st.st_mode) && st.st_nlink > 1 {
            return Ok(());
        }
        match self.read_record(dir, name, rel)? {
            Some(rec) if rec.state == OnDiskState::FULL => self
                .xattrs
                .remove(dir, name, &self.meta_name)
                .map_err(|e| LayerError::io("removexattrat", rel, e)),
            _ => Ok(()),
        }
    }

    /// The root's flag saying that the full items of this root carry marks.
    fn marks_flag(&self) -> CString {
        let ns = if self.is_root { "trusted" } else { "user" };
        CString::new(format!("{ns}.prjfs.marks")).expect("no NUL")
    }

    /// Make a root written before full items carried marks safe to use: mark
    /// every full item without a record in a projected directory (the root, a
    /// placeholder directory), since its name may be a projected one the old
    /// code did not record, then flag the root so this runs once. Returns how
    /// many items were marked. Items that cannot be read are skipped (an item
    /// whose record cannot be read counts as projected anyway).
    pub fn upgrade_marks(&self) -> Result<u64> {
        let flag = self.marks_flag();
        let mut buf = [0u8; 8];
        if xattr::fget(self.root.as_fd(), &flag, &mut buf)
            .map_err(|e| LayerError::io("fgetxattr", "", e))?
            .is_some()
        {
            return Ok(0);
        }
        let _guard = self.lock();
        let mut marked = 0;
        let mut pending = vec![(PathBuf::new(), true)];
        while let Some((rel, projected)) = pending.pop() {
            let comps = path::components(&rel)?;
            let fd = path::open_dir(self.root.as_fd(), &comps, OFlags::RDONLY)
                .map_err(|e| LayerError::io("opendir", &rel, e))?;
            let mut entries =
                rustix::fs::Dir::read_from(&fd).map_err(|e| LayerError::io("opendir", &rel, e))?;
            while let Some(entry) = entries.read() {
                let entry = entry.map_err(|e| LayerError::io("readdir", &rel, e))?;
                let name = entry.file_name();
                let bytes = name.to_bytes();
                if bytes == b"."
                    || bytes == b".."
                    || (comps.is_empty() && bytes == HIDDEN_DIR.as_bytes())
                {
                    continue;
                }
                let child = rel.join(OsStr::from_bytes(bytes));
                let (st, rec) = match self.slot(fd.as_fd(), name, &child) {
                    Ok(Slot::Item { st, rec }) => (st, rec),
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!("{}: not checked for a mark: {e}", child.display());
                        continue;
                    }
                };
                if is_dir_mode(st.st_mode) {
                    let lists_provider = rec.as_ref().is_some_and(|r| {
                        r.state.contains(OnDiskState::PLACEHOLDER)
                            && !r.state.contains(OnDiskState::FULL)
                    });
                    pending.push((child.clone(), lists_provider));
                }
                if projected && rec.is_none() {
                    self.set_mark(fd.as_fd(), name, &child)?;
                    marked += 1;
                }
            }
        }
        xattr::fset(self.root.as_fd(), &flag, b"1")
            .map_err(|e| LayerError::io("fsetxattr", "", e))?;
        if marked > 0 {
            tracing::info!("marked {marked} full items of a root written by an older prjfs");
        }
        Ok(marked)
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
        if let Slot::Tombstone = slot {
            // The name is a projected one: a delete must hide it again.
            self.set_mark(self.tmp.as_fd(), new.name(), &new.rel())?;
        }
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
        // One inode, one record, two paths: its origin cannot be "the item's
        // own path" any more.
        self.pin_origins(src_dir, &src.name, existing)?;
        let tmp = Temp::new(self, "ln");
        rustix::fs::linkat(src_dir, &src.name, &*self.tmp, tmp.name(), AtFlags::empty())
            .map_err(|e| LayerError::io("linkat", new, e))?;
        if let (Slot::Tombstone, None) = (&slot, &rec) {
            // One inode, one record: the mark holds for every name of the file
            // (a tombstone too many at worst).
            self.set_mark(self.tmp.as_fd(), tmp.name(), &tmp.rel())?;
        }
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
        self.vstore.settle();
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
        if is_dir {
            self.dirs.moved();
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
    /// yet (ProjFS: a directory with local creates or deletes), before the change,
    /// so that the change's own update of the directory's times shows.
    pub(super) fn dirty_parent(&self, comps: &[&OsStr]) -> Result<()> {
        let Some((_, parent)) = comps.split_last() else {
            return Ok(());
        };
        if parent.is_empty() {
            return Ok(());
        }
        let rel: PathBuf = path::join(parent);
        let Some(loc) = self.locate(&rel, parent)? else {
            return Ok(());
        };
        let dir = loc.dir(self.root.as_fd());
        if let Some(rec) = self.read_record(dir, &loc.name, &rel)? {
            self.make_dirty(dir, &loc.name, &rel, rec)?;
        }
        Ok(())
    }
}
