//! The soak's daemon: mounting it, its pid and resources (`/proc/PID`), waiting
//! until it is idle and its resources settle, killing it.
//!
//! Invariant: every mount the soak makes is of its own root, under its own
//! scratch directory, and a [`RootGuard`] unmounts it whatever happens (a clean
//! unmount, else a lazy one); the only process the soak kills by pid that is
//! not its child is the daemon whose pid its own mount's control socket gave.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::control::{self, ControlRequest};

/// Unmounts the root on drop if it is still mounted (the daemon then exits).
pub struct RootGuard {
    pub root: PathBuf,
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        let mounted = crate::prjfs_fuse_mounts().is_ok_and(|m| m.contains(&self.root));
        if mounted && crate::unmount(&self.root).is_err() {
            let _ = rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// `prjfs mount ARGS SOURCE ROOT`; the daemon's pid. The daemon runs with
/// `RUST_BACKTRACE=0`: with backtraces on, its first panic would load the
/// binary's debug info (some 80 MB of RSS) to print one, which would hide
/// small leaks under a large baseline.
pub fn mount(args: &[String], source: &Path, root: &Path) -> Result<u32, String> {
    crate::bench::fixture::check()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .env("RUST_BACKTRACE", "0")
        .arg("mount")
        .args(args)
        .args(crate::bench::fixture::mount_options())
        .arg(source)
        .arg(root)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "prjfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v = status(root)?;
    v["pid"]
        .as_u64()
        .map(|p| p as u32)
        .ok_or_else(|| "status has no pid".to_string())
}

/// `prjfs status --json` of the root.
pub fn status(root: &Path) -> Result<serde_json::Value, String> {
    control::call(root, &ControlRequest::Status).map_err(|e| format!("status: {e}"))
}

/// `prjfs unmount ROOT`.
pub fn unmount(root: &Path) -> Result<(), String> {
    crate::unmount(root)
}

/// What the soak watches of the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metrics {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Metrics {
    /// The larger of each.
    pub fn max(self, o: Metrics) -> Metrics {
        Metrics {
            rss_kib: self.rss_kib.max(o.rss_kib),
            fds: self.fds.max(o.fds),
            threads: self.threads.max(o.threads),
        }
    }
}

/// RSS, open fds and threads of `pid`.
pub fn metrics(pid: u32) -> Result<Metrics, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    let fd_dir = format!("/proc/{pid}/fd");
    let fds = std::fs::read_dir(&fd_dir)
        .map_err(|e| format!("{fd_dir}: {e}"))?
        .count() as u64;
    Ok(Metrics {
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
    })
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the command name in parentheses.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

/// SIGKILL the daemon `pid` and wait until it is gone.
pub fn kill9(pid: u32) -> Result<(), String> {
    // SAFETY: kill(2) on the daemon of our own mount, by the pid its control
    // socket reported, checked alive just before.
    if !alive(pid) || unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
        return Err(format!("daemon {pid} is not running"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            return Err(format!("daemon {pid} still runs 10 s after SIGKILL"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The daemon's callback counters (`callbacks.*` of its status).
pub fn callbacks(v: &serde_json::Value) -> [u64; 5] {
    let c = &v["callbacks"];
    let get = |k: &str| c[k].as_u64().unwrap_or(0);
    [
        get("invoked"),
        get("failed"),
        get("cancelled"),
        get("pending"),
        get("queued"),
    ]
}

/// The injected faults the daemon counted (`faults.*`): failed, panicked,
/// slowed, stalled, delays cancelled.
pub fn faults(v: &serde_json::Value) -> [u64; 5] {
    let f = &v["faults"];
    let get = |k: &str| f[k].as_u64().unwrap_or(0);
    [
        get("failed"),
        get("panicked"),
        get("slowed"),
        get("stalled"),
        get("delays_cancelled"),
    ]
}

/// With the clients paused: waits until the daemon has no callback pending or
/// queued, then until `settle` has passed since the call (idle runtime threads
/// retire) and its fd and thread counts have not changed for the last second
/// (or `settle`, if shorter); returns the metrics then and the time it took.
/// Gives up after `limit` (an error naming what did not settle).
pub fn settle(
    root: &Path,
    pid: u32,
    settle: Duration,
    limit: Duration,
) -> Result<(Metrics, Duration), String> {
    let start = Instant::now();
    loop {
        let v = status(root)?;
        let [_, _, _, pending, queued] = callbacks(&v);
        // The parent directories the layer keeps open while busy are closed
        // a second after their last use: wait for that too, so that they are
        // not counted as fds that grew.
        let kept = v["dirs_kept_open"].as_u64().unwrap_or(0);
        if pending == 0 && queued == 0 && kept == 0 {
            break;
        }
        if start.elapsed() > limit {
            return Err(format!(
                "the daemon still has {pending} callbacks pending and {queued} queued \
                 {} s after the clients paused",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let quiet = settle.min(Duration::from_secs(1));
    let mut last = metrics(pid)?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = metrics(pid)?;
        if (now.fds, now.threads) != (last.fds, last.threads) {
            since = Instant::now();
        }
        last = now;
        if start.elapsed() >= settle && since.elapsed() >= quiet {
            return Ok((now, start.elapsed()));
        }
        if start.elapsed() > limit + settle {
            return Err(format!(
                "fds and threads of the daemon did not settle within {} s",
                (limit + settle).as_secs()
            ));
        }
    }
}

/// Panics the running daemon's log reports (the panic hook's `thread '…'
/// panicked at` lines), read while it is mounted through the path its status
/// gives (the root's `.prjfs/log/daemon.log`, which the mount hides). The log
/// is kept across mounts: the caller counts the growth.
pub fn logged_panics(root: &Path) -> usize {
    let Ok(st) = status(root) else { return 0 };
    let Some(live) = st["log"]["live"].as_str() else {
        return 0;
    };
    std::fs::read_to_string(live)
        .map(|log| {
            log.lines()
                .filter(|l| l.contains("thread '") && l.contains("panicked at"))
                .count()
        })
        .unwrap_or(0)
}

/// Processes with a file, a working directory or a mapping below `root`
/// (`/proc/*/{fd,cwd,maps}`), for a report of why an unmount was busy.
pub fn holders(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = p.path();
        let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
        let mut held: Vec<String> = std::fs::read_dir(base.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .chain(std::fs::read_link(base.join("cwd")).ok())
            .filter(|t| t.starts_with(root))
            .map(|t| t.display().to_string())
            .collect();
        let maps = std::fs::read_to_string(base.join("maps")).unwrap_or_default();
        let root_text = root.display().to_string();
        held.extend(
            maps.lines()
                .filter(|l| l.contains(&root_text))
                .map(|l| format!("mapped {}", l.split_whitespace().last().unwrap_or(""))),
        );
        if !held.is_empty() {
            out.push(format!("{pid} ({}): {}", comm.trim(), held.join(", ")));
        }
    }
    out
}
