//! `prjfs hydrate PATH...`: prefetch a subtree of any projection by reading
//! every regular file under the paths through the mount, `--jobs` files at a
//! time, with a progress bar (bytes and files) on a terminal and a summary line
//! otherwise.
//!
//! Invariants: at most `jobs` files are being read at once, so at most `jobs`
//! GetFileData callbacks of this command are in flight (the walk before the
//! reads is one thread: one listing or lookup at a time). Ctrl-C (SIGINT) or
//! SIGTERM stops it: no new file is started and every worker's blocked read is
//! interrupted (the kernel sends FUSE_INTERRUPT, prjfs cancels that
//! hydration), so no file is left half hydrated — prjfs hydration is
//! all-or-nothing (SEMANTICS.md) — and the command exits with status 130.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct HydrateArgs {
    /// Files read at once (each read of a placeholder is one GetFileData).
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: u32,
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

/// Every regular file under `path` (the path itself if it is one), without
/// following symlinks, with its size.
fn walk(path: &Path, out: &mut Vec<(PathBuf, u64)>, errors: &mut Vec<String>) {
    if STOP.load(Ordering::Relaxed) {
        return;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return errors.push(format!("{}: {e}", path.display())),
    };
    if meta.is_file() {
        out.push((path.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => return errors.push(format!("{}: {e}", path.display())),
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for p in names {
            walk(&p, out, errors);
        }
    }
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
    for p in &args.paths {
        crate::find_root(p)?;
    }
    catch_stop_signals().map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
    let started = Instant::now();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in &args.paths {
        walk(p, &mut files, &mut errors);
    }
    let total_bytes: u64 = files.iter().map(|(_, n)| n).sum();
    let total_files = files.len();
    let shared = Arc::new(Shared {
        files,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        errors: Mutex::new(errors),
    });
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "hydrating {bar:30} {bytes}/{total_bytes} {msg} ({bytes_per_sec}, {eta})",
            )
            .expect("a valid progress template"),
        );
        bar
    });
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    let mut workers = Vec::new();
    for i in 0..args.jobs.min(total_files.max(1) as u32) {
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
                        Err(e) if STOP.load(Ordering::Relaxed) => {
                            let _ = e;
                            break;
                        }
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
                if let Some(bar) = &bar {
                    bar.set_position(shared.bytes.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "{}/{} files",
                        shared.done.load(Ordering::Relaxed),
                        total_files
                    ));
                }
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
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let done = shared.done.load(Ordering::Relaxed);
    let bytes = shared.bytes.load(Ordering::Relaxed);
    let errors = shared.errors.lock().expect("errors lock");
    for e in errors.iter() {
        eprintln!("prjfs: hydrate: {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    let stopped = STOP.load(Ordering::Relaxed);
    println!(
        "{} {done} of {total_files} files ({:.1} MB) in {secs:.2} s with {} jobs{}",
        if stopped {
            "interrupted: hydrated"
        } else {
            "hydrated"
        },
        bytes as f64 / 1e6,
        args.jobs,
        if errors.is_empty() {
            String::new()
        } else {
            format!(", {} failed", errors.len())
        }
    );
    if stopped {
        std::process::exit(130);
    }
    if !errors.is_empty() {
        return Err(format!("{} paths could not be hydrated", errors.len()));
    }
    Ok(())
}
