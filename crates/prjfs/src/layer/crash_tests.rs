//! Crash-safety tests: a child process (this test binary) hydrates, or runs a mix
//! of read-write operations, and is killed with SIGKILL at random moments; the layer
//! must never show partial data or a record that lies about its item.

use std::io::BufRead;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;

use super::tests::{data, dir_info, file_info, read_all, tmp_entries, version, H, P};
use super::{Layer, LayerError, RenameFlags, SetAttr, TimeSpec};
use crate::types::{FileKind, OnDiskState, PlaceholderInfo};

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
    run_test_child(
        "layer::crash_tests::crash_child",
        CRASH_ENV,
        root,
        &[],
        delay,
    )
    .0
}

/// Run the test `name` of this binary as a child with `env` set to `root` (and
/// `extra` variables); kill it `delay` after it prints `ready` (`None`: let it
/// finish, which it must do successfully). A child that fails before the kill
/// fails the test. Returns the time from ready to exit, and the lines the child
/// printed after `ready`.
fn run_test_child(
    name: &str,
    env: &str,
    root: &Path,
    extra: &[(&str, String)],
    delay: Option<Duration>,
) -> (Duration, Vec<String>) {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args(["--exact", name, "--test-threads=1", "-q"])
        .env(env, root)
        .envs(extra.iter().map(|(k, v)| (k, v)))
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
    assert!(
        status.success() || (delay.is_some() && status.signal() == Some(libc::SIGKILL)),
        "child failed: {status}"
    );
    let elapsed = ready.elapsed();
    (elapsed, lines.map_while(|l| l.ok()).collect())
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
    // 30 kills at least; more (up to 200) until one landed mid-way and one
    // interrupted a hydration: where a kill lands is up to the scheduler, and
    // a loaded machine (or fast inode allocation) shortens those windows.
    for run in 0..200 {
        if run >= 30 && partial_runs > 0 && leftover_runs > 0 {
            break;
        }
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

const RW_ENV: &str = "PRJFS_LAYER_RW_CRASH_ROOT";
const RW_SEED_ENV: &str = "PRJFS_LAYER_RW_CRASH_SEED";
const RW_FILES: usize = 24;
const RW_ITERS: u64 = 300;
const RW_CHUNK: usize = 8 * 1024;

fn rw_size(i: usize) -> usize {
    3_000 + i * 2_500
}

/// Placeholder `d0/f{i}`: content id `c{i}`, content `data(i, rw_size(i))`.
fn rw_info(i: usize) -> PlaceholderInfo {
    let mut info = file_info(rw_size(i) as u64);
    info.version = version(&format!("c{i}"));
    info
}

fn rw_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let layer = Layer::open(dir.path()).expect("opens");
    for d in ["d0", "d1"] {
        assert!(layer
            .write_placeholder(Path::new(d), &dir_info())
            .expect("dir"));
    }
    for i in 0..RW_FILES {
        let rel = format!("d0/f{i}");
        assert!(layer
            .write_placeholder(Path::new(&rel), &rw_info(i))
            .expect("file"));
    }
    dir
}

/// The content id's index of a placeholder (`c{i}`).
fn rw_index(item: &super::Item) -> usize {
    let v = item.version.as_ref().expect("placeholders have a version");
    let id = std::str::from_utf8(&v.content_id).expect("ascii");
    id.strip_prefix('c')
        .and_then(|n| n.parse().ok())
        .expect("c<n>")
}

/// Every item under the root (tombstones included), depth first.
fn walk(layer: &Layer) -> Vec<(PathBuf, super::Item)> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for (name, item) in layer.list_dir(&dir).expect("listable") {
            let rel = dir.join(name);
            if item.kind == FileKind::Directory && !item.state.contains(OnDiskState::TOMBSTONE) {
                dirs.push(rel.clone());
            }
            out.push((rel, item));
        }
    }
    out
}

/// An error the child's random operations may meet (a name it picked is gone, a
/// target is taken, a placeholder needs hydrating first).
fn expected(e: &LayerError) -> bool {
    matches!(
        e,
        LayerError::NotFound { .. }
            | LayerError::Exists { .. }
            | LayerError::NotEmpty { .. }
            | LayerError::InvalidState { .. }
            | LayerError::NotADirectory { .. }
            | LayerError::IsADirectory { .. }
    )
}

/// Whether `r` succeeded; panics on an unexpected error.
fn ok_or_expected<T>(r: super::Result<T>, what: &str) -> bool {
    if let Err(e) = &r {
        assert!(expected(e), "{what}: {e}");
    }
    r.is_ok()
}

const TOMB: OnDiskState = OnDiskState::TOMBSTONE;

/// Child side of `read_write_survives_sigkill`: nothing in a normal test run. With
/// the env var set, runs `RW_ITERS` random operations (hydrate, possibly renaming
/// the placeholder mid-way; rename with and without tombstones, over files and
/// tombstones; delete; convert to full; create over tombstones; mkdir and directory
/// renames and deletes; set_attr).
#[test]
fn rw_crash_child() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let Some(root) = std::env::var_os(RW_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(RW_SEED_ENV)
        .expect("seed")
        .parse()
        .expect("number");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let layer = Layer::open(Path::new(&root)).expect("child opens the layer");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
    let mut done = std::collections::BTreeMap::<&str, u32>::new();
    let mut count = |what: &'static str, ok: bool| {
        if ok {
            *done.entry(what).or_default() += 1;
        }
    };
    for iter in 0..RW_ITERS {
        let all = walk(&layer);
        let is_tomb = |it: &super::Item| it.state.contains(OnDiskState::TOMBSTONE);
        let files: Vec<_> = all
            .iter()
            .filter(|(_, it)| it.kind == FileKind::File && !is_tomb(it))
            .collect();
        let tombs: Vec<_> = all.iter().filter(|(_, it)| is_tomb(it)).collect();
        let mut dirs: Vec<PathBuf> = vec![PathBuf::new()];
        dirs.extend(
            all.iter()
                .filter(|(_, it)| it.kind == FileKind::Directory && !is_tomb(it))
                .map(|(p, _)| p.clone()),
        );
        let local_dirs: Vec<_> = dirs
            .iter()
            .filter(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('m'))
            })
            .collect();
        let pick_dir = |rng: &mut rand::rngs::StdRng| dirs[rng.random_range(0..dirs.len())].clone();
        let new_name = |rng: &mut rand::rngs::StdRng, tag: &str| {
            if !tombs.is_empty() && rng.random_bool(0.4) {
                tombs[rng.random_range(0..tombs.len())].0.clone()
            } else {
                pick_dir(rng).join(format!("{tag}{iter}"))
            }
        };
        let Some((file, item)) = (!files.is_empty())
            .then(|| files[rng.random_range(0..files.len())])
            .map(|(p, it)| (p.clone(), it.clone()))
        else {
            continue;
        };
        let placeholder = item.state.contains(P);
        let hydrated = item.state.contains(H);
        match rng.random_range(0..10) {
            0..=3 if placeholder && !hydrated => {
                let i = rw_index(&item);
                let content = data(i, rw_size(i));
                let h = layer.begin_hydration(&file).expect("begins");
                let mut at = file.clone();
                for (n, chunk) in content.chunks(RW_CHUNK).enumerate() {
                    h.write_at((n * RW_CHUNK) as u64, chunk).expect("write");
                    std::thread::sleep(Duration::from_micros(100));
                    if n == 0 && rng.random_bool(0.5) {
                        let to = new_name(&mut rng, "h");
                        if layer.rename(&at, &to, RenameFlags::default(), true).is_ok() {
                            at = to;
                            count("hydrate-renamed", true);
                        }
                    }
                }
                layer.finish_hydration(h, &at).expect("finishes");
                count("hydrate", true);
            }
            0..=3 => {
                let to = if rng.random_bool(0.3) {
                    files[rng.random_range(0..files.len())].0.clone()
                } else {
                    new_name(&mut rng, "r")
                };
                let flags = RenameFlags {
                    noreplace: rng.random_bool(0.3),
                    exchange: false,
                };
                let tomb = rng.random_bool(0.7);
                let over = layer.lookup(&to).expect("valid").map(|it| it.state);
                let r = ok_or_expected(layer.rename(&file, &to, flags, tomb), "rename");
                count("rename", r);
                count("rename-tombstone", r && tomb);
                count("rename-over-file", r && over.is_some_and(|s| s != TOMB));
                count("rename-over-tombstone", r && over == Some(TOMB));
                count("rename-placeholder", r && placeholder);
            }
            4 => count(
                "delete",
                ok_or_expected(layer.delete(&file, rng.random_bool(0.8)), "delete"),
            ),
            5 => {
                let truncate = !hydrated || rng.random_bool(0.5);
                let r = ok_or_expected(layer.convert_to_full(&file, truncate), "convert");
                count("convert-placeholder", r && placeholder && !hydrated);
                count("convert-hydrated", r && hydrated);
            }
            6 => {
                let to = new_name(&mut rng, "n");
                let over = layer.lookup(&to).expect("valid").map(|it| it.state);
                if let Ok(mut f) = layer.create_file(&to, 0o644, 0, 0) {
                    f.write_all(&data(iter as usize, 5_000)).expect("write");
                    count("create", true);
                    count("create-over-tombstone", over == Some(TOMB));
                }
            }
            7 => {
                let mode = 0o600 | rng.random_range(0..0o100u32);
                let a = SetAttr {
                    mode: Some(mode),
                    mtime: Some(TimeSpec::At(1_000_000 + iter as i64, 0)),
                    ..Default::default()
                };
                let r = ok_or_expected(layer.set_attr(&file, &a), "set_attr");
                count("set_attr-placeholder", r && placeholder);
            }
            _ => match local_dirs.len() {
                0 => count(
                    "mkdir",
                    ok_or_expected(layer.mkdir(&new_name(&mut rng, "m"), 0o755, 0, 0), "mkdir"),
                ),
                n => {
                    let d = local_dirs[rng.random_range(0..n)].clone();
                    if rng.random_bool(0.5) {
                        let to = new_name(&mut rng, "m");
                        let r = layer.rename(&d, &to, RenameFlags::default(), rng.random_bool(0.5));
                        if let Err(LayerError::InvalidArgument(_)) = r {
                            continue; // beneath itself
                        }
                        count("rename-dir", ok_or_expected(r, "rename dir"));
                    } else if rng.random_bool(0.5) {
                        count(
                            "delete-dir",
                            ok_or_expected(layer.delete(&d, true), "delete dir"),
                        );
                    } else {
                        let r = layer.mkdir(&new_name(&mut rng, "m"), 0o755, 0, 0);
                        count("mkdir", ok_or_expected(r, "mkdir"));
                    }
                }
            },
        }
    }
    let stats: Vec<String> = done.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(out, "stats: {}", stats.join(" ")).expect("stdout");
}

/// Check after a kill: `Layer::open` succeeds and empties `tmp`; tombstones are
/// empty files; every placeholder file tells the truth (hydrated: its complete
/// content; not hydrated: no content, the projected size), with its original
/// origin; no content id lives on two inodes. Returns whether `tmp` held leftovers
/// and how many items the root holds beyond the initial ones.
fn rw_check(root: &Path) -> (bool, usize) {
    use std::os::unix::fs::MetadataExt;
    let leftovers = !tmp_entries(root).is_empty();
    let layer = Layer::open(root).expect("reopens after the kill");
    assert!(tmp_entries(root).is_empty(), "open removed the leftovers");
    let mut inodes = std::collections::HashMap::new();
    let all = walk(&layer);
    for (rel, item) in &all {
        let what = rel.display();
        let Ok(md) = std::fs::symlink_metadata(root.join(rel)) else {
            // A placeholder file kept as a record has no on-disk item.
            assert_eq!(
                (item.kind, item.state),
                (FileKind::File, P),
                "{what}: only pure placeholder files may be records"
            );
            let i = rw_index(item);
            assert_eq!(item.attr.size, rw_size(i) as u64, "{what}: size");
            continue;
        };
        if item.state.contains(OnDiskState::TOMBSTONE) {
            assert!(md.is_file() && md.len() == 0, "{what}: tombstone with data");
            continue;
        }
        if item.kind != FileKind::File || !item.state.contains(P) {
            continue;
        }
        let i = rw_index(item);
        let origin = PathBuf::from(format!("d0/f{i}"));
        assert_eq!(item.origin.as_ref(), Some(&origin), "{what}: origin");
        assert_eq!(item.attr.size, rw_size(i) as u64, "{what}: size");
        if item.state.contains(H) {
            let disk = read_all(&layer, rel.to_str().expect("utf-8"));
            assert!(
                disk == data(i, rw_size(i)),
                "{what}: hydrated with wrong data"
            );
        } else {
            assert_eq!(md.len(), 0, "{what}: placeholder with data");
        }
        let prev = inodes.insert(i, md.ino());
        assert!(
            prev.is_none_or(|p| p == md.ino()),
            "{what}: c{i} on two inodes"
        );
    }
    (leftovers, all.len().saturating_sub(2 + RW_FILES))
}

#[test]
fn read_write_survives_sigkill() {
    const CHILD: &str = "layer::crash_tests::rw_crash_child";
    let seed_env = |seed: u64| [(RW_SEED_ENV, seed.to_string())];
    // One uninterrupted run: it must succeed, and gives the duration to aim at.
    let dir = rw_root();
    let (full, out) = run_test_child(CHILD, RW_ENV, dir.path(), &seed_env(0), None);
    let (_, changed) = rw_check(dir.path());
    assert!(changed > 0, "the workload changed nothing");
    let stats = out
        .iter()
        .find_map(|l| l.strip_prefix("stats: "))
        .expect("the child reports what it did");
    eprintln!("uninterrupted run: {stats}");
    for op in [
        "hydrate",
        "hydrate-renamed",
        "rename-tombstone",
        "rename-over-file",
        "rename-over-tombstone",
        "rename-placeholder",
        "delete",
        "convert-placeholder",
        "convert-hydrated",
        "create-over-tombstone",
        "set_attr-placeholder",
        "rename-dir",
        "delete-dir",
        "mkdir",
    ] {
        assert!(
            stats.contains(&format!("{op}=")),
            "the workload never did {op}: {stats}"
        );
    }

    let mut rng = rand::rng();
    let window = full.as_micros() as u64 * 11 / 10;
    let mut leftover_runs = 0;
    let mut runs = 0;
    // 30 kills at least; more (up to 200) until one interrupted an operation
    // (where a kill lands is up to the scheduler).
    for run in 0..200u64 {
        if run >= 30 && leftover_runs > 0 {
            break;
        }
        runs += 1;
        let dir = rw_root();
        let delay = Duration::from_micros(rng.random_range(0..=window));
        run_test_child(CHILD, RW_ENV, dir.path(), &seed_env(run + 1), Some(delay));
        let (leftovers, _) = rw_check(dir.path());
        leftover_runs += usize::from(leftovers);
    }
    eprintln!("{leftover_runs}/{runs} kills left temp items behind; full run took {full:?}");
    assert!(leftover_runs > 0, "no kill interrupted an operation");
}

/// Found by `crash_batch::sigkill_with_placeholder_records_pending_loses_only_projections`
/// (the log writer held mid-batch during a `RENAME_EXCHANGE` of two directories
/// full of records): a crash after the exchange on disk and before the log
/// moved the records replayed each directory's records into the other
/// directory, which then listed names of both. Here the crash is the exchange
/// done on disk behind the layer's back; the reopened layer must keep no
/// record whose provider path is not in its directory's, so that each
/// directory shows only its own items and its provider's names.
#[test]
fn records_left_behind_by_a_directory_exchange_are_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let layer = Layer::open(dir.path()).expect("opens");
        for d in ["a", "b"] {
            assert!(layer
                .write_placeholder(Path::new(d), &dir_info())
                .expect("dir placeholder"));
        }
        for f in ["a/x", "b/y", "x"] {
            assert!(layer
                .write_placeholder(Path::new(f), &file_info(3))
                .expect("file placeholder"));
        }
        layer.sync();
        // What `Layer::rename` does before it renames: the directories'
        // records store their origins (format 3 leaves them out).
        for d in [c"a", c"b"] {
            let at = Path::new(d.to_str().expect("ASCII"));
            layer
                .pin_origins(layer.root.as_fd(), d, at)
                .expect("origins stored");
        }
    }
    // The exchange reached the disk, the log's move of the records did not.
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        dir.path().join("a"),
        rustix::fs::CWD,
        dir.path().join("b"),
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .expect("exchange");
    let layer = Layer::open(dir.path()).expect("reopens");
    for gone in ["a/x", "b/y"] {
        assert_eq!(
            layer.lookup(Path::new(gone)).expect("valid"),
            None,
            "{gone}: a record of the other directory"
        );
    }
    assert_eq!(layer.state(Path::new("x")).expect("valid"), P);
    let a = layer.lookup(Path::new("a")).expect("valid").expect("a");
    assert_eq!(a.origin.as_deref(), Some(Path::new("b")));
    // Records of a directory renamed with its log entry written stay.
    assert!(layer
        .write_placeholder_with_origin(Path::new("a/y"), &file_info(4), Path::new("b/y"))
        .expect("record in a moved directory"));
    drop(layer);
    let layer = Layer::open(dir.path()).expect("reopens again");
    assert_eq!(layer.state(Path::new("a/y")).expect("valid"), P);
}
