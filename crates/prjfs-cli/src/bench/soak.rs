//! `prjfs bench soak`: a long run of everything at once against one root, that
//! fails when the daemon grows, a client is not let go, or a file is wrong.
//!
//! # What runs
//!
//! * **Source**: `wNN/` (one small projected tree per worker), `shared/` (files
//!   every worker reads) and `cold/` (files the killed clients read).
//! * **Provider faults** (`prjfs mount --inject-faults`): every callback fails
//!   (`EIO`) or panics with a small probability, or is slow; every callback
//!   about a path below `cold/` stalls for seconds (until cancelled).
//! * **Warm-up**: after each mount the opened `cold/` files are looked up
//!   once (no callback: their records are on disk), so that the daemon's node
//!   table starts near the size of the working set instead of growing towards
//!   it for many minutes (see `run::warm_up`).
//! * **Workers** ([`workers`]): threads doing random operations in their own
//!   `wNN/` (reads, stats, listings, overwrites, appends, writes in place,
//!   truncations, renames, exchanges, deletes, mkdirs, xattrs) and reading
//!   `shared/`, each checked against the reference model ([`model`]). `EIO` is
//!   allowed and must change nothing.
//! * **Killers** ([`clients`]): threads starting `cat`, `dd`, `stat` and `ls`
//!   processes on `cold/`, signalling them while they wait on a stalled
//!   callback, and timing how long each takes to be gone (limit: 1 s).
//! * **Remounts** at 1/3, 1/2, 2/3 and 5/6 of the run: a clean `prjfs
//!   unmount`, then `kill -9` of the daemon (with two `cat`s waiting on it, which
//!   must be let go within 1 s too), alternately; after each, `prjfs mount` of
//!   the same root (which removes a killed daemon's stale mount) and a walk of
//!   the workers' trees and `shared/` compared with the model (names, kinds,
//!   sizes, xattrs, and contents already local: the walk fetches nothing).
//!   Local changes must survive both (SEMANTICS.md, "Across unmount and
//!   remount").
//!   `--no-remounts` leaves them out: one daemon then serves the whole run.
//! * **End**: a clean unmount, a mount without faults, and a walk of the whole
//!   root, every file read, compared with the model.
//!
//! # Samples and the growth check
//!
//! Time is counted in *load time*: the run lasts `--minutes` of clients
//! running, and a tick is `--tick-secs` of it (a minute by default); the pauses
//! for samples and remounts come on top (some 11 s per tick).
//!
//! At every tick the clients pause between two operations; once the daemon
//! has no callback pending or queued, `--settle-secs` have passed (tokio
//! retires an idle blocking thread after 10 s) and its fd and thread counts
//! have not changed for the last second, its RSS, fds and threads are sampled
//! and one line is printed; then the clients resume. Settled samples are what
//! the check compares, so a client's open file or a burst of runtime threads
//! is not mistaken for growth; the peak seen between samples is printed
//! beside them. The daemon runs with `RUST_BACKTRACE=0` (see
//! [`daemon::mount`]).
//!
//! The baseline is the sample at tick ⌈ticks/6⌉ (minute 5 of 30), taken by the
//! first daemon, which runs until 1/3 of the run (minute 10). Every later sample
//! — of the first daemon and of each daemon after a remount — must be within
//! 10% of the baseline, metric by metric. A remount resets what a daemon holds
//! in memory, so a leak inside one daemon shows within its own life (the first
//! one lives five samples past the baseline); a fresh daemon that starts bigger
//! than the first one was when warm means the state on disk makes it grow.
//!
//! # Verdict
//!
//! FAIL when a settled sample grows more than 10% over the baseline, a
//! signalled client (or one waiting when the daemon was killed) is gone later
//! than 1 s, a worker saw a wrong answer or an errno other than `EIO`, a walk
//! after a remount or at the end differs from the model, the daemon dies
//! without being killed, or the clients or the daemon do not become idle.

mod clients;
mod daemon;
mod model;
mod run;
mod workers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::fixture::{io_err, Rng};

/// Options of `prjfs bench soak`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct SoakArgs {
    /// Length of the run in minutes of load (pauses for samples and remounts
    /// come on top).
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Length of the run in seconds of load instead (short checks).
    #[arg(long, value_name = "S")]
    pub seconds: Option<u64>,
    /// Seconds of load between two samples of the daemon (one line each).
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub tick_secs: u64,
    /// Client threads doing random operations, one projected directory each.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub workers: usize,
    /// Threads starting client processes and killing them while they wait.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub killers: usize,
    /// Seed of everything random (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Mount with --sync (the provider answers inline, delays hold callback
    /// threads) instead of --async (callbacks pend, delays are timers).
    #[arg(long)]
    pub sync: bool,
    /// Before a sample, how long the clients stay paused at least (and the last
    /// second of it without a change of the daemon's fds and threads); the
    /// async runtime retires an idle thread after 10 s.
    #[arg(long, default_value_t = 10.5, value_name = "S")]
    pub settle_secs: f64,
    /// No remounts: one daemon serves the whole run, so the growth check
    /// watches it from the baseline to the end (for leak hunting).
    #[arg(long)]
    pub no_remounts: bool,
    /// The growth allowed over the baseline sample, in percent, per metric
    /// (RSS, fds, threads). 10 for a real soak; a run of seconds with a
    /// handful of fds needs more room (one fd more of 15 is 7%).
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    pub growth_pct: f64,
    /// The provider faults (`prjfs mount --inject-faults`; default:
    /// `seed=SEED,fail=0.02,panic=0.005,slow=0.05:100,stall=cold:3000`).
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
}

/// The generated source tree.
#[derive(Clone, Debug)]
struct Layout {
    workers: usize,
    subdirs: usize,
    files_per_dir: usize,
    top_files: usize,
    max_size: usize,
    shared: usize,
    cold_dirs: usize,
    cold_files: usize,
    cold_max: usize,
}

impl Layout {
    fn new(quick: bool, workers: usize) -> Self {
        if quick {
            Self {
                workers,
                subdirs: 2,
                files_per_dir: 4,
                top_files: 2,
                max_size: 16 * 1024,
                shared: 12,
                cold_dirs: 3,
                cold_files: 8,
                cold_max: 32 * 1024,
            }
        } else {
            Self {
                workers,
                subdirs: 3,
                files_per_dir: 12,
                top_files: 4,
                max_size: 24 * 1024,
                shared: 300,
                cold_dirs: 20,
                cold_files: 60,
                cold_max: 64 * 1024,
            }
        }
    }

    fn home(i: usize) -> PathBuf {
        PathBuf::from(format!("w{i:02}"))
    }

    fn shared_files(&self) -> Vec<PathBuf> {
        (0..self.shared)
            .map(|i| PathBuf::from(format!("shared/s{}/f{i:04}", i % 3)))
            .collect()
    }

    fn cold_dir_list(&self) -> Vec<PathBuf> {
        (0..self.cold_dirs)
            .map(|d| PathBuf::from(format!("cold/c{d:02}")))
            .collect()
    }

    fn cold_file_list(&self) -> Vec<PathBuf> {
        self.cold_dir_list()
            .iter()
            .flat_map(|d| (0..self.cold_files).map(move |f| d.join(format!("f{f:03}"))))
            .collect()
    }

    /// Every file with the largest size it may have.
    fn files(&self) -> Vec<(PathBuf, usize)> {
        let mut out = Vec::new();
        for w in 0..self.workers {
            let home = Self::home(w);
            for f in 0..self.top_files {
                out.push((home.join(format!("f{f:02}")), self.max_size));
            }
            for d in 0..self.subdirs {
                for f in 0..self.files_per_dir {
                    out.push((home.join(format!("d{d}/f{f:02}")), self.max_size));
                }
            }
        }
        out.extend(self.shared_files().into_iter().map(|p| (p, 16 * 1024)));
        out.extend(
            self.cold_file_list()
                .into_iter()
                .map(|p| (p, self.cold_max)),
        );
        out
    }

    /// Write the tree under `source`: random bytes, random sizes (every seventh
    /// file of `wNN/` and `shared/` empty).
    fn create(&self, source: &Path, seed: u64) -> Result<(), String> {
        let mut rng = Rng::new(seed ^ 0x5eed);
        for (i, (rel, max)) in self.files().into_iter().enumerate() {
            if i % 200 == 0 {
                super::fixture::check()?;
            }
            let p = source.join(&rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            // Cold files are never empty: an empty file never calls the
            // provider, so a client reading one would not wait.
            let n = if i % 7 == 3 && !rel.starts_with("cold") {
                0
            } else {
                1 + rng.next() as usize % max
            };
            let mut data = Vec::with_capacity(n + 8);
            while data.len() < n {
                data.extend_from_slice(&rng.next().to_le_bytes());
            }
            data.truncate(n);
            std::fs::write(&p, data).map_err(io_err(&p))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{} worker trees of {} files ({} dirs x {} + {}, up to {} KiB), {} shared files, \
             {} cold dirs x {} files (up to {} KiB)",
            self.workers,
            self.subdirs * self.files_per_dir + self.top_files,
            self.subdirs,
            self.files_per_dir,
            self.top_files,
            self.max_size / 1024,
            self.shared,
            self.cold_dirs,
            self.cold_files,
            self.cold_max / 1024
        )
    }
}

/// Everything a run is given.
pub struct Inputs {
    pub total: Duration,
    pub tick: Duration,
    pub ticks: u64,
    pub baseline_tick: u64,
    pub seed: u64,
    pub spec: String,
    pub stall: Duration,
    pub mount_args: Vec<String>,
    pub settle: Duration,
    pub workers: usize,
    pub killers: usize,
    pub remounts: bool,
    /// Allowed growth over the baseline, as a fraction (0.10 = 10%).
    pub growth: f64,
}

/// `prjfs bench soak`.
pub fn run(
    scratch: &Path,
    machine: &super::machine::Machine,
    args: &SoakArgs,
    quick: bool,
    json: bool,
) -> Result<(), String> {
    let total = Duration::from_secs(args.seconds.unwrap_or(args.minutes * 60).max(1));
    let tick = Duration::from_secs(args.tick_secs.max(1)).min(total);
    let ticks = (total.as_secs() / tick.as_secs()).max(1);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let stall_ms = if quick { 2000 } else { 3000 };
    let spec = args.faults.clone().unwrap_or_else(|| {
        format!("seed={seed},fail=0.02,panic=0.005,slow=0.05:100,stall=cold:{stall_ms}")
    });
    let parsed: prjfs_providers::testing::FaultSpec =
        spec.parse().map_err(|e| format!("--faults: {e}"))?;
    let stall = parsed.stall.map(|(_, d)| d).unwrap_or(Duration::ZERO);
    let mut mount_args: Vec<String> = vec!["--threads".into(), "8".into()];
    if args.sync {
        mount_args.push("--sync".into());
    } else {
        mount_args.extend(["--async".into(), "--latency".into(), "2".into()]);
    }
    mount_args.extend(["--inject-faults".into(), spec.clone()]);
    let inputs = Inputs {
        total,
        tick,
        ticks,
        baseline_tick: ticks.div_ceil(6).max(1),
        seed,
        spec,
        stall,
        mount_args,
        settle: Duration::from_secs_f64(args.settle_secs.max(0.0)),
        workers: args.workers.max(1),
        killers: args.killers,
        remounts: !args.no_remounts,
        growth: args.growth_pct.max(0.0) / 100.0,
    };
    let layout = Layout::new(quick, inputs.workers);
    let source = scratch.join("source");
    let root = scratch.join("root");
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    super::fixture::progress("soak: writing the source tree");
    layout.create(&source, seed)?;

    let command: Vec<String> = std::env::args().collect();
    let header = format!(
        "prjfs {} bench soak: {}\n{}\
         run:     {} s of load, a sample every {} s of load ({} ticks), baseline at \
         tick {}, settle {:.1} s{}\n\
         clients: {} worker threads, {} killer threads\n\
         tree:    {}\n\
         faults:  {}\n\
         mount:   prjfs mount {}\n\
         seed:    {seed}\n",
        env!("CARGO_PKG_VERSION"),
        command.join(" "),
        machine.text(),
        total.as_secs(),
        tick.as_secs(),
        ticks,
        inputs.baseline_tick,
        inputs.settle.as_secs_f64(),
        if inputs.remounts { "" } else { ", no remounts" },
        inputs.workers,
        inputs.killers,
        layout.describe(),
        inputs.spec,
        inputs
            .mount_args
            .iter()
            .chain(super::fixture::mount_options().iter())
            .map(|a| if a.contains(',') {
                format!("'{a}'")
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
            .join(" "),
    );
    run::soak(&inputs, &layout, &source, &root, &header, json)
}
