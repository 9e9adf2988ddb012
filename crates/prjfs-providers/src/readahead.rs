//! Listing read-ahead for providers whose listings are local and cheap to
//! take: when a client lists a directory, the listings of its
//! subdirectories are read on a background thread, so that a walk (`find`,
//! `ls -R`, `os.walk`, `git status`) that descends next finds them ready and
//! its enumeration callback answers without reading the store on the walk's
//! time. The directory provider and the git provider use it.
//!
//! Only the provider reads ahead; the library and the callbacks it makes are
//! unchanged (an enumeration callback still comes only for a directory a client
//! enumerates), so nothing a provider author or a test of callbacks counts
//! changes.
//!
//! Invariants:
//! * A listing read ahead is used at most once, and only if it is current:
//!   the [`Lister`]'s stamp of the directory now equals the stamp taken
//!   *before* the listing was read, and it is younger than
//!   [`Lister::MAX_AGE`] when the lister sets one. (The directory provider's
//!   stamp is the source directory's inode and change times, so a used
//!   listing has the names a listing now would have and attributes at most
//!   `MAX_AGE` old; the git provider's is the projected commit, which fixes
//!   the whole listing.)
//! * At most [`MAX_READY`] listings and [`MAX_QUEUED`] requests are held
//!   (the daemon's memory per path is a budget): while the ready set is full
//!   the thread waits for a client to take one, and after a second unused the
//!   oldest is dropped; requests past [`MAX_QUEUED`] are dropped, the oldest
//!   first (reading ahead is only ever an optimisation).
//! * A listing's subdirectories go to the front of the queue in their order,
//!   so the thread reads what a depth-first walk (`find`, `os.walk`) enters
//!   next.
//! * The thread ends when the owner calls [`ReadAhead::stop`] (its provider is
//!   dropped); it holds the lister, which must not own the provider (a `Weak`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prjfs::{DirEntry, FileKind, ProviderError};

/// How a provider lists a directory for [`ReadAhead`].
pub trait Lister: Send + Sync + 'static {
    /// What says whether a listing taken earlier is still the listing now.
    type Stamp: PartialEq + Send + 'static;
    /// How long a listing read ahead stays usable at most (`None`: as long as
    /// its stamp matches).
    const MAX_AGE: Option<Duration>;
    /// The stamp of the directory `rel` now.
    fn stamp(&self, rel: &Path) -> Result<Self::Stamp, ProviderError>;
    /// The listing of `rel`, with the stamp taken before it was read.
    fn list(&self, rel: &Path) -> Result<(Self::Stamp, Vec<DirEntry>), ProviderError>;
}

/// Listings held ready at most.
const MAX_READY: usize = 2;
/// Directories waiting to be read at most.
const MAX_QUEUED: usize = 4096;

struct Ready<S> {
    taken: Instant,
    stamp: S,
    entries: Vec<DirEntry>,
}

struct State<S> {
    queue: VecDeque<PathBuf>,
    /// Paths in `queue` or being read by the thread.
    pending: HashSet<PathBuf>,
    ready: HashMap<PathBuf, Ready<S>>,
    started: bool,
    stopped: bool,
}

impl<S> Default for State<S> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            pending: HashSet::new(),
            ready: HashMap::new(),
            started: false,
            stopped: false,
        }
    }
}

impl<S> Ready<S> {
    fn young<L: Lister>(&self) -> bool {
        L::MAX_AGE.is_none_or(|max| self.taken.elapsed() < max)
    }
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
pub struct ReadAhead<L: Lister> {
    lister: L,
    state: Mutex<State<L::Stamp>>,
    wake: Condvar,
    counters: PrefetchCounters,
}

impl<L: Lister> ReadAhead<L> {
    /// A read-ahead through `lister`. Its thread starts with the first
    /// request.
    pub fn new(lister: L) -> Arc<Self> {
        Arc::new(Self {
            lister,
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
        if held.is_some() {
            // A slot is free: the thread may read the next one.
            self.wake.notify_one();
        }
        let current = match held {
            Some(r) if r.young::<L>() && self.lister.stamp(rel)? == r.stamp => Some(r.entries),
            Some(_) => {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        let entries = match current {
            Some(entries) => {
                self.counters.used.fetch_add(1, Ordering::Relaxed);
                entries
            }
            None => self.lister.list(rel)?.1,
        };
        self.queue_children(rel, &entries);
        Ok(entries)
    }

    fn queue_children(self: &Arc<Self>, rel: &Path, entries: &[DirEntry]) {
        let mut st = self.lock();
        if st.stopped {
            return;
        }
        // The children go to the front, in their order: a walk descends into
        // the first child of the directory it listed last (depth first), so
        // what was queued for directories listed earlier waits behind.
        let mut fresh = Vec::new();
        for e in entries
            .iter()
            .filter(|e| e.basic.kind == FileKind::Directory)
            .take(MAX_QUEUED)
        {
            let path = rel.join(&e.name);
            if st.ready.contains_key(&path) || !st.pending.insert(path.clone()) {
                continue;
            }
            fresh.push(path);
        }
        if fresh.is_empty() {
            return;
        }
        for path in fresh.into_iter().rev() {
            st.queue.push_front(path);
        }
        while st.queue.len() > MAX_QUEUED {
            if let Some(dropped) = st.queue.pop_back() {
                st.pending.remove(&dropped);
            }
        }
        if !st.started {
            st.started = true;
            let this = self.clone();
            let spawned = std::thread::Builder::new()
                .name("prjfs-read-ahead".into())
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
                    st.ready.retain(|_, r| r.young::<L>());
                    if st.ready.len() >= MAX_READY && !st.queue.is_empty() {
                        // Full: wait for a client to take one (a walk takes
                        // them in the order they were read); after a second
                        // unused, the oldest goes.
                        let (guard, waited) = self
                            .wake
                            .wait_timeout(st, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner());
                        st = guard;
                        if waited.timed_out() && st.ready.len() >= MAX_READY {
                            let oldest = st
                                .ready
                                .iter()
                                .min_by_key(|(_, r)| r.taken)
                                .map(|(p, _)| p.clone());
                            if let Some(p) = oldest {
                                st.ready.remove(&p);
                            }
                        }
                        continue;
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
                self.counters.read.fetch_add(1, Ordering::Relaxed);
                st.ready.insert(path, ready);
            }
        }
    }

    /// Read `rel` now; `None` if it cannot be read (the client's own listing
    /// will report why).
    fn read_ahead(&self, rel: &Path) -> Option<Ready<L::Stamp>> {
        let taken = Instant::now();
        let (stamp, entries) = self.lister.list(rel).ok()?;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State<L::Stamp>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
