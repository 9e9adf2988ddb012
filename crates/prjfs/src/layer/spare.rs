//! Spare inodes: empty files and directories made ahead of need in
//! `.prjfs/spare` by a thread of the layer, so that placing a directory
//! placeholder renames one into `tmp`, and a hydration fills one where it is,
//! instead of allocating an inode on the request's time.
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
//!   such garbage too until it is renamed out.
//! * A kind is stocked only once it has been asked for, up to [`STOCK`]; when
//!   the stock is empty (or after [`Spares::release`]) the caller creates its
//!   item itself, as it did without spares.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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

#[derive(Default)]
struct State {
    files: Stock,
    dirs: Stock,
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
    fn short(&self) -> Option<Kind> {
        [(Kind::Dir, &self.dirs), (Kind::File, &self.files)]
            .into_iter()
            .find(|(_, s)| s.wanted && s.names.len() < STOCK)
            .map(|(k, _)| k)
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
        name
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
            let (kind, name) = {
                let mut st = self.lock();
                let kind = loop {
                    if st.stopped {
                        return;
                    }
                    if let Some(kind) = st.short() {
                        break kind;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                };
                st.next += 1;
                let name = CString::new(format!("{}{}", prefix(kind), st.next)).expect("no NUL");
                (kind, name)
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
