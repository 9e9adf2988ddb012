//! The async workload of issue 1: many clients read different files through a
//! slow (latency) provider, in the default pended (async) mode and with --sync,
//! beside the latency-bound ideal and the same reads on the source.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fixture::{content, progress, BenchMount};
use super::report::{Row, Section};

/// Parameters of the async workload.
#[derive(Clone, Debug)]
pub struct AsyncParams {
    pub clients: usize,
    pub latency: u64,
    pub threads: u32,
    pub size: usize,
}

/// Read `names` concurrently, one thread each, checking the bytes; returns the
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

pub fn bench_async(scratch: &Path, p: &AsyncParams) -> Result<Section, String> {
    let AsyncParams {
        clients,
        latency,
        threads,
        size,
    } = *p;
    let scratch = scratch.join("async");
    let source = scratch.join("source");
    std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..clients).map(|i| format!("file{i:04}")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(source.join(n), content(i, size)).map_err(|e| e.to_string())?;
    }
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
        let d = parallel_read(&root, &names, size)?;
        progress(&format!(
            "async: prjfs {}: {:.3} s",
            if sync { "--sync" } else { "async" },
            d.as_secs_f64()
        ));
        Ok(d)
    };
    let asynchronous = run_mode(false)?;
    let synchronous = run_mode(true)?;
    // Every file needs two callbacks that each wait `latency`: GetPlaceholderInfo
    // (lookup) then GetFileData (first read). With unbounded concurrency that is
    // the floor.
    let ideal = Duration::from_millis(2 * latency);
    let ops = clients as u64;
    let bytes = (clients * size) as u64;
    let native = Row::new("async", "native", &[native], ops, bytes);
    let ideal = Row::new("async", "ideal (latency bound)", &[ideal], ops, bytes);
    let asynchronous = Row::new(
        "async",
        &format!("prjfs async, {threads} slots"),
        &[asynchronous],
        ops,
        bytes,
    )
    .vs("async/ideal", &ideal);
    let synchronous = Row::new(
        "async",
        &format!("prjfs --sync, {threads} slots"),
        &[synchronous],
        ops,
        bytes,
    )
    .vs("sync/async", &asynchronous);
    Ok(Section {
        workload: "async".into(),
        description: format!(
            "{clients} threads each read their own {} KiB file through a fresh mount whose \
             provider waits {latency} ms per callback ({threads} callback slots); ideal = \
             2 x latency (lookup + hydration); one run; ops = files",
            size / 1024
        ),
        rows: vec![native, ideal, asynchronous, synchronous],
        notes: Vec::new(),
    })
}
