//! Validation of layer-relative paths and resolution of an item's parent directory
//! beneath the root fd, never following symlinks, with the parents last used kept
//! open ([`DirCache`]).

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::HIDDEN_DIR;

/// The components of `rel`, checked: relative, no `..`, no NUL byte, not inside the
/// hidden directory. `.` components are dropped; empty means the root itself.
pub(crate) fn components(rel: &Path) -> Result<Vec<&OsStr>> {
    let invalid = |reason| LayerError::InvalidPath {
        path: rel.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Err(invalid("absolute path")),
            Component::ParentDir => return Err(invalid("`..` component")),
            Component::CurDir => {}
            Component::Normal(name) => {
                if name.as_bytes().contains(&0) {
                    return Err(invalid("NUL byte in name"));
                }
                if out.is_empty() && name == OsStr::new(HIDDEN_DIR) {
                    return Err(invalid("the layer's hidden directory"));
                }
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// Join checked components back into a relative path.
pub(crate) fn join(comps: &[&OsStr]) -> PathBuf {
    comps.iter().collect()
}

/// A non-root item: its parent directory (open `O_PATH`, or the root) and its name.
#[derive(Debug)]
pub(crate) struct Loc {
    /// `None`: the parent is the root itself.
    parent: Option<Arc<OwnedFd>>,
    /// The item's name in its parent.
    pub name: CString,
}

impl Loc {
    /// The parent directory's fd.
    pub fn dir<'a>(&'a self, root: BorrowedFd<'a>) -> BorrowedFd<'a> {
        match &self.parent {
            Some(fd) => fd.as_fd(),
            None => root,
        }
    }
}

/// Whether an errno from resolving a path means "there is no such directory" (a
/// component is missing, not a directory, or a symlink, which the layer never
/// follows).
pub(crate) fn is_absent(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

/// Open the directory `comps` beneath `root` with `flags` (plus `O_DIRECTORY`,
/// `O_NOFOLLOW`, `O_CLOEXEC`), following no symlink and never leaving the root.
pub(crate) fn open_dir(
    root: BorrowedFd<'_>,
    comps: &[&OsStr],
    flags: OFlags,
) -> std::result::Result<OwnedFd, Errno> {
    let flags = flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if comps.is_empty() {
        return rustix::fs::openat(root, c".", flags, Mode::empty());
    }
    let path = join(comps);
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(root, &path, flags, Mode::empty(), resolve) {
            // openat2 reports EAGAIN when a concurrent rename may have raced the
            // lookup; a retry is the documented answer.
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            Err(Errno::NOSYS) => return open_dir_walk(root, comps, flags),
            other => return other,
        }
    }
}

/// Component-wise `O_NOFOLLOW` walk for kernels without `openat2`.
fn open_dir_walk(
    root: BorrowedFd<'_>,
    comps: &[&OsStr],
    flags: OFlags,
) -> std::result::Result<OwnedFd, Errno> {
    let walk = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur: Option<OwnedFd> = None;
    for (i, name) in comps.iter().enumerate() {
        let f = if i + 1 == comps.len() { flags } else { walk };
        let dir = cur.as_ref().map_or(root, |fd| fd.as_fd());
        cur = Some(rustix::fs::openat(dir, *name, f, Mode::empty())?);
    }
    Ok(cur.expect("comps is not empty"))
}

/// Locate a non-root item. `Ok(None)` when its parent directory is absent.
/// The parent is opened through `dirs`, which keeps it for the next item there.
pub(crate) fn locate(
    root: BorrowedFd<'_>,
    dirs: &DirCache,
    rel: &Path,
    comps: &[&OsStr],
) -> Result<Option<Loc>> {
    let (name, parent_comps) = comps.split_last().ok_or(LayerError::InvalidPath {
        path: rel.to_path_buf(),
        reason: "the root itself",
    })?;
    let name = CString::new(name.as_bytes()).expect("components() rejected NUL bytes");
    let parent = if parent_comps.is_empty() {
        None
    } else {
        match dirs.open(root, parent_comps) {
            Ok(fd) => Some(fd),
            Err(e) if is_absent(e) => return Ok(None),
            Err(e) => return Err(LayerError::io("open parent", join(parent_comps), e)),
        }
    };
    Ok(Some(Loc { parent, name }))
}

/// Directories kept open (`O_PATH`) by their path below the root, so that
/// the several steps of one request (a lookup, a hydration's start, finish
/// and open) and the next request in the same directory resolve the parent
/// once instead of once per step.
///
/// Invariant: an fd in the map is the directory at its path now. The layer
/// reaches the root only through itself, and every change that moves or
/// removes a directory ([`crate::layer::Layer::rename`], deletes, tombstones
/// and provider-driven removals of directories) calls [`DirCache::moved`]
/// after its system call and before it returns, under the layer's lock. An
/// fd opened by a lookup racing such a change is kept only if no
/// [`DirCache::moved`] ran since the lookup read the generation before
/// opening it, so a directory opened before the change never enters the map
/// afterwards. A lookup racing the change may still use the old directory
/// until `moved` runs: the view from before the change, which a lookup that
/// opened its parent itself could get just the same.
///
/// A daemon at rest keeps none: a thread of the cache (started at the first
/// directory kept) closes them all once none was used for [`KEEP_IDLE`], so
/// the daemon's fds at rest are what they were without the cache.
#[derive(Debug, Default)]
pub(crate) struct DirCache {
    shared: Arc<DirShared>,
    /// The thread, once started; joined by [`DirCache::stop`].
    sweeper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct DirShared {
    state: Mutex<DirState>,
    wake: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct DirState {
    /// Bumped by every [`DirCache::moved`].
    generation: u64,
    dirs: rustc_hash::FxHashMap<PathBuf, Arc<OwnedFd>>,
    /// When a kept directory was last found or kept.
    last_use: Option<std::time::Instant>,
    started: bool,
    /// Nothing is kept any more (stopped, or the thread could not start).
    stopped: bool,
}

/// Directories kept open at most; the map is emptied when it is full (a walk
/// moves on to other directories, and reopening costs what it did uncached).
const DIRS_KEPT: usize = 64;

/// How long kept directories stay open without a use.
const KEEP_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

impl DirShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, DirState> {
        // Every update leaves the map consistent: a panic cannot break it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: close the kept directories once none was used for
    /// [`KEEP_IDLE`]; sleep while none is kept.
    fn sweep(&self) {
        let mut st = self.lock();
        loop {
            if st.stopped {
                st.dirs.clear();
                return;
            }
            if st.dirs.is_empty() {
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let idle = st.last_use.map_or(KEEP_IDLE, |t| t.elapsed());
            if idle >= KEEP_IDLE {
                st.dirs.clear();
                continue;
            }
            st = self
                .wake
                .wait_timeout(st, KEEP_IDLE - idle)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl DirCache {
    /// The directory `comps` (not empty) beneath `root`, `O_PATH`, as
    /// [`open_dir`] opens it.
    fn open(
        &self,
        root: BorrowedFd<'_>,
        comps: &[&OsStr],
    ) -> std::result::Result<Arc<OwnedFd>, Errno> {
        let path = join(comps);
        let generation = {
            let mut st = self.shared.lock();
            if let Some(fd) = st.dirs.get(&path).cloned() {
                st.last_use = Some(std::time::Instant::now());
                return Ok(fd);
            }
            st.generation
        };
        let fd = Arc::new(open_dir(root, comps, OFlags::PATH)?);
        let mut st = self.shared.lock();
        if st.generation == generation && !st.stopped {
            if st.dirs.len() >= DIRS_KEPT {
                st.dirs.clear();
            }
            st.dirs.insert(path, fd.clone());
            st.last_use = Some(std::time::Instant::now());
            if !st.started {
                st.started = true;
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new()
                    .name("prjfs-dirs".into())
                    .spawn(move || shared.sweep());
                match spawned {
                    Ok(t) => *self.sweeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(t),
                    // No thread to close them at rest: keep none.
                    Err(_) => {
                        st.stopped = true;
                        st.dirs.clear();
                    }
                }
            } else if st.dirs.len() == 1 {
                self.shared.wake.notify_one();
            }
        }
        Ok(fd)
    }

    /// How many directories are kept open.
    pub(crate) fn kept(&self) -> usize {
        self.shared.lock().dirs.len()
    }

    /// How many times [`DirCache::moved`] ran: a writer that read it before
    /// locating a directory and reads the same number later (both under the
    /// layer's lock, or the later one) knows no directory moved in between.
    pub(crate) fn generation(&self) -> u64 {
        self.shared.lock().generation
    }

    /// A directory below the root was moved, replaced or removed: forget
    /// every directory kept.
    pub(crate) fn moved(&self) {
        let mut st = self.shared.lock();
        st.generation += 1;
        st.dirs.clear();
    }

    /// Close every kept directory, keep none from now on, and end the thread
    /// (when the layer is dropped).
    pub(crate) fn stop(&self) {
        {
            let mut st = self.shared.lock();
            st.stopped = true;
            st.dirs.clear();
            self.shared.wake.notify_all();
        }
        let thread = self
            .sweeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_checked() {
        assert!(components(Path::new("")).expect("root").is_empty());
        assert_eq!(components(Path::new("a/./b")).expect("ok").len(), 2);
        assert!(components(Path::new("/a")).is_err());
        assert!(components(Path::new("a/../b")).is_err());
        assert!(components(Path::new("..")).is_err());
        assert!(components(Path::new(".prjfs")).is_err());
        assert!(components(Path::new(".prjfs/tmp/x")).is_err());
        assert!(
            components(Path::new("d/.prjfs")).is_ok(),
            "only the root's .prjfs is hidden"
        );
        assert!(components(Path::new(OsStr::from_bytes(b"a\0b"))).is_err());
    }

    #[test]
    fn kept_directories_are_closed_at_rest() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(tmp.path().join("a/b")).expect("dirs");
        let root = rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("root");
        let dirs = DirCache::default();
        let a = dirs.open(root.as_fd(), &[OsStr::new("a")]).expect("a");
        let again = dirs
            .open(root.as_fd(), &[OsStr::new("a")])
            .expect("a again");
        assert!(Arc::ptr_eq(&a, &again), "the kept directory is reused");
        dirs.open(root.as_fd(), &[OsStr::new("a"), OsStr::new("b")])
            .expect("a/b");
        assert_eq!(dirs.kept(), 2);
        dirs.moved();
        assert_eq!(dirs.kept(), 0);
        dirs.open(root.as_fd(), &[OsStr::new("a")]).expect("a");
        assert_eq!(dirs.kept(), 1);
        // Closed by the thread once at rest: waited for (a loaded machine may
        // run the thread late), bounded far above KEEP_IDLE.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while dirs.kept() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "kept directories still open a minute after their last use"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        dirs.stop();
        dirs.open(root.as_fd(), &[OsStr::new("a")])
            .expect("a after stop");
        assert_eq!(dirs.kept(), 0, "none kept once stopped");
    }
}
