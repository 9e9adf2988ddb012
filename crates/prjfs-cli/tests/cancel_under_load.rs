//! Cancellation under load: 200 rounds of "start a slow read, signal the client"
//! while two CPU hogs and an I/O hog (`stress-ng`) run, each client released
//! within 1 s of its signal.
//!
//! The rounds vary what the signal races with: sent at once (before `cat` has
//! opened the file, or while its OPEN or READ moves through the daemon), right
//! after the daemon counts the GetFileData pending, and a few milliseconds after
//! that; SIGINT and SIGKILL alternate. Every wait is for a condition (the daemon's
//! counters, the child's exit); the only bound is the 1 s the issue sets, and a
//! generous one on how long a condition may take to become true.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prjfs_testkit::{default_signals, mount_available, CliMount};

const ROUNDS: usize = 200;
/// The provider's latency: far longer than any release may take.
const LATENCY_MS: &str = "5000";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// Two CPU hogs and an I/O hog (`stress-ng --cpu 2 --hdd 1`, writing and
/// reading files in `dir`), stopped (by its pid) when dropped. Not `--io`: its
/// workers open every mount point for `syncfs`, which holds our mounts busy.
struct Hogs(Child);

impl Hogs {
    fn start(dir: &Path) -> Option<Hogs> {
        let child = Command::new("stress-ng")
            .args([
                "--cpu",
                "2",
                "--hdd",
                "1",
                "--hdd-bytes",
                "256M",
                "--timeout",
                "1200",
            ])
            .arg("--temp-path")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => Some(Hogs(c)),
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "stress-ng is needed in CI (.ci/run installs it): {e}"
                );
                eprintln!("stress-ng not found ({e}); cancellation rounds run without load");
                None
            }
        }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        // SIGINT lets stress-ng stop its own workers (SIGKILL would orphan them).
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.0.wait();
    }
}

fn counter(m: &CliMount, name: &str) -> u64 {
    let st = m.status();
    st["callbacks"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no callbacks.{name}: {st}"))
}

/// Poll `cond` until it holds; panics after `limit` with `what`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long `child` takes to exit; `None` if it is still running after `limit`
/// (it is then killed).
fn exit_within(child: &mut Child, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("polling a client").is_some() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Clone, Copy, Debug)]
enum When {
    /// Right after spawning the client.
    AtOnce,
    /// As soon as the daemon counts the GetFileData pending.
    Pending,
    /// A few milliseconds after that.
    PendingPlus(u64),
}

fn spawn_cat(path: &Path) -> Child {
    default_signals(&mut Command::new("cat"))
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting cat")
}

#[test]
fn signalled_clients_are_released_within_a_second_under_load() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("a temp dir");
    let source = tmp.path().join("src");
    let root = tmp.path().join("root");
    std::fs::create_dir(&source).expect("mkdir src");
    std::fs::create_dir(&root).expect("mkdir root");
    // Small and big files: a big one's readahead sends reads of its own.
    let files: Vec<PathBuf> = (0..4)
        .map(|i| {
            let name = format!("f{i}.bin");
            let len = if i % 2 == 0 { 70_000 } else { 3 << 20 };
            std::fs::write(source.join(&name), vec![i as u8 + 1; len])
                .expect("writing a source file");
            PathBuf::from(name)
        })
        .collect();
    let m = CliMount::new(&bin(), &["--latency", LATENCY_MS], &source, &root);
    // Look every file up first (GetPlaceholderInfo is slow too).
    for f in &files {
        let mut stat = Command::new("stat")
            .arg(root.join(f))
            .stdout(Stdio::null())
            .spawn()
            .expect("stat");
        assert!(stat.wait().expect("stat").success());
    }
    let hogs_dir = tmp.path().join("hogs");
    std::fs::create_dir(&hogs_dir).expect("mkdir hogs");
    let hogs = Hogs::start(&hogs_dir);

    let mut worst = Duration::ZERO;
    let mut released = 0;
    for round in 0..ROUNDS {
        let file = root.join(&files[round % files.len()]);
        let sig = if round % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGKILL
        };
        let when = match round % 5 {
            0 | 1 => When::AtOnce,
            2 | 3 => When::Pending,
            _ => When::PendingPlus(1 + (round as u64 * 7) % 20),
        };
        let what = format!(
            "round {round}: {when:?}, signal {sig}, cat {}",
            file.display()
        );
        let cancelled_before = counter(&m, "cancelled");
        let mut cat = spawn_cat(&file);
        match when {
            When::AtOnce => {}
            When::Pending | When::PendingPlus(_) => {
                wait_for(
                    Duration::from_secs(60),
                    &format!("{what}: nothing pending"),
                    || counter(&m, "pending") >= 1,
                );
                if let When::PendingPlus(ms) = when {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
        }
        // SAFETY: kill(2) on the pid of our own child.
        let r = unsafe { libc::kill(cat.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "{what}: kill: {}", std::io::Error::last_os_error());
        let took = exit_within(&mut cat, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{what}: still running 30 s after the signal"));
        assert!(
            took < Duration::from_secs(1),
            "{what}: released {took:?} after the signal"
        );
        worst = worst.max(took);
        released += 1;
        // Whatever the client started is cancelled before the next round.
        wait_for(
            Duration::from_secs(60),
            &format!("{what}: still pending"),
            || counter(&m, "pending") == 0,
        );
        if !matches!(when, When::AtOnce) {
            assert!(
                counter(&m, "cancelled") > cancelled_before,
                "{what}: nothing counted cancelled"
            );
        }
    }
    eprintln!("{released} clients released, the slowest {worst:?} after its signal");
    // Nothing was fetched: every read was cancelled.
    for f in &files {
        let state = m.state(&root.join(f));
        assert!(state.trim_end().ends_with(": Placeholder (1)"), "{state}");
    }
    drop(hogs);
    // No client left anything open in the mount.
    let holders = holders_of(&root);
    assert!(holders.is_empty(), "still open in the mount: {holders:?}");
    m.unmount();
}

/// The daemon serving `root` (its own files under the root are the layer's, on
/// the file system beneath the mount).
fn daemon_pids(root: &Path) -> Vec<String> {
    let out = Command::new(bin())
        .args(["status", "--json"])
        .arg(root)
        .output()
        .expect("prjfs status");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    st["pid"]
        .as_u64()
        .map(|p| p.to_string())
        .into_iter()
        .collect()
}

/// `pid: fd -> path` of every open file or working directory under `root`,
/// but the daemon's.
fn holders_of(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let daemon = daemon_pids(root);
    for p in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || daemon.contains(&pid) {
            continue;
        }
        let mut links: Vec<PathBuf> = vec![p.path().join("cwd")];
        if let Ok(fds) = std::fs::read_dir(p.path().join("fd")) {
            links.extend(fds.flatten().map(|e| e.path()));
        }
        for l in links {
            if let Ok(t) = std::fs::read_link(&l) {
                if t.starts_with(root) {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    found.push(format!(
                        "{pid} ({}): {} -> {}",
                        comm.trim(),
                        l.display(),
                        t.display()
                    ));
                }
            }
        }
    }
    found
}
