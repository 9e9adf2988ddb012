//! `prjfs mount`: validate, start the daemon (a re-executed `prjfs mount
//! --foreground`), and report when the mount is ready or why it failed.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use prjfs::{AsyncAdapter, Provider, RootMarker, StartOptions, VirtualizationInstance};
use prjfs_providers::dir::{DirMode, DirOptions, DirProvider};
use prjfs_providers::testing::{FaultPlan, FaultSpec, Flaky, FlakyAsync};

use crate::control::{self, ControlRequest};

#[derive(Args, Clone, Debug)]
pub struct MountArgs {
    /// Callback slots (ConcurrentThreadCount); default: logical CPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Request threads (PoolThreadCount); default: twice the callback slots.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub pool_threads: Option<u32>,
    /// The provider answers every callback inline, even with --latency.
    #[arg(long, conflicts_with = "pend")]
    pub sync: bool,
    /// The provider pends every callback and completes it from its own workers,
    /// even without --latency. Default: pend only with --latency (a local
    /// directory has nothing to wait for, so it answers inline).
    #[arg(long = "async")]
    pub pend: bool,
    /// Every callback that touches the backing store first waits MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency: u64,
    /// Cache not-found answers (ProjFS negative path cache).
    #[arg(long)]
    pub negative_cache: bool,
    /// Serve reads and writes of hydrated and full files through the daemon
    /// instead of FUSE passthrough (which needs root and kernel 6.9 or later).
    #[arg(long)]
    pub no_passthrough: bool,
    /// Send every listing to the provider instead of letting the kernel keep a
    /// directory's listing until a change through the mount.
    #[arg(long)]
    pub no_listing_cache: bool,
    /// For testing only: put random provider faults in front of the directory
    /// provider (SPEC: comma-separated seed=N, fail=P, panic=P, slow=P:MS,
    /// stall=DIR:MS; see `prjfs_providers::testing::FaultSpec`). Used by `prjfs
    /// bench soak`; never for real data.
    #[arg(long, value_name = "SPEC", hide_short_help = true)]
    pub inject_faults: Option<String>,
    /// Stay in the foreground (logs to stderr) instead of daemonizing.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: fd on which a foreground daemon reports readiness.
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
    /// The directory to project.
    pub source: PathBuf,
    /// The (empty, or earlier prjfs) directory to project into.
    pub root: PathBuf,
}

fn check_paths(args: &MountArgs) -> Result<(PathBuf, PathBuf), String> {
    let source = args
        .source
        .canonicalize()
        .map_err(|e| format!("source {}: {e}", args.source.display()))?;
    if !source.is_dir() {
        return Err(format!("source {}: not a directory", args.source.display()));
    }
    let root = crate::absolute(&args.root)?;
    if let Err(rustix::io::Errno::NOTCONN) = rustix::fs::statfs(&root) {
        eprintln!(
            "prjfs: {}: removing a stale mount left by a dead daemon",
            root.display()
        );
        rustix::mount::unmount(&root, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
            format!(
                "root {}: cannot remove the stale mount: {e}",
                root.display()
            )
        })?;
    }
    match std::fs::symlink_metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("root {}: not a directory", root.display())),
        // A stale mount of a dead daemon: the library cleans it up.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        Err(e) => return Err(format!("root {}: {e}", root.display())),
    }
    if source.starts_with(&root) || root.starts_with(&source) {
        return Err(format!(
            "source {} and root {} must not contain each other",
            source.display(),
            root.display()
        ));
    }
    Ok((source, root))
}

/// Entry point of `prjfs mount`.
pub fn mount(args: MountArgs) -> Result<(), String> {
    let (source, root) = check_paths(&args)?;
    if let Some(spec) = &args.inject_faults {
        spec.parse::<FaultSpec>()
            .map_err(|e| format!("--inject-faults: {e}"))?;
    }
    if args.foreground {
        return run_foreground(args, source, root);
    }
    // Daemonize by re-executing ourselves in the foreground, detached, and wait for
    // its readiness report on a pipe.
    let (read_end, write_end) = rustix::pipe::pipe().map_err(|e| format!("pipe: {e}"))?;
    rustix::io::fcntl_setfd(&write_end, rustix::io::FdFlags::empty()).map_err(|e| e.to_string())?;
    let log = log_path(&root);
    let logfile = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg("--foreground");
    cmd.arg("--ready-fd").arg(write_end.as_raw_fd().to_string());
    if let Some(n) = args.threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    if let Some(n) = args.pool_threads {
        cmd.arg("--pool-threads").arg(n.to_string());
    }
    if args.sync {
        cmd.arg("--sync");
    }
    if args.pend {
        cmd.arg("--async");
    }
    if args.negative_cache {
        cmd.arg("--negative-cache");
    }
    if args.no_passthrough {
        cmd.arg("--no-passthrough");
    }
    if args.no_listing_cache {
        cmd.arg("--no-listing-cache");
    }
    if let Some(spec) = &args.inject_faults {
        cmd.arg("--inject-faults").arg(spec);
    }
    cmd.arg("--latency").arg(args.latency.to_string());
    cmd.arg(&source).arg(&root);
    cmd.stdin(Stdio::null())
        .stdout(logfile.try_clone().map_err(|e| e.to_string())?)
        .stderr(logfile);
    // Detach: a session of its own (no terminal's SIGHUP or Ctrl-C reaches it),
    // and a working directory that pins no mount.
    cmd.current_dir("/");
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    drop(write_end);
    let mut report = String::new();
    let mut reader = std::fs::File::from(read_end);
    let _ = reader.read_to_string(&mut report);
    if report.trim() == "ready" {
        return Ok(());
    }
    let _ = child.wait();
    let msg = report
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(report.trim())
        .to_string();
    if msg.is_empty() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "the daemon exited before the mount was ready: {}",
            tail.trim()
        ));
    }
    Err(msg)
}

/// The log file of the daemon of `root` (its stdout and stderr), recreated by
/// each `prjfs mount` of that root.
pub(crate) fn log_path(root: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    std::env::temp_dir().join(format!("prjfs-{:016x}.log", h.finish()))
}

fn run_foreground(args: MountArgs, source: PathBuf, root: PathBuf) -> Result<(), String> {
    let ready = args.ready_fd.map(|fd| {
        // SAFETY: the parent passed this fd number to us for exactly this use and
        // nothing else in this process owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let report = |ready: Option<OwnedFd>, msg: &str| {
        if let Some(fd) = ready {
            let mut f = std::fs::File::from(fd);
            let _ = writeln!(f, "{msg}");
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PRJFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Block SIGINT/SIGTERM in every thread; one thread waits for them and
    // unmounts, so the daemon always ends through a clean unmount.
    block_signals();
    let mode = if args.sync || (!args.pend && args.latency == 0) {
        DirMode::Sync
    } else {
        DirMode::Async
    };
    let faults = match args.inject_faults.as_deref().map(str::parse::<FaultSpec>) {
        None => None,
        Some(Ok(spec)) => Some(Arc::new(FaultPlan::new(spec))),
        Some(Err(e)) => {
            let msg = format!("--inject-faults: {e}");
            report(ready, &format!("error: {msg}"));
            return Err(msg);
        }
    };
    let provider = open_provider(
        &source,
        DirOptions {
            mode,
            latency: Duration::from_millis(args.latency),
            ..Default::default()
        },
        faults.clone(),
    )
    .map_err(|e| format!("source {}: {e}", source.display()));
    let provider = match provider {
        Ok(p) => p,
        Err(e) => {
            report(ready, &format!("error: {e}"));
            return Err(e);
        }
    };
    let options = StartOptions {
        concurrent_threads: args.threads.unwrap_or(0) as usize,
        pool_threads: args.pool_threads.unwrap_or(0) as usize,
        negative_path_cache: args.negative_cache,
        passthrough: !args.no_passthrough,
        cache_listings: !args.no_listing_cache,
        marker: Some(RootMarker {
            source: source.to_string_lossy().into_owned(),
            provider: "dir".into(),
        }),
        ..Default::default()
    };
    // A daemon that was just killed may hold its socket for a few more
    // milliseconds while its last threads exit: retry briefly before refusing.
    let listen = || {
        let mut tries = 0;
        loop {
            match control::listen(&root) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                r => return r,
            }
        }
    };
    let listener = match listen() {
        Ok(l) => l,
        Err(e) => {
            let msg = format!(
                "{}: another prjfs daemon serves this root ({e})",
                root.display()
            );
            report(ready, &format!("error: {msg}"));
            return Err(msg);
        }
    };
    let instance = match VirtualizationInstance::start(&root, provider, options) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            let msg = e.to_string();
            report(ready, &format!("error: {msg}"));
            return Err(msg);
        }
    };
    let (pool, concurrent) = instance.threads();
    let root2 = instance.root().to_path_buf();
    {
        let instance = instance.clone();
        let source = source.clone();
        std::thread::Builder::new()
            .name("prjfs-control".into())
            .spawn(move || {
                control::serve(listener, |req| {
                    answer(&instance, &source, pool, concurrent, faults.as_deref(), req)
                })
            })
            .map_err(|e| e.to_string())?;
    }
    {
        let root = root2.clone();
        std::thread::Builder::new()
            .name("prjfs-signals".into())
            .spawn(move || wait_for_signal_then_unmount(&root))
            .map_err(|e| e.to_string())?;
    }
    report(ready, "ready");
    if args.ready_fd.is_none() {
        eprintln!(
            "prjfs: {} projected at {}",
            source.display(),
            root2.display()
        );
    }
    // Runs until the mount goes away (prjfs unmount, umount, a signal).
    instance.wait();
    Ok(())
}

/// The directory provider for `source`, behind `faults` when given: [`Flaky`]
/// in front of the inline provider, [`FlakyAsync`] inside the async adapter (so
/// its delays are timers of pended commands).
fn open_provider(
    source: &Path,
    options: DirOptions,
    faults: Option<Arc<FaultPlan>>,
) -> std::io::Result<Arc<dyn Provider>> {
    let dir = DirProvider::new(source, options)?;
    Ok(match (faults, options.mode) {
        (None, _) => dir.to_provider()?,
        (Some(plan), DirMode::Sync) => Arc::new(Flaky::new(dir.to_provider()?, plan)),
        (Some(plan), DirMode::Async) => Arc::new(AsyncAdapter::new(FlakyAsync::new(dir, plan))?),
    })
}

fn answer(
    instance: &VirtualizationInstance,
    source: &Path,
    pool: usize,
    concurrent: usize,
    faults: Option<&FaultPlan>,
    req: ControlRequest,
) -> serde_json::Value {
    let virt = instance.virtualizer();
    match req {
        ControlRequest::Status => {
            let stats = virt.stats();
            let opens = instance.open_stats();
            let c = &stats.commands;
            let by_kind: serde_json::Map<String, serde_json::Value> = c
                .by_kind
                .iter()
                .map(|(k, n)| (k.name().to_string(), (*n).into()))
                .collect();
            let states = match virt.layer().count_states() {
                Ok(s) => serde_json::json!({
                    "placeholder": s.placeholder,
                    "hydrated": s.hydrated,
                    "dirty": s.dirty,
                    "full": s.full,
                    "tombstone": s.tombstone,
                }),
                Err(e) => return serde_json::json!({ "error": format!("counting states: {e}") }),
            };
            let faults = faults.map(|f| {
                let c = f.counts();
                serde_json::json!({
                    "failed": c.failed,
                    "panicked": c.panicked,
                    "slowed": c.slowed,
                    "stalled": c.stalled,
                    "delays_cancelled": c.delays_cancelled,
                })
            });
            serde_json::json!({
                "root": instance.root(),
                "source": source,
                "pid": std::process::id(),
                "threads": concurrent,
                "pool_threads": pool,
                "callbacks": {
                    "invoked": c.invoked,
                    "pending": c.pending,
                    "completed": c.completed,
                    "cancelled": c.cancelled,
                    "failed": c.failed,
                    "queued": stats.queued,
                    "by_kind": by_kind,
                },
                "states": states,
                "nodes": stats.nodes,
                "opens": {
                    "passthrough_active": instance.passthrough(),
                    "passthrough": opens.passthrough,
                    "daemon": opens.daemon,
                    "refused": opens.refused,
                },
                "faults": faults,
            })
        }
        ControlRequest::State { path } => match virt.state_of_path(Path::new(&path)) {
            Ok(state) => serde_json::json!({
                "path": path,
                "state": state.0,
                "names": state.names(),
            }),
            Err(e) => serde_json::json!({
                "error": format!("{path}: {}", std::io::Error::from_raw_os_error(e))
            }),
        },
    }
}

fn block_signals() {
    // SAFETY: sigset manipulation on a local, zero-initialized set; the mask
    // applies to this thread and is inherited by threads spawned after it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_for_signal_then_unmount(root: &Path) {
    // SAFETY: as in block_signals; sigwait only reads the set and writes `sig`.
    let sig = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    };
    tracing::warn!("signal {sig}: unmounting {}", root.display());
    // Lazy: a client may still be inside the root; the kernel detaches now and the
    // workers see the connection end.
    if let Err(e) = prjfs::unmount(root).or_else(|_| prjfs_fuse_lazy(root)) {
        tracing::error!("unmount on signal failed: {e}");
    }
}

fn prjfs_fuse_lazy(root: &Path) -> std::io::Result<()> {
    rustix::mount::unmount(root, rustix::mount::UnmountFlags::DETACH).map_err(Into::into)
}
