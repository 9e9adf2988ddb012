//! Listing read-ahead: when a client lists a directory, the listings of its
//! subdirectories are read on a background thread, so that a walk (`find`,
//! `ls -R`, `os.walk`, `git status`) that descends next finds them ready and its
//! enumeration callback answers without reading the source on the walk's time.
//!
//! Only the provider reads ahead; the library and the callbacks it makes are
//! unchanged (an enumeration callback still comes only for a directory a client
//! enumerates), so nothing a provider author or a test of callbacks counts
//! changes.
//!
//! Invariants:
//! * A listing read ahead is used at most once, and only if it is fresh: taken
//!   less than [`FRESH`] ago and the source directory still has the identity and
//!   change times (`ino`, `mtime`, `ctime`) it had *before* it was read. Any entry
//!   added, removed or renamed in the directory since changes those, so a used
//!   listing has exactly the names a listing taken now would have; the attributes
//!   of its entries are at most [`FRESH`] old (a file rewritten in place in that
//!   window shows its old size and times until the next listing, as it would if
//!   it had changed right after an ordinary listing).
//! * At most [`MAX_READY`] listings and [`MAX_QUEUED`] requests are held; further
//!   requests are dropped (reading ahead is only ever an optimisation).
//! * The thread ends when the provider is dropped ([`Prefetch::stop`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prjfs::{Collation, DirEntry, FileKind, ProviderError};

use super::store;

/// How old a listing read ahead may be when it is used.
pub const FRESH: Duration = Duration::from_secs(1);
/// Listings held ready at most.
const MAX_READY: usize = 64;
/// Directories waiting to be read at most.
const MAX_QUEUED: usize = 256;
/// Subdirectories of one listing that are read ahead at most.
const PER_LISTING: usize = 64;

/// What identifies a directory's set of names at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

struct Ready {
    taken: Instant,
    stamp: Stamp,
    entries: Vec<DirEntry>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<PathBuf>,
    /// Paths in `queue` or being read by the thread.
    pending: HashSet<PathBuf>,
    ready: HashMap<PathBuf, Ready>,
    started: bool,
    stopped: bool,
}

/// Counters of the read-ahead, for tests and `status`.
#[derive(Debug, Default)]
pub struct PrefetchCounters {
    /// Listings read ahead.
    pub read: AtomicU64,
    /// Enumerations answered from a listing read ahead.
    pub used: AtomicU64,
    /// Listings read ahead but found stale when asked for.
    pub stale: AtomicU64,
}

/// The read-ahead of one provider.
pub struct Prefetch {
    source: PathBuf,
    collation: Collation,
    state: Mutex<State>,
    wake: Condvar,
    counters: PrefetchCounters,
}

impl Prefetch {
    /// A read-ahead of the source directory `source` (canonical), resolving
    /// paths under `collation`. Its thread starts with the first request.
    pub fn new(source: PathBuf, collation: Collation) -> Arc<Self> {
        Arc::new(Self {
            source,
            collation,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            counters: PrefetchCounters::default(),
        })
    }

    /// How much was read ahead and used.
    pub fn counters(&self) -> &PrefetchCounters {
        &self.counters
    }

    /// The listing of `rel` for a client's enumeration: the one read ahead if it
    /// is fresh, else read now. Either way its subdirectories are then queued.
    pub fn list(self: &Arc<Self>, rel: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        let held = self.lock().ready.remove(rel);
        let dir = store::resolve(&self.source, rel, self.collation)?;
        let entries = match held {
            Some(r) if r.taken.elapsed() < FRESH && r.stamp == Stamp::of(&dir.metadata) => {
                self.counters.used.fetch_add(1, Ordering::Relaxed);
                r.entries
            }
            held => {
                if held.is_some() {
                    self.counters.stale.fetch_add(1, Ordering::Relaxed);
                }
                store::list_resolved(&dir, self.collation)?
            }
        };
        self.queue_children(rel, &entries);
        Ok(entries)
    }

    fn queue_children(self: &Arc<Self>, rel: &Path, entries: &[DirEntry]) {
        let mut st = self.lock();
        if st.stopped {
            return;
        }
        let before = st.queue.len();
        for e in entries
            .iter()
            .filter(|e| e.basic.kind == FileKind::Directory)
            .take(PER_LISTING)
        {
            if st.queue.len() >= MAX_QUEUED {
                break;
            }
            let path = rel.join(&e.name);
            if st.ready.contains_key(&path) || !st.pending.insert(path.clone()) {
                continue;
            }
            st.queue.push_back(path);
        }
        if st.queue.len() == before {
            return;
        }
        if !st.started {
            st.started = true;
            let this = self.clone();
            let spawned = std::thread::Builder::new()
                .name("prjfs-dir-prefetch".into())
                .spawn(move || this.run());
            if spawned.is_err() {
                // No thread: no read-ahead; listings are read when asked for.
                st.queue.clear();
                st.pending.clear();
                st.stopped = true;
                return;
            }
        }
        self.wake.notify_one();
    }

    fn run(self: Arc<Self>) {
        loop {
            let path = {
                let mut st = self.lock();
                loop {
                    if st.stopped {
                        return;
                    }
                    if let Some(p) = st.queue.pop_front() {
                        break p;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let listed = self.read_ahead(&path);
            let mut st = self.lock();
            st.pending.remove(&path);
            if let Some(ready) = listed {
                st.ready.retain(|_, r| r.taken.elapsed() < FRESH);
                if st.ready.len() < MAX_READY {
                    self.counters.read.fetch_add(1, Ordering::Relaxed);
                    st.ready.insert(path, ready);
                }
            }
        }
    }

    /// Read `rel` now; `None` if it cannot be read (the client's own listing
    /// will report why).
    fn read_ahead(&self, rel: &Path) -> Option<Ready> {
        let taken = Instant::now();
        let dir = store::resolve(&self.source, rel, self.collation).ok()?;
        // The stamp is taken before the names are read: a change made while
        // reading leaves a stamp that no longer matches.
        let stamp = Stamp::of(&dir.metadata);
        let entries = store::list_resolved(&dir, self.collation).ok()?;
        Some(Ready {
            taken,
            stamp,
            entries,
        })
    }

    /// End the thread and drop what is held.
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stopped = true;
        st.queue.clear();
        st.ready.clear();
        self.wake.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
