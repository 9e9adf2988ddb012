//! Scratch space, mounts, trees and the small helpers every workload shares.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set by SIGINT/SIGTERM; the workloads poll it so that an interrupted run still
/// unmounts and removes its trees (the guards run as the error unwinds the stack).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Err once the run was interrupted.
pub fn check() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

pub fn progress(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "# {msg}");
}

pub fn io_err(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

/// Every mount point of this process's mount namespace (/proc/self/mountinfo).
fn mount_points() -> Result<Vec<PathBuf>, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(super::machine::unescape(mp)))
        .collect())
}

/// Whether `path` is a mount point (false when the mount table cannot be read).
fn is_mount_point(path: &Path) -> bool {
    mount_points().is_ok_and(|ms| ms.iter().any(|m| m == path))
}

/// A temp directory removed on drop (unless something, prjfs or bindfs, is still
/// mounted inside it: removing through a live mount would reach its source).
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let mounted = mount_points()
            .map(|ms| ms.iter().any(|m| m.starts_with(&self.0)))
            .unwrap_or(true);
        if mounted {
            eprintln!(
                "prjfs bench: {} still has a mount inside; left in place",
                self.0.display()
            );
            return;
        }
        remove_tree(&self.0);
    }
}

/// Removes a tree with many threads: on a file system mounted with `discard`,
/// freeing a placeholder's xattr block waits for the device, so a serial
/// `remove_dir_all` of a few hundred thousand placeholders takes minutes.
fn remove_tree(top: &Path) {
    let mut dirs = vec![top.to_path_buf()];
    let mut files = Vec::new();
    let mut i = 0;
    while i < dirs.len() {
        if let Ok(rd) = std::fs::read_dir(&dirs[i]) {
            for e in rd.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(e.path()),
                    _ => files.push(e.path()),
                }
            }
        }
        i += 1;
    }
    let threads = 16;
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for part in files.chunks(chunk) {
            s.spawn(move || {
                for f in part {
                    let _ = std::fs::remove_file(f);
                }
            });
        }
    });
    // Parents were pushed before their children: remove in reverse order.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let _ = std::fs::remove_dir_all(top);
}

pub fn tempdir_in(base: &Path) -> Result<TempDir, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let p = base.join(format!("prjfs-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    let p = p.canonicalize().map_err(io_err(&p))?;
    Ok(TempDir(p))
}

/// Options added to every `prjfs mount` of the run (`prjfs bench --no-passthrough`).
static MOUNT_OPTIONS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Set the options added to every mount of this run (once, before any mount).
pub fn set_mount_options(options: Vec<String>) {
    let _ = MOUNT_OPTIONS.set(options);
}

/// The options added to every mount of this run.
pub fn mount_options() -> Vec<String> {
    MOUNT_OPTIONS.get().cloned().unwrap_or_default()
}

/// A mount made by running `prjfs mount`; unmounted on drop, even on error.
pub struct BenchMount {
    pub root: PathBuf,
}

impl BenchMount {
    pub fn new(args: &[String], source: &Path, root: &Path) -> Result<Self, String> {
        check()?;
        std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = Command::new(exe)
            .arg("mount")
            .args(args)
            .args(MOUNT_OPTIONS.get().into_iter().flatten())
            .arg(source)
            .arg(root)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The pid of the mount's daemon, from `prjfs status` (the control socket).
    pub fn daemon_pid(&self) -> Result<u32, String> {
        let v = crate::control::call(&self.root, &crate::control::ControlRequest::Status)
            .map_err(|e| format!("{}: status: {e}", self.root.display()))?;
        v["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| format!("{}: status has no pid", self.root.display()))
    }
}

impl Drop for BenchMount {
    fn drop(&mut self) {
        if crate::unmount(&self.root).is_err() {
            let _ = rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// The resident set size of process `pid` (`VmRSS` in /proc/PID/status), in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("{path}: no VmRSS"))
}

/// The peer file system: bindfs, a plain libfuse mirror that stores nothing,
/// when it is on PATH. The bench never installs it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub exe: PathBuf,
    /// First line of `bindfs --version`.
    pub version: String,
}

impl Peer {
    /// bindfs on PATH, if it is there and runs.
    pub fn find() -> Option<Self> {
        let path = std::env::var_os("PATH")?;
        let exe = std::env::split_paths(&path)
            .map(|d| d.join("bindfs"))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })?;
        let out = Command::new(&exe).arg("--version").output().ok()?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("bindfs")
            .trim()
            .to_string();
        Some(Self { exe, version })
    }
}

/// A bindfs mount of a source (`bindfs -f --no-allow-other SOURCE ROOT`), run as
/// a child of this process in its own process group (so that Ctrl-C reaches only
/// the bench, which then unmounts); unmounted and reaped on drop, even on error.
pub struct BindfsMount {
    pub root: PathBuf,
    child: Child,
}

impl BindfsMount {
    pub fn new(peer: &Peer, source: &Path, root: &Path) -> Result<Self, String> {
        check()?;
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let child = Command::new(&peer.exe)
            .args(["-f", "--no-allow-other"])
            .arg(source)
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", peer.exe.display()))?;
        // From here on, drop unmounts and reaps whatever happens.
        let mut m = Self {
            root: root.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mount_point(&m.root) {
            check()?;
            if let Ok(Some(status)) = m.child.try_wait() {
                return Err(format!("bindfs exited before mounting: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("bindfs: {} not mounted after 10 s", root.display()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(m)
    }

    /// Unmounts: umount(2) as root, else `fusermount3 -u`, else a lazy detach.
    fn unmount(&self) {
        if !is_mount_point(&self.root) {
            return;
        }
        if rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::empty()).is_ok() {
            return;
        }
        let fusermount = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.root)
            .stderr(Stdio::null())
            .status();
        if !fusermount.is_ok_and(|s| s.success()) {
            let _ = rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

impl Drop for BindfsMount {
    fn drop(&mut self) {
        self.unmount();
        // bindfs exits once its mount is gone; a child that does not (e.g. one
        // that was still starting) is ended (it is ours, by its pid), and
        // whatever it mounted meanwhile is removed, so that nothing is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.unmount();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The bytes of the `i`th generated file.
pub fn content(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((i * 131 + j) % 251) as u8).collect()
}

/// A generated tree: `top` directories of `sub` directories of `files` files of
/// `size` bytes each. `files()` are relative paths, `dirs()` too.
#[derive(Clone, Debug)]
pub struct Tree {
    pub top: usize,
    pub sub: usize,
    pub files: usize,
    pub size: usize,
}

impl Tree {
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(self.top * (self.sub + 1));
        for t in 0..self.top {
            let td = PathBuf::from(format!("d{t:02}"));
            out.push(td.clone());
            for s in 0..self.sub {
                out.push(td.join(format!("s{s:02}")));
            }
        }
        out
    }

    /// Leaf files, directory by directory (the order a walk would visit them).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(self.file_count());
        for t in 0..self.top {
            for s in 0..self.sub {
                let leaf = PathBuf::from(format!("d{t:02}/s{s:02}"));
                for f in 0..self.files {
                    out.push(leaf.join(format!("f{f:04}")));
                }
            }
        }
        out
    }

    pub fn file_count(&self) -> usize {
        self.top * self.sub * self.files
    }

    /// Every path below the root: directories first, then their files.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut all = self.dirs();
        all.extend(self.files());
        all
    }

    pub fn create(&self, at: &Path) -> Result<(), String> {
        for d in self.dirs() {
            let p = at.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        for (i, f) in self.files().iter().enumerate() {
            if i % 1000 == 0 {
                check()?;
            }
            let p = at.join(f);
            if self.size == 0 {
                std::fs::File::create(&p).map_err(io_err(&p))?;
            } else {
                std::fs::write(&p, content(i, self.size)).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }
}

/// One directory with `n` empty files.
pub fn create_flat(dir: &Path, n: usize) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let names: Vec<String> = (0..n).map(|i| format!("entry{i:06}")).collect();
    for (i, name) in names.iter().enumerate() {
        if i % 1000 == 0 {
            check()?;
        }
        let p = dir.join(name);
        std::fs::File::create(&p).map_err(io_err(&p))?;
    }
    Ok(names)
}

/// A file of `size` bytes (a repeating non-trivial pattern), written in 1 MiB
/// chunks.
pub fn create_big(path: &Path, size: u64) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(io_err(path))?;
    let chunk = content(7, 1 << 20);
    let mut left = size;
    while left > 0 {
        check()?;
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).map_err(io_err(path))?;
        left -= n as u64;
    }
    f.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// splitmix64: deterministic offsets, the same on both sides of a comparison.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Runs `f` `reps` times; returns every time and the best.
pub fn best_of(
    reps: usize,
    label: &str,
    mut f: impl FnMut() -> Result<Duration, String>,
) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(reps);
    for r in 0..reps {
        check()?;
        let d = f()?;
        progress(&format!(
            "{label}: run {}/{reps}: {:.3} s",
            r + 1,
            d.as_secs_f64()
        ));
        times.push(d);
    }
    Ok(times)
}

pub fn timed<T>(f: impl FnOnce() -> Result<T, String>) -> Result<(T, Duration), String> {
    let start = Instant::now();
    let v = f()?;
    Ok((v, start.elapsed()))
}
