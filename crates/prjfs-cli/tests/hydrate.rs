//! `prjfs hydrate`: every file of a 10k-file projection hydrated with at most
//! `--jobs` callbacks in flight (read from `prjfs status --json` while it
//! runs), by the daemon and with `--read` through the mount; an archive
//! projection hydrated whole; a truncated archive's unreadable members named
//! and the rest hydrated; a root served by a program of its own (no prjfs
//! daemon) hydrated by reading; and Ctrl-C (SIGINT) stopping it with no
//! partially hydrated file left.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prjfs_testkit::{default_signals, mount_available, CliMount};

const BIN: &str = env!("CARGO_BIN_EXE_prjfs");

fn bin() -> PathBuf {
    PathBuf::from(BIN)
}

/// Remove a tree with many threads: hydrated files carry an xattr block, and
/// freeing it waits for the device on a file system mounted with `discard`, so
/// a serial removal of 10k of them (the temp dir's drop) took 15 s here.
fn remove_tree_parallel(top: &Path) {
    let mut files = Vec::new();
    let mut dirs = vec![top.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
        i += 1;
    }
    let chunk = files.len().div_ceil(16).max(1);
    std::thread::scope(|s| {
        for part in files.chunks(chunk) {
            s.spawn(move || part.iter().for_each(|f| drop(std::fs::remove_file(f))));
        }
    });
    let _ = std::fs::remove_dir_all(top);
}

fn in_flight(m: &CliMount) -> u64 {
    m.status()["callbacks"]["in_flight"]
        .as_u64()
        .expect("status reports callbacks.in_flight")
}

fn states(m: &CliMount, name: &str) -> u64 {
    m.status()["states"][name]
        .as_u64()
        .expect("status reports states")
}

#[test]
fn hydrate_in_the_daemon_with_bounded_parallelism() {
    hydrate_every_file_with_bounded_parallelism(&[]);
}

#[test]
fn hydrate_by_reading_with_bounded_parallelism() {
    hydrate_every_file_with_bounded_parallelism(&["--read"]);
}

fn hydrate_every_file_with_bounded_parallelism(mode: &[&str]) {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let root = tmp.path().join("root");
    for d in 0..100 {
        let dir = source.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:02}")), format!("{d}/{f}\n")).unwrap();
        }
    }
    std::fs::create_dir(&root).unwrap();
    // More callback slots (8) than jobs (3): the bound seen is hydrate's own.
    let m = CliMount::new(
        &bin(),
        &["--async", "--latency", "1", "--threads", "8"],
        &source,
        &root,
    );
    let mut child = default_signals(&mut Command::new(BIN))
        .args(["hydrate", "--jobs", "3"])
        .args(mode)
        .arg(&root)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting prjfs hydrate");
    let mut most = 0;
    let mut samples = 0;
    while child.try_wait().expect("waiting for hydrate").is_none() {
        most = most.max(in_flight(&m));
        samples += 1;
        // Pacing only (the loop ends when hydrate does): a status also counts
        // the root's states, a walk of the layer that competes with the
        // hydrations, so leave the daemon to them between samples.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = child.wait_with_output().expect("hydrate output");
    assert!(out.status.success(), "hydrate failed");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with("hydrated 10000 of 10000 files"),
        "{summary}"
    );
    assert!(
        most <= 3,
        "at most --jobs callbacks in flight, saw {most} in {samples} samples"
    );
    assert!(
        most >= 1,
        "status saw the callbacks in flight ({samples} samples)"
    );
    assert_eq!(states(&m, "hydrated"), 10_000);
    assert_eq!(
        states(&m, "placeholder"),
        100,
        "only the directories stay placeholders"
    );
    // The daemon hydrates without any open through the kernel; --read opens
    // every file.
    let opens = m.status()["opens"]["daemon"]
        .as_u64()
        .expect("opens.daemon");
    let expected = if mode.contains(&"--read") { 10_000 } else { 0 };
    assert_eq!(opens, expected, "opens served by the daemon");
    m.unmount();
    remove_tree_parallel(&root);
    remove_tree_parallel(&source);
}

#[test]
fn hydrate_an_archive_projection() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    std::fs::create_dir_all(source.join("a/b")).unwrap();
    for i in 0..50 {
        std::fs::write(source.join(format!("a/b/{i}")), vec![i as u8; i * 1000]).unwrap();
    }
    let archive = tmp.path().join("x.tgz");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&source)
        .arg("-czf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let m = CliMount::new(&bin(), &[], &archive, &root);
    let out = Command::new(BIN)
        .args(["hydrate", "-j", "2"])
        .arg(root.join("a"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hydrated 50 of 50 files"));
    // The empty file is hydrated by nature; the other 49 by the reads.
    assert_eq!(states(&m, "hydrated"), 49);
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&source)
        .arg(&root)
        .status()
        .unwrap();
    assert!(diff.success());
    m.unmount();
}

#[test]
fn hydrate_names_what_a_truncated_archive_cannot_give() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    // Members of 8 KiB in name order; the archive is cut in the middle of
    // the last one's data.
    for i in 0..10 {
        std::fs::write(source.join(format!("m{i}")), vec![b'a' + i as u8; 8192]).unwrap();
    }
    let whole = tmp.path().join("whole.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&source)
        .arg("-cf")
        .arg(&whole)
        .args((0..10).map(|i| format!("m{i}")))
        .status()
        .unwrap();
    assert!(ok.success());
    let bytes = std::fs::read(&whole).unwrap();
    // Each member: a 512-byte header and 8192 bytes of data.
    let cut = 9 * (512 + 8192) + 512 + 4096;
    let archive = tmp.path().join("cut.tar");
    std::fs::write(&archive, &bytes[..cut]).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let m = CliMount::new(&bin(), &[], &archive, &root);
    let out = Command::new(BIN)
        .arg("hydrate")
        .arg(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a member failed: {stdout}{stderr}");
    assert!(
        stdout.starts_with("hydrated 9 of 10 files"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("m9") && stderr.contains("Input/output error"),
        "the failed member is named with EIO: {stderr}"
    );
    assert_eq!(states(&m, "hydrated"), 9);
    for i in 0..9 {
        assert_eq!(
            std::fs::read(root.join(format!("m{i}"))).unwrap(),
            std::fs::read(source.join(format!("m{i}"))).unwrap()
        );
    }
    m.unmount();
}

#[test]
fn hydrate_reads_through_a_root_no_daemon_serves() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let root = tmp.path().join("root");
    for d in ["a", "b"] {
        std::fs::create_dir_all(source.join(d)).unwrap();
        for f in 0..10 {
            std::fs::write(source.join(d).join(format!("f{f}")), format!("{d}{f}\n")).unwrap();
        }
    }
    std::fs::create_dir(&root).unwrap();
    // Served by this test process through the library: no control socket.
    let provider = prjfs_providers::dir::DirProvider::new(&source, Default::default()).unwrap();
    let guard = prjfs_testkit::InstanceGuard::start(
        &root,
        std::sync::Arc::new(provider),
        prjfs::StartOptions::default(),
    );
    let out = Command::new(BIN)
        .arg("hydrate")
        .arg(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("hydrated 20 of 20 files"), "{stdout}");
    let states = guard
        .instance()
        .virtualizer()
        .layer()
        .count_states()
        .unwrap();
    assert_eq!(states.hydrated, 20, "every file hydrated by the reads");
    // The reads went through the kernel: every file was opened.
    assert_eq!(guard.instance().open_stats().daemon, 20);
    guard.stop();
}

fn file_state(m: &CliMount, path: &Path) -> String {
    // `PATH: Name (bits)`
    let line = m.state(path);
    let state = line.rsplit(": ").next().expect("state line");
    state.split(' ').next().unwrap_or_default().to_string()
}

#[test]
fn ctrl_c_stops_hydrate_and_leaves_no_partial_file() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let root = tmp.path().join("root");
    std::fs::create_dir(&source).unwrap();
    std::fs::create_dir(&root).unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("big{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(source.join(name), vec![i as u8; 1 << 20]).unwrap();
    }
    // Every callback waits 300 ms (a timer, cancelled with its command).
    let m = CliMount::new(&bin(), &["--async", "--latency", "300"], &source, &root);
    let mut child = default_signals(&mut Command::new(BIN))
        .args(["hydrate", "--jobs", "4"])
        .arg(&root)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting prjfs hydrate");
    // Once a GetFileData is pending, the hydrate is inside a read.
    loop {
        let s = m.status();
        if s["callbacks"]["by_kind"]["get_file_data"]
            .as_u64()
            .unwrap_or(0)
            >= 1
            && s["callbacks"]["pending"].as_u64().unwrap_or(0) >= 1
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "hydrate ended too early"
        );
    }
    let pid = child.id().to_string();
    // Our own child, by pid.
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "hydrate exits 130 after Ctrl-C"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.starts_with("interrupted: hydrated"), "{summary}");
    let (mut hydrated, mut untouched) = (0, 0);
    for name in &names {
        let path = root.join(name);
        match file_state(&m, &path).as_str() {
            "HydratedPlaceholder" => {
                assert!(
                    std::fs::read(&path).unwrap() == std::fs::read(source.join(name)).unwrap(),
                    "{name}: hydrated whole"
                );
                hydrated += 1;
            }
            "Placeholder" | "Virtual" => untouched += 1,
            other => panic!("{name}: unexpected state {other}"),
        }
    }
    assert!(
        untouched > 0,
        "the interrupt stopped the hydration ({hydrated} hydrated)"
    );
    m.unmount();
    // No temp file of a cancelled hydration is left behind.
    let tmp_items: Vec<_> = std::fs::read_dir(root.join(".prjfs/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp_items.is_empty(), "left in .prjfs/tmp: {tmp_items:?}");
}

/// The daemon walks what it is given itself: a subdirectory (with nested
/// directories), a single file, and a path that does not exist (named, exit
/// status 1). Symlinks are not followed, files outside the paths stay
/// placeholders, a file the client wrote is counted as local, and a
/// directory the client deleted is not walked.
#[test]
fn the_daemon_walks_the_paths_it_is_given() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let root = tmp.path().join("root");
    for d in ["a", "a/b", "a/b/c", "gone", "other"] {
        std::fs::create_dir_all(source.join(d)).unwrap();
        for f in 0..3 {
            std::fs::write(source.join(d).join(format!("f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    std::os::unix::fs::symlink("../other/f0", source.join("a/link")).unwrap();
    std::fs::write(source.join("single"), "one file").unwrap();
    std::fs::create_dir(&root).unwrap();
    let m = CliMount::new(&bin(), &[], &source, &root);
    std::fs::write(root.join("a/b/f1"), "written here").unwrap();
    std::fs::remove_dir_all(root.join("gone")).unwrap();
    let out = default_signals(&mut Command::new(BIN))
        .arg("hydrate")
        .args([
            root.join("a"),
            root.join("single"),
            root.join("gone"),
            root.join("nothere"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running prjfs hydrate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // a, a/b, a/b/c: 3 files each (one of them written here), and `single`.
    assert!(stdout.starts_with("hydrated 10 of 10 files"), "{stdout}");
    assert!(
        stderr.contains("nothere: No such file or directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gone: No such file or directory"),
        "{stderr}"
    );
    for f in ["a/f0", "a/f2", "a/b/f0", "a/b/c/f2", "single"] {
        assert_eq!(
            file_state(&m, &root.join(f)),
            "Placeholder|HydratedPlaceholder",
            "{f}"
        );
    }
    assert_eq!(file_state(&m, &root.join("a/b/f1")), "Full");
    // Never listed nor looked up: the symlink to it was not followed.
    assert_eq!(file_state(&m, &root.join("other/f0")), "Virtual");
    assert_eq!(
        std::fs::read_to_string(root.join("a/b/c/f1")).unwrap(),
        "a/b/c/1"
    );
    assert_eq!(
        std::fs::read_link(root.join("a/link")).unwrap(),
        Path::new("../other/f0")
    );
    drop(m);
}
