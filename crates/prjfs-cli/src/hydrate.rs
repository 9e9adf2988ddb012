//! `prjfs hydrate PATH...`: prefetch a subtree of any projection, `--jobs`
//! files at a time, with a progress bar (bytes and files) on a terminal and a
//! summary line otherwise.
//!
//! When the root's daemon answers on its control socket, it walks the paths
//! itself and hydrates the files it finds (`daemon/walk.rs`,
//! `daemon/prefetch.rs`: no listing, lookup, open, read or close through the
//! kernel per file); this command shows its progress. Else — or with
//! `--read` — the paths are walked through the mount here (listings and
//! `lstat`s) and each file is read through the mount.
//!
//! Invariants: at most `jobs` files are in hand at once (in the daemon or
//! here), so at most `jobs` callbacks of this command are in flight. Ctrl-C
//! (SIGINT) or SIGTERM stops it: no new file is started and every file in hand
//! is cancelled (the daemon fires its request's cancel slot; a read here is
//! interrupted and the kernel sends FUSE_INTERRUPT), so no file is left half
//! hydrated — prjfs hydration is all-or-nothing (SEMANTICS.md) — and the
//! command exits with status 130.

use std::fs::File;
use std::io::Read;
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use crate::control::{self, ControlRequest};

#[derive(Args, Clone, Debug)]
pub struct HydrateArgs {
    /// Files hydrated at once (each is one GetFileData; default: logical
    /// CPUs, as the daemon's callback slots). More pays for a provider that
    /// waits (a remote store); for one that computes (an archive, a local
    /// directory) more than the CPUs only adds switching: measured on 2 CPUs
    /// (bench/results/2026-12-01-session9), a `.tar` took 0.36 s with 2 and
    /// 0.59 s with 4.
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Read every file through the mount instead of asking the root's daemon
    /// to hydrate it (what is done anyway when no daemon answers: a root
    /// mounted by a program of your own).
    #[arg(long)]
    pub read: bool,
    /// Files or directories inside a mounted prjfs root.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Set by the signal handler; read by the workers and the main thread.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`STOP`], without `SA_RESTART`: a read blocked on
/// the mount returns `EINTR`.
fn catch_stop_signals() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an
        // atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Hand every regular file under `path` (the path itself if it is one),
/// without following symlinks, with its size, to `visit`, directory by
/// directory in name order; `false` once `visit` said stop (or Ctrl-C).
fn walk(path: &Path, visit: &mut dyn FnMut(&Path, u64) -> bool, errors: &mut Vec<String>) -> bool {
    if STOP.load(Ordering::Relaxed) {
        return false;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(format!("{}: {e}", path.display()));
            return true;
        }
    };
    if meta.is_file() {
        return visit(path, meta.len());
    }
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                return true;
            }
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for p in names {
            if !walk(&p, visit, errors) {
                return false;
            }
        }
    }
    true
}

/// Every regular file under `paths` with its size (see [`walk`]).
fn collect(paths: &[PathBuf], errors: &mut Vec<String>) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    for p in paths {
        walk(
            p,
            &mut |f, n| {
                files.push((f.to_path_buf(), n));
                true
            },
            errors,
        );
    }
    files
}

/// Read `path` to its end; `Ok(false)` if stopped by a signal first.
fn read_all(path: &Path, buf: &mut [u8], bytes: &AtomicU64) -> std::io::Result<bool> {
    let mut file = File::open(path)?;
    loop {
        if STOP.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match file.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

struct Shared {
    files: Vec<(PathBuf, u64)>,
    next: AtomicUsize,
    done: AtomicUsize,
    bytes: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// Entry point of `prjfs hydrate`.
pub fn run(args: HydrateArgs) -> Result<(), String> {
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(4, |n| n.get().min(1024) as u32)
    });
    // The paths, by root, in the order given.
    let mut by_root: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for p in &args.paths {
        let (root, rel) = crate::find_root(p)?;
        let path = root.join(&rel);
        match by_root.iter_mut().find(|(r, _)| *r == root) {
            Some((_, paths)) => paths.push(path),
            None => by_root.push((root, vec![path])),
        }
    }
    catch_stop_signals().map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
    let started = Instant::now();
    let progress = Arc::new(Progress::new());
    let mut errors = Vec::new();
    let (mut walked, mut done, mut bytes) = (0, 0, 0);
    for (root, paths) in by_root {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        let before = (done, bytes);
        let counted = if args.read {
            None
        } else {
            in_daemon(&root, paths.clone(), jobs, &progress, before, &mut errors)
        };
        let (w, d, b) = match counted {
            Some(c) => c,
            None => {
                let files = collect(&paths, &mut errors);
                let n = files.len();
                progress.grow(n, files.iter().map(|(_, b)| b).sum());
                let (d, b) = read_through_mount(files, jobs, &progress, before, &mut errors)?;
                (n, d, b)
            }
        };
        walked += w;
        done += d;
        bytes += b;
    }
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    for e in &errors {
        eprintln!("prjfs: hydrate: {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    let stopped = STOP.load(Ordering::Relaxed);
    crate::print_result(&format!(
        "{} {done} of {walked} files ({:.1} MB) in {secs:.2} s with {} jobs{}\n",
        if stopped {
            "interrupted: hydrated"
        } else {
            "hydrated"
        },
        bytes as f64 / 1e6,
        jobs,
        if errors.is_empty() {
            String::new()
        } else {
            format!(", {} failed", errors.len())
        }
    ));
    if stopped {
        std::process::exit(130);
    }
    if !errors.is_empty() {
        return Err(format!("{} paths could not be hydrated", errors.len()));
    }
    Ok(())
}

/// The progress bar (on a terminal) and what it counts toward, which grows
/// as the walk finds files.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    files: AtomicUsize,
    bytes: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            bar: crate::byte_bar(
                "hydrating {bar:30} {bytes}/{total_bytes} {msg} ({bytes_per_sec}, {eta})",
            ),
            files: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The walk found `files` more files of `bytes` bytes.
    fn grow(&self, files: usize, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn show(&self, files: usize, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.set_message(format!(
                "{files}/{} files",
                self.files.load(Ordering::Relaxed)
            ));
        }
    }
}

/// Have the daemon of `root` walk `paths` (under `root`) and hydrate the
/// files as it finds them; the files walked, and the files and bytes now
/// local, or `None` when no daemon answers there (or it refuses): then they
/// are to be read through the mount. `before` is what earlier roots counted.
fn in_daemon(
    root: &Path,
    paths: Vec<PathBuf>,
    jobs: u32,
    progress: &Arc<Progress>,
    before: (usize, u64),
    errors: &mut Vec<String>,
) -> Option<(usize, usize, u64)> {
    // The daemon walks the paths itself: no listing or lookup through the
    // kernel, and no kernel inode per entry.
    let rels = paths
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let req = ControlRequest::Hydrate {
        paths: rels,
        jobs,
        walk: true,
    };
    // What the daemon's walk has found, as the progress bar counts it.
    let mut found = (0usize, 0u64);
    let mut grow = |v: &serde_json::Value| {
        let walked = v["walked"].as_u64().unwrap_or(0) as usize;
        let bytes = v["walked_bytes"].as_u64().unwrap_or(0);
        if walked > found.0 {
            progress.grow(walked - found.0, bytes.saturating_sub(found.1));
            found = (walked, bytes);
        }
    };
    let count = |v: &serde_json::Value| {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        ((n("hydrated") + n("local")) as usize, n("bytes"))
    };
    let answer = control::call_long(
        root,
        &req,
        None,
        |line| {
            if let Some(p) = line.get("progress") {
                grow(p);
                let (d, b) = count(p);
                progress.show(before.0 + d, before.1 + b);
            }
            !STOP.load(Ordering::Relaxed)
        },
        Duration::from_secs(30),
    );
    let answer = match answer {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            return None; // no daemon of ours: a root mounted by a program
        }
        Err(e) if e.to_string().contains("bad request") => {
            return None; // an older daemon
        }
        Err(e) if e.to_string().starts_with(control::HYDRATE_REFUSED) => {
            eprintln!("prjfs: hydrate: {e}; reading through the mount instead");
            return None;
        }
        Err(e) => {
            errors.push(format!("{}: {e}", root.display()));
            return Some((found.0, 0, 0));
        }
    };
    // A daemon of an older prjfs hydrates the paths as files and does not
    // walk: the walk is then done here, reading through the mount.
    let walked = answer.get("walked").and_then(|w| w.as_u64())? as usize;
    grow(&answer);
    for e in answer["errors"].as_array().into_iter().flatten() {
        if let Some(e) = e.as_str() {
            errors.push(format!("{}/{e}", root.display()));
        }
    }
    let failed = answer["failed"].as_u64().unwrap_or(0) as usize;
    let named = answer["errors"].as_array().map_or(0, Vec::len);
    if failed > named {
        errors.push(format!(
            "{}: {} more files failed (see the daemon's log)",
            root.display(),
            failed - named
        ));
    }
    let (d, b) = count(&answer);
    progress.show(before.0 + d, before.1 + b);
    Some((walked, d, b))
}

/// Read every file of `files` through the mount, `jobs` at a time; the files
/// read whole and their bytes.
fn read_through_mount(
    files: Vec<(PathBuf, u64)>,
    jobs: u32,
    progress: &Progress,
    before: (usize, u64),
    errors: &mut Vec<String>,
) -> Result<(usize, u64), String> {
    let total = files.len();
    let shared = Arc::new(Shared {
        files,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
    });
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    let mut workers = Vec::new();
    for i in 0..jobs.min(total.max(1) as u32) {
        let shared = shared.clone();
        let finished = finished_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("prjfs-hydrate-{i}"))
            .spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    if STOP.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = shared.next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, _)) = shared.files.get(n) else {
                        break;
                    };
                    match read_all(path, &mut buf, &shared.bytes) {
                        Ok(true) => {
                            shared.done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => break,
                        Err(_) if STOP.load(Ordering::Relaxed) => break,
                        Err(e) => shared
                            .errors
                            .lock()
                            .expect("errors lock")
                            .push(format!("{}: {e}", path.display())),
                    }
                }
                drop(finished);
            })
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        workers.push(handle);
    }
    drop(finished_tx);
    let mut signalled = false;
    // Wait for the workers (the channel closes when the last one ends),
    // updating the bar, and pass a stop signal on to each worker thread so that
    // a read blocked on the mount is interrupted.
    loop {
        match finished_rx.recv_timeout(Duration::from_millis(100)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            _ => {
                progress.show(
                    before.0 + shared.done.load(Ordering::Relaxed),
                    before.1 + shared.bytes.load(Ordering::Relaxed),
                );
                if STOP.load(Ordering::Relaxed) && !signalled {
                    signalled = true;
                    for w in &workers {
                        // SAFETY: the thread is alive until joined below (its
                        // handle is held); SIGINT's handler only sets STOP.
                        unsafe {
                            libc::pthread_kill(w.as_pthread_t(), libc::SIGINT);
                        }
                    }
                }
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
    errors.append(&mut shared.errors.lock().expect("errors lock"));
    Ok((
        shared.done.load(Ordering::Relaxed),
        shared.bytes.load(Ordering::Relaxed),
    ))
}
