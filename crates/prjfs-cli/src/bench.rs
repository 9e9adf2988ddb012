//! `prjfs bench`: workloads run through a prjfs mount and on the underlying file
//! system in the same run, printed side by side with ratios (and as JSON).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    workload: Workload,
    /// Print the results as JSON too.
    #[arg(long, global = true)]
    json: bool,
    /// Where to create the scratch trees (default: the system temp dir).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Subcommand, Clone, Debug)]
enum Workload {
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
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let scratch = tempdir_in(&base)?;
    let result = match args.workload {
        Workload::Async {
            clients,
            latency,
            threads,
            size,
        } => bench_async(&scratch.0, clients, latency, threads, size),
    };
    let rows = result?;
    print_table(&rows);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows_json(&rows)).expect("json")
        );
    }
    Ok(())
}

/// One measured line of the table.
struct Row {
    workload: String,
    variant: String,
    seconds: f64,
    /// What this line is compared with, and the ratio (this / that).
    ratio: Option<(String, f64)>,
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<28} {:<22} {:>10} {:>24}",
        "workload", "variant", "time (s)", "ratio"
    );
    for r in rows {
        let ratio = r
            .ratio
            .as_ref()
            .map(|(what, x)| format!("{x:.2} ({what})"))
            .unwrap_or_default();
        println!(
            "{:<28} {:<22} {:>10.3} {:>24}",
            r.workload, r.variant, r.seconds, ratio
        );
    }
}

fn rows_json(rows: &[Row]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "workload": r.workload,
                    "variant": r.variant,
                    "seconds": r.seconds,
                    "ratio": r.ratio.as_ref().map(|(w, x)| serde_json::json!({"vs": w, "value": x})),
                })
            })
            .collect(),
    )
}

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir_in(base: &Path) -> Result<TempDir, String> {
    let p = base.join(format!(
        "prjfs-bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(TempDir(p))
}

/// A mount made by running `prjfs mount`; unmounted on drop, even on error.
struct BenchMount {
    root: PathBuf,
}

impl BenchMount {
    fn new(args: &[String], source: &Path, root: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = Command::new(exe)
            .arg("mount")
            .args(args)
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
}

impl Drop for BenchMount {
    fn drop(&mut self) {
        if crate::unmount(&self.root).is_err() {
            let _ = rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn content(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((i * 131 + j) % 251) as u8).collect()
}

/// Read `files` concurrently, one thread each, checking the bytes; returns the
/// wall time.
fn parallel_read(dir: &Path, names: &[String], size: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let barrier = Arc::new(std::sync::Barrier::new(names.len()));
    let handles: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let path = dir.join(n);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                std::fs::read(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|data| {
                        if data == content(i, size) {
                            Ok(())
                        } else {
                            Err(format!("{}: wrong content", path.display()))
                        }
                    })
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a reader panicked".to_string())??;
    }
    Ok(start.elapsed())
}

fn bench_async(
    scratch: &Path,
    clients: usize,
    latency: u64,
    threads: u32,
    size: usize,
) -> Result<Vec<Row>, String> {
    let source = scratch.join("source");
    std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..clients).map(|i| format!("file{i:04}")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(source.join(n), content(i, size)).map_err(|e| e.to_string())?;
    }
    let workload = format!("{clients} readers, {latency} ms");
    let native = parallel_read(&source, &names, size)?;
    let run_mode = |sync: bool| -> Result<Duration, String> {
        let root = scratch.join(if sync { "root-sync" } else { "root-async" });
        let mut args = vec![
            "--latency".to_string(),
            latency.to_string(),
            "--threads".to_string(),
            threads.to_string(),
        ];
        if sync {
            args.push("--sync".into());
        }
        let _mount = BenchMount::new(&args, &source, &root)?;
        parallel_read(&root, &names, size)
    };
    let asynchronous = run_mode(false)?;
    let synchronous = run_mode(true)?;
    // Every file needs two callbacks that each wait `latency`: GetPlaceholderInfo
    // (lookup) then GetFileData (first read). With unbounded concurrency that is
    // the floor.
    let ideal = Duration::from_millis(2 * latency);
    let secs = |d: Duration| d.as_secs_f64();
    Ok(vec![
        Row {
            workload: workload.clone(),
            variant: "native".into(),
            seconds: secs(native),
            ratio: None,
        },
        Row {
            workload: workload.clone(),
            variant: "ideal (latency bound)".into(),
            seconds: secs(ideal),
            ratio: None,
        },
        Row {
            workload: workload.clone(),
            variant: format!("prjfs async, {threads} slots"),
            seconds: secs(asynchronous),
            ratio: Some(("async/ideal".into(), secs(asynchronous) / secs(ideal))),
        },
        Row {
            workload,
            variant: format!("prjfs --sync, {threads} slots"),
            seconds: secs(synchronous),
            ratio: Some(("sync/async".into(), secs(synchronous) / secs(asynchronous))),
        },
    ])
}
