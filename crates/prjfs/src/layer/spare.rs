//! Spare inodes: empty files and directories made ahead of need in
//! `.prjfs/spare` by a thread of the layer, so that placing a directory
//! placeholder renames one into `tmp`, and a hydration fills an unnamed one
//! (`O_TMPFILE`, held open here) and links it into place, instead of
//! allocating an inode on the request's time.
//!
//! Why: allocating an inode is the costliest step of both (ext4 without a
//! journal checks every free inode it considers for a recent delete; on a file
//! system where many files were just deleted one `mkdir` took 0.3-0.4 ms, and
//! a first-pass walk of a 1,000-directory git projection spent half of the
//! daemon's time there). A rename within one file system allocates nothing.
//!
//! Invariants:
//! * A spare is an empty file (mode 0600) or an empty directory (mode 0700)
//!   owned by the daemon, with no record and no xattr: exactly what the code that
//!   takes it would have created itself, so whoever takes one forms it as before.
//! * Nothing refers to a spare: a crash leaves garbage only, which
//!   [`super::Layer::open`] removes with the rest of `.prjfs/spare`. A spare
//!   taken in place ([`Spares::take_in_place`], a hydration's temp file) is
//!   such garbage too until it is renamed out. An unnamed spare has no name
//!   to leave: a crash frees it (the file system's orphan list).
//! * Unnamed spares are made only where the file system supports `O_TMPFILE`;
//!   after its first refusal none is asked for again and hydrations take
//!   named spares as before.
//! * A kind is stocked only once it has been asked for, up to [`STOCK`]; when
//!   the stock is empty (or after [`Spares::release`]) the caller creates its
//!   item itself, as it did without spares.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::fs::{AtFlags, Mode, OFlags};

/// Spares of each kind kept ready.
const STOCK: usize = 32;

/// What a spare is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
}

#[derive(Default)]
struct Stock {
    names: Vec<CString>,
    /// Asked for at least once: worth keeping in stock.
    wanted: bool,
}

/// Unnamed files (`O_TMPFILE`), held open.
#[derive(Default)]
struct Unnamed {
    fds: Vec<OwnedFd>,
    wanted: bool,
    /// The file system refused `O_TMPFILE` or linking such a file.
    unsupported: bool,
    /// One was made and linked once.
    probed: bool,
    /// Owner and permission bits every unnamed spare is made with (they
    /// are all made alike, by this process in one directory), learnt from
    /// the first: forming a spare skips what it has already.
    shape: Option<Shape>,
}

/// Owner and permission bits of a new file: `(uid, gid, mode & 0o7777)`.
pub(super) type Shape = (u32, u32, u32);

/// What the thread is to make next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Make {
    Named(Kind),
    Unnamed,
}

#[derive(Default)]
struct State {
    files: Stock,
    dirs: Stock,
    unnamed: Unnamed,
    next: u64,
    started: bool,
    stopped: bool,
}

impl State {
    fn stock(&mut self, kind: Kind) -> &mut Stock {
        match kind {
            Kind::File => &mut self.files,
            Kind::Dir => &mut self.dirs,
        }
    }

    /// A kind that is wanted and below its stock.
    fn short(&self) -> Option<Make> {
        let u = &self.unnamed;
        if u.wanted && !u.unsupported && u.fds.len() < STOCK {
            return Some(Make::Unnamed);
        }
        [(Kind::Dir, &self.dirs), (Kind::File, &self.files)]
            .into_iter()
            .find(|(_, s)| s.wanted && s.names.len() < STOCK)
            .map(|(k, _)| Make::Named(k))
    }
}

struct Shared {
    /// `.prjfs/spare`.
    dir: Arc<OwnedFd>,
    state: Mutex<State>,
    wake: Condvar,
}

/// The spares of one layer.
pub(super) struct Spares {
    shared: Arc<Shared>,
    /// The thread, once started; joined by [`Spares::release`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Spares")
            .field("files", &st.files.names.len())
            .field("dirs", &st.dirs.names.len())
            .field("unnamed", &st.unnamed.fds.len())
            .field("stopped", &st.stopped)
            .finish()
    }
}

impl Spares {
    /// Spares kept in `dir` (`.prjfs/spare`, emptied by the caller).
    pub(super) fn new(dir: OwnedFd) -> Self {
        Self {
            shared: Arc::new(Shared {
                dir: Arc::new(dir),
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Rename a spare of `kind` to `to_dir/to_name` (which must be free).
    /// `false`: none was ready (or the rename failed); the caller creates the
    /// item itself.
    pub(super) fn take(&self, kind: Kind, to_dir: BorrowedFd, to_name: &CStr) -> bool {
        let Some(name) = self.pop(kind) else {
            return false;
        };
        match rustix::fs::renameat(self.shared.dir.as_fd(), &name, to_dir, to_name) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("taking a spare failed: {e}");
                self.shared.remove(kind, &name);
                false
            }
        }
    }

    /// Take a spare of `kind` where it is: `.prjfs/spare` and its name there.
    /// It is the caller's from now on (no longer in stock, so
    /// [`Spares::release`] leaves it alone): the caller renames it away or
    /// removes it. `None`: none was ready; the caller creates its item itself.
    pub(super) fn take_in_place(&self, kind: Kind) -> Option<(Arc<OwnedFd>, CString)> {
        self.pop(kind)
            .map(|name| (Arc::clone(&self.shared.dir), name))
    }

    /// An unnamed spare file (open for reading and writing, in
    /// `.prjfs/spare`'s file system) and the owner and permission bits it
    /// has, when known (made with mode 0644 less the umask: nobody can open
    /// it but through this fd): the caller's from now on, to link somewhere
    /// ([`link_unnamed`]) or drop. `None`: none is ready, or the file system
    /// has none to give; the caller takes a named one.
    pub(super) fn take_unnamed(&self) -> Option<(OwnedFd, Option<Shape>)> {
        let mut st = self.shared.lock();
        if st.stopped || st.unnamed.unsupported {
            return None;
        }
        st.unnamed.wanted = true;
        let fd = st.unnamed.fds.pop();
        let wake = st.unnamed.fds.len() <= STOCK / 2;
        let shape = st.unnamed.shape;
        self.start_or_wake(&mut st, wake);
        fd.map(|fd| (fd, shape))
    }

    /// A spare of `kind` out of stock, if one is ready; wakes the thread to
    /// make another (starting it at the first call).
    fn pop(&self, kind: Kind) -> Option<CString> {
        let mut st = self.shared.lock();
        if st.stopped {
            return None;
        }
        let stock = st.stock(kind);
        stock.wanted = true;
        let name = stock.names.pop();
        // The thread is woken once the stock is down to half, and then makes
        // it full: one wake-up per half a stock taken, not one per spare.
        let wake = stock.names.len() <= STOCK / 2;
        self.start_or_wake(&mut st, wake);
        name
    }

    /// Start the thread at the first call; wake it when `wake`.
    fn start_or_wake(&self, st: &mut State, wake: bool) {
        if !st.started {
            st.started = true;
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("prjfs-spares".into())
                .spawn(move || shared.fill());
            match spawned {
                Ok(handle) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
                // No thread: no spares; callers create their items.
                Err(_) => st.stopped = true,
            }
        }
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Stop making spares and remove those in stock (at unmount: the root
    /// keeps no spare). Later [`Spares::take`]s find none. Returns once the
    /// thread has ended (it removes a spare it was making when stopped), so
    /// no spare is left behind.
    pub(super) fn release(&self) {
        {
            let mut st = self.shared.lock();
            st.stopped = true;
            self.shared.wake.notify_all();
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let (files, dirs) = {
            let mut st = self.shared.lock();
            // Closing an unnamed spare frees it.
            st.unnamed.fds.clear();
            (
                std::mem::take(&mut st.files.names),
                std::mem::take(&mut st.dirs.names),
            )
        };
        for name in files {
            self.shared.remove(Kind::File, &name);
        }
        for name in dirs {
            self.shared.remove(Kind::Dir, &name);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: make spares while a wanted kind is short, sleep otherwise.
    fn fill(self: Arc<Self>) {
        loop {
            let (make, name) = {
                let mut st = self.lock();
                let make = loop {
                    if st.stopped {
                        return;
                    }
                    if let Some(make) = st.short() {
                        break make;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                };
                st.next += 1;
                let name = match make {
                    Make::Named(kind) => {
                        CString::new(format!("{}{}", prefix(kind), st.next)).expect("no NUL")
                    }
                    Make::Unnamed => CString::default(),
                };
                (make, name)
            };
            let kind = match make {
                Make::Named(kind) => kind,
                Make::Unnamed => {
                    match self.make_unnamed() {
                        Ok(fd) => {
                            let mut st = self.lock();
                            if st.stopped {
                                return; // the fd closes: nothing is left
                            }
                            st.unnamed.fds.push(fd);
                        }
                        Err(e) => {
                            tracing::debug!("no unnamed spares here (O_TMPFILE: {e})");
                            self.lock().unnamed.unsupported = true;
                        }
                    }
                    continue;
                }
            };
            if let Err(e) = self.make(kind, &name) {
                tracing::debug!("making a spare failed: {e}");
                // Do not spin on a full or read-only file system: stop; callers
                // then create their items (and report the error themselves).
                self.lock().stopped = true;
                return;
            }
            let mut st = self.lock();
            if st.stopped {
                drop(st);
                self.remove(kind, &name);
                return;
            }
            st.stock(kind).names.push(name);
        }
    }

    /// An unnamed file; the first one is linked to a name and unlinked again
    /// first, so that a file system (or a `/proc`) that cannot link one is
    /// found out here rather than at the end of a hydration.
    fn make_unnamed(&self) -> rustix::io::Result<OwnedFd> {
        let fd = rustix::fs::openat(
            self.dir.as_fd(),
            c".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        if !self.lock().unnamed.probed {
            let st = rustix::fs::fstat(&fd)?;
            self.lock().unnamed.shape = Some((st.st_uid, st.st_gid, st.st_mode & 0o7777));
            let probe = c"probe-link";
            let _ = rustix::fs::unlinkat(self.dir.as_fd(), probe, AtFlags::empty());
            link_unnamed(fd.as_fd(), self.dir.as_fd(), probe)?;
            rustix::fs::unlinkat(self.dir.as_fd(), probe, AtFlags::empty())?;
            self.lock().unnamed.probed = true;
            // That one has a link count again: make the stock's first anew.
            return self.make_unnamed();
        }
        Ok(fd)
    }

    fn make(&self, kind: Kind, name: &CStr) -> rustix::io::Result<()> {
        let dir = self.dir.as_fd();
        match kind {
            Kind::Dir => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)),
            Kind::File => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map(drop)
            }
        }
    }

    fn remove(&self, kind: Kind, name: &CStr) {
        let flags = match kind {
            Kind::Dir => AtFlags::REMOVEDIR,
            Kind::File => AtFlags::empty(),
        };
        if let Err(e) = rustix::fs::unlinkat(self.dir.as_fd(), name, flags) {
            tracing::debug!("removing a spare failed: {e}");
        }
    }
}

fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "f",
        Kind::Dir => "d",
    }
}

/// Whether `linkat(AT_EMPTY_PATH)` was refused once (it needs
/// `CAP_DAC_READ_SEARCH`): then only the `/proc/self/fd` way is tried.
static EMPTY_PATH_REFUSED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Give the unnamed file `fd` the name `to_dir/to_name`, which must be free
/// (`EEXIST` otherwise, as `RENAME_NOREPLACE`).
pub(super) fn link_unnamed(
    fd: BorrowedFd<'_>,
    to_dir: BorrowedFd<'_>,
    to_name: &CStr,
) -> rustix::io::Result<()> {
    use std::sync::atomic::Ordering;
    if !EMPTY_PATH_REFUSED.load(Ordering::Relaxed) {
        match rustix::fs::linkat(fd, c"", to_dir, to_name, AtFlags::EMPTY_PATH) {
            // ENOENT: not allowed without the capability.
            Err(rustix::io::Errno::NOENT) => EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    let proc_path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    rustix::fs::linkat(
        rustix::fs::CWD,
        &proc_path,
        to_dir,
        to_name,
        AtFlags::SYMLINK_FOLLOW,
    )
}
