//! `prjfs mount`: validate, start the daemon (a re-executed `prjfs mount
//! --foreground`), and report when the mount is ready or why it failed.
//!
//! The daemon's stderr and its readiness report share one pipe to `prjfs mount`,
//! which shows what the daemon printed before it was ready (or why it died) and
//! returns at `ready` or `error: MSG`. Once ready, the daemon's stderr is
//! `/dev/null` and it logs (tracing, and panics through a panic hook) only to its
//! root's own log file, `ROOT/.prjfs/log/daemon.log` ([`crate::log`]); lines
//! logged while the mount is set up are held in memory until then. Nothing goes
//! to `$TMPDIR`. `prjfs mount --foreground` logs to stderr instead.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use prjfs::{
    AsyncAdapter, Collation, NotificationMapping, Provider, RootMarker, StartOptions,
    VirtualizationInstance,
};
use prjfs_providers::dir::watch::SourceWatcher;
use prjfs_providers::dir::{DirMode, DirOptions, DirProvider};
use prjfs_providers::readahead::PrefetchCounters;
use prjfs_providers::s3::{S3Options, S3Provider};
use prjfs_providers::testing::{FaultPlan, FaultSpec, Flaky, FlakyAsync};

use crate::archive;
use crate::control;
use crate::log::{LogSink, RotatingLog, LOG_DIR, LOG_FILE, LOG_KEEP, LOG_LIMIT};
use crate::notify_log::NotifyLog;
use crate::source::Source;

mod answer;
mod prefetch;
mod walk;
use answer::{answer, Served};

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
    /// Opens and closes of files never reach the daemon (FUSE no-open): faster
    /// opens of small files, and the kernel keeps their pages across opens. No
    /// passthrough then, a placeholder becomes full at its first write rather
    /// than at its open for write, and a file opened without O_CREAT and then
    /// removed cannot be read through that descriptor (see SEMANTICS.md).
    #[arg(long, conflicts_with = "notify_log")]
    pub no_open: bool,
    /// Send every listing to the provider instead of letting the kernel keep a
    /// directory's listing until a change through the mount.
    #[arg(long)]
    pub no_listing_cache: bool,
    /// A directory source: do not read the listings of a listed directory's
    /// subdirectories ahead (on by default: a walk then finds them ready).
    #[arg(long)]
    pub no_read_ahead: bool,
    /// For testing only: put random provider faults in front of the directory
    /// provider (SPEC: comma-separated seed=N, fail=P, panic=P, slow=P:MS,
    /// stall=DIR:MS; see `prjfs_providers::testing::FaultSpec`). Used by `prjfs
    /// bench soak`; never for real data.
    #[arg(long, value_name = "SPEC", hide_short_help = true)]
    pub inject_faults: Option<String>,
    /// Append one JSON line per notification to FILE (`{"kind", "path",
    /// "destination", "pid", "process", "time"}`); the provider then
    /// subscribes to every notification kind under the whole root.
    #[arg(long, value_name = "FILE")]
    pub notify_log: Option<PathBuf>,
    /// Follow changes in SOURCE while mounted (a live mirror): created,
    /// modified, deleted and renamed source items show in ROOT within a
    /// second. Items changed in ROOT are never overwritten (the refusal is
    /// logged and counted in `prjfs status`). Uses one inotify watch per
    /// source directory.
    #[arg(long)]
    pub watch: bool,
    /// s3:// sources: the S3-compatible endpoint, e.g. `http://127.0.0.1:8333`
    /// (default: `AWS_ENDPOINT`, else AWS).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// s3:// sources: the region (default: `AWS_DEFAULT_REGION`, `AWS_REGION`,
    /// else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// s3:// sources: address the bucket in the path (`ENDPOINT/BUCKET/KEY`),
    /// as local servers (MinIO, SeaweedFS, Garage) want.
    #[arg(long)]
    pub path_style: bool,
    /// s3:// sources: allow a plain-HTTP endpoint.
    #[arg(long)]
    pub allow_http: bool,
    /// s3:// sources: send unsigned requests (public buckets). Also the case
    /// with --endpoint and no `AWS_ACCESS_KEY_ID`.
    #[arg(long)]
    pub anonymous: bool,
    /// s3:// sources: seconds one request may spend retrying transient
    /// failures (with backoff) before the file operation fails with EIO.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub retry_bound: u64,
    /// s3:// sources: list the placed directories again every SECS seconds and
    /// apply new, changed and deleted objects (what `prjfs refresh ROOT` does;
    /// local changes are never overwritten).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch_interval: Option<u64>,
    /// Stay in the foreground (logs to stderr) instead of daemonizing.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: fd on which a foreground daemon reports readiness.
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
    /// The directory to project, `git:REPO[@REV]`: the tree of a revision
    /// (default `HEAD`; a branch, tag or commit id) of a local repository, or
    /// `s3://BUCKET[/PREFIX]`: a bucket of an S3-compatible object store.
    pub source: PathBuf,
    /// The (empty, or earlier prjfs) directory to project into.
    pub root: PathBuf,
}

fn check_paths(args: &MountArgs) -> Result<(Source, PathBuf), String> {
    let source = Source::parse(&args.source)?;
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
    if let Some(path) = source.path() {
        if path.starts_with(&root) || root.starts_with(path) {
            return Err(format!(
                "source {} and root {} must not contain each other",
                path.display(),
                root.display()
            ));
        }
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
    let not_dir = match &source {
        Source::Dir(_) => None,
        Source::Git { .. } => Some("git:"),
        Source::Archive(_) => Some("an archive"),
        Source::S3 { .. } => Some("s3://"),
    };
    if let Some(kind) = not_dir {
        let dir_only = [
            ("--watch", args.watch),
            ("--inject-faults", args.inject_faults.is_some()),
            ("--latency", args.latency != 0),
            ("--async", args.pend),
        ];
        if let Some((flag, _)) = dir_only.iter().find(|(_, set)| *set) {
            return Err(format!(
                "{flag} applies to a directory source, not to {kind}"
            ));
        }
    }
    if !matches!(source, Source::S3 { .. }) {
        let s3_only = [
            ("--endpoint", args.endpoint.is_some()),
            ("--region", args.region.is_some()),
            ("--path-style", args.path_style),
            ("--allow-http", args.allow_http),
            ("--anonymous", args.anonymous),
            ("--watch-interval", args.watch_interval.is_some()),
        ];
        if let Some((flag, _)) = s3_only.iter().find(|(_, set)| *set) {
            return Err(format!("{flag} applies to an s3:// source"));
        }
    }
    if let (Source::Archive(path), None) = (&source, args.ready_fd) {
        // Index the archive here, where the terminal is (a progress bar), and
        // report a bad archive before a daemon starts; the daemon reuses it
        // (and does not check again what `prjfs mount` just checked).
        archive::prepare(path, &root)?;
    }
    if args.foreground {
        return run_foreground(args, source, root);
    }
    // Daemonize by re-executing ourselves in the foreground, detached, and wait for
    // its readiness report on a pipe.
    let (read_end, write_end) = rustix::pipe::pipe().map_err(|e| format!("pipe: {e}"))?;
    rustix::io::fcntl_setfd(&write_end, rustix::io::FdFlags::empty()).map_err(|e| e.to_string())?;
    let stderr_end = write_end.try_clone().map_err(|e| format!("pipe: {e}"))?;
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
    if args.no_open {
        cmd.arg("--no-open");
    }
    if args.no_listing_cache {
        cmd.arg("--no-listing-cache");
    }
    if args.no_read_ahead {
        cmd.arg("--no-read-ahead");
    }
    if args.watch {
        cmd.arg("--watch");
    }
    if let Some(spec) = &args.inject_faults {
        cmd.arg("--inject-faults").arg(spec);
    }
    if let Some(file) = &args.notify_log {
        cmd.arg("--notify-log").arg(crate::absolute(file)?);
    }
    cmd.arg("--latency").arg(args.latency.to_string());
    if let Some(url) = &args.endpoint {
        cmd.arg("--endpoint").arg(url);
    }
    if let Some(region) = &args.region {
        cmd.arg("--region").arg(region);
    }
    if args.path_style {
        cmd.arg("--path-style");
    }
    if args.allow_http {
        cmd.arg("--allow-http");
    }
    if args.anonymous {
        cmd.arg("--anonymous");
    }
    cmd.arg("--retry-bound").arg(args.retry_bound.to_string());
    if let Some(secs) = args.watch_interval {
        cmd.arg("--watch-interval").arg(secs.to_string());
    }
    cmd.arg(source.arg()).arg(&root);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr_end));
    // Detach: a session of its own (no terminal's SIGHUP or Ctrl-C reaches it),
    // and a working directory that pins no mount.
    cmd.current_dir("/");
    // Nothing the caller's process left open (without close-on-exec) lives on
    // in the daemon but the readiness pipe: a daemon must not keep a terminal's,
    // a CI runner's or a test harness's pipes open for as long as it runs.
    let ready_fd = write_end.as_raw_fd();
    // SAFETY: setsid, close_range and fcntl are async-signal-safe system calls
    // and touch no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::setsid();
            // Close-on-exec for every descriptor from 3 up, then not for the
            // readiness pipe. (stdin/stdout/stderr are set by `Command`.)
            if libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) == 0
            {
                libc::fcntl(ready_fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    // The command still holds the write end given as the child's stderr: drop it
    // and ours, so the read ends once the daemon has closed its copies.
    drop(cmd);
    drop(write_end);
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(read_end).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let mut outcome = None;
    let mut printed = Vec::new();
    for line in text.lines() {
        if line == "ready" {
            outcome = Some(Ok(()));
        } else if let Some(msg) = line.strip_prefix("error: ") {
            outcome = Some(Err(msg.to_string()));
        } else if !line.trim().is_empty() {
            printed.push(line);
        }
    }
    match outcome {
        Some(result) => {
            if let Err(msg) = &result {
                let _ = child.wait();
                // The daemon's main prints the error it reported once more.
                let again = format!("prjfs: {msg}");
                printed.retain(|line| *line != again);
            }
            for line in printed {
                eprintln!("{line}");
            }
            result
        }
        None => {
            let _ = child.wait();
            Err(format!(
                "the daemon exited before the mount was ready: {}",
                printed.join("\n")
            ))
        }
    }
}

/// Set up tracing: with a sink (the daemon), plain text into it and panics
/// logged too; without (`--foreground`), to stderr, coloured only on a terminal.
fn init_logging(sink: Option<Arc<LogSink>>) {
    let fmt = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_env("PRJFS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    );
    match sink {
        Some(sink) => {
            fmt.with_ansi(false).with_writer(sink).init();
            log_panics();
        }
        None => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// Log every panic (with its thread, and a backtrace when `RUST_BACKTRACE` asks
/// for one) before the default hook prints it to stderr, which is `/dev/null`
/// once the daemon is ready.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!("thread '{name}' {info}\n{trace}");
        } else {
            tracing::error!("thread '{name}' {info}");
        }
        default(info);
    }));
}

/// Point fd 2 at `/dev/null`: `prjfs mount` stops reading the pipe at readiness.
fn quiet_stderr() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 atomically replaces fd 2 with a copy of an fd we own; no
        // Rust object owns fd 2, and std's stderr writes to whatever it is.
        unsafe {
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

/// Where a daemon's log is: its path on the root's file system (hidden by the
/// mount), and a path through the daemon's fd on the hidden directory that
/// reaches it while mounted.
struct LogPlace {
    file: PathBuf,
    live: String,
}

/// Give the sink the root's log file, reached through the layer's fd on the
/// root's hidden directory (the root's path is covered by the mount by now).
fn attach_log(sink: &LogSink, instance: &VirtualizationInstance) -> Option<LogPlace> {
    match instance.virtualizer().layer().hidden_dir() {
        Ok(fd) => {
            let live = format!(
                "/proc/{}/fd/{}/{LOG_DIR}/{LOG_FILE}",
                std::process::id(),
                fd.as_raw_fd()
            );
            sink.attach(RotatingLog::new(fd, LOG_DIR, LOG_FILE, LOG_LIMIT, LOG_KEEP));
            let file = instance
                .root()
                .join(prjfs::layer::HIDDEN_DIR)
                .join(LOG_DIR)
                .join(LOG_FILE);
            Some(LogPlace { file, live })
        }
        Err(e) => {
            eprintln!(
                "prjfs: {}: no daemon log ({e}); log lines are dropped",
                instance.root().display()
            );
            sink.release_to_stderr();
            None
        }
    }
}

fn run_foreground(args: MountArgs, source: Source, root: PathBuf) -> Result<(), String> {
    limit_malloc_arenas();
    let ready = args.ready_fd.map(|fd| {
        // SAFETY: the parent passed this fd number to us for exactly this use and
        // nothing else in this process owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    if let Some(fd) = &ready {
        // Not for programs we may run (fusermount3).
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let report = |ready: Option<OwnedFd>, msg: &str| {
        if let Some(fd) = ready {
            let mut f = std::fs::File::from(fd);
            let _ = writeln!(f, "{msg}");
        }
    };
    // Started by `prjfs mount` (a readiness fd): log into the root's log file.
    let sink = ready.as_ref().map(|_| Arc::new(LogSink::pending()));
    init_logging(sink.clone());
    // Startup failed: what was logged goes to stderr (`prjfs mount` shows it),
    // then the error to the readiness report.
    let fail = |ready: Option<OwnedFd>, msg: String| -> Result<(), String> {
        if let Some(sink) = &sink {
            sink.release_to_stderr();
        }
        report(ready, &format!("error: {msg}"));
        Err(msg)
    };
    // Block SIGINT/SIGTERM/SIGHUP in every thread from here on: one that
    // arrives while the mount is set up is held until `run_until_signal`
    // takes it, so the daemon always ends through a clean unmount.
    if let Err(e) = prjfs::block_stop_signals() {
        return fail(ready, format!("blocking stop signals: {e}"));
    }
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
    let notify_log = match args.notify_log.as_deref().map(NotifyLog::open) {
        None => None,
        Some(Ok(log)) => Some(log),
        Some(Err(e)) => {
            let file = args.notify_log.as_deref().unwrap_or(Path::new(""));
            return fail(ready, format!("--notify-log {}: {e}", file.display()));
        }
    };
    let subscribe = notify_log.is_some();
    if subscribe && !matches!(source, Source::Dir(_)) {
        let msg = "--notify-log: only the directory provider logs notifications".to_string();
        return fail(ready, msg);
    }
    let mut git = None;
    let mut s3 = None;
    // The directory provider's listing read-ahead counters, for `status`.
    let mut dir_read_ahead = None;
    let opened = match &source {
        Source::S3 { bucket, prefix } => {
            let mut options = S3Options::new(bucket.clone(), prefix);
            options.endpoint = args.endpoint.clone();
            options.region = args.region.clone();
            options.path_style = args.path_style;
            options.allow_http = args.allow_http;
            options.anonymous = args.anonymous;
            options.retry_bound = Duration::from_secs(args.retry_bound);
            S3Provider::new(options)
                .map(|p| {
                    s3 = Some(p.clone());
                    let marker = RootMarker {
                        source: source.display(),
                        provider: "s3".into(),
                    };
                    (p.to_provider(), marker)
                })
                .map_err(|e| format!("source {}: {e}", source.display()))
        }
        Source::Dir(dir) => open_provider(
            dir,
            DirOptions {
                mode,
                latency: Duration::from_millis(args.latency),
                prefetch: !args.no_read_ahead,
                ..Default::default()
            },
            faults.clone(),
            notify_log,
        )
        .map(|(p, read_ahead)| {
            dir_read_ahead = read_ahead;
            let marker = RootMarker {
                source: dir.to_string_lossy().into_owned(),
                provider: "dir".into(),
            };
            (p, marker)
        })
        .map_err(|e| format!("source {}: {e}", dir.display())),
        Source::Archive(path) => {
            archive::limit_malloc_caches();
            archive::open(path, &root, None)
                .map(|p| {
                    archive::warn_damage(path, &p);
                    let marker = RootMarker {
                        source: path.to_string_lossy().into_owned(),
                        provider: "archive".into(),
                    };
                    (p.to_provider(), marker)
                })
                .map_err(|e| format!("source {}: {e}", path.display()))
        }
        Source::Git { repo, rev } => {
            crate::source::open_git(repo, rev.as_deref(), &root).map(|(p, marker)| {
                git = Some(p.clone());
                (Arc::new(p) as Arc<dyn Provider>, marker)
            })
        }
    };
    let (provider, marker) = match opened {
        Ok(p) => p,
        Err(e) => return fail(ready, e),
    };
    let options = StartOptions {
        concurrent_threads: args.threads.unwrap_or(0) as usize,
        pool_threads: args.pool_threads.unwrap_or(0) as usize,
        negative_path_cache: args.negative_cache,
        passthrough: !args.no_passthrough,
        no_open: args.no_open,
        cache_listings: !args.no_listing_cache,
        marker: Some(marker),
        notification_mappings: subscribe.then(|| {
            vec![NotificationMapping::new(
                prjfs::notifications::ALL_KINDS,
                "",
            )]
        }),
        // An object store serves any byte range cheaply: big objects are
        // fetched as they are read.
        ranged_hydration: s3.as_ref().map(S3Provider::ranged_hydration),
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
            return fail(ready, msg);
        }
    };
    let instance = match VirtualizationInstance::start(&root, provider, options) {
        Ok(i) => Arc::new(i),
        Err(e) => return fail(ready, e.to_string()),
    };
    let log = match &sink {
        Some(sink) => match attach_log(sink, &instance) {
            Some(place) => serde_json::json!({ "file": place.file, "live": place.live }),
            None => serde_json::Value::Null,
        },
        None => serde_json::json!({ "stderr": true }),
    };
    if let Some(git) = &git {
        if let Err(e) = crate::source::store_revision(&instance, git) {
            tracing::error!("{e}");
        }
    }
    let (pool, concurrent) = instance.threads();
    let root2 = instance.root().to_path_buf();
    {
        let instance = instance.clone();
        let source = source.clone();
        let git = git.clone();
        let s3 = s3.clone();
        let read_ahead = dir_read_ahead
            .clone()
            .or_else(|| git.as_ref().map(|g| g.read_ahead_counters().clone()));
        std::thread::Builder::new()
            .name("prjfs-control".into())
            .spawn(move || {
                control::serve(listener, move |req, conn| {
                    answer(
                        &Served {
                            instance: &instance,
                            source: &source,
                            git: git.as_ref(),
                            s3: s3.as_ref(),
                            read_ahead: read_ahead.as_deref(),
                            log: &log,
                            pool,
                            concurrent,
                            faults: faults.as_deref(),
                        },
                        req,
                        conn,
                    )
                })
            })
            .map_err(|e| e.to_string())?;
    }
    let _watcher = match (&source, args.watch) {
        (Source::Dir(dir), true) => {
            match SourceWatcher::start(dir, Collation::default(), instance.handle()) {
                Ok(w) => Some(w),
                Err(e) => {
                    let msg = format!("--watch {}: {e}", source.display());
                    if let Err(e) = instance.stop() {
                        tracing::error!("{}: {e}", root2.display());
                    }
                    return fail(ready, msg);
                }
            }
        }
        _ => None,
    };
    if let (Some(s3), Some(secs)) = (&s3, args.watch_interval) {
        let s3 = s3.clone();
        let handle = instance.handle();
        // Ends with the process; a refresh after stop fails harmlessly.
        std::thread::Builder::new()
            .name("prjfs-s3-watch".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(secs));
                let r = s3.refresh_blocking(&handle, Path::new(""));
                if r.applied > 0 || !r.conflicts.is_empty() || !r.failed.is_empty() {
                    tracing::info!(
                        "s3 refresh: {} directories listed, {} changes applied, {} conflicts, {} failed",
                        r.listed,
                        r.applied,
                        r.conflicts.len(),
                        r.failed.len()
                    );
                }
            })
            .map_err(|e| e.to_string())?;
    }
    if sink.is_some() {
        quiet_stderr();
    }
    report(ready, "ready");
    if args.ready_fd.is_none() {
        eprintln!(
            "prjfs: {} projected at {}",
            source.display(),
            root2.display()
        );
    }
    // Runs until the mount goes away (prjfs unmount, umount) or a signal
    // unmounts it (logged by the library).
    if let Err(e) = instance.run_until_signal() {
        tracing::error!("{}: {e}", root2.display());
        // The signal handling could not be set up, or the unmount after a
        // signal failed: serve until the mount goes away.
        instance.wait();
    }
    Ok(())
}

/// glibc gives every thread that allocates under contention its own arena
/// (up to 8 per core) and memory freed in one is not reused by the others: the
/// daemon's request and callback threads would each keep listings' and
/// lookups' freed buffers. Two arenas (for 2 cores and more) bound that; the
/// allocator lock is short next to a FUSE round trip.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator parameters; called before the
    // daemon's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The directory provider for `source`, behind `faults` when given: [`Flaky`]
/// in front of the inline provider, [`FlakyAsync`] inside the async adapter (so
/// its delays are timers of pended commands).
/// A provider, and its listing read-ahead's counters when it reads ahead.
type Opened = (Arc<dyn Provider>, Option<Arc<PrefetchCounters>>);

/// Also returns the provider's read-ahead counters when it reads ahead.
fn open_provider(
    source: &Path,
    options: DirOptions,
    faults: Option<Arc<FaultPlan>>,
    notify_log: Option<NotifyLog>,
) -> std::io::Result<Opened> {
    let dir = DirProvider::new(source, options)?;
    if let Some(log) = notify_log {
        dir.on_notification(Box::new(move |cb, n| log.record(cb, n)));
    }
    let read_ahead = dir.prefetch_counters().cloned();
    let provider: Arc<dyn Provider> = match (faults, options.mode) {
        (None, _) => dir.to_provider()?,
        (Some(plan), DirMode::Sync) => Arc::new(Flaky::new(dir.to_provider()?, plan)),
        (Some(plan), DirMode::Async) => Arc::new(AsyncAdapter::new(FlakyAsync::new(dir, plan))?),
    };
    Ok((provider, read_ahead))
}
