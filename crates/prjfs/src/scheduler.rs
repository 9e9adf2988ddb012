//! Callback slots: at most ConcurrentThreadCount provider callbacks run at once, on
//! dedicated callback threads; the request threads only queue work, so requests the
//! on-disk layer answers alone never wait behind a slow provider.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
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
            }),
            ready: Condvar::new(),
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
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.stopping {
                    return;
                }
                q = shared.ready.wait(q).expect("scheduler lock");
            }
        };
        job();
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
