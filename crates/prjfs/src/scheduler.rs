//! Callback slots: at most ConcurrentThreadCount provider callbacks run at once.
//! A job submitted while a slot is free and nothing waits may run on the
//! submitting thread ([`Scheduler::run_or_submit`]: no hand-off, the answer goes
//! out from the thread that read the request); otherwise it waits in one FIFO for
//! a dedicated callback thread. The instance lets request threads run callbacks
//! only when it has more request threads than slots, so requests the on-disk
//! layer answers alone never wait behind a slow provider.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// Callbacks started from a lent slot, one inside another, at most (each one
/// is a stack frame of the chain; past this the next is queued).
const MAX_NESTED: u32 = 16;

thread_local! {
    /// This thread runs a job in a slot (inline or on a callback thread).
    static HOLDS: Cell<bool> = const { Cell::new(false) };
    /// The job's provider call has returned and its continuation runs
    /// ([`lend_slot`]): the slot is free for a callback the continuation starts.
    static LENT: Cell<bool> = const { Cell::new(false) };
    /// Callbacks running in a lent slot on this thread, one inside another.
    static NESTED: Cell<u32> = const { Cell::new(0) };
}

/// Run `f` (the continuation of a callback whose provider call has returned)
/// with this thread's slot lent: a callback `f` starts with
/// [`Scheduler::run_or_submit`] runs here, in that slot, instead of taking a
/// second one or waiting for a callback thread. A chain of callbacks (Start,
/// then Gets until the listing ends) then runs on the thread that read the
/// request. The bound holds: the lending job's provider call is over, so the
/// slot still has one provider call in it at a time.
pub(crate) fn lend_slot<R>(f: impl FnOnce() -> R) -> R {
    if !HOLDS.get() {
        return f();
    }
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LENT.set(self.0);
        }
    }
    let _restore = Restore(LENT.replace(true));
    f()
}

/// Run `job` marked as holding a slot on this thread (restored on unwind).
fn in_slot(job: impl FnOnce()) {
    struct Restore(bool, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            HOLDS.set(self.0);
            LENT.set(self.1);
        }
    }
    let _restore = Restore(HOLDS.replace(true), LENT.replace(false));
    job();
}

struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
    /// Jobs running now, on callback threads or inline; never above `slots`.
    busy: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    slots: usize,
}

/// A fixed set of callback threads fed by one FIFO queue.
pub struct Scheduler {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Scheduler {
    /// Start `slots` callback threads.
    pub fn new(slots: usize) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stopping: false,
                busy: 0,
            }),
            ready: Condvar::new(),
            slots: slots.max(1),
        });
        let threads = (0..slots.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("prjfs-callback-{i}"))
                    .spawn(move || run(&shared))
                    .expect("spawning a callback thread")
            })
            .collect();
        Self {
            shared,
            threads: Mutex::new(threads),
        }
    }

    /// Queue a job; it runs when a slot is free. Jobs submitted after
    /// [`Scheduler::stop`] run on the calling thread (nothing may be lost).
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        let mut q = self.shared.queue.lock().expect("scheduler lock");
        if q.stopping {
            drop(q);
            job();
            return;
        }
        q.jobs.push_back(Box::new(job));
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Run `job` on this thread if a slot is free and no job waits (FIFO order
    /// holds), else queue it as [`Scheduler::submit`] does.
    ///
    /// In a lent slot ([`lend_slot`]) with no job waiting, the job runs here in
    /// that slot.
    pub fn run_or_submit(&self, job: impl FnOnce() + Send + 'static) {
        let mut q = self.shared.queue.lock().expect("scheduler lock");
        if LENT.get() && NESTED.get() < MAX_NESTED && !q.stopping && q.jobs.is_empty() {
            drop(q);
            struct Nested;
            impl Drop for Nested {
                fn drop(&mut self) {
                    NESTED.set(NESTED.get() - 1);
                    LENT.set(true);
                }
            }
            NESTED.set(NESTED.get() + 1);
            LENT.set(false);
            let _nested = Nested;
            job();
            return;
        }
        if q.stopping || !q.jobs.is_empty() || q.busy >= self.shared.slots {
            drop(q);
            return self.submit(job);
        }
        q.busy += 1;
        drop(q);
        // Gives the slot back even if the job panics.
        struct Slot<'a>(&'a Shared);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.busy -= 1;
                let waiting = !q.jobs.is_empty();
                drop(q);
                if waiting {
                    self.0.ready.notify_one();
                }
            }
        }
        let _slot = Slot(&self.shared);
        in_slot(job);
    }

    /// Jobs waiting for a slot.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().expect("scheduler lock").jobs.len()
    }

    /// Stop after the queued jobs ran; joins the threads unless called from one of
    /// them.
    pub fn stop(&self) {
        self.shared.queue.lock().expect("scheduler lock").stopping = true;
        self.shared.ready.notify_all();
        let me = std::thread::current().id();
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue.lock().expect("scheduler lock");
            loop {
                if q.busy < shared.slots || q.stopping {
                    if let Some(job) = q.jobs.pop_front() {
                        q.busy += 1;
                        break job;
                    }
                }
                if q.stopping && q.jobs.is_empty() {
                    return;
                }
                q = shared.ready.wait(q).expect("scheduler lock");
            }
        };
        in_slot(job);
        let mut q = shared.queue.lock().expect("scheduler lock");
        q.busy -= 1;
        let waiting = !q.jobs.is_empty();
        drop(q);
        if waiting {
            shared.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn at_most_slots_jobs_run_at_once() {
        let s = Scheduler::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..20 {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            s.submit(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        s.stop();
        assert_eq!(done.load(Ordering::SeqCst), 20);
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_lent_slot_runs_the_next_callback_here_and_only_a_lent_one() {
        let s = Arc::new(Scheduler::new(1));
        let here = std::thread::current().id();
        let (tx, rx) = std::sync::mpsc::channel();
        // The only slot, held inline. Lent (the job's provider call is over):
        // a chain of callbacks runs here, one inside the other.
        fn chain(
            s: Arc<Scheduler>,
            t: std::sync::mpsc::Sender<(&'static str, std::thread::ThreadId)>,
            left: u32,
        ) {
            let s2 = s.clone();
            s.run_or_submit(move || {
                t.send(("chain", std::thread::current().id())).unwrap();
                if left > 0 {
                    lend_slot(|| chain(s2, t, left - 1));
                }
            });
        }
        let (s2, t) = (s.clone(), tx.clone());
        s.run_or_submit(move || lend_slot(|| chain(s2, t, 3)));
        let got: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
        assert!(got.iter().all(|(_, t)| *t == here), "{got:?}");
        // Not lent: a callback the job starts waits for the slot, on the
        // callback thread.
        let (s2, t) = (s.clone(), tx.clone());
        s.run_or_submit(move || {
            s2.run_or_submit(move || t.send(("unlent", std::thread::current().id())).unwrap());
        });
        let (_, unlent) = rx.recv().unwrap();
        assert_ne!(unlent, here, "a slot not lent is not shared");
        // That job gives its slot back after it sent: wait for that.
        while s.shared.queue.lock().unwrap().busy > 0 {
            std::thread::yield_now();
        }
        // A chain longer than MAX_NESTED goes on in the queue, all of it done.
        let (s2, t) = (s.clone(), tx.clone());
        s.run_or_submit(move || lend_slot(|| chain(s2, t, 2 * MAX_NESTED)));
        let deep: Vec<_> = (0..=2 * MAX_NESTED).map(|_| rx.recv().unwrap()).collect();
        let inline = deep.iter().filter(|(_, t)| *t == here).count();
        assert_eq!(inline, MAX_NESTED as usize, "{deep:?}");
        s.stop();
    }

    #[test]
    fn inline_jobs_take_slots_and_keep_fifo_order() {
        let s = Arc::new(Scheduler::new(1));
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let here = std::thread::current().id();
        // A free slot: runs on this thread.
        let t = tx.clone();
        s.run_or_submit(move || t.send(("a", std::thread::current().id())).unwrap());
        assert_eq!(rx.recv().unwrap(), ("a", here));
        // Hold the only slot inline on another thread.
        let s2 = s.clone();
        let t = tx.clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            s2.run_or_submit(move || {
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                t.send(("b", std::thread::current().id())).unwrap();
            })
        });
        held_rx.recv().unwrap();
        // No slot: queued for a callback thread, not run here.
        let t = tx.clone();
        s.run_or_submit(move || t.send(("c", std::thread::current().id())).unwrap());
        assert_eq!(s.queued(), 1);
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        let b = rx.recv().unwrap();
        let c = rx.recv().unwrap();
        assert_eq!(b.0, "b");
        assert_eq!(c.0, "c");
        assert_ne!(c.1, here);
        s.stop();
    }

    #[test]
    fn submit_after_stop_runs_inline() {
        let s = Scheduler::new(1);
        s.stop();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        s.submit(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
