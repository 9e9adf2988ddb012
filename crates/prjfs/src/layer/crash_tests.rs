//! Crash-safety test of hydration: a child process (this test binary) hydrates and
//! is killed with SIGKILL at random moments; the layer must never show partial data.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;

use super::tests::{data, file_info, read_all, tmp_entries, version, H, P};
use super::Layer;

const CRASH_ENV: &str = "PRJFS_LAYER_CRASH_ROOT";
const CRASH_FILES: usize = 12;
const CRASH_CHUNK: usize = 16 * 1024;

fn crash_size(i: usize) -> usize {
    // Not a multiple of the chunk, so the last write is short.
    40_000 + i * 9_000
}

/// Child side of `hydration_survives_sigkill`: does nothing in a normal test run.
/// With the env var set, it hydrates every placeholder under the given root (writes
/// in chunks from two threads, slowed down so that a kill lands mid-way) and writes
/// new placeholders, then exits.
#[test]
fn crash_child() {
    let Some(root) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    use std::io::Write;
    let layer = Layer::open(Path::new(&root)).expect("child opens the layer");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
    for i in 0..CRASH_FILES {
        let rel = PathBuf::from(format!("f{i}"));
        let content = data(i, crash_size(i));
        let h = layer.begin_hydration(&rel).expect("begins");
        let chunks: Vec<_> = content.chunks(CRASH_CHUNK).enumerate().collect();
        std::thread::scope(|s| {
            for part in 0..2 {
                let (h, chunks) = (&h, &chunks);
                s.spawn(move || {
                    for (n, chunk) in chunks.iter().skip(part).step_by(2) {
                        h.write_at((n * CRASH_CHUNK) as u64, chunk).expect("write");
                        std::thread::sleep(Duration::from_micros(300));
                    }
                });
            }
        });
        layer.finish_hydration(h, &rel).expect("finishes");
        let mut info = file_info(i as u64);
        info.version = version(&format!("p{i}"));
        assert!(layer
            .write_placeholder(Path::new(&format!("p{i}")), &info)
            .expect("placeholder"));
    }
}

/// Check the invariant after a kill: each file is an untouched placeholder or
/// holds its complete data; each new placeholder is absent or complete. Returns how
/// many files were hydrated and whether the kill left temp files behind.
fn check_after_crash(root: &Path) -> (usize, bool) {
    let leftovers = !tmp_entries(root).is_empty();
    let layer = Layer::open(root).expect("reopens after the kill");
    assert!(tmp_entries(root).is_empty(), "open removed the leftovers");
    let mut hydrated = 0;
    for i in 0..CRASH_FILES {
        let rel = format!("f{i}");
        let item = layer
            .lookup(Path::new(&rel))
            .expect("valid")
            .expect("present");
        let disk = read_all(&layer, &rel);
        assert_eq!(item.attr.size, crash_size(i) as u64);
        if item.state == P {
            assert!(disk.is_empty(), "{rel}: placeholder with data");
        } else {
            assert_eq!(item.state, P | H, "{rel}");
            assert!(
                disk == data(i, crash_size(i)),
                "{rel}: hydrated with wrong data"
            );
            hydrated += 1;
        }
        let p = format!("p{i}");
        if let Some(item) = layer.lookup(Path::new(&p)).expect("valid") {
            assert_eq!((item.state, item.attr.size), (P, i as u64), "{p}");
            assert_eq!(item.version, Some(version(&p)));
        }
    }
    (hydrated, leftovers)
}

fn crash_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let layer = Layer::open(dir.path()).expect("opens");
    for i in 0..CRASH_FILES {
        let rel = format!("f{i}");
        assert!(layer
            .write_placeholder(Path::new(&rel), &file_info(crash_size(i) as u64))
            .expect("placeholder"));
    }
    dir
}

/// Run the child on `root`; kill it `delay` after it reports ready (`None`: let it
/// finish). Returns the time from ready to exit.
fn run_child(root: &Path, delay: Option<Duration>) -> Duration {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "layer::crash_tests::crash_child",
            "--test-threads=1",
            "-q",
        ])
        .env(CRASH_ENV, root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("child reports ready")
            .expect("readable");
        if line == "ready" {
            break;
        }
    }
    let ready = Instant::now();
    if let Some(delay) = delay {
        std::thread::sleep(delay);
        // SIGKILL; an error means it already exited.
        let _ = child.kill();
    }
    let status = child.wait().expect("child reaped");
    if delay.is_none() {
        assert!(status.success(), "uninterrupted child failed: {status}");
    }
    ready.elapsed()
}

#[test]
fn hydration_survives_sigkill() {
    // One uninterrupted run: everything hydrated, and the duration to aim kills at.
    let dir = crash_root();
    let full = run_child(dir.path(), None);
    assert_eq!(check_after_crash(dir.path()), (CRASH_FILES, false));

    let mut rng = rand::rng();
    let window = full.as_micros() as u64 * 11 / 10;
    let (mut partial_runs, mut leftover_runs) = (0, 0);
    for _ in 0..30 {
        let dir = crash_root();
        let delay = Duration::from_micros(rng.random_range(0..=window));
        run_child(dir.path(), Some(delay));
        let (hydrated, leftovers) = check_after_crash(dir.path());
        leftover_runs += usize::from(leftovers);
        eprintln!("killed after {delay:?}: {hydrated}/{CRASH_FILES} hydrated");
        if hydrated > 0 && hydrated < CRASH_FILES {
            partial_runs += 1;
        }
    }
    assert!(
        partial_runs > 0,
        "no kill landed mid-way; the test proves nothing"
    );
    assert!(leftover_runs > 0, "no kill interrupted a hydration");
}
