//! The directory store as plain functions: resolve a root-relative path in the source
//! tree, describe an item, list a directory, read a file in chunks. No callbacks.
//!
//! Symlinks in the source are items, never followed: metadata comes from
//! `symlink_metadata`, every intermediate component must be a real directory, and
//! files are opened with `O_NOFOLLOW`. (The checks and the later use are separate
//! system calls; a source changed concurrently can race them, as with any mirror.)

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::readahead::Lister;
use prjfs::names::{compare_with, validate_name};
use prjfs::{
    Collation, DirEntry, FileBasicInfo, FileKind, PlaceholderInfo, ProviderError, VersionInfo,
};

/// [`VersionInfo::provider_id`] of every item the directory provider describes.
pub const PROVIDER_ID: &[u8] = b"prjfs-dir";

/// Size of the pieces [`read_file`] hands over (the default copy of the
/// instance writes them through a buffer of this size too).
pub const CHUNK_SIZE: usize = 1 << 20;

/// An item of the source tree found by [`resolve`].
#[derive(Debug)]
pub struct Resolved {
    /// Where the item is in the source tree.
    pub source: PathBuf,
    /// Its last component in the store's spelling (empty for the root).
    pub name: OsString,
    /// Its metadata (not following a symlink).
    pub metadata: Metadata,
}

/// Find `rel` (relative to the virtualization root) under the source directory
/// `root`.
///
/// `rel` must be relative and hold only normal components (`.` is skipped): `..`, an
/// absolute path or an invalid name is [`ProviderError::InvalidName`]. Every
/// component but the last must be a directory, not a symlink to one
/// ([`ProviderError::NotFound`] otherwise). Under [`Collation::CaseInsensitive`] a
/// component that does not exist as spelled matches a name equal under the collation
/// (the byte-smallest such name when there are several).
pub fn resolve(root: &Path, rel: &Path, collation: Collation) -> Result<Resolved, ProviderError> {
    if let Some((file, source, name)) = open_fast(root, rel, collation, OFlags::PATH) {
        if let Ok(metadata) = file.metadata() {
            return Ok(Resolved {
                source,
                name,
                metadata,
            });
        }
    }
    resolve_walk(root, rel, collation)
}

/// [`resolve`] one component at a time: a `symlink_metadata` per component.
/// Decides every error and every case-insensitive match.
fn resolve_walk(root: &Path, rel: &Path, collation: Collation) -> Result<Resolved, ProviderError> {
    let mut source = root.to_path_buf();
    let mut found: Option<(OsString, Metadata)> = None;
    for component in rel.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ProviderError::InvalidName(format!(
                    "{rel:?} is not a path below the root"
                )));
            }
        };
        validate_name(name).map_err(ProviderError::InvalidName)?;
        if let Some((_, parent)) = &found {
            if !parent.is_dir() {
                return Err(ProviderError::NotFound);
            }
        }
        let (spelled, metadata) = lookup(&source, name, collation)?;
        source.push(&spelled);
        found = Some((spelled, metadata));
    }
    match found {
        Some((name, metadata)) => Ok(Resolved {
            source,
            name,
            metadata,
        }),
        None => Ok(Resolved {
            metadata: fs::metadata(root)?,
            source,
            name: OsString::new(),
        }),
    }
}

/// The common case of [`resolve`] in one system call: under the case-sensitive
/// collation, `rel` (only valid normal components) opened with `flags` below
/// `root` by an `openat2` that refuses a symlink in every component, which is
/// what the walk checks one `symlink_metadata` at a time (a symlink as the last
/// component is opened itself with [`OFlags::PATH`]; with other flags the open
/// fails). Returns the file, its source path and its last component; `None`
/// for everything else (not found, a symlink on the way, a root path that
/// itself holds a symlink, an old kernel, an empty `rel`): the walk then
/// answers as before.
fn open_fast(
    root: &Path,
    rel: &Path,
    collation: Collation,
    flags: OFlags,
) -> Option<(File, PathBuf, OsString)> {
    if collation != Collation::CaseSensitive {
        return None;
    }
    let mut name = None;
    for component in rel.components() {
        match component {
            Component::Normal(n) if validate_name(n).is_ok() => name = Some(n),
            _ => return None,
        }
    }
    let name = name?.to_os_string();
    let source = root.join(rel);
    let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(
        rustix::fs::CWD,
        &source,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )
    .ok()?;
    Some((File::from(fd), source, name))
}

/// `name` in the directory `dir`: as spelled, or else (case-insensitive collation) a
/// name equal to it under the collation.
fn lookup(
    dir: &Path,
    name: &OsStr,
    collation: Collation,
) -> Result<(OsString, Metadata), ProviderError> {
    match fs::symlink_metadata(dir.join(name)) {
        Ok(m) => return Ok((name.to_os_string(), m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if collation == Collation::CaseSensitive {
        return Err(ProviderError::NotFound);
    }
    let mut best: Option<OsString> = None;
    for entry in fs::read_dir(dir)? {
        let candidate = entry?.file_name();
        if compare_with(&candidate, name, collation) == Ordering::Equal
            && best.as_ref().is_none_or(|b| candidate < *b)
        {
            best = Some(candidate);
        }
    }
    let spelled = best.ok_or(ProviderError::NotFound)?;
    let metadata = fs::symlink_metadata(dir.join(&spelled))?;
    Ok((spelled, metadata))
}

/// The placeholder describing `rel`: metadata from [`basic_info`], version from
/// [`version_info`], symlink target read without following it.
pub fn placeholder_info(
    root: &Path,
    rel: &Path,
    collation: Collation,
) -> Result<(PlaceholderInfo, Resolved), ProviderError> {
    let item = resolve(root, rel, collation)?;
    let basic = basic_info(&item.metadata).ok_or(ProviderError::NotFound)?;
    let symlink_target = match basic.kind {
        FileKind::Symlink => Some(fs::read_link(&item.source)?.into_os_string()),
        _ => None,
    };
    let info = PlaceholderInfo {
        basic,
        version: version_info(&item.metadata),
        symlink_target,
    };
    Ok((info, item))
}

/// The directory provider's [`Lister`] for [`crate::readahead::ReadAhead`]: a
/// listing read ahead is current while the source directory keeps its inode
/// and its modification and change times (any name added, removed or renamed
/// in it changes them), for at most a second (the attributes of its entries).
pub struct DirLister {
    /// Canonical path of the source directory.
    pub source: PathBuf,
    /// How names in paths are matched.
    pub collation: Collation,
}

/// `(dev, ino, mtime, ctime)` of a directory.
pub type DirStamp = (u64, u64, (i64, i64), (i64, i64));

fn stamp_of(m: &Metadata) -> DirStamp {
    (
        m.dev(),
        m.ino(),
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
    )
}

impl Lister for DirLister {
    type Stamp = DirStamp;
    const MAX_AGE: Option<Duration> = Some(Duration::from_secs(1));

    fn stamp(&self, rel: &Path) -> Result<DirStamp, ProviderError> {
        Ok(stamp_of(
            &resolve(&self.source, rel, self.collation)?.metadata,
        ))
    }

    fn list(&self, rel: &Path) -> Result<(DirStamp, Vec<DirEntry>), ProviderError> {
        let dir = resolve(&self.source, rel, self.collation)?;
        // The stamp is taken before the names are read: a change made while
        // reading leaves a stamp that no longer matches.
        let stamp = stamp_of(&dir.metadata);
        Ok((stamp, list_resolved(&dir, self.collation)?))
    }
}

/// The entries of the directory `rel`, sorted by `collation` (ties by bytes), with
/// symlink targets. Items that are neither files, directories nor symlinks (fifos,
/// sockets, devices) are not projected; an entry that vanishes while listing is
/// skipped. [`ProviderError::NotFound`] if `rel` is missing or not a directory.
pub fn list_dir(
    root: &Path,
    rel: &Path,
    collation: Collation,
) -> Result<Vec<DirEntry>, ProviderError> {
    list_resolved(&resolve(root, rel, collation)?, collation)
}

/// [`list_dir`] of a directory already found by [`resolve`].
pub fn list_resolved(dir: &Resolved, collation: Collation) -> Result<Vec<DirEntry>, ProviderError> {
    if !dir.metadata.is_dir() {
        return Err(ProviderError::NotFound);
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(&dir.source)? {
        let entry = entry?;
        // `DirEntry::metadata` does not follow symlinks.
        let metadata = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(basic) = basic_info(&metadata) else {
            continue;
        };
        let symlink_target = match basic.kind {
            FileKind::Symlink => match fs::read_link(entry.path()) {
                Ok(t) => Some(t.into_os_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        entries.push(DirEntry {
            name: entry.file_name(),
            basic,
            symlink_target,
            version: None,
        });
    }
    entries.sort_by(|a, b| {
        compare_with(&a.name, &b.name, collation).then_with(|| a.name.cmp(&b.name))
    });
    Ok(entries)
}

/// Hand `[offset, offset + length)` of the regular file `rel` to `copy` in pieces of
/// at most [`CHUNK_SIZE`], in order: `copy(file, at, len)` moves `len` bytes from
/// `at` of the source file and returns how many it moved (fewer only at end of
/// file, which ends the loop). Pieces keep a cancelled hydration from copying far
/// past its cancel: the first `copy` error stops the loop and is returned.
pub fn read_file(
    root: &Path,
    rel: &Path,
    collation: Collation,
    offset: u64,
    length: u64,
    mut copy: impl FnMut(&File, u64, u64) -> Result<u64, ProviderError>,
) -> Result<(), ProviderError> {
    let (file, metadata) = match open_fast_read(root, rel, collation) {
        Some(opened) => opened,
        None => {
            let item = resolve_walk(root, rel, collation)?;
            if !item.metadata.is_file() {
                return Err(ProviderError::NotFound);
            }
            (open_source_file(&item.source)?, item.metadata)
        }
    };
    if !metadata.is_file() {
        return Err(ProviderError::NotFound);
    }
    let end = offset
        .saturating_add(length)
        .min(metadata.len().max(offset));
    let mut pos = offset;
    while pos < end {
        let want = (end - pos).min(CHUNK_SIZE as u64);
        let n = copy(&file, pos, want)?;
        if n < want {
            break;
        }
        pos += n;
    }
    Ok(())
}

/// [`open_fast`] for reading, as [`open_source_file`] opens (no access time
/// update when allowed), with the file's metadata. Non-blocking and without a
/// controlling terminal, so that a FIFO or a device that replaced a file in
/// the source is opened without waiting or side effect, and then refused by
/// the caller as the walk refuses it (not a regular file).
fn open_fast_read(root: &Path, rel: &Path, collation: Collation) -> Option<(File, Metadata)> {
    let read = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let (file, _, _) = open_fast(root, rel, collation, read | OFlags::NOATIME)
        .or_else(|| open_fast(root, rel, collation, read))?;
    let metadata = file.metadata().ok()?;
    Some((file, metadata))
}

/// Open a source file for reading without following a symlink and, when allowed
/// (owner or `CAP_FOWNER`), without updating its access time: hydrating a projection
/// is not an access to the source a user made.
fn open_source_file(path: &Path) -> io::Result<File> {
    let open = |flags| File::options().read(true).custom_flags(flags).open(path);
    match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
        other => other,
    }
}

/// The projected metadata of an item: kind, size (file length, symlink target length,
/// 0 for directories), permission bits, mtime, atime, owner. `None` for kinds that are
/// not projected.
pub fn basic_info(metadata: &Metadata) -> Option<FileBasicInfo> {
    let file_type = metadata.file_type();
    let kind = if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_file() {
        FileKind::File
    } else {
        return None;
    };
    Some(FileBasicInfo {
        kind,
        size: if kind == FileKind::Directory {
            0
        } else {
            metadata.len()
        },
        mode: metadata.mode() & 0o7777,
        mtime: system_time(metadata.mtime(), metadata.mtime_nsec()),
        atime: system_time(metadata.atime(), metadata.atime_nsec()),
        owner: Some((metadata.uid(), metadata.gid())),
    })
}

/// Version of an item: [`PROVIDER_ID`], and as content id its inode (u64), size
/// (u64) and mtime in nanoseconds since the epoch (i128, zigzag: 0, −1, 1, … →
/// 0, 1, 2, …), each a LEB128 varint (7 bits a byte, low first): about 15
/// bytes, so that the layer's record of a hydrated file fits in an ext4
/// inode. The encoding is one-to-one: a change of any of the three is a new
/// version. (Placeholders written before 2026-11-30 carry 32 bytes, the
/// three little-endian; they compare unequal to every new id, which only
/// means one more update of such a file under `--watch`.)
pub fn version_info(metadata: &Metadata) -> VersionInfo {
    let mtime_nanos =
        i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec());
    VersionInfo {
        provider_id: PROVIDER_ID.to_vec(),
        content_id: content_id(metadata.ino(), metadata.len(), mtime_nanos),
    }
}

/// The content id [`version_info`] gives a file of inode `ino`, `size` bytes
/// and mtime `mtime_nanos` (ns since the epoch).
pub fn content_id(ino: u64, size: u64, mtime_nanos: i128) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    let zigzag = ((mtime_nanos << 1) ^ (mtime_nanos >> 127)) as u128;
    for mut v in [u128::from(ino), u128::from(size), zigzag] {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

/// A `stat` time as a [`SystemTime`] (times before the epoch included).
fn system_time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = nanos.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nanos)
    }
}
