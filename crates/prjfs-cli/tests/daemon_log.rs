//! Mounted tests of the daemon's log: it is one plain-text file per root,
//! `ROOT/.prjfs/log/daemon.log`, created only when something is logged, and
//! nothing is written to `$TMPDIR`.
//!
//! Every test needs root and /dev/fuse (skipped elsewhere, mandatory in CI), runs
//! the daemon with `TMPDIR` set to a fresh directory of its own, and holds a
//! [`CliMount`] so the mount is removed even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prjfs_testkit::{is_mounted, mount_available, CliMount};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temp dir holding `src/` (two files), an empty `root/`, and `tmpdir/`, the
/// daemon's `TMPDIR`.
struct Dirs {
    tmp: tempfile::TempDir,
    source: PathBuf,
    root: PathBuf,
    tmpdir: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("src");
        let root = tmp.path().join("root");
        let tmpdir = tmp.path().join("tmpdir");
        for d in [&source, &root, &tmpdir] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::create_dir(source.join("dir")).expect("mkdir");
        std::fs::write(source.join("a.txt"), b"a\n").expect("write");
        std::fs::write(source.join("dir/b.txt"), b"b\n").expect("write");
        Dirs {
            tmp,
            source,
            root,
            tmpdir,
        }
    }

    /// The daemon's `TMPDIR` is still empty.
    fn assert_tmpdir_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.tmpdir)
            .expect("read tmpdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "the daemon wrote to TMPDIR: {left:?}");
    }
}

/// `prjfs mount SOURCE ROOT` with `TMPDIR` set to the test's own directory and
/// `PRJFS_LOG` set to `level` (unset for `None`). The guard exists whenever the
/// mount succeeded.
fn mount(d: &Dirs, root: &Path, level: Option<&str>) -> (Output, Option<CliMount>) {
    let mut c = Command::new(bin());
    c.arg("mount").arg(&d.source).arg(root);
    c.env("TMPDIR", &d.tmpdir);
    match level {
        Some(l) => c.env("PRJFS_LOG", l),
        None => c.env_remove("PRJFS_LOG"),
    };
    let out = c.output().expect("running prjfs mount");
    if !out.status.success() {
        return (out, None);
    }
    let mut m = CliMount {
        bin: bin(),
        source: d.source.clone(),
        root: std::path::absolute(root).expect("absolute root"),
        pid: None,
    };
    m.pid = m.status()["pid"].as_u64().map(|p| p as u32);
    (out, Some(m))
}

/// Reads, a write, a rename and a delete through the mount.
fn some_io(root: &Path) {
    assert_eq!(std::fs::read(root.join("a.txt")).expect("read a"), b"a\n");
    assert_eq!(
        std::fs::read(root.join("dir/b.txt")).expect("read b"),
        b"b\n"
    );
    std::fs::write(root.join("c.txt"), b"c\n").expect("write c");
    std::fs::rename(root.join("c.txt"), root.join("dir/c.txt")).expect("rename");
    std::fs::remove_file(root.join("a.txt")).expect("delete a");
    let names = std::fs::read_dir(root.join("dir")).expect("list").count();
    assert_eq!(names, 2);
}

fn status_text(m: &CliMount) -> String {
    let out = m.prjfs(&["status"]).arg(&m.root).output().expect("status");
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    text(&out.stdout)
}

/// With `PRJFS_LOG=debug` the daemon logs to `ROOT/.prjfs/log/daemon.log`, in
/// plain text, readable while mounted through the path `status` gives; the next
/// mount appends to the same file; `TMPDIR` stays empty.
#[test]
fn debug_log_lands_in_the_root_as_plain_text() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let file = std::path::absolute(&d.root)
        .unwrap()
        .join(".prjfs/log/daemon.log");
    let (out, m) = mount(&d, &d.root, Some("debug"));
    let m = m.unwrap_or_else(|| panic!("mount failed: {}", text(&out.stderr)));
    assert!(
        out.stderr.is_empty(),
        "prjfs mount printed: {}",
        text(&out.stderr)
    );
    let st = m.status();
    assert_eq!(st["log"]["file"].as_str(), file.to_str(), "{st}");
    assert_eq!(st["log"]["exists"], true, "{st}");
    let shown = status_text(&m);
    assert!(
        shown.contains(&format!("log:       {}\n", file.display())),
        "{shown}"
    );
    some_io(&m.root);

    // Hidden by the mount, but readable through the daemon's fd.
    assert!(!m.root.join(".prjfs").exists());
    let live = st["log"]["live"].as_str().expect("live path");
    assert!(shown.contains(live), "{shown}");
    let now = std::fs::read_to_string(live).expect("read the live log");
    assert!(now.contains("FUSE_INIT"), "{now}");

    m.unmount();
    assert!(!is_mounted(&std::path::absolute(&d.root).unwrap()));
    let log = std::fs::read(&file).expect("the log file");
    assert!(!log.is_empty());
    assert!(
        !log.windows(2).any(|w| w == b"\x1b["),
        "escape codes in the log: {}",
        text(&log)
    );
    let log = text(&log);
    assert!(log.lines().all(|l| !l.is_empty()), "{log}");
    assert!(log.contains(" DEBUG "), "{log}");
    assert_eq!(log.matches("FUSE_INIT done").count(), 1, "{log}");
    let entries: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["daemon.log"]);

    // The next mount of the root appends to the same file.
    let (out, m) = mount(&d, &d.root, Some("debug"));
    let m = m.unwrap_or_else(|| panic!("remount failed: {}", text(&out.stderr)));
    m.unmount();
    let log = std::fs::read_to_string(&file).expect("the log file");
    assert_eq!(log.matches("FUSE_INIT done").count(), 2, "{log}");
    d.assert_tmpdir_empty();
}

/// At the default level a mount, some I/O and an unmount log nothing, and leave
/// no log file (nor its directory) and nothing in `TMPDIR`.
#[test]
fn a_mount_that_logs_nothing_leaves_no_log_file() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let (out, m) = mount(&d, &d.root, None);
    let m = m.unwrap_or_else(|| panic!("mount failed: {}", text(&out.stderr)));
    assert!(
        out.stderr.is_empty(),
        "prjfs mount printed: {}",
        text(&out.stderr)
    );
    some_io(&m.root);
    let st = m.status();
    assert_eq!(st["log"]["exists"], false, "{st}");
    let shown = status_text(&m);
    assert!(shown.contains("(nothing logged yet)"), "{shown}");
    m.unmount();
    let hidden = d.root.join(".prjfs");
    assert!(hidden.is_dir(), "the layer's directory is there");
    assert!(
        !hidden.join("log").exists(),
        "a log for a mount that logged nothing"
    );
    d.assert_tmpdir_empty();
}

/// A refused mount says why exactly once, writes no log into the foreign
/// directory, and nothing into `TMPDIR`.
#[test]
fn refused_mount_reports_once_and_writes_no_log() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let foreign = d.tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("mine.txt"), b"mine\n").unwrap();
    let (out, m) = mount(&d, &foreign, Some("debug"));
    assert!(m.is_none(), "mounted a foreign directory");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.matches("not empty").count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(&foreign)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["mine.txt"]);
    d.assert_tmpdir_empty();
}

/// SIGTERM to the daemon unmounts the root (the library's
/// `run_until_signal`), the daemon exits and logs the signal at the default
/// level; the root mounts again.
#[test]
fn sigterm_unmounts_and_is_logged() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let (out, m) = mount(&d, &d.root, None);
    let mut m = m.unwrap_or_else(|| panic!("mount failed: {}", text(&out.stderr)));
    some_io(&m.root);
    let pid = m.pid.expect("the daemon's pid");
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a positive pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal the daemon");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (is_mounted(&m.root) || Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!is_mounted(&m.root), "SIGTERM should unmount");
    m.pid = None;
    let log = std::fs::read_to_string(d.root.join(".prjfs/log/daemon.log")).expect("the log");
    assert!(log.contains("signal 15: unmounting"), "{log}");
    drop(m);
    let (out, m) = mount(&d, &d.root, None);
    let m = m.unwrap_or_else(|| panic!("remount failed: {}", text(&out.stderr)));
    assert_eq!(std::fs::read(m.root.join("dir/c.txt")).unwrap(), b"c\n");
    m.unmount();
}
