//! `prjfs bench`: workloads run through a prjfs mount and on the underlying file
//! system in the same run (some also through a bindfs mount, the peer, when
//! bindfs is installed), printed as one table with prjfs/native and prjfs/bindfs
//! ratios (and as JSON). See `bench/README.md` at the repository root.

mod archive;
mod async_load;
mod fixture;
mod git;
mod machine;
mod report;
mod s3;
mod soak;
pub(crate) mod weed;
mod workloads;
mod write;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use async_load::AsyncParams;
use report::Section;
use workloads::{Sizes, Suite};

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// The workload to run (default: all).
    #[command(subcommand)]
    workload: Option<Workload>,
    /// Print the results as JSON on stdout (the table then goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Where to create the scratch trees (default: the system temp dir).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Smaller trees and one run per workload (a smoke test, not a measurement).
    #[arg(long, global = true)]
    quick: bool,
    /// Mount with `--no-passthrough` (reads and writes of local files through
    /// the daemon), to compare with the default.
    #[arg(long, global = true)]
    no_passthrough: bool,
    /// Mount with `--no-open` (opens and closes of files never reach the
    /// daemon), to compare with the default.
    #[arg(long, global = true)]
    no_open: bool,
}

#[derive(Subcommand, Clone, Debug, PartialEq)]
enum Workload {
    /// Every workload below, in order, in one table.
    All,
    /// Read every file of a 10k-file tree through a fresh mount (lookups + hydration).
    Cold,
    /// Walk (list + stat) a 50k-path tree through a fresh mount, then stat and walk
    /// it again (placeholders).
    Stat,
    /// Sequential read of a hydrated 1 GiB file; its first (hydrating) read vs `cp`.
    Seq,
    /// 4 KiB random reads of a hydrated 1 GiB file.
    Rand,
    /// open+read+close of 10k small hydrated files.
    Small,
    /// List a directory of 100k entries: virtual, then on disk.
    List,
    /// Writes into a fresh mount of an empty source: create a 10k-file tree, and
    /// a 256 MiB file written 4 KiB per write(2).
    Write,
    /// Many clients read different files through a slow (latency) provider, in the
    /// default pended (async) mode and with --sync; the ideal is the latency bound.
    Async {
        /// Concurrent clients, one file each.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Provider latency per callback, in ms.
        #[arg(long, default_value_t = 50)]
        latency: u64,
        /// Callback slots (ConcurrentThreadCount).
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Size of each file, in bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        size: usize,
    },
    /// A 10k-file tree as .tar, .tar.gz, .tar.zst and .zip: unpacking it (tar -x,
    /// unzip) vs first mount, remount, 100 random members, read-all and daemon
    /// RSS through prjfs. Not part of `all`.
    Archive,
    /// A long run of random client operations, killed clients, provider faults
    /// and remounts against one root; fails if the daemon's RSS, fds or threads
    /// grow, a killed client is not let go within 1 s, or a file differs from a
    /// reference model. Not part of `all`.
    Soak(soak::SoakArgs),
    /// A projected checkout of a 100k-file repository against git's own:
    /// mount vs `git worktree add`, first-pass walk, read-all, and `prjfs
    /// switch` vs `git switch` of 1,000 changed files. The repository is built
    /// once under the scratch base and reused. Not part of `all`.
    Git {
        /// Files in the repository.
        #[arg(long, default_value_t = 100_000)]
        files: usize,
    },
    /// A bucket on a local SeaweedFS server (`weed mini`, started and
    /// stopped here): prjfs mount s3:// beside the object_store client
    /// directly: first-pass walk, read-all, a big sequential read. Not part
    /// of `all`.
    S3 {
        /// Small objects.
        #[arg(long, default_value_t = 5_000)]
        files: usize,
        /// The big object, in MiB.
        #[arg(long, default_value_t = 200)]
        big_mib: usize,
    },
}

const DEFAULT_ASYNC: AsyncParams = AsyncParams {
    clients: 64,
    latency: 50,
    threads: 2,
    size: 64 * 1024,
};

pub fn run(args: BenchArgs) -> Result<(), String> {
    fixture::catch_interrupts();
    let mut options = Vec::new();
    if args.no_passthrough {
        options.push("--no-passthrough".into());
    }
    if args.no_open {
        options.push("--no-open".into());
    }
    fixture::set_mount_options(options);
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let scratch = fixture::tempdir_in(&base)?;
    let machine = machine::Machine::describe(&scratch.0);
    if let Some(Workload::Soak(soak_args)) = &args.workload {
        return soak::run(&scratch.0, &machine, soak_args, args.quick, args.json);
    }
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let workload = args.workload.clone().unwrap_or(Workload::All);
    let peer = fixture::Peer::find();
    let peer_line = match &peer {
        Some(p) => format!("{} ({})", p.version, p.exe.display()),
        None => "none: bindfs is not on PATH, its rows are skipped".to_string(),
    };
    if peer.is_none() {
        fixture::progress("bindfs is not on PATH: the bindfs peer rows are skipped");
    }
    let start = Instant::now();
    let mut suite = Suite::new(sizes.clone(), peer.clone(), scratch);
    let mut sections: Vec<Section> = Vec::new();
    // A failing workload is reported and the others still run; an interrupt
    // stops everything.
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut record = |name: &str, r: Result<Section, String>| -> Result<(), String> {
        fixture::check()?;
        match r {
            Ok(s) => sections.push(s),
            Err(e) => {
                fixture::progress(&format!("{name}: FAILED: {e}"));
                failures.push((name.to_string(), e));
            }
        }
        Ok(())
    };
    let all = workload == Workload::All;
    let want = |w: Workload| all || workload == w;
    if want(Workload::Cold) {
        record("cold", suite.cold())?;
    }
    if want(Workload::Stat) {
        record("stat", suite.stat())?;
    }
    if want(Workload::Seq) {
        record("seq", suite.seq())?;
    }
    if want(Workload::Rand) {
        record("rand", suite.rand())?;
    }
    if want(Workload::Small) {
        record("small", suite.small())?;
    }
    if want(Workload::List) {
        record("list", suite.list())?;
    }
    if want(Workload::Write) {
        record("write", suite.write())?;
    }
    let params = match &workload {
        Workload::Async {
            clients,
            latency,
            threads,
            size,
        } => Some(AsyncParams {
            clients: *clients,
            latency: *latency,
            threads: *threads,
            size: *size,
        }),
        Workload::All => Some(DEFAULT_ASYNC),
        _ => None,
    };
    if let Some(p) = params {
        record("async", async_load::bench_async(suite.dir(), &p))?;
    }
    if workload == Workload::Archive {
        let p = if args.quick {
            archive::ArchiveParams::quick()
        } else {
            archive::ArchiveParams::full()
        };
        record(
            "archive",
            archive::bench_archive(suite.dir(), &p, peer.as_ref()),
        )?;
    }
    if let Workload::Git { files } = &workload {
        let files = if args.quick { 5_000 } else { *files };
        record(
            "git",
            git::bench_git(&base, suite.dir(), files, peer.as_ref()),
        )?;
    }
    if let Workload::S3 { files, big_mib } = &workload {
        record("s3", s3::bench_s3(suite.dir(), *files, *big_mib << 20))?;
    }
    let measured = start.elapsed();
    fixture::progress("removing the scratch trees");
    drop(suite);
    let total = start.elapsed();

    let command: Vec<String> = std::env::args().collect();
    let header = format!(
        "prjfs {} bench: {}\n{}peer:   {peer_line}\n\
         runs:   {} per warm workload{}; measured in {:.0} s, {:.0} s with cleanup\n",
        env!("CARGO_PKG_VERSION"),
        command.join(" "),
        machine.text(),
        sizes.reps,
        if args.quick { " (--quick)" } else { "" },
        measured.as_secs_f64(),
        total.as_secs_f64()
    );
    let mut text = format!("{header}\n{}", report::table(&sections));
    for (w, e) in &failures {
        text += &format!("{w:<7} FAILED: {e}\n");
    }
    if args.json {
        eprint!("{text}");
        let v = serde_json::json!({
            "prjfs_version": env!("CARGO_PKG_VERSION"),
            "command": command,
            "quick": args.quick,
            "reps": sizes.reps,
            "seconds_total": total.as_secs_f64(),
            "machine": machine.json(),
            "peer": peer.as_ref().map(|p| serde_json::json!({
                "name": "bindfs",
                "version": p.version,
                "path": p.exe,
            })),
            "rows": report::json(&sections),
            "notes": report::notes_json(&sections),
            "failures": failures
                .iter()
                .map(|(w, e)| serde_json::json!({"workload": w, "error": e}))
                .collect::<Vec<_>>(),
        });
        crate::print_result(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    } else {
        crate::print_result(&text);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} workload(s) failed", failures.len()))
    }
}
