//! `prjfs`: project a directory (and later other stores) into a root, lazily.

mod archive;
mod bench;
mod control;
mod daemon;
mod hydrate;
mod log;
mod notify_log;
mod source;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "prjfs",
    version,
    about = "Projected file system: lazy projections of a backing store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Project SOURCE (a directory, git:REPO[@REV], a tar, tar.gz, tar.zst
    /// or zip file, or s3://BUCKET[/PREFIX]) into ROOT. Returns when the
    /// mount is ready.
    Mount(daemon::MountArgs),
    /// Unmount a prjfs root.
    Unmount {
        /// The root to unmount.
        root: PathBuf,
    },
    /// Show counters and state counts of a mounted root.
    Status {
        /// The mounted root.
        root: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the ProjFS on-disk state of each path (without fetching anything).
    State {
        /// Paths inside a mounted root.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Prefetch: read every file under PATH... through the mount (hydrating
    /// it), --jobs at a time. Ctrl-C stops it, leaving no partial file.
    Hydrate(hydrate::HydrateArgs),
    /// Move a mounted git projection to another revision. Items you changed
    /// are kept and printed as conflicts (one path per line; exit status 1).
    Switch {
        /// The mounted root (mounted from git:REPO).
        root: PathBuf,
        /// A branch, tag, commit id or any revision git understands.
        rev: String,
    },
    /// List an s3:// projection (or PATH in it, and below) again and apply new,
    /// changed and deleted objects. Items you changed are kept and printed as
    /// conflicts (one path per line; exit status 1).
    Refresh {
        /// The mounted root, or a directory inside it.
        path: PathBuf,
    },
    /// Benchmarks comparing prjfs with the same work on the underlying file system.
    Bench(bench::BenchArgs),
}

/// A command that prints a listing ends quietly once its reader has gone
/// (`prjfs state DIR/* | head`), as Unix tools do: SIGPIPE gets its default
/// action back. Rust starts with it ignored, and `println!` then panics on
/// `EPIPE`. The control socket's writes use `MSG_NOSIGNAL` (the standard
/// library's), so only stdout can raise it. Not for `mount`, `hydrate` and
/// `bench`, which clean up (mounts, hydrations in flight) whatever happens.
fn end_quietly_on_closed_stdout() {
    // SAFETY: setting a signal's disposition to its default; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Print `text` on stdout at the end of a command whose work is done
/// (`hydrate`'s summary, `bench`'s table): a reader that has gone (`| head`)
/// is not an error there, and what follows (the exit status, removing a
/// bench's scratch directory) must still run. Other write errors are told on
/// stderr.
pub(crate) fn print_result(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("prjfs: writing the result to stdout: {e}");
        }
        _ => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Status { .. }
            | Command::State { .. }
            | Command::Switch { .. }
            | Command::Refresh { .. }
    ) {
        end_quietly_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Mount(args) => daemon::mount(args),
        Command::Unmount { root } => unmount(&root),
        Command::Status { root, json } => status(&root, json),
        Command::State { paths } => state(&paths),
        Command::Hydrate(args) => hydrate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Switch { root, rev } => switch(&root, &rev),
        Command::Refresh { path } => refresh(&path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prjfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An absolute, lexically normalized path (no symlink resolution, no access to the
/// path itself: it may be inside a dead or virtual tree).
/// A progress bar of bytes drawn with `template`, when stderr is a terminal
/// (its length is set as it becomes known).
pub(crate) fn byte_bar(template: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template).expect("a valid progress template"),
        );
        bar
    })
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The prjfs mount that contains `path`, and `path` relative to it.
fn find_root(path: &Path) -> Result<(PathBuf, PathBuf), String> {
    let abs = absolute(path)?;
    let mounts = prjfs_fuse_mounts()?;
    mounts
        .into_iter()
        .filter_map(|m| {
            abs.strip_prefix(&m)
                .ok()
                .map(|rel| (m.clone(), rel.to_path_buf()))
        })
        .max_by_key(|(m, _)| m.as_os_str().len())
        .ok_or_else(|| format!("{}: not inside a mounted prjfs root", path.display()))
}

fn prjfs_fuse_mounts() -> Result<Vec<PathBuf>, String> {
    prjfs::instance_mounts().map_err(|e| format!("cannot read the mount table: {e}"))
}

pub(crate) fn unmount(root: &Path) -> Result<(), String> {
    let root = absolute(root)?;
    if !prjfs_fuse_mounts()?.contains(&root) {
        return Err(format!("{}: not a mounted prjfs root", root.display()));
    }
    prjfs::unmount(&root).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            format!(
                "{}: busy (a process has a file or its working directory there); close it and retry",
                root.display()
            )
        } else {
            format!("{}: unmount failed: {e}", root.display())
        }
    })?;
    // The daemon exits once the kernel connection is gone; wait for it so that a
    // following mount of the same root finds it free.
    for _ in 0..200 {
        if !control::is_alive(&root) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    Err(format!(
        "{}: unmounted, but the daemon did not exit",
        root.display()
    ))
}

fn status(root: &Path, json: bool) -> Result<(), String> {
    let root = absolute(root)?;
    let v = control::call(&root, &control::ControlRequest::Status).map_err(|e| {
        format!(
            "{}: no prjfs daemon answers for this root ({e})",
            root.display()
        )
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    let get = |a: &str, b: &str| v[a][b].as_u64().unwrap_or(0);
    println!("root:      {}", v["root"].as_str().unwrap_or(""));
    println!("source:    {}", v["source"].as_str().unwrap_or(""));
    if let Some(rev) = v["revision"].as_str() {
        println!("revision:  {rev}");
    }
    if v["s3"].is_object() {
        println!(
            "s3:        {} LIST, {} GET ({} bytes), {} other requests; {} throttled, {} retries, {} failures, {} in flight",
            get("s3", "list_requests"),
            get("s3", "get_requests"),
            get("s3", "bytes_fetched"),
            get("s3", "other_requests"),
            get("s3", "throttled"),
            get("s3", "retries"),
            get("s3", "failures"),
            get("s3", "in_flight")
        );
    }
    let log = &v["log"];
    match (log["file"].as_str(), log["live"].as_str()) {
        (Some(file), _) if log["exists"] == false => {
            println!("log:       {file} (nothing logged yet)")
        }
        (Some(file), Some(live)) => {
            println!("log:       {file}");
            println!("           (hidden by the mount; while mounted, read {live})");
        }
        _ if log["stderr"] == true => println!("log:       stderr of the foreground daemon"),
        _ => println!("log:       none"),
    }
    println!(
        "threads:   {} callback slots, {} request threads",
        v["threads"], v["pool_threads"]
    );
    let opens = &v["opens"];
    if opens["no_open"] == true {
        println!("opens:     no-open (opens and closes do not reach the daemon)");
    } else {
        println!(
            "opens:     {} with passthrough, {} served by the daemon{}",
            get("opens", "passthrough"),
            get("opens", "daemon"),
            if opens["passthrough_active"] == true {
                ""
            } else {
                " (passthrough off)"
            }
        );
    }
    println!(
        "callbacks: {} invoked, {} running, {} pending, {} completed, {} cancelled, {} failed",
        get("callbacks", "invoked"),
        get("callbacks", "running"),
        get("callbacks", "pending"),
        get("callbacks", "completed"),
        get("callbacks", "cancelled"),
        get("callbacks", "failed")
    );
    println!(
        "states:    {} placeholder, {} hydrated, {} dirty, {} full, {} tombstone",
        get("states", "placeholder"),
        get("states", "hydrated"),
        get("states", "dirty"),
        get("states", "full"),
        get("states", "tombstone")
    );
    println!(
        "records:   {} placeholder files as records, {} log entries pending, {} batches written",
        get("placeholder_log", "records"),
        get("placeholder_log", "pending_entries"),
        get("placeholder_log", "batches_written")
    );
    if v["read_ahead"].is_object() {
        println!(
            "listings:  {} read ahead, {} used by a client, {} found stale",
            get("read_ahead", "read"),
            get("read_ahead", "used"),
            get("read_ahead", "stale")
        );
    }
    let raised: Vec<String> = v["notifications"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| format!("{k} {n}")))
        .collect();
    if raised.is_empty() {
        println!("notified:  none");
    } else {
        println!("notified:  {}", raised.join(", "));
    }
    println!(
        "updates:   {} applied, {} refused (items with local changes are kept)",
        get("updates", "applied"),
        get("updates", "refused")
    );
    Ok(())
}

fn switch(root: &Path, rev: &str) -> Result<(), String> {
    let root = absolute(root)?;
    let req = control::ControlRequest::Switch {
        rev: rev.to_string(),
    };
    let v = control::call_within(&root, &req, std::time::Duration::from_secs(3600))
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let conflicts: Vec<&str> = v["conflicts"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    for c in &conflicts {
        println!("{c}");
    }
    eprintln!(
        "prjfs: {} now projects {} (was {}): {} paths changed, {} kept as you changed them",
        root.display(),
        v["to"].as_str().unwrap_or("?"),
        v["from"].as_str().unwrap_or("?"),
        v["changed"],
        conflicts.len()
    );
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} paths have local changes and were left as they are (listed above)",
            conflicts.len()
        ))
    }
}

fn refresh(path: &Path) -> Result<(), String> {
    let (root, rel) = find_root(path)?;
    let req = control::ControlRequest::Refresh {
        path: rel.to_string_lossy().into_owned(),
    };
    let v = control::call_within(&root, &req, std::time::Duration::from_secs(3600))
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let list = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (conflicts, failed) = (list("conflicts"), list("failed"));
    for c in &conflicts {
        println!("{c}");
    }
    eprintln!(
        "prjfs: {}: {} directories listed, {} changes applied, {} kept as you changed them",
        path.display(),
        v["listed"],
        v["applied"],
        conflicts.len()
    );
    if !failed.is_empty() {
        return Err(format!(
            "could not list {} (see the daemon log): {}",
            failed.len(),
            failed.join(", ")
        ));
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} paths have local changes and were left as they are (listed above)",
            conflicts.len()
        ))
    }
}

fn state(paths: &[PathBuf]) -> Result<(), String> {
    let mut failed = false;
    for p in paths {
        let answer = find_root(p).and_then(|(root, rel)| {
            control::call(
                &root,
                &control::ControlRequest::State {
                    path: rel.to_string_lossy().into_owned(),
                },
            )
            .map_err(|e| format!("{}: {e}", p.display()))
        });
        match answer {
            Ok(v) => {
                let names: Vec<&str> = v["names"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
                    .unwrap_or_default();
                println!("{}: {} ({})", p.display(), names.join("|"), v["state"]);
            }
            Err(e) => {
                eprintln!("prjfs: {e}");
                failed = true;
            }
        }
    }
    if failed {
        Err("some paths could not be queried".into())
    } else {
        Ok(())
    }
}
