//! Client processes killed while their callbacks are pending: `cat`, `dd`,
//! `stat` and `ls` of the `cold/` tree, whose every callback the provider
//! stalls (`stall=cold:MS`). A killer thread starts one, waits until it waits
//! on the mount (`/proc/PID/wchan` is `request_wait_answer`), waits a random
//! while, signals it (SIGINT, SIGTERM or SIGKILL) and times how long it takes
//! to be gone. Tenet 3 of SEMANTICS.md: it must be gone within 1 s.
//!
//! Invariants: a killer signals only the pid of a child it spawned and has not
//! reaped; every child is reaped before the killer passes the gate again, so a
//! paused soak has no client process left.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::workers::Gate;
use crate::bench::fixture::Rng;

/// A client may take this long to be gone after its signal.
pub const RELEASE_LIMIT: Duration = Duration::from_secs(1);
/// After this long a client is counted stuck and killed.
const STUCK: Duration = Duration::from_secs(10);

/// What the killers add up.
#[derive(Default)]
pub struct ClientStats {
    pub spawned: AtomicU64,
    /// Signalled while waiting on the mount.
    pub signalled: AtomicU64,
    /// Signalled while not (yet) waiting on the mount.
    pub signalled_other: AtomicU64,
    /// Gone within [`RELEASE_LIMIT`] of their signal.
    pub released: AtomicU64,
    /// Gone, but later than [`RELEASE_LIMIT`].
    pub late: AtomicU64,
    /// Not gone after 10 s (then killed).
    pub stuck: AtomicU64,
    /// Ended before their signal (their request was answered or failed first).
    pub ended_early: AtomicU64,
    /// Release latencies since the controller last took them.
    pub latencies: Mutex<Vec<Duration>>,
    pub messages: Mutex<Vec<String>>,
}

impl ClientStats {
    fn note(&self, msg: String) {
        let mut m = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < 50 {
            m.push(msg);
        }
    }

    /// Record how a signalled client ended; false when it broke the limit.
    pub fn record(&self, what: &str, gone: Option<Duration>) -> bool {
        match gone {
            Some(d) => {
                self.latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(d);
                if d <= RELEASE_LIMIT {
                    self.released.fetch_add(1, Ordering::Relaxed);
                    true
                } else {
                    self.late.fetch_add(1, Ordering::Relaxed);
                    self.note(format!(
                        "{what}: gone {:.3} s after its signal",
                        d.as_secs_f64()
                    ));
                    false
                }
            }
            None => {
                self.stuck.fetch_add(1, Ordering::Relaxed);
                self.note(format!(
                    "{what}: still there {} s after its signal",
                    STUCK.as_secs()
                ));
                false
            }
        }
    }

    /// The latencies recorded since the last call.
    pub fn take_latencies(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Whether `pid` is blocked waiting for an answer of a FUSE daemon.
pub fn waiting_on_fuse(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .is_ok_and(|w| w.contains("request_wait_answer") || w.starts_with("fuse_"))
}

/// A client program with no terminal, no output and a working directory outside
/// the mount.
pub fn spawn(program: &str, args: &[&std::ffi::OsStr]) -> std::io::Result<Child> {
    Command::new(program)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// `cat FILE`: one lookup and one hydration, each stalled.
pub fn spawn_cat(file: &Path) -> std::io::Result<Child> {
    spawn("cat", &[file.as_os_str()])
}

/// Send `sig` to our own child `child` (by its pid, which we have not reaped).
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this process spawned and has not
    // waited for, so the pid cannot have been reused.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Wait until `child` is gone, at most `limit`; its exit status and how long
/// after `since` it was reaped. A child still there is killed and reaped.
pub fn wait_gone(
    child: &mut Child,
    since: Instant,
    limit: Duration,
) -> Option<(std::process::ExitStatus, Duration)> {
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some((st, since.elapsed()));
        }
        if since.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait until `child` waits on the mount (true), ends (false), or `limit` passes
/// (false).
pub fn wait_pending(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if waiting_on_fuse(child.id()) {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// One killer thread's inputs.
pub struct Killer {
    pub index: usize,
    pub root: PathBuf,
    /// Files and directories below `cold/` (relative).
    pub cold_files: Arc<Vec<PathBuf>>,
    pub cold_dirs: Arc<Vec<PathBuf>>,
    /// How long the provider stalls each callback below `cold/`.
    pub stall: Duration,
    pub seed: u64,
}

impl Killer {
    /// Clients, one at a time, until the gate stops.
    pub fn run(self, gate: &Gate, stats: &ClientStats) {
        let mut rng = Rng::new(self.seed);
        while gate.pass() {
            if self.cold_files.is_empty() {
                return;
            }
            let file = self
                .root
                .join(&self.cold_files[rng.next() as usize % self.cold_files.len()]);
            let dir = self
                .root
                .join(&self.cold_dirs[rng.next() as usize % self.cold_dirs.len().max(1)]);
            let (what, spawned) = match rng.next() % 10 {
                0..=3 => ("cat", spawn_cat(&file)),
                4 | 5 => {
                    let arg = std::ffi::OsString::from(format!("if={}", file.display()));
                    let args = ["of=/dev/null", "bs=4096", "count=1", "status=none"];
                    let mut all = vec![arg.as_os_str()];
                    all.extend(args.iter().map(std::ffi::OsStr::new));
                    ("dd", spawn("dd", &all))
                }
                6 => ("stat", spawn("stat", &[file.as_os_str()])),
                // A name the store does not have: one stalled lookup.
                7 => {
                    let missing = file.with_extension("missing");
                    ("stat", spawn("stat", &[missing.as_os_str()]))
                }
                _ => ("ls", spawn("ls", &[dir.as_os_str()])),
            };
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    stats.note(format!("killer {}: cannot start {what}: {e}", self.index));
                    continue;
                }
            };
            stats.spawned.fetch_add(1, Ordering::Relaxed);
            let pending = wait_pending(&mut child, self.stall + Duration::from_secs(2));
            if !pending && matches!(child.try_wait(), Ok(Some(_))) {
                stats.ended_early.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Somewhere inside the stall, leaving it at least 1 s to run out.
            let room = self
                .stall
                .saturating_sub(Duration::from_secs(1))
                .as_millis() as u64;
            let nap = Duration::from_millis(rng.next() % room.clamp(1, 500));
            std::thread::sleep(nap);
            if matches!(child.try_wait(), Ok(Some(_))) {
                stats.ended_early.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let waiting = waiting_on_fuse(child.id());
            let sig = match rng.next() % 10 {
                0..=3 => libc::SIGKILL,
                4..=6 => libc::SIGINT,
                _ => libc::SIGTERM,
            };
            let at = Instant::now();
            signal(&child, sig);
            if waiting {
                stats.signalled.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.signalled_other.fetch_add(1, Ordering::Relaxed);
            }
            let gone = wait_gone(&mut child, at, STUCK);
            let label = format!(
                "{what} {} (signal {sig}{})",
                file.strip_prefix(&self.root).unwrap_or(&file).display(),
                if waiting {
                    ", waiting on the mount"
                } else {
                    ""
                }
            );
            if let Some((st, _)) = &gone {
                if st.signal().is_none() && st.code() == Some(0) {
                    stats.note(format!("{label}: exited 0 after the signal"));
                }
            }
            stats.record(&label, gone.map(|(_, d)| d));
            // Pace: a short random pause between clients.
            std::thread::sleep(Duration::from_millis(rng.next() % 100));
        }
    }
}
