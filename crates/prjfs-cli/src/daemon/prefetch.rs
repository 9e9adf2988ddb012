//! The daemon's side of `prjfs hydrate`: hydrate a list of files in the
//! daemon ([`prjfs::virtualizer::Virtualizer::prefetch`]), `jobs` at a time,
//! reporting progress on the control connection, until done or until the
//! client hangs up (Ctrl-C). With `walk`, the list grows while it runs: the
//! daemon's own walk ([`super::walk`]) queues the files it finds.
//!
//! Invariants: at most `jobs` files are in hand at once (one per worker
//! thread, each waiting for its file's answer before taking the next), and
//! only `jobs - 1` while the walk goes on (its listings and lookups may raise
//! callbacks too), so at most `jobs` callbacks of the command are in
//! flight. Once the client hangs up no file is started and every file in
//! hand is cancelled through its request's cancel slot (its GetFileData
//! cancelled, its temp file dropped: hydration is all or nothing); the
//! answer comes after every worker ended.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use prjfs::cancel::CancelSlot;
use prjfs::virtualizer::{Prefetched, RequestCtx, Virtualizer};

use crate::control::Conn;

/// How often a progress line is sent while files are hydrated.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Paths queued and waiting, at most: memory stays bounded on any tree.
const QUEUED_MAX: usize = 65_536;

/// Paths of one directory a worker takes at once, at most.
const RUN_MAX: usize = 1024;

/// The directory part of a relative path (`""` at the top).
fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// At most this many failures are named in the answer (the rest counted).
const ERRORS_NAMED: usize = 100;

/// The paths to hydrate: those queued and not yet taken, and whether no more
/// will come (the list was whole, the walk ended, or the job stopped).
#[derive(Default)]
struct Feed {
    paths: VecDeque<String>,
    complete: bool,
}

struct Job<'a> {
    virt: &'a Virtualizer,
    feed: Mutex<Feed>,
    /// Signalled when paths arrive or the feed completes.
    fed: Condvar,
    stop: AtomicBool,
    /// The cancel slot of the file each worker has in hand.
    slots: Mutex<Vec<Option<CancelSlot>>>,
    /// Files the daemon's own walk found so far, and their bytes.
    walked: AtomicUsize,
    walked_bytes: AtomicU64,
    hydrated: AtomicUsize,
    local: AtomicUsize,
    bytes: AtomicU64,
    failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
    /// Workers still running, and its condition.
    running: Mutex<usize>,
    ended: Condvar,
}

impl Job<'_> {
    /// Stop: no file is started after this, and the files in hand are
    /// cancelled. A worker stores its slot before it checks `stop`, and this
    /// sets `stop` before it reads the slots: one of the two sees the other.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.feed.lock().expect("feed lock").complete = true;
        self.fed.notify_all();
        let slots: Vec<CancelSlot> = self
            .slots
            .lock()
            .expect("slots lock")
            .iter()
            .flatten()
            .cloned()
            .collect();
        for slot in slots {
            slot.fire();
        }
    }

    /// The next run of paths to hydrate: those at the queue's front that
    /// share the first one's directory, [`RUN_MAX`] at most, waiting for the
    /// walk to queue more; empty once none will come.
    ///
    /// Why runs: workers then hydrate different directories at once, so
    /// they do not queue on one directory's lock to link their files, and,
    /// in an archive whose members are stored directory by directory, they
    /// decode different blocks at once rather than wait for each other's.
    fn next_run(&self) -> VecDeque<String> {
        let mut feed = self.feed.lock().expect("feed lock");
        loop {
            if let Some(first) = feed.paths.pop_front() {
                let dir = parent_of(&first).to_string();
                let mut run = VecDeque::from([first]);
                while run.len() < RUN_MAX && feed.paths.front().is_some_and(|p| parent_of(p) == dir)
                {
                    run.extend(feed.paths.pop_front());
                }
                if feed.paths.len() + run.len() >= QUEUED_MAX {
                    self.fed.notify_all(); // room for the reading thread
                }
                return run;
            }
            if feed.complete {
                return VecDeque::new();
            }
            feed = self.fed.wait(feed).expect("feed lock");
        }
    }

    /// A line the client sent after its request: nothing is expected
    /// there (the client only hangs up, to stop), so the job stops.
    fn receive(&self, _line: &str) {
        tracing::warn!("hydrate: a line from the client after its request; stopping");
        self.stop();
    }

    /// Worker `i` of `jobs`. The last one starts only once the walk is
    /// over: the walk's own callbacks (listings, lookups) count as one of
    /// the `jobs` while it goes on.
    fn worker(&self, i: usize, jobs: usize, peer: &rustix::net::UCred) {
        if i + 1 == jobs {
            let mut feed = self.feed.lock().expect("feed lock");
            while !feed.complete {
                feed = self.fed.wait(feed).expect("feed lock");
            }
        }
        let mut run = VecDeque::new();
        loop {
            if run.is_empty() {
                run = self.next_run();
            }
            let Some(path) = run.pop_front() else {
                break;
            };
            let path = &path;
            let slot = CancelSlot::new();
            self.slots.lock().expect("slots lock")[i] = Some(slot.clone());
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let ctx = ctx_of(peer, slot);
            match super::walk::answer(|done| self.virt.prefetch(&ctx, Path::new(path), done)) {
                Some(Ok(Prefetched::Hydrated(size))) => {
                    self.hydrated.fetch_add(1, Ordering::SeqCst);
                    self.bytes.fetch_add(size, Ordering::SeqCst);
                }
                Some(Ok(Prefetched::Local(size))) => {
                    self.local.fetch_add(1, Ordering::SeqCst);
                    self.bytes.fetch_add(size, Ordering::SeqCst);
                }
                Some(Ok(Prefetched::NotAFile)) => {}
                Some(Err(_)) if self.stop.load(Ordering::SeqCst) => {}
                Some(Err(errno)) => self.fail(format!(
                    "{path}: {}",
                    std::io::Error::from_raw_os_error(errno)
                )),
                None => self.fail(format!("{path}: no answer")),
            }
        }
        self.slots.lock().expect("slots lock")[i] = None;
    }

    /// A path that failed: `what` is `path: error`.
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < ERRORS_NAMED {
            errors.push(what);
        }
    }

    /// The daemon's own walk of `roots` (with cancel slot `slot` of the
    /// slots), queueing the files it finds; the feed is complete after it.
    fn walk(&self, roots: &[String], slot: usize, peer: &rustix::net::UCred) {
        let cancel = CancelSlot::new();
        self.slots.lock().expect("slots lock")[slot] = Some(cancel.clone());
        let ctx = ctx_of(peer, cancel);
        let mut walk = super::walk::Walk {
            virt: self.virt,
            ctx: &ctx,
            errors: Vec::new(),
        };
        for root in roots {
            if self.stop.load(Ordering::SeqCst) || !walk.walk(root, &mut |files| self.queue(files))
            {
                break;
            }
        }
        self.slots.lock().expect("slots lock")[slot] = None;
        for e in walk.errors {
            self.fail(e);
        }
        self.feed.lock().expect("feed lock").complete = true;
        self.fed.notify_all();
    }

    /// Queue files the walk found, waiting while [`QUEUED_MAX`] paths wait;
    /// `false` once stopped.
    fn queue(&self, files: Vec<(String, u64)>) -> bool {
        self.walked.fetch_add(files.len(), Ordering::SeqCst);
        let bytes = files.iter().map(|(_, n)| n).sum();
        self.walked_bytes.fetch_add(bytes, Ordering::SeqCst);
        let mut feed = self.feed.lock().expect("feed lock");
        while feed.paths.len() >= QUEUED_MAX && !self.stop.load(Ordering::SeqCst) {
            feed = self.fed.wait(feed).expect("feed lock");
        }
        if self.stop.load(Ordering::SeqCst) {
            return false;
        }
        feed.paths.extend(files.into_iter().map(|(p, _)| p));
        drop(feed);
        self.fed.notify_all();
        true
    }

    fn counts(&self) -> serde_json::Value {
        serde_json::json!({
            "walked": self.walked.load(Ordering::SeqCst),
            "walked_bytes": self.walked_bytes.load(Ordering::SeqCst),
            "hydrated": self.hydrated.load(Ordering::SeqCst),
            "local": self.local.load(Ordering::SeqCst),
            "failed": self.failed.load(Ordering::SeqCst),
            "bytes": self.bytes.load(Ordering::SeqCst),
        })
    }
}

/// The context of a request for the client `peer`.
fn ctx_of(peer: &rustix::net::UCred, cancel: CancelSlot) -> RequestCtx {
    RequestCtx {
        pid: u32::try_from(peer.pid.as_raw_nonzero().get()).unwrap_or(0),
        uid: peer.uid.as_raw(),
        gid: peer.gid.as_raw(),
        cancel,
    }
}

/// Hydrate `paths` (relative to the root), `jobs` at a time for the client
/// on `conn`; with `walk`,
/// `paths` are files or directories that the daemon walks itself
/// ([`super::walk`]) while it hydrates what it found. The answer counts what
/// was done.
pub(super) fn run(
    virt: &Virtualizer,
    conn: &Conn,
    paths: Vec<String>,
    walk: bool,
    jobs: u32,
) -> serde_json::Value {
    let peer = match conn.peer() {
        Ok(p) => p,
        Err(e) => return serde_json::json!({ "error": format!("who is asking: {e}") }),
    };
    // The daemon writes the root as the user who mounted it: only that user
    // (or root) may make it hydrate, as only they may write the root.
    let me = rustix::process::geteuid();
    if !(peer.uid == me || peer.uid.is_root()) {
        return serde_json::json!({
            "error": format!("{} (uid {})", crate::control::HYDRATE_REFUSED, me.as_raw()),
        });
    }
    let jobs = if walk {
        jobs.max(1) as usize
    } else {
        (jobs.max(1) as usize).min(paths.len().max(1))
    };
    let (files, roots) = if walk {
        (Vec::new(), paths)
    } else {
        (paths, Vec::new())
    };
    let job = Job {
        virt,
        feed: Mutex::new(Feed {
            paths: files.into(),
            complete: !walk,
        }),
        fed: Condvar::new(),
        stop: AtomicBool::new(false),
        // One more for the walk.
        slots: Mutex::new(vec![None; jobs + 1]),
        walked: AtomicUsize::new(0),
        walked_bytes: AtomicU64::new(0),
        hydrated: AtomicUsize::new(0),
        local: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        failed: AtomicUsize::new(0),
        errors: Mutex::new(Vec::new()),
        running: Mutex::new(jobs),
        ended: Condvar::new(),
    };
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..jobs {
            let job = &job;
            let peer = &peer;
            let spawned = std::thread::Builder::new()
                .name(format!("prjfs-prefetch-{i}"))
                .spawn_scoped(s, move || {
                    job.worker(i, jobs, peer);
                    *job.running.lock().expect("running lock") -= 1;
                    job.ended.notify_all();
                });
            if spawned.is_err() {
                *job.running.lock().expect("running lock") -= 1;
            }
        }
        if walk {
            let (job, peer, roots) = (&job, &peer, &roots);
            let spawned = std::thread::Builder::new()
                .name("prjfs-walk".into())
                .spawn_scoped(s, move || job.walk(roots, jobs, peer));
            if let Err(e) = spawned {
                job.fail(format!("(walk): cannot start a thread: {e}"));
                job.stop();
            }
        }
        // More paths come on the connection; the client hangs up to stop it.
        // Shutting down the reading side here at the end ends this thread
        // when the client does not.
        {
            let job = &job;
            let finished = &finished;
            s.spawn(move || {
                conn.read_lines(|line| job.receive(line));
                if !finished.load(Ordering::SeqCst) {
                    job.stop();
                }
            });
        }
        let mut running = job.running.lock().expect("running lock");
        while *running > 0 {
            let (r, timeout) = job
                .ended
                .wait_timeout(running, PROGRESS_EVERY)
                .expect("running lock");
            running = r;
            if timeout.timed_out() && !job.stop.load(Ordering::SeqCst) {
                let line = serde_json::json!({ "progress": job.counts() });
                if conn.send(&line).is_err() {
                    job.stop();
                }
            }
        }
        drop(running);
        finished.store(true, Ordering::SeqCst);
        conn.close_read();
    });
    let mut answer = job.counts();
    answer["stopped"] = job.stop.load(Ordering::SeqCst).into();
    answer["errors"] = job.errors.into_inner().expect("errors lock").into();
    answer
}
