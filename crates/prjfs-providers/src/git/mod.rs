//! The git provider: projects the tree of one revision of a local repository
//! (bare or not), read through `gix`, and moves it to another revision
//! ([`GitProvider::switch`], ProjFS's view change).
//!
//! * Mounting resolves the revision to a commit and reads that commit only;
//!   each listing or lookup reads the trees on its path (decoded once per tree
//!   id, [`tree::TreeCache`]); sizes come from object headers
//!   (`find_header`: a pack entry's header, without inflating the blob); a
//!   blob is read only when its file is hydrated (GetFileData), or for a
//!   symlink, whose target it is.
//! * Modes are git's: 0644, 0755 for executables and directories, symlinks as
//!   symlinks, a submodule as an empty directory. Every item has the commit's
//!   committer time.
//! * VersionInfo: provider id `git`, ContentId = one byte for the kind (so a
//!   mode change is a change) then the object id. A placeholder whose
//!   ContentId is unchanged across a switch is left alone.
//! * The view is a commit id: new commits in the repository change nothing
//!   until a switch.
//! * A missing or corrupt object fails the callback that needs it with `EIO`
//!   and one log line naming the object and the path; the mount stays up.

pub mod switch;
pub mod tree;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use gix::ObjectId;
use prjfs::{
    CallbackData, CallbackResult, DirEntry, DirEntryBuffer, EnumerationId, Enumerations,
    FileBasicInfo, FileKind, Outcome, PlaceholderInfo, Provider, ProviderError, VersionInfo,
};

use crate::readahead::{Lister, ReadAhead};
use tree::{EntryKind, TreeCache, TreeEntry};

/// [`VersionInfo::provider_id`] of every item the git provider describes.
pub const PROVIDER_ID: &[u8] = b"git";

/// Errors opening a repository or resolving a revision.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is not a git repository.
    #[error("{path}: not a git repository ({reason})")]
    NotARepository {
        /// What was given.
        path: PathBuf,
        /// What gix said.
        reason: String,
    },
    /// The revision does not name a commit.
    #[error("unknown revision {rev:?}: {reason}")]
    UnknownRevision {
        /// As given.
        rev: String,
        /// What gix said.
        reason: String,
    },
    /// An object could not be read or decoded.
    #[error("{0}")]
    Object(String),
}

/// The commit a git projection shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The commit.
    pub commit: ObjectId,
    /// Its root tree.
    pub tree: ObjectId,
    /// Its committer time: the time of every projected item.
    pub time: SystemTime,
}

/// What the provider read from the object database, for tests and `status`.
#[derive(Debug, Default)]
pub struct GitCounters {
    /// Blobs read for file content (hydrations).
    pub file_blobs: AtomicU64,
    /// Blobs read as symlink targets.
    pub link_blobs: AtomicU64,
    /// Object headers read (sizes).
    pub headers: AtomicU64,
}

/// Projects one commit of a local repository. A cheap handle: clones share the
/// view, the tree cache and the enumeration sessions.
#[derive(Clone)]
pub struct GitProvider {
    inner: Arc<Inner>,
}

struct Inner {
    repo: gix::ThreadSafeRepository,
    /// Thread-local handles made from `repo`, reused: making one reads the
    /// repository's configuration.
    handles: Mutex<Vec<gix::Repository>>,
    /// The repository's directory (`.git`, or the bare repository).
    git_dir: PathBuf,
    view: RwLock<View>,
    trees: TreeCache,
    enumerations: Enumerations,
    counters: GitCounters,
    /// Listings of subdirectories read ahead of a walk ([`crate::readahead`]).
    read_ahead: Arc<ReadAhead<GitLister>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.read_ahead.stop();
    }
}

/// The git provider's [`Lister`]: a listing is that of the commit projected
/// when it was taken, current while that commit is (a `switch` makes every
/// listing read ahead before it stale). Holds the provider weakly: the
/// read-ahead's thread must not keep it alive.
struct GitLister(Weak<Inner>);

impl GitLister {
    fn provider(&self) -> Result<GitProvider, ProviderError> {
        self.0
            .upgrade()
            .map(|inner| GitProvider { inner })
            .ok_or(ProviderError::Io(libc::ESHUTDOWN))
    }
}

impl Lister for GitLister {
    type Stamp = ObjectId;
    const MAX_AGE: Option<Duration> = None;

    fn stamp(&self, _rel: &Path) -> Result<ObjectId, ProviderError> {
        Ok(self.provider()?.view().commit)
    }

    fn list(&self, rel: &Path) -> Result<(ObjectId, Vec<DirEntry>), ProviderError> {
        let git = self.provider()?;
        let view = git.view();
        let entries = git.list_in(&view, rel)?;
        Ok((view.commit, entries))
    }
}

impl GitProvider {
    /// Open the repository at (or above) `path` and project `rev` (a branch,
    /// tag, commit id or any revision git understands).
    pub fn open(path: &Path, rev: &str) -> Result<GitProvider, GitError> {
        let repo = gix::discover(path).map_err(|e| GitError::NotARepository {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let git_dir = repo.git_dir().to_path_buf();
        let view = resolve(&repo, rev)?;
        Ok(GitProvider {
            inner: Arc::new_cyclic(|weak| Inner {
                repo: repo.into_sync(),
                handles: Mutex::new(Vec::new()),
                git_dir,
                view: RwLock::new(view),
                trees: TreeCache::default(),
                enumerations: Enumerations::new(),
                counters: GitCounters::default(),
                read_ahead: ReadAhead::new(GitLister(weak.clone())),
            }),
        })
    }

    /// The repository's git directory (canonical when it could be made so).
    pub fn git_dir(&self) -> PathBuf {
        self.inner
            .git_dir
            .canonicalize()
            .unwrap_or_else(|_| self.inner.git_dir.clone())
    }

    /// The commit projected now.
    pub fn view(&self) -> View {
        self.inner.view.read().expect("view lock").clone()
    }

    /// The commit `rev` names in the repository now.
    pub fn resolve(&self, rev: &str) -> Result<View, GitError> {
        resolve(&self.repo(), rev)
    }

    /// The listing read-ahead's counters.
    pub fn read_ahead_counters(&self) -> &Arc<crate::readahead::PrefetchCounters> {
        self.inner.read_ahead.counters()
    }

    /// What was read so far.
    pub fn counters(&self) -> &GitCounters {
        &self.inner.counters
    }

    fn repo(&self) -> Handle<'_> {
        let repo = self
            .inner
            .handles
            .lock()
            .expect("handles lock")
            .pop()
            .unwrap_or_else(|| {
                let mut r = self.inner.repo.to_thread_local();
                // Delta bases and small objects cached per handle.
                r.object_cache_size_if_unset(8 << 20);
                r
            });
        Handle {
            repo: Some(repo),
            pool: &self.inner.handles,
        }
    }

    fn set_view(&self, view: View) {
        *self.inner.view.write().expect("view lock") = view;
    }

    /// The entry at `rel` in `view`.
    fn entry(
        &self,
        repo: &gix::Repository,
        view: &View,
        rel: &Path,
    ) -> Result<TreeEntry, ProviderError> {
        match self.inner.trees.lookup(repo, view.tree, rel) {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(ProviderError::NotFound),
            Err(e) => Err(object_error(rel, &e)),
        }
    }

    /// The placeholder of `entry` (at `rel`) in `view`.
    fn info(
        &self,
        repo: &gix::Repository,
        view: &View,
        rel: &Path,
        entry: &TreeEntry,
    ) -> Result<PlaceholderInfo, ProviderError> {
        let (kind, mode) = match entry.kind {
            EntryKind::Tree | EntryKind::Submodule => (FileKind::Directory, 0o755),
            EntryKind::Blob => (FileKind::File, 0o644),
            EntryKind::Executable => (FileKind::File, 0o755),
            EntryKind::Link => (FileKind::Symlink, 0o777),
        };
        let mut symlink_target = None;
        let size = match entry.kind {
            EntryKind::Tree | EntryKind::Submodule => 0,
            EntryKind::Link => {
                let target = self.blob(repo, rel, entry.oid)?;
                self.inner
                    .counters
                    .link_blobs
                    .fetch_add(1, Ordering::Relaxed);
                let len = target.len() as u64;
                symlink_target = Some(OsStr::from_bytes(&target).to_os_string());
                len
            }
            EntryKind::Blob | EntryKind::Executable => {
                self.inner.counters.headers.fetch_add(1, Ordering::Relaxed);
                repo.find_header(entry.oid)
                    .map_err(|e| {
                        object_error(rel, &GitError::Object(format!("blob {}: {e}", entry.oid)))
                    })?
                    .size()
            }
        };
        let mut content_id = Vec::with_capacity(1 + entry.oid.as_bytes().len());
        content_id.push(entry.kind.tag());
        content_id.extend_from_slice(entry.oid.as_bytes());
        Ok(PlaceholderInfo {
            basic: FileBasicInfo {
                kind,
                size,
                mode,
                mtime: view.time,
                atime: view.time,
                owner: None,
            },
            version: VersionInfo {
                provider_id: PROVIDER_ID.to_vec(),
                content_id,
            },
            symlink_target,
        })
    }

    /// The content of blob `oid` (for `rel`).
    fn blob(
        &self,
        repo: &gix::Repository,
        rel: &Path,
        oid: ObjectId,
    ) -> Result<Vec<u8>, ProviderError> {
        let object = repo
            .find_object(oid)
            .map_err(|e| object_error(rel, &GitError::Object(format!("blob {oid}: {e}"))))?;
        if object.kind != gix::object::Kind::Blob {
            return Err(object_error(
                rel,
                &GitError::Object(format!("object {oid} is a {}, not a blob", object.kind)),
            ));
        }
        Ok(object.detach().data)
    }

    /// The entries of the directory `rel` in the current view.
    pub fn list(&self, rel: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        self.list_in(&self.view(), rel)
    }

    /// The entries of the directory `rel` in `view`.
    fn list_in(&self, view: &View, rel: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        let repo = self.repo();
        let dir = self.entry(&repo, view, rel)?;
        match dir.kind {
            EntryKind::Tree => {}
            EntryKind::Submodule => return Ok(Vec::new()),
            _ => return Err(ProviderError::NotFound),
        }
        let tree = self
            .inner
            .trees
            .get(&repo, dir.oid)
            .map_err(|e| object_error(rel, &e))?;
        let mut out = Vec::with_capacity(tree.entries.len());
        for e in &tree.entries {
            let info = self.info(&repo, view, &rel.join(&e.name), e)?;
            // A listing is of one commit's tree: the version is the one
            // GetPlaceholderInfo would give in this view. Directories get
            // theirs too, so that the listing places them (no lookup asks).
            let version = matches!(info.basic.kind, FileKind::File | FileKind::Directory)
                .then(|| Box::new(info.version));
            out.push(DirEntry {
                name: e.name.clone(),
                basic: info.basic,
                symlink_target: info.symlink_target,
                version,
            });
        }
        Ok(out)
    }

    /// The placeholder info of `rel` in the current view.
    pub fn placeholder_info(&self, rel: &Path) -> Result<PlaceholderInfo, ProviderError> {
        let repo = self.repo();
        let view = self.view();
        let entry = self.entry(&repo, &view, rel)?;
        self.info(&repo, &view, rel, &entry)
    }
}

/// A repository handle borrowed from the pool, given back on drop.
struct Handle<'a> {
    repo: Option<gix::Repository>,
    pool: &'a Mutex<Vec<gix::Repository>>,
}

impl std::ops::Deref for Handle<'_> {
    type Target = gix::Repository;
    fn deref(&self) -> &gix::Repository {
        self.repo.as_ref().expect("a handle until dropped")
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.repo.take() {
            self.pool.lock().expect("handles lock").push(r);
        }
    }
}

/// Resolve `rev` to a commit of `repo`.
fn resolve(repo: &gix::Repository, rev: &str) -> Result<View, GitError> {
    let unknown = |reason: String| GitError::UnknownRevision {
        rev: rev.to_string(),
        reason,
    };
    let id = repo
        .rev_parse_single(rev)
        .map_err(|e| unknown(e.to_string()))?;
    let commit = id
        .object()
        .map_err(|e| unknown(e.to_string()))?
        .peel_to_commit()
        .map_err(|e| unknown(e.to_string()))?;
    let tree = commit
        .tree_id()
        .map_err(|e| unknown(e.to_string()))?
        .detach();
    let seconds = commit.time().map_err(|e| unknown(e.to_string()))?.seconds;
    let time = if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    };
    Ok(View {
        commit: commit.id,
        tree,
        time,
    })
}

/// Log a failed object read once, with the path it was for, and fail the
/// callback with `EIO`.
fn object_error(rel: &Path, e: &GitError) -> ProviderError {
    tracing::error!("git: {}: {e}", rel.display());
    ProviderError::Io(libc::EIO)
}

impl Provider for GitProvider {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let entries = self.inner.read_ahead.list(&cb.path)?;
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
        let info = self.placeholder_info(&cb.path)?;
        cb.instance.write_placeholder_info(&cb.path, &info)?;
        Ok(Outcome::Done)
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        let repo = self.repo();
        let view = self.view();
        let entry = self.entry(&repo, &view, &cb.path)?;
        if !matches!(entry.kind, EntryKind::Blob | EntryKind::Executable) {
            return Err(ProviderError::NotFound);
        }
        // The content the placeholder was written for: a placeholder of an
        // earlier view whose switch has not reached it yet reads its own blob.
        let oid = match cb.version.as_ref().map(|v| v.content_id.as_slice()) {
            Some([_, id @ ..]) if id.len() == entry.oid.as_bytes().len() => {
                ObjectId::try_from(id).unwrap_or(entry.oid)
            }
            _ => entry.oid,
        };
        let data = self.blob(&repo, &cb.path, oid)?;
        self.inner
            .counters
            .file_blobs
            .fetch_add(1, Ordering::Relaxed);
        let start = usize::try_from(byte_offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = usize::try_from(byte_offset.saturating_add(length))
            .unwrap_or(usize::MAX)
            .min(data.len());
        // Streamed to the hydration in 1 MiB pieces.
        let mut at = start;
        while at < end {
            let n = (end - at).min(1 << 20);
            cb.instance
                .write_file_data(cb.data_stream_id, at as u64, &data[at..at + n])?;
            at += n;
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests;
