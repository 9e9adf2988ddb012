//! Crash-safe hydration: content goes to a temp file — unnamed (an `O_TMPFILE`
//! spare), else named in `.prjfs/spare` or `.prjfs/tmp` — which is then put in
//! place whole in one step, formed with its record's state change: linked into
//! the free name of a placeholder kept as a record, renamed over an on-disk
//! placeholder.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::meta::Record;
use super::{path, timespec, Layer};
use crate::types::{FileKind, OnDiskState};

/// Largest piece one `copy_file_range` call is asked for, so that a range
/// recorded as written becomes visible to waiting reads while a big copy goes on.
const COPY_CHUNK: usize = 16 << 20;
/// Buffer size of the user-space fallback of [`Hydration::copy_from`].
const BUFFER_CHUNK: usize = 1 << 20;

/// One hydration in progress: a temp file receiving the content of a placeholder.
///
/// `Send + Sync`: writes may come from any thread, in any order and size. Dropping
/// it without [`Layer::finish_hydration`] deletes the temp file.
#[derive(Debug)]
pub struct Hydration {
    /// The temp file; shared with the readers of [`Hydration::reader`].
    file: Arc<File>,
    stream_id: u64,
    /// The temp file's directory and name: `.prjfs/tmp`, or `.prjfs/spare`
    /// when the temp file is a spare taken where it was made (emptied by the
    /// next [`Layer::open`] alike). `None`: an unnamed file (`O_TMPFILE`),
    /// which nothing but this fd holds until it is linked.
    temp: Option<(Arc<OwnedFd>, CString)>,
    /// Written ranges `[start, end)`: sorted, disjoint and non-adjacent.
    ranges: Mutex<Vec<(u64, u64)>>,
    /// At least the end of every write tried, raised before its bytes go to
    /// the file (a failed write may leave some there unrecorded): the temp
    /// file, empty when made, holds no byte at or beyond it.
    reached: AtomicU64,
    /// True once the hydration is finishing or finished: writes are refused.
    /// Writes hold it shared for their whole duration and finishing holds it
    /// exclusively, so a write either lands before the file is checked and
    /// put in place, or is refused; never into a file already in place.
    sealed: RwLock<bool>,
    /// Set once the temp file has been renamed into place.
    placed: AtomicBool,
    /// `(st_dev, st_ino)` of the placeholder: the content belongs to that item,
    /// wherever it has been renamed to by the time the hydration finishes.
    /// For a placeholder kept as a record: `(0, serial)` of the record.
    item: (u64, u64),
    /// For a placeholder kept as a record: the path the provider knows it by,
    /// which identifies it if it gets an on-disk item before the end.
    origin: Option<PathBuf>,
    /// The owner and permission bits the temp file has while nothing has
    /// formed it yet (taken by the first forming, which changes them).
    shape: Mutex<Option<super::spare::Shape>>,
}

impl Hydration {
    /// Identifies this hydration (unique within its layer).
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Write `data` at `offset` of the content.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| LayerError::InvalidArgument("write beyond the largest offset".into()))?;
        let sealed = self.sealed.read().unwrap_or_else(|e| e.into_inner());
        if *sealed {
            return Err(self.sealed_error());
        }
        self.reached.fetch_max(end, Ordering::SeqCst);
        self.file
            .write_all_at(data, offset)
            .map_err(|e| LayerError::Io {
                op: "pwrite",
                path: self.temp_path(),
                source: e,
            })?;
        // Recorded only after the bytes are in the file, so `covers` never claims
        // data that a failed write did not deliver.
        let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        insert_range(&mut ranges, offset, end);
        drop(ranges);
        drop(sealed);
        Ok(())
    }

    /// The temp file's path as errors name it.
    fn temp_path(&self) -> PathBuf {
        match &self.temp {
            Some((_, name)) => Path::new(".prjfs/tmp").join(std::ffi::OsStr::new(
                std::str::from_utf8(name.to_bytes()).unwrap_or("?"),
            )),
            None => PathBuf::from(".prjfs/spare/(unnamed)"),
        }
    }

    fn sealed_error(&self) -> LayerError {
        LayerError::InvalidState {
            path: Path::new(".prjfs/tmp").to_path_buf(),
            reason: "the hydration is finished: no more data is taken".into(),
        }
    }

    /// Copy up to `len` bytes from `src` at `src_offset` into the content at
    /// `offset`, in the kernel where it can (`copy_file_range`: no user-space
    /// buffer, a reflink or in-kernel copy on the same file system), else through a
    /// buffer. Returns the bytes copied: fewer than `len` only at the end of `src`.
    /// Like [`Hydration::write_at`], a range is recorded only once its bytes are in
    /// the temp file.
    pub fn copy_from(
        &self,
        offset: u64,
        src: std::os::fd::BorrowedFd<'_>,
        src_offset: u64,
        len: u64,
    ) -> Result<u64> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| LayerError::InvalidArgument("write beyond the largest offset".into()))?;
        src_offset
            .checked_add(len)
            .ok_or_else(|| LayerError::InvalidArgument("read beyond the largest offset".into()))?;
        let io_err = |op: &'static str, e: std::io::Error| LayerError::Io {
            op,
            path: self.temp_path(),
            source: e,
        };
        let sealed = self.sealed.read().unwrap_or_else(|e| e.into_inner());
        if *sealed {
            return Err(self.sealed_error());
        }
        self.reached.fetch_max(end, Ordering::SeqCst);
        let mut copied = 0u64;
        let mut kernel_copy = true;
        while copied < len {
            let want = usize::try_from(len - copied)
                .unwrap_or(usize::MAX)
                .min(COPY_CHUNK);
            let n = if kernel_copy {
                let mut from = src_offset + copied;
                let mut to = offset + copied;
                match rustix::fs::copy_file_range(
                    src,
                    Some(&mut from),
                    &self.file,
                    Some(&mut to),
                    want,
                ) {
                    Ok(n) => n,
                    Err(Errno::INTR) => continue,
                    // Not possible between these two files (another file system,
                    // a kernel or file system without support): copy by hand.
                    Err(Errno::XDEV | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS)
                        if copied == 0 =>
                    {
                        kernel_copy = false;
                        continue;
                    }
                    Err(e) => return Err(io_err("copy_file_range", e.into())),
                }
            } else {
                let mut buf = vec![0u8; want.min(BUFFER_CHUNK)];
                let n = match rustix::io::pread(src, &mut buf, src_offset + copied) {
                    Ok(n) => n,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(io_err("pread", e.into())),
                };
                self.file
                    .write_all_at(&buf[..n], offset + copied)
                    .map_err(|e| io_err("pwrite", e))?;
                n
            };
            if n == 0 {
                break;
            }
            copied += n as u64;
            let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
            insert_range(&mut ranges, offset + copied - n as u64, offset + copied);
        }
        debug_assert!(offset + copied <= end);
        drop(sealed);
        Ok(copied)
    }

    /// The temp file, for reading what has been written (`pread`): it stays
    /// valid after the file is put in place (the same inode) and after this
    /// hydration is dropped. The same open file as the hydration's (no
    /// second descriptor: a `dup` would share it anyway).
    pub fn reader(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Whether every byte of `[start, end)` has been written.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        ranges.iter().any(|&(s, e)| s <= start && end <= e)
    }

    /// Cut the temp file to `size` bytes, unless no write reached beyond it
    /// (the file then has exactly `size` bytes: the caller checked that
    /// `[0, size)` was written, and the writes are sealed). `rel` names the
    /// item in errors.
    fn cut_to(&self, size: u64, rel: &Path) -> Result<()> {
        if self.reached.load(Ordering::SeqCst) <= size {
            return Ok(());
        }
        self.file.set_len(size).map_err(|source| LayerError::Io {
            op: "ftruncate",
            path: rel.to_path_buf(),
            source,
        })
    }

    /// The owner and permission bits of the temp file as made, if known and
    /// not formed since; the caller is about to form it.
    fn take_shape(&self) -> Option<super::spare::Shape> {
        self.shape.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The first unwritten range within `[0, size)`.
    fn first_gap(&self, size: u64) -> Option<(u64, u64)> {
        let ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        let mut pos = 0;
        for &(s, e) in ranges.iter() {
            if pos >= size {
                break;
            }
            if s > pos {
                return Some((pos, s.min(size)));
            }
            pos = pos.max(e);
        }
        (pos < size).then_some((pos, size))
    }
}

impl Drop for Hydration {
    fn drop(&mut self) {
        if !self.placed.load(Ordering::SeqCst) {
            // An unnamed file goes with its fd.
            if let Some((dir, name)) = &self.temp {
                let _ = rustix::fs::unlinkat(&**dir, name, AtFlags::empty());
            }
        }
    }
}

/// Add `[start, end)` to a sorted list of disjoint, non-adjacent ranges.
pub(crate) fn insert_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    // First range that ends at or after `start` (it may touch or overlap).
    let i = ranges.partition_point(|&(_, e)| e < start);
    let mut j = i;
    let (mut s, mut e) = (start, end);
    while j < ranges.len() && ranges[j].0 <= e {
        s = s.min(ranges[j].0);
        e = e.max(ranges[j].1);
        j += 1;
    }
    ranges.splice(i..j, [(s, e)]);
}

#[allow(clippy::unnecessary_cast)]
fn dev_ino(st: &rustix::fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Whether `rec` describes a placeholder file whose content is not on disk yet.
fn needs_hydration(st_mode: u32, rec: &Option<Record>) -> bool {
    let Some(rec) = rec else { return false };
    FileType::from_raw_mode(st_mode) == FileType::RegularFile
        && rec.kind == FileKind::File
        && rec.state.contains(OnDiskState::PLACEHOLDER)
        && !rec.state.contains(OnDiskState::HYDRATED_PLACEHOLDER)
}

impl Layer {
    /// A fresh stream id, never equal to a [`Hydration::stream_id`] of this
    /// layer: for another stream onto one hydration.
    pub fn new_stream_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Start hydrating the placeholder file at `rel`: a fresh temp file receives the
    /// content. Fails unless `rel` is a placeholder file that is not hydrated.
    pub fn begin_hydration(&self, rel: &Path) -> Result<Hydration> {
        let comps = path::components(rel)?;
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let mut origin = None;
        // A record is taken without looking at the disk: an on-disk item
        // made from it since is told from another by its origin when the
        // hydration finishes.
        let virt = self.virtual_at(rel);
        let stat = match virt {
            Some(_) => None,
            None => match rustix::fs::statat(dir, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(Errno::NOENT) => None,
                Err(e) => return Err(LayerError::io("statat", rel, e)),
            },
        };
        let item = match stat {
            Some(st) => {
                let rec = self.read_record(dir, &loc.name, rel)?;
                if !needs_hydration(st.st_mode, &rec) {
                    return Err(LayerError::InvalidState {
                        path: rel.to_path_buf(),
                        reason: "not a placeholder file awaiting hydration".into(),
                    });
                }
                dev_ino(&st)
            }
            // A placeholder kept as a record: no on-disk item (yet).
            None => match virt.or_else(|| self.virtual_at(rel)) {
                Some(v) => {
                    origin = super::virt::item(rel, &v).origin;
                    (0, v.serial)
                }
                None => {
                    return Err(LayerError::NotFound {
                        path: rel.to_path_buf(),
                    })
                }
            },
        };
        // An unnamed spare is made and opened already, and is linked into
        // place (no entry in `.prjfs/spare` to add and remove); else a named
        // spare is used where it was made: one rename less than moving it
        // into `tmp`, and the same garbage for the next open after a crash.
        let (fd, temp, shape) = match self.spares.take_unnamed() {
            Some((fd, shape)) => (fd, None, shape),
            None => {
                let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let (dir, name, flags) = match self.spares.take_in_place(super::spare::Kind::File) {
                    Some((dir, name)) => (dir, name, flags),
                    None => (
                        Arc::clone(&self.tmp),
                        self.temp_name("hy"),
                        flags | OFlags::CREATE | OFlags::EXCL,
                    ),
                };
                let fd = rustix::fs::openat(&*dir, &name, flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| LayerError::io("create hydration file", rel, e))?;
                (fd, Some((dir, name)), None)
            }
        };
        Ok(Hydration {
            file: Arc::new(File::from(fd)),
            stream_id: self.next_id.fetch_add(1, Ordering::Relaxed),
            temp,
            ranges: Mutex::new(Vec::new()),
            reached: AtomicU64::new(0),
            sealed: RwLock::new(false),
            placed: AtomicBool::new(false),
            item,
            origin,
            shape: Mutex::new(shape),
        })
    }

    /// Finish a hydration: check that `[0, size)` was written, give the temp file the
    /// placeholder's user xattrs, mode, owner, times and record (state +
    /// HydratedPlaceholder), then rename it over the placeholder. Bytes written
    /// beyond the size are cut. `rel` is where the placeholder is now (it may have
    /// been renamed since [`Layer::begin_hydration`]); a different item there is
    /// [`LayerError::InvalidState`].
    ///
    /// Crash safety: until the rename, the placeholder is untouched and the temp
    /// file is garbage for the next [`Layer::open`]; the rename replaces it with the
    /// complete file in one step.
    pub fn finish_hydration(&self, h: Hydration, rel: &Path) -> Result<()> {
        self.finish_shared_hydration(&h, rel)
    }

    /// [`Layer::finish_hydration`] of a hydration others may still hold (a
    /// partly present file whose GetFileData commands shared it): writes
    /// still running end first, later ones are refused. A hydration that
    /// fails to finish takes no more data.
    pub fn finish_shared_hydration(&self, h: &Hydration, rel: &Path) -> Result<()> {
        let mut sealed = h.sealed.write().unwrap_or_else(|e| e.into_inner());
        *sealed = true;
        let comps = path::components(rel)?;
        // A placeholder kept as a record (the common case) gets its temp file
        // formed before the layer's lock, from the record as it is now; under
        // the lock only an unchanged record is trusted to have formed it.
        // Hydrations of different files then overlap in all but the rename.
        let formed = match self.virtual_at(rel) {
            Some(vrec) if h.item == (0, vrec.serial) => {
                self.form_virtual(h, rel, &vrec).ok().map(|()| vrec)
            }
            _ => None,
        };
        // The record this hydration began for, if it still stands, is
        // placed without looking at the disk first: linking never replaces,
        // so an on-disk item made there since fails it with `EEXIST`, and the
        // disk's answer is taken below, under the lock, as if it had been
        // looked at first. Such placings share the lock: other files'
        // hydrations finish beside this one, nothing else does.
        if h.item.0 == 0 {
            let _shared = self.share();
            let loc = self.locate_existing_parent(rel, &comps)?;
            if let Some(vrec) = self.virtual_at(rel).filter(|v| v.serial == h.item.1) {
                match self.finish_virtual(h, rel, &loc, vrec, formed.as_ref()) {
                    Err(e) if e.is_errno(libc::EEXIST) => {}
                    r => return r,
                }
            }
        }
        let _guard = self.lock();
        let loc = self.locate_existing_parent(rel, &comps)?;
        let dir = loc.dir(self.root.as_fd());
        let st = match rustix::fs::statat(dir, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => match self.virtual_at(rel) {
                Some(vrec) => return self.finish_virtual(h, rel, &loc, vrec, formed.as_ref()),
                None => {
                    return Err(LayerError::NotFound {
                        path: rel.to_path_buf(),
                    })
                }
            },
            Err(e) => return Err(LayerError::io("statat", rel, e)),
        };
        let rec = self.read_record(dir, &loc.name, rel)?;
        if !needs_hydration(st.st_mode, &rec) {
            return Err(LayerError::InvalidState {
                path: rel.to_path_buf(),
                reason: "no longer a placeholder file awaiting hydration".into(),
            });
        }
        // A record materialized since the hydration began is the same item if
        // the provider knows it by the same path.
        let same = if h.item.0 == 0 {
            rec.as_ref().and_then(|r| r.origin.as_ref()) == h.origin.as_ref()
        } else {
            dev_ino(&st) == h.item
        };
        if !same {
            return Err(LayerError::InvalidState {
                path: rel.to_path_buf(),
                reason: "another placeholder than the one this hydration began for".into(),
            });
        }
        let mut rec = rec.expect("needs_hydration checked the record");
        if let Some((missing_start, missing_end)) = h.first_gap(rec.size) {
            return Err(LayerError::IncompleteData {
                path: rel.to_path_buf(),
                size: rec.size,
                missing_start,
                missing_end,
            });
        }
        h.cut_to(rec.size, rel)?;
        // A dirty placeholder's on-disk times are the local truth; otherwise the
        // record's projected ones are.
        let times = if rec.state.contains(OnDiskState::DIRTY_PLACEHOLDER) {
            let a = super::attr_from_stat(&st);
            (a.atime, a.mtime)
        } else {
            (rec.atime, rec.mtime)
        };
        let times = Timestamps {
            last_access: timespec(times.0),
            last_modification: timespec(times.1),
        };
        rec.state = rec.state | OnDiskState::HYDRATED_PLACEHOLDER;
        self.copy_user_xattrs(dir, &loc.name, h.file.as_fd(), rel)?;
        self.form_item(
            h.file.as_fd(),
            h.take_shape(),
            (st.st_uid, st.st_gid),
            st.st_mode & 0o7777,
            &rec.encode_at(rel),
            &times,
        )
        .map_err(|e| LayerError::io("set attributes", rel, e))?;
        self.place_over(h, dir, &loc.name)
            .map_err(|e| LayerError::io("renameat", rel, e))?;
        h.placed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Layer {
    /// Put the temp file of `h` at `to_dir/to_name` in one step, replacing
    /// what is there: a rename; an unnamed file is linked into `tmp` first.
    fn place_over(
        &self,
        h: &Hydration,
        to_dir: std::os::fd::BorrowedFd<'_>,
        to_name: &std::ffi::CStr,
    ) -> std::result::Result<(), Errno> {
        match &h.temp {
            Some((dir, name)) => rustix::fs::renameat(&**dir, name, to_dir, to_name),
            None => {
                let name = self.temp_name("hy");
                super::spare::link_unnamed(h.file.as_fd(), self.tmp.as_fd(), &name)?;
                rustix::fs::renameat(&*self.tmp, &name, to_dir, to_name).inspect_err(|_| {
                    let _ = rustix::fs::unlinkat(&*self.tmp, &name, AtFlags::empty());
                })
            }
        }
    }

    /// Give the temp file of `h` what the record `vrec` of the placeholder
    /// at `rel` says: owner, mode, times and a HydratedPlaceholder record.
    fn form_virtual(&self, h: &Hydration, rel: &Path, vrec: &super::vstore::VRec) -> Result<()> {
        let mut rec = super::virt::record(rel, vrec);
        rec.state = rec.state | OnDiskState::HYDRATED_PLACEHOLDER;
        let times = Timestamps {
            last_access: timespec(vrec.atime),
            last_modification: timespec(vrec.mtime),
        };
        self.form_item(
            h.file.as_fd(),
            h.take_shape(),
            (vrec.uid, vrec.gid),
            u32::from(vrec.perm),
            &rec.encode_at(rel),
            &times,
        )
        .map_err(|e| LayerError::io("set attributes", rel, e))
    }

    /// [`Layer::finish_hydration`] of a placeholder kept as a record: the
    /// complete temp file, formed with the record's owner, mode, times and a
    /// HydratedPlaceholder record (already, when `formed` is that very
    /// record), is renamed into the free name; then the record goes. One new
    /// inode per hydrated file. Callers hold the layer's lock, for reading at
    /// least.
    fn finish_virtual(
        &self,
        h: &Hydration,
        rel: &Path,
        loc: &super::path::Loc,
        vrec: super::vstore::VRec,
        formed: Option<&super::vstore::VRec>,
    ) -> Result<()> {
        if h.item != (0, vrec.serial) {
            return Err(LayerError::InvalidState {
                path: rel.to_path_buf(),
                reason: "another placeholder than the one this hydration began for".into(),
            });
        }
        if let Some((missing_start, missing_end)) = h.first_gap(vrec.size) {
            return Err(LayerError::IncompleteData {
                path: rel.to_path_buf(),
                size: vrec.size,
                missing_start,
                missing_end,
            });
        }
        h.cut_to(vrec.size, rel)?;
        if formed != Some(&vrec) {
            self.form_virtual(h, rel, &vrec)?;
        }
        let to_dir = loc.dir(self.root.as_fd());
        match &h.temp {
            Some((dir, name)) => rustix::fs::renameat_with(
                &**dir,
                name,
                to_dir,
                &loc.name,
                rustix::fs::RenameFlags::NOREPLACE,
            ),
            None => super::spare::link_unnamed(h.file.as_fd(), to_dir, &loc.name),
        }
        .map_err(|e| LayerError::io("renameat", rel, e))?;
        h.placed.store(true, Ordering::SeqCst);
        self.vstore.remove_shadowed(rel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        insert_range(&mut r, 10, 20);
        insert_range(&mut r, 30, 40);
        assert_eq!(r, [(10, 20), (30, 40)]);
        insert_range(&mut r, 20, 30);
        assert_eq!(r, [(10, 40)]);
        insert_range(&mut r, 0, 5);
        insert_range(&mut r, 50, 60);
        insert_range(&mut r, 3, 55);
        assert_eq!(r, [(0, 60)]);
        insert_range(&mut r, 70, 80);
        insert_range(&mut r, 60, 61);
        assert_eq!(r, [(0, 61), (70, 80)]);
        insert_range(&mut r, 65, 66);
        assert_eq!(r, [(0, 61), (65, 66), (70, 80)]);
    }
}
