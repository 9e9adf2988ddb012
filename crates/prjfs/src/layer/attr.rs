//! Attribute changes (chmod, chown, truncate, utimens) and the conversion of
//! placeholders to full items.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, UTIME_NOW, UTIME_OMIT,
};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::meta::Record;
use super::ops::Slot;
use super::path;
use super::temp::Temp;
use super::Layer;
use crate::types::{FileKind, OnDiskState};

/// A timestamp to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// The current time (`UTIME_NOW`).
    Now,
    /// Seconds and nanoseconds since the epoch (nanoseconds below 10⁹).
    At(i64, u32),
}

/// The attributes a [`Layer::set_attr`] changes; `None` leaves one as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`mode & 0o7777` is applied).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size of a regular file.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSpec>,
    /// New modification time.
    pub mtime: Option<TimeSpec>,
}

fn timespec_of(t: Option<TimeSpec>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        Some(TimeSpec::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
        Some(TimeSpec::At(secs, nsecs)) => Timespec {
            tv_sec: secs,
            tv_nsec: nsecs.into(),
        },
    }
}

fn is_placeholder(rec: &Record) -> bool {
    rec.state.contains(OnDiskState::PLACEHOLDER) && !rec.state.contains(OnDiskState::FULL)
}

impl Layer {
    /// Change the attributes of the item at `rel` (empty: the root) on disk, in the
    /// order chown, chmod, truncate, utimens (so that each step keeps the previous
    /// one: chown clears set-id bits, truncation sets mtime). Symlinks are not
    /// followed; their mode cannot change (`EOPNOTSUPP`).
    ///
    /// A placeholder that is not dirty first gets its projected atime and mtime
    /// copied onto the disk item and its Dirty bit set, then the change is applied
    /// (in that order, so a crash never leaves a local change the record does not
    /// admit). A placeholder file keeps its projected size until it is hydrated.
    ///
    /// `size`: only for regular files ([`LayerError::IsADirectory`] for a
    /// directory, [`LayerError::InvalidArgument`] for other kinds); on a
    /// placeholder file that is not hydrated it is [`LayerError::InvalidState`]
    /// (hydrate or [`Layer::convert_to_full`] first); on a hydrated placeholder a
    /// different size changes the content, so the item becomes full (record
    /// removed) before the truncation. Absent or a tombstone:
    /// [`LayerError::NotFound`].
    pub fn set_attr(&self, rel: &Path, a: &SetAttr) -> Result<()> {
        let comps = path::components(rel)?;
        for t in [a.atime, a.mtime] {
            if let Some(TimeSpec::At(_, nsecs)) = t {
                if nsecs >= 1_000_000_000 {
                    return Err(LayerError::InvalidArgument(format!(
                        "nanoseconds out of range: {nsecs}"
                    )));
                }
            }
        }
        let _guard = self.lock();
        if comps.is_empty() {
            return self.set_root_attr(a);
        }
        let loc = self.locate_in_dir(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let (st, rec) = self.existing(dir, &loc.name, rel)?;
        let file_type = FileType::from_raw_mode(st.st_mode);
        if a.size.is_some() {
            match file_type {
                FileType::RegularFile => {}
                FileType::Directory => {
                    return Err(LayerError::IsADirectory {
                        path: rel.to_path_buf(),
                    })
                }
                _ => {
                    return Err(LayerError::InvalidArgument(format!(
                        "{}: only regular files have a size to set",
                        rel.display()
                    )))
                }
            }
        }
        if let Some(rec) = rec.filter(is_placeholder) {
            let hydrated = rec.state.contains(OnDiskState::HYDRATED_PLACEHOLDER);
            match a.size {
                Some(_) if rec.kind == FileKind::File && !hydrated => {
                    return Err(LayerError::InvalidState {
                        path: rel.to_path_buf(),
                        reason: "hydrate or convert a placeholder file before truncating it".into(),
                    })
                }
                #[allow(clippy::unnecessary_cast)]
                Some(size) if size != st.st_size as u64 => {
                    self.remove_record(dir, &loc.name, rel, &rec)?
                }
                _ => self.make_dirty(dir, &loc.name, rel, rec)?,
            }
        }
        apply(dir, &loc.name, rel, file_type, a)
    }

    /// [`Layer::set_attr`] of the root directory, through its fd.
    fn set_root_attr(&self, a: &SetAttr) -> Result<()> {
        let root = self.root.as_fd();
        if a.size.is_some() {
            return Err(LayerError::IsADirectory {
                path: Default::default(),
            });
        }
        if a.uid.is_some() || a.gid.is_some() {
            rustix::fs::fchown(root, a.uid.map(Uid::from_raw), a.gid.map(Gid::from_raw))
                .map_err(|e| LayerError::io("fchown", "", e))?;
        }
        if let Some(mode) = a.mode {
            rustix::fs::fchmod(root, Mode::from_raw_mode(mode & 0o7777))
                .map_err(|e| LayerError::io("fchmod", "", e))?;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let times = Timestamps {
                last_access: timespec_of(a.atime),
                last_modification: timespec_of(a.mtime),
            };
            rustix::fs::futimens(root, &times).map_err(|e| LayerError::io("futimens", "", e))?;
        }
        Ok(())
    }

    /// Make the placeholder `dir/name` full, after copying its projected times
    /// onto it unless it is dirty (the times shown stay the same): its record
    /// becomes a mark (state Full only, see `ops`'s "Projected names"), so a
    /// later delete still hides the provider's item of that name. The record is
    /// replaced in one `setxattr`: it claims no content from then on.
    fn remove_record(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        rec: &Record,
    ) -> Result<()> {
        if !rec.state.contains(OnDiskState::DIRTY_PLACEHOLDER) {
            self.copy_projected_times(dir, name, rel, rec)?;
        }
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::io("statat", rel, e))?;
        let mark = Self::mark_record(&st);
        match self.xattrs.set(dir, name, &self.meta_name, &mark.encode()) {
            Ok(()) => Ok(()),
            // A symlink placeholder where records do not stick has none.
            Err(Errno::LOOP) | Err(Errno::PERM) if rec.kind == FileKind::Symlink => self
                .xattrs
                .remove(dir, name, &self.meta_name)
                .map_err(|e| LayerError::io("removexattrat", rel, e)),
            Err(e) => Err(LayerError::io("setxattrat", rel, e)),
        }
    }

    /// Change the attributes of an open file that may have no name any more (a
    /// file unlinked or renamed over while open): `fchown`, `fchmod`,
    /// `ftruncate`, `futimens` on the descriptor, in [`Layer::set_attr`]'s
    /// order. A size change through a descriptor opened read-only reopens the
    /// file for writing through `/proc/self/fd`. Records are not touched: an
    /// item without a name is nobody's placeholder.
    pub fn set_attr_of_open_file(&self, file: &std::fs::File, a: &SetAttr) -> Result<()> {
        let what = Path::new("(open file)");
        for t in [a.atime, a.mtime] {
            if let Some(TimeSpec::At(_, nsecs)) = t {
                if nsecs >= 1_000_000_000 {
                    return Err(LayerError::InvalidArgument(format!(
                        "nanoseconds out of range: {nsecs}"
                    )));
                }
            }
        }
        if a.uid.is_some() || a.gid.is_some() {
            rustix::fs::fchown(file, a.uid.map(Uid::from_raw), a.gid.map(Gid::from_raw))
                .map_err(|e| LayerError::io("fchown", what, e))?;
        }
        if let Some(mode) = a.mode {
            rustix::fs::fchmod(file, Mode::from_raw_mode(mode & 0o7777))
                .map_err(|e| LayerError::io("fchmod", what, e))?;
        }
        if let Some(size) = a.size {
            let st = rustix::fs::fstat(file).map_err(|e| LayerError::io("fstat", what, e))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {}
                FileType::Directory => {
                    return Err(LayerError::IsADirectory {
                        path: what.to_path_buf(),
                    })
                }
                _ => {
                    return Err(LayerError::InvalidArgument(
                        "only regular files have a size to set".into(),
                    ))
                }
            }
            let access = rustix::fs::fcntl_getfl(file)
                .map_err(|e| LayerError::io("fcntl", what, e))?
                & OFlags::RWMODE;
            if access == OFlags::RDONLY {
                use std::os::fd::AsRawFd;
                let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
                let w = rustix::fs::open(
                    proc.as_str(),
                    OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| LayerError::io("reopen", what, e))?;
                rustix::fs::ftruncate(&w, size)
            } else {
                rustix::fs::ftruncate(file, size)
            }
            .map_err(|e| LayerError::io("ftruncate", what, e))?;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let times = Timestamps {
                last_access: timespec_of(a.atime),
                last_modification: timespec_of(a.mtime),
            };
            rustix::fs::futimens(file, &times).map_err(|e| LayerError::io("futimens", what, e))?;
        }
        Ok(())
    }

    /// Turn the item at `rel` into a full item (ProjFS: its content is about to
    /// change locally).
    ///
    /// * A hydrated placeholder file, or a symlink placeholder: its record is
    ///   removed (content and times stay as shown).
    /// * A placeholder file that is not hydrated: with `truncate`, it is replaced by
    ///   an empty full file with the same mode, owner and user xattrs, times now —
    ///   formed in `.prjfs/tmp` and renamed over it, so a crash leaves it a
    ///   placeholder or full and empty; without, [`LayerError::InvalidState`] (its
    ///   content must be fetched first).
    /// * Already full: nothing to do (`truncate` is then the caller's business).
    /// * A directory or a tombstone: [`LayerError::InvalidState`]; absent:
    ///   [`LayerError::NotFound`].
    pub fn convert_to_full(&self, rel: &Path, truncate: bool) -> Result<()> {
        let comps = path::components(rel)?;
        let _guard = self.lock();
        let loc = self.locate_in_dir(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let invalid = |reason: &str| LayerError::InvalidState {
            path: rel.to_path_buf(),
            reason: reason.into(),
        };
        let (st, rec) = match self.slot(dir, &loc.name, rel)? {
            Slot::Absent => {
                return Err(LayerError::NotFound {
                    path: rel.to_path_buf(),
                })
            }
            Slot::Tombstone => return Err(invalid("a tombstone cannot become full")),
            Slot::Item { st, rec } => (st, rec),
        };
        let Some(rec) = rec.filter(is_placeholder) else {
            return Ok(());
        };
        match rec.kind {
            FileKind::Directory => Err(invalid("directories never become full")),
            FileKind::File if !rec.state.contains(OnDiskState::HYDRATED_PLACEHOLDER) => {
                if !truncate {
                    return Err(invalid("hydrate a placeholder file before it becomes full"));
                }
                self.replace_with_empty(dir, &loc.name, rel, &st)
            }
            _ => self.remove_record(dir, &loc.name, rel, &rec),
        }
    }

    /// Replace `dir/name` by an empty full file with its mode, owner and user
    /// xattrs.
    fn replace_with_empty(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        st: &Stat,
    ) -> Result<()> {
        let new = Temp::new(self, "cf");
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.tmp, new.name(), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| LayerError::io("openat", new.rel(), e))?;
        self.copy_user_xattrs(dir, name, fd.as_fd(), rel)?;
        // Full, at the placeholder's (projected) name: marked.
        let st_new = rustix::fs::fstat(&fd).map_err(|e| LayerError::io("fstat", new.rel(), e))?;
        super::xattr::fset(
            fd.as_fd(),
            &self.meta_name,
            &Self::mark_record(&st_new).encode(),
        )
        .map_err(|e| LayerError::io("fsetxattr", new.rel(), e))?;
        self.ignore_eperm(rustix::fs::fchown(
            &fd,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        ))
        .and_then(|()| rustix::fs::fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777)))
        .map_err(|e| LayerError::io("set attributes", new.rel(), e))?;
        rustix::fs::renameat(&*self.tmp, new.name(), dir, name)
            .map_err(|e| LayerError::io("renameat", rel, e))?;
        new.placed();
        Ok(())
    }
}

/// Apply `a` to `dir/name` (of type `file_type`), not following symlinks.
fn apply(
    dir: BorrowedFd<'_>,
    name: &CStr,
    rel: &Path,
    file_type: FileType,
    a: &SetAttr,
) -> Result<()> {
    if a.uid.is_some() || a.gid.is_some() {
        rustix::fs::chownat(
            dir,
            name,
            a.uid.map(Uid::from_raw),
            a.gid.map(Gid::from_raw),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| LayerError::io("fchownat", rel, e))?;
    }
    if let Some(mode) = a.mode {
        if file_type == FileType::Symlink {
            return Err(LayerError::io("fchmodat", rel, Errno::OPNOTSUPP));
        }
        // Not a symlink (checked under the lock): fchmodat follows nothing.
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| LayerError::io("fchmodat", rel, e))?;
    }
    if let Some(size) = a.size {
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
            .map_err(|e| LayerError::io("openat", rel, e))?;
        rustix::fs::ftruncate(&fd, size).map_err(|e| LayerError::io("ftruncate", rel, e))?;
    }
    if a.atime.is_some() || a.mtime.is_some() {
        let times = Timestamps {
            last_access: timespec_of(a.atime),
            last_modification: timespec_of(a.mtime),
        };
        rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::io("utimensat", rel, e))?;
    }
    Ok(())
}
