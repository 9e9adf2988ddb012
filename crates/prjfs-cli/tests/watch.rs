//! Mounted tests of the live mirror (`prjfs mount --watch`) through real
//! programs: changes in the source (modify, delete, create, rename) reach
//! clients of the root, also through the kernel's caches (a hydrated file
//! read with passthrough and a warm page cache, cached listings), items the
//! user changed in the root are kept and the refusals counted, and the
//! negative path cache is cleared for a name the source gains.
//!
//! Each change is waited for as a condition (with a generous deadline for
//! loaded machines); how long it took is printed, not asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use prjfs_testkit::{mount_available, CliMount};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// What a generous wait allows before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

struct Dirs {
    _tmp: tempfile::TempDir,
    source: PathBuf,
    root: PathBuf,
}

fn dirs(files: &[(&str, &str)]) -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("src");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&source).unwrap();
    for (path, content) in files {
        let p = source.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    Dirs {
        _tmp: tmp,
        source,
        root,
    }
}

fn cat(p: &Path) -> Option<String> {
    let out = Command::new("cat").arg(p).output().expect("cat");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn size(p: &Path) -> Option<u64> {
    let out = Command::new("stat")
        .args(["-c", "%s"])
        .arg(p)
        .output()
        .expect("stat");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

fn ls(p: &Path) -> Vec<String> {
    let out = Command::new("ls").arg("-A").arg(p).output().expect("ls");
    assert!(out.status.success(), "ls {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait until `cond` holds; returns how long it took.
fn wait(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not seen within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    eprintln!("{what}: seen after {} ms", took.as_millis());
    took
}

#[test]
fn source_changes_reach_clients_and_local_changes_are_kept() {
    if !mount_available() {
        return;
    }
    let d = dirs(&[
        ("a.txt", "version one"),
        ("del.txt", "to delete"),
        ("old.txt", "to rename"),
        ("keep.txt", "source v1"),
        ("sub/inner.txt", "inner v1"),
    ]);
    let m = CliMount::new(&bin(), &["--watch"], &d.source, &d.root);
    let root = &d.root;
    // Hydrate a.txt and read it again (passthrough, warm page cache); place
    // the others; cache the root's listing.
    assert_eq!(cat(&root.join("a.txt")).as_deref(), Some("version one"));
    assert_eq!(cat(&root.join("a.txt")).as_deref(), Some("version one"));
    assert_eq!(
        cat(&root.join("sub/inner.txt")).as_deref(),
        Some("inner v1")
    );
    assert!(size(&root.join("del.txt")).is_some());
    assert_eq!(ls(root).len(), 5);

    std::fs::write(d.source.join("a.txt"), "version two, longer").unwrap();
    wait("a modified hydrated file", || {
        cat(&root.join("a.txt")).as_deref() == Some("version two, longer")
            && size(&root.join("a.txt")) == Some(19)
    });
    std::fs::write(d.source.join("sub/inner.txt"), "inner v2").unwrap();
    wait("a modified file in a subdirectory", || {
        cat(&root.join("sub/inner.txt")).as_deref() == Some("inner v2")
    });

    std::fs::remove_file(d.source.join("del.txt")).unwrap();
    wait("a deleted file", || {
        !ls(root).contains(&"del.txt".to_string()) && size(&root.join("del.txt")).is_none()
    });

    std::fs::write(d.source.join("new.txt"), "brand new").unwrap();
    wait("a new file", || ls(root).contains(&"new.txt".to_string()));
    assert_eq!(cat(&root.join("new.txt")).as_deref(), Some("brand new"));

    std::fs::rename(d.source.join("old.txt"), d.source.join("moved.txt")).unwrap();
    wait("a renamed file", || {
        let names = ls(root);
        names.contains(&"moved.txt".to_string()) && !names.contains(&"old.txt".to_string())
    });
    assert_eq!(cat(&root.join("moved.txt")).as_deref(), Some("to rename"));

    // A file changed in the root keeps its bytes while its source changes.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo local > '{}'",
            root.join("keep.txt").display()
        ))
        .status()
        .unwrap();
    assert!(out.success());
    let refused = |m: &CliMount| m.status()["updates"]["refused"].as_u64().unwrap();
    let before = refused(&m);
    std::fs::write(d.source.join("keep.txt"), "source v2").unwrap();
    wait("the refusal of a locally changed file", || {
        refused(&m) > before
    });
    assert_eq!(cat(&root.join("keep.txt")).as_deref(), Some("local\n"));
    let applied = m.status()["updates"]["applied"].as_u64().unwrap();
    assert!(applied >= 4, "applied {applied}");
    m.unmount();
}

#[test]
fn the_negative_cache_holds_until_the_source_gains_the_name() {
    if !mount_available() {
        return;
    }
    let d = dirs(&[("present.txt", "here")]);
    let m = CliMount::new(&bin(), &["--watch", "--negative-cache"], &d.source, &d.root);
    let missing = d.root.join("missing.txt");
    let calls = |m: &CliMount| m.invoked("get_placeholder_info");
    let start = calls(&m);
    for _ in 0..3 {
        assert!(size(&missing).is_none());
    }
    assert_eq!(calls(&m) - start, 1, "one provider call for three lookups");
    std::fs::write(d.source.join("missing.txt"), "arrived").unwrap();
    wait("a name the negative cache held", || {
        cat(&missing).as_deref() == Some("arrived")
    });
    m.unmount();
}
