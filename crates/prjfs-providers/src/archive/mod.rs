//! The archive provider: projects the members of a `.tar`, `.tar.gz`,
//! `.tar.zst` or `.zip` file (recognised by content) without unpacking it.
//!
//! ```no_run
//! use prjfs_providers::archive::ArchiveProvider;
//!
//! let provider = ArchiveProvider::open("/srv/data.tar.gz".as_ref(), "/mnt/root/.prjfs/archive".as_ref(), None)?;
//! println!("{} members", provider.member_count());
//! # Ok::<(), prjfs_providers::archive::ArchiveError>(())
//! ```
//!
//! [`ArchiveProvider::open`] reads the archive once to build an [`index::Index`]
//! of its members and resume points ([`scan`]), laid out as a
//! [`catalog::Catalog`] (lookups and listings straight from it), stored in a
//! state directory (`ROOT/.prjfs/archive` for `prjfs mount`) and reused while
//! the archive's [`index::Fingerprint`] (size, mtime, hash of head and tail)
//! is unchanged.
//! Callbacks answer inline from memory (lookups, listings) or by reading the
//! archive: a plain tar or stored zip member is copied in the kernel
//! (`copy_file_data`); a compressed tar member is decoded from the resume point
//! before it ([`blocks`]), so a read costs at most one [`SPAN`] (gzip) or
//! [`zst::SPAN`] (zstd) of decoding before the member's own bytes.
//!
//! A member that cannot be read whole (past a truncation, a corrupt block, an
//! unsupported method) fails its read with `EIO` and one `error` log line naming
//! the archive, the member and the reason; lookups and listings still work.

pub mod blocks;
pub mod catalog;
pub mod gzip;
pub mod index;
pub mod persist;
pub mod scan;
pub mod zipscan;
pub mod zlib;
pub mod zst;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prjfs::{
    CallbackData, CallbackResult, DirEntry, DirEntryBuffer, EnumerationId, Enumerations,
    FileBasicInfo, FileDataWriter, FileKind, Outcome, PlaceholderInfo, Provider, ProviderError,
    VersionInfo,
};

use blocks::{Blocks, Points};
use catalog::{Catalog, Entry, ROOT};
use index::{Access, Data, Format, Kind};

/// Spacing of gzip resume points in the uncompressed stream: at least this
/// much between points, at deflate block boundaries (zstd cache frames have
/// their own, [`zst::SPAN`]). Reading a member costs at most about this much
/// decoding before its first byte. 256 KiB: gzip windows then take 1/8 of the
/// uncompressed size on disk; see ARCHITECTURE.md for the trade.
pub const SPAN: u64 = 256 * 1024;

/// [`VersionInfo::provider_id`] of every item the archive provider describes.
pub const PROVIDER_ID: &[u8] = b"prjfs-archive";

/// Names of the files in the state directory.
const INDEX_FILE: &str = "index";
const WINDOWS_FILE: &str = "windows";
const CACHE_FILE: &str = "cache.lz4";
/// The cache of index format 2 (zstd frames), removed when an index is built.
const OLD_CACHE_FILE: &str = "cache.zst";

/// Why an archive cannot be projected.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file is none of the formats.
    #[error("not an archive (tar, tar.gz, tar.zst or zip, recognised by content)")]
    NotAnArchive,
    /// The format was recognised but nothing could be read.
    #[error("unreadable archive: {0}")]
    Unreadable(String),
    /// Reading the archive or writing the index failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Progress of the index pass: compressed bytes read so far, of the total.
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

/// How the archive was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The format.
    pub format: Format,
    /// The stored index was reused (the archive is unchanged).
    pub reused: bool,
    /// Members indexed (with added parent directories).
    pub members: usize,
    /// What stopped the index pass early, if anything.
    pub damage: Option<String>,
}

/// Projects an archive. Cheap to clone (shared state).
#[derive(Clone)]
pub struct ArchiveProvider {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    archive: File,
    catalog: Catalog,
    /// Compressed tars only.
    blocks: Option<Blocks>,
    enumerations: Enumerations,
    report: OpenReport,
}

fn open_state(dir: &Path, name: &str) -> io::Result<File> {
    File::open(dir.join(name))
}

/// A stored index of `dir` if it describes the archive as it is now.
fn load(dir: &Path, fingerprint: &index::Fingerprint) -> Option<Catalog> {
    let bytes = std::fs::read(dir.join(INDEX_FILE)).ok()?;
    let catalog = persist::decode(&bytes)?;
    (catalog.fingerprint == *fingerprint).then_some(catalog)
}

/// Write `bytes` to `dir/name` through a temporary name and a rename.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, dir.join(name))
}

impl ArchiveProvider {
    /// Whether `state_dir` holds an index stored for `archive` as it is now
    /// (its fingerprint only: [`ArchiveProvider::open`] checks the whole index
    /// and rebuilds one that is damaged). Costs the fingerprint and one small
    /// read, not a load: `prjfs mount` asks this before its daemon opens the
    /// archive, so that a remount loads the index once.
    pub fn index_is_current(archive: &Path, state_dir: &Path) -> bool {
        let current = || -> io::Result<bool> {
            let file = File::open(archive)?;
            if !file.metadata()?.is_file() {
                return Ok(false);
            }
            let mut head = [0u8; persist::FINGERPRINT_END];
            let mut stored = File::open(state_dir.join(INDEX_FILE))?;
            io::Read::read_exact(&mut stored, &mut head)?;
            Ok(persist::stored_fingerprint(&head) == Some(persist::fingerprint(&file)?))
        };
        current().unwrap_or(false)
    }

    /// Open `archive`, reusing the index in `state_dir` (created if missing)
    /// when the archive is unchanged, else building it (one pass, `progress`
    /// told how far it is) and storing it there.
    pub fn open(
        archive: &Path,
        state_dir: &Path,
        progress: Option<Progress>,
    ) -> Result<Self, ArchiveError> {
        let file = File::open(archive)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(ArchiveError::NotAnArchive);
        }
        let fingerprint = persist::fingerprint(&file)?;
        std::fs::create_dir_all(state_dir)?;
        let (catalog, reused) = match load(state_dir, &fingerprint) {
            Some(catalog) => (catalog, true),
            None => (Self::build(&file, state_dir, fingerprint, progress)?, false),
        };
        let blocks = match &catalog.access {
            Access::Direct => None,
            Access::Gzip(points) => Some(Blocks::new(
                file.try_clone()?,
                Points::Gzip {
                    points: points.clone(),
                    windows: open_state(state_dir, WINDOWS_FILE)?,
                },
                catalog.readable_end,
            )),
            Access::Zstd(points) => {
                let cache = open_state(state_dir, CACHE_FILE)?;
                let cache_len = cache.metadata()?.len();
                Some(Blocks::new(
                    file.try_clone()?,
                    Points::Zstd {
                        points: points.clone(),
                        cache,
                        cache_len,
                    },
                    catalog.readable_end,
                ))
            }
        };
        let report = OpenReport {
            format: catalog.format,
            reused,
            members: catalog.len(),
            damage: catalog.damage.clone(),
        };
        if let Some(damage) = &catalog.damage {
            tracing::warn!(
                "{}: {damage}; {} members indexed, those not read whole give EIO",
                archive.display(),
                catalog.len()
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path: archive.to_path_buf(),
                archive: file,
                catalog,
                blocks,
                enumerations: Enumerations::new(),
                report,
            }),
        })
    }

    fn build(
        file: &File,
        dir: &Path,
        fingerprint: index::Fingerprint,
        progress: Option<Progress>,
    ) -> Result<Catalog, ArchiveError> {
        let format = scan::detect(file)?;
        // The old index goes first: a pass that fails leaves none.
        let _ = std::fs::remove_file(dir.join(INDEX_FILE));
        let _ = std::fs::remove_file(dir.join(OLD_CACHE_FILE));
        let windows_tmp = dir.join(format!("{WINDOWS_FILE}.tmp"));
        let cache_tmp = dir.join(format!("{CACHE_FILE}.tmp"));
        let outputs = scan::Outputs {
            windows: File::create(&windows_tmp)?,
            cache: File::create(&cache_tmp)?,
        };
        let total = fingerprint.size;
        let mut progress = progress;
        let report: Box<dyn FnMut(u64) + Send> = Box::new(move |done| {
            if let Some(p) = progress.as_mut() {
                p(done, total);
            }
        });
        let index = scan::build(file, format, fingerprint, outputs, report)?;
        match index.access {
            Access::Gzip(_) => {
                std::fs::rename(&windows_tmp, dir.join(WINDOWS_FILE))?;
                std::fs::remove_file(&cache_tmp)?;
            }
            Access::Zstd(_) => {
                std::fs::rename(&cache_tmp, dir.join(CACHE_FILE))?;
                std::fs::remove_file(&windows_tmp)?;
            }
            Access::Direct => {
                std::fs::remove_file(&windows_tmp)?;
                std::fs::remove_file(&cache_tmp)?;
            }
        }
        let catalog = Catalog::from_index(index);
        replace(dir, INDEX_FILE, &persist::encode(&catalog))?;
        Ok(catalog)
    }

    /// How the archive was opened (format, index reused or built, damage).
    pub fn report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// Members indexed.
    pub fn member_count(&self) -> usize {
        self.inner.catalog.len()
    }

    /// This provider as an instance consumes it (it answers inline).
    pub fn to_provider(&self) -> Arc<dyn Provider> {
        Arc::new(self.clone())
    }

    fn find(&self, path: &Path) -> Result<u32, ProviderError> {
        let bytes = path.as_os_str().as_bytes();
        let norm = index::normalize(bytes).unwrap_or_default();
        self.inner
            .catalog
            .lookup(&norm)
            .ok_or(ProviderError::NotFound)
    }

    fn member(&self, i: u32) -> &Entry {
        self.inner.catalog.entry(i)
    }

    fn symlink_target(&self, i: u32) -> Option<std::ffi::OsString> {
        (self.member(i).kind == Kind::Symlink)
            .then(|| OsStr::from_bytes(self.inner.catalog.target(i)).to_os_string())
    }

    fn basic(&self, m: &Entry) -> FileBasicInfo {
        let mtime = if m.mtime >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(m.mtime as u64)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(m.mtime.unsigned_abs())
        };
        FileBasicInfo {
            kind: match m.kind {
                Kind::File => FileKind::File,
                Kind::Dir => FileKind::Directory,
                Kind::Symlink => FileKind::Symlink,
            },
            size: m.size,
            mode: m.mode,
            mtime,
            atime: mtime,
            owner: None,
        }
    }

    fn version(&self, i: u32) -> VersionInfo {
        let fp = &self.inner.catalog.fingerprint;
        let mut content_id = Vec::with_capacity(20);
        content_id.extend_from_slice(&fp.head_tail.to_le_bytes());
        content_id.extend_from_slice(&fp.size.to_le_bytes());
        content_id.extend_from_slice(&i.to_le_bytes());
        VersionInfo {
            provider_id: PROVIDER_ID.to_vec(),
            content_id,
        }
    }

    fn list(&self, path: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        let dir = self.find(path)?;
        if dir != ROOT && self.member(dir).kind != Kind::Dir {
            return Err(ProviderError::NotFound);
        }
        Ok(self
            .inner
            .catalog
            .children(dir)
            .map(|c| {
                let basic = self.basic(self.member(c));
                // The archive never changes under its index: the listing's
                // version is the one GetPlaceholderInfo would give. A
                // directory's too, so that the listing places it.
                let version = matches!(basic.kind, FileKind::File | FileKind::Directory)
                    .then(|| Box::new(self.version(c)));
                DirEntry {
                    name: OsStr::from_bytes(self.inner.catalog.name(c)).to_os_string(),
                    basic,
                    symlink_target: self.symlink_target(c),
                    version,
                }
            })
            .collect())
    }

    /// Write `[offset, offset + length)` of member `i` to `writer`.
    fn read(
        &self,
        i: u32,
        offset: u64,
        length: u64,
        writer: &FileDataWriter,
    ) -> Result<(), ProviderError> {
        let m = self.member(i);
        let end = offset.saturating_add(length).min(m.size);
        if offset >= end {
            return Ok(());
        }
        let fail = |why: String| {
            tracing::error!(
                "{}: member {:?}: {why}; its read fails with EIO",
                self.inner.path.display(),
                String::from_utf8_lossy(&self.inner.catalog.path(i))
            );
            ProviderError::Io(libc::EIO)
        };
        match &m.data {
            Data::None => Ok(()),
            Data::Broken(why) => Err(fail(why.clone())),
            Data::Stream(start) => match &self.inner.blocks {
                None => {
                    let mut pos = offset;
                    while pos < end {
                        let want = (end - pos).min(1 << 20);
                        let n =
                            writer.copy_from(pos, self.inner.archive.as_fd(), start + pos, want)?;
                        if n == 0 {
                            return Err(fail("the archive ends inside its data".into()));
                        }
                        pos += n;
                    }
                    Ok(())
                }
                Some(blocks) => {
                    let mut cancelled = None;
                    let result = blocks.read(start + offset, end - offset, |at, bytes| {
                        writer.write(offset + at, bytes).map_err(|e| {
                            cancelled = Some(e);
                            io::Error::other("the hydration is gone")
                        })
                    });
                    match (result, cancelled) {
                        (_, Some(e)) => Err(e),
                        (Ok(()), None) => Ok(()),
                        (Err(e), None) => Err(fail(e.to_string())),
                    }
                }
            },
            Data::Zip {
                offset: at,
                csize,
                method,
            } => {
                let mut reader = zipscan::member_reader(&self.inner.archive, *at, *csize, *method)
                    .map_err(|e| fail(e.to_string()))?;
                let mut buf = vec![0u8; 256 * 1024];
                let mut pos = 0u64;
                while pos < end {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => {
                            return Err(fail(format!(
                                "its data ends after {pos} of {} bytes",
                                m.size
                            )))
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(fail(e.to_string())),
                    };
                    let chunk_end = pos + n as u64;
                    if chunk_end > offset {
                        let from = offset.saturating_sub(pos) as usize;
                        let to = (end.min(chunk_end) - pos) as usize;
                        writer.write(pos + from as u64, &buf[from..to])?;
                    }
                    pos = chunk_end;
                }
                Ok(())
            }
        }
    }
}

impl Provider for ArchiveProvider {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let entries = self.list(&cb.path)?;
        self.inner.enumerations.start(cb, id, entries)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.inner
            .enumerations
            .get(cb, id, search_expression, buffer)
    }

    fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.inner.enumerations.end(id)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        let i = self.find(&cb.path)?;
        if i == ROOT {
            return Err(ProviderError::NotFound);
        }
        let m = self.member(i);
        let info = PlaceholderInfo {
            basic: self.basic(m),
            version: self.version(i),
            symlink_target: self.symlink_target(i),
        };
        cb.instance.write_placeholder_info(&cb.path, &info)?;
        Ok(Outcome::Done)
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        let i = self.find(&cb.path)?;
        if i == ROOT || self.member(i).kind != Kind::File {
            return Err(ProviderError::NotFound);
        }
        let writer = FileDataWriter::new(cb.instance.clone(), cb.data_stream_id);
        self.read(i, byte_offset, length, &writer)?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests;
