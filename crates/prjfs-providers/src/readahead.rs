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
//!   next; listings held ready for other directories then go back to the
//!   queue behind them (read again when their turn comes), so that a full
//!   ready set never makes the thread wait while the walk needs the children.
//! * A client asking for the listing the thread is reading waits for it
//!   instead of reading it a second time.
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
    /// The path the thread is reading now (also in `pending`).
    reading: Option<PathBuf>,
    started: bool,
    stopped: bool,
}

impl<S> Default for State<S> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            pending: HashSet::new(),
            ready: HashMap::new(),
            reading: None,
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
    /// Signalled when the thread finishes a listing (a client may wait for the
    /// one it is reading).
    read_done: Condvar,
    /// Shared with whoever reports them (`prjfs status`).
    counters: Arc<PrefetchCounters>,
}

impl<L: Lister> ReadAhead<L> {
    /// A read-ahead through `lister`. Its thread starts with the first
    /// request.
    pub fn new(lister: L) -> Arc<Self> {
        Arc::new(Self {
            lister,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            read_done: Condvar::new(),
            counters: Arc::default(),
        })
    }

    /// How much was read ahead and used.
    pub fn counters(&self) -> &Arc<PrefetchCounters> {
        &self.counters
    }

    /// The listing of `rel` for a client's enumeration: the one read ahead if it
    /// is fresh, else read now. Either way its subdirectories are then queued.
    ///
    /// A listing the thread is reading at that moment is waited for (reading it
    /// a second time would only compete with the thread for the same CPU); one
    /// still queued is taken off the queue and read here.
    pub fn list(self: &Arc<Self>, rel: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        let held = {
            let mut st = self.lock();
            while st.reading.as_deref() == Some(rel) && !st.stopped {
                st = self.read_done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.pending.remove(rel) {
                st.queue.retain(|p| p != rel);
            }
            st.ready.remove(rel)
        };
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
        // Listings held ready were read for directories the walk enters
        // after these children (it is depth first): they go back to the queue
        // behind them, so that the thread reads the children now instead of
        // waiting for a held slot to be taken.
        let mut held: Vec<(Instant, PathBuf)> = st
            .ready
            .iter()
            .filter(|(p, _)| p.parent() != Some(rel))
            .map(|(p, r)| (r.taken, p.clone()))
            .collect();
        held.sort();
        for (_, path) in held.into_iter().rev() {
            st.ready.remove(&path);
            st.pending.insert(path.clone());
            st.queue.push_front(path);
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
                        st.reading = Some(p.clone());
                        break p;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let listed = self.read_ahead(&path);
            let mut st = self.lock();
            st.reading = None;
            // Taken off `pending` by a client that asked meanwhile: that
            // client waits for this listing (it cannot be read twice).
            st.pending.remove(&path);
            if let Some(ready) = listed {
                self.counters.read.fetch_add(1, Ordering::Relaxed);
                st.ready.insert(path, ready);
            }
            drop(st);
            self.read_done.notify_all();
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
        let c = &self.counters;
        tracing::debug!(
            "read-ahead: {} listings read ahead, {} used, {} stale",
            c.read.load(Ordering::Relaxed),
            c.used.load(Ordering::Relaxed),
            c.stale.load(Ordering::Relaxed)
        );
        let mut st = self.lock();
        st.stopped = true;
        st.queue.clear();
        st.ready.clear();
        self.wake.notify_all();
        self.read_done.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<L::Stamp>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A tree whose listings the read-ahead thread takes one step at a time:
    /// each of its reads is announced on `started` and waits for `go`. The
    /// client's own reads (any other thread) go straight through.
    struct Stepped {
        started: Mutex<mpsc::Sender<PathBuf>>,
        go: Mutex<mpsc::Receiver<()>>,
        reads: Mutex<Vec<PathBuf>>,
    }

    impl Lister for Stepped {
        type Stamp = ();
        const MAX_AGE: Option<Duration> = None;
        fn stamp(&self, _rel: &Path) -> Result<(), ProviderError> {
            Ok(())
        }
        fn list(&self, rel: &Path) -> Result<((), Vec<DirEntry>), ProviderError> {
            self.reads.lock().unwrap().push(rel.to_path_buf());
            if std::thread::current().name() == Some("prjfs-read-ahead") {
                self.started
                    .lock()
                    .unwrap()
                    .send(rel.to_path_buf())
                    .unwrap();
                self.go.lock().unwrap().recv().unwrap();
            }
            let dirs: &[&str] = match rel.to_str().unwrap() {
                "" => &["a", "b"],
                "a" => &["x"],
                _ => &[],
            };
            let entries = dirs
                .iter()
                .map(|n| DirEntry {
                    name: (*n).into(),
                    basic: prjfs::FileBasicInfo::directory(),
                    symlink_target: None,
                    version: None,
                })
                .collect();
            Ok(((), entries))
        }
    }

    #[test]
    fn a_walk_gets_the_children_first_and_waits_for_the_listing_being_read() {
        let (started_tx, started) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let ra = ReadAhead::new(Stepped {
            started: Mutex::new(started_tx),
            go: Mutex::new(go_rx),
            reads: Mutex::new(Vec::new()),
        });
        let next = || started.recv_timeout(Duration::from_secs(30)).unwrap();
        // The client lists the root; the thread reads a and b ahead: the
        // ready set is full.
        ra.list(Path::new("")).unwrap();
        assert_eq!(next(), Path::new("a"));
        go.send(()).unwrap();
        assert_eq!(next(), Path::new("b"));
        go.send(()).unwrap();
        while ra.lock().ready.len() < 2 {
            std::thread::yield_now();
        }
        // Listing a (read ahead) puts b, held ready, back behind a's child.
        let names = |v: Vec<DirEntry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(ra.list(Path::new("a")).unwrap()), ["x"]);
        assert_eq!(next(), Path::new("a/x"), "the child is read first");
        // The client asks for a/x while the thread reads it: it waits for
        // that listing instead of reading it again.
        let client = {
            let ra = ra.clone();
            std::thread::spawn(move || ra.list(Path::new("a/x")).unwrap().len())
        };
        // (Whether it asks before or after the read ends, the listing is read
        // once; a client that read it itself would make that two.)
        go.send(()).unwrap();
        assert_eq!(client.join().unwrap(), 0);
        // b is read again, and used.
        assert_eq!(next(), Path::new("b"));
        go.send(()).unwrap();
        let used_before = ra.counters().used.load(Ordering::Relaxed);
        // Wait for b to be ready, then take it.
        while !ra.lock().ready.contains_key(Path::new("b")) {
            std::thread::yield_now();
        }
        ra.list(Path::new("b")).unwrap();
        assert_eq!(ra.counters().used.load(Ordering::Relaxed), used_before + 1);
        let reads = ra.lister.reads.lock().unwrap().clone();
        let count = |p: &str| reads.iter().filter(|r| *r == Path::new(p)).count();
        assert_eq!(count("a/x"), 1, "a/x was read once: {reads:?}");
        assert_eq!(count("a"), 1, "{reads:?}");
        assert_eq!(
            ra.counters().used.load(Ordering::Relaxed),
            3,
            "a, a/x and b came from the read-ahead: {reads:?}"
        );
        ra.stop();
    }
}
