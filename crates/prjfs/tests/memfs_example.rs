//! The `memfs` and `async_memfs` examples, run as a user runs them: real
//! processes on a root under a temp dir this test made. Started on an empty
//! root they serve `ls -R`, `find` and `cat`; a client blocked on the file that
//! never completes is released at once by Ctrl-C (SIGINT); SIGTERM unmounts and
//! exits 0; started again on the same root with no option they serve it again,
//! with what was hydrated kept (its reads never reach the provider again).
//!
//! Every wait is for a condition (a line the example prints, a process exit)
//! with a deadline; every mount is unmounted by [`Example`]'s `Drop`, also when
//! the test fails; only processes this test started are signalled, by pid.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use prjfs_testkit::{default_signals, force_unmount, is_mounted, mount_available};
use rustix::process::{kill_process, Pid, Signal};

/// Long enough for a mount on a loaded machine; conditions usually hold at once.
const DEADLINE: Duration = Duration::from_secs(60);

/// How soon a signalled client must be released.
const RELEASE: Duration = Duration::from_secs(1);

/// The example binary, built with the profile of this test (a no-op when
/// `cargo test` built it already).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/PROFILE/deps/TEST → target/PROFILE
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/PROFILE/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory above {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "prjfs",
            "--example",
            name,
            "--profile",
            profile,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the {name} example failed");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// A running example. Dropping it kills the process if it still runs (by its
/// pid) and unmounts its root if still mounted.
struct Example {
    name: &'static str,
    child: Child,
    root: PathBuf,
    lines: Receiver<String>,
    /// Every stdout line seen so far, in order.
    seen: Vec<String>,
}

impl Example {
    fn start(bin: &Path, name: &'static str, root: &Path) -> Example {
        let mut child = default_signals(&mut Command::new(bin))
            .arg(root)
            .env("PRJFS_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the example");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut example = Example {
            name,
            child,
            root: root.to_path_buf(),
            lines,
            seen: Vec::new(),
        };
        example.wait_line("serving");
        assert!(
            is_mounted(root),
            "{name} said it serves, but nothing is mounted"
        );
        example
    }

    /// Wait for a stdout line containing `text`; returns it.
    fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line with {text:?}; saw {:#?}", self.name, self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} ended before printing {text:?} ({:?}); saw {:#?}",
                    self.name,
                    self.child.try_wait(),
                    self.seen
                ),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        signal_pid(self.child.id(), signal);
    }

    fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, DEADLINE)
            .unwrap_or_else(|| panic!("{} did not exit within {DEADLINE:?}", self.name))
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        force_unmount(&self.root);
    }
}

fn signal_pid(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(pid as i32).expect("a child's pid is positive");
    kill_process(pid, signal).expect("signalling our own child");
}

/// Wait up to `limit` for `child` to exit.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run a client program; its stdout, asserting success.
fn run(program: &str, args: &[&Path]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("running a client");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The content the examples' tree gives `data/blobNN.bin`.
fn blob(i: usize) -> Vec<u8> {
    let len = (i * 7919) % (300 << 10);
    (0..len).map(|k| (k * 31 + i) as u8).collect()
}

const README: &[u8] = b"memfs: an in-memory tree projected by prjfs\n";

/// `ls -R`, `find` and `cat` see the whole tree with the right bytes.
fn check_serves(root: &Path) {
    let ls = String::from_utf8(run("ls", &[Path::new("-R"), root])).unwrap();
    for name in [
        "README.txt",
        "blob39.bin",
        "chapter4.txt",
        "n43.txt",
        "never.txt",
    ] {
        assert!(ls.contains(name), "ls -R lacks {name}:\n{ls}");
    }
    let find = String::from_utf8(run("find", &[root])).unwrap();
    // The root, 4 directories, 67 files, one symlink.
    assert_eq!(find.lines().count(), 73, "{find}");
    assert!(find.contains("/docs/notes/n00.txt\n"), "{find}");
    assert_eq!(run("cat", &[&root.join("README.txt")]), README);
    assert_eq!(run("cat", &[&root.join("link")]), README);
    assert_eq!(run("cat", &[&root.join("data/blob07.bin")]), blob(7));
}

/// A `cat` of the never-completing file waits until SIGINT, then ends at once;
/// the provider hears the cancel.
fn check_ctrl_c_releases_the_blocked_client(example: &mut Example, cancelled_line: &str) {
    let mut cat = default_signals(&mut Command::new("cat"))
        .arg(example.root.join("slow/never.txt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting cat");
    example.wait_line("get_file_data slow/never.txt");
    assert!(
        matches!(cat.try_wait(), Ok(None)),
        "cat of the never-completing file returned"
    );
    let sent = Instant::now();
    signal_pid(cat.id(), Signal::INT);
    let status = wait_exit(&mut cat, DEADLINE).expect("cat should end after SIGINT");
    let took = sent.elapsed();
    assert!(took < RELEASE, "cat took {took:?} to end after SIGINT");
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let line = example.wait_line(cancelled_line);
    assert!(line.ends_with("(slow/never.txt)"), "{line}");
}

fn fresh_root() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("creating the root");
    (tmp, root)
}

#[test]
fn memfs_serves_stops_on_signals_and_restarts_with_its_hydrated_files() {
    if !mount_available() {
        return;
    }
    let bin = example_binary("memfs");
    let (_tmp, root) = fresh_root();

    let mut memfs = Example::start(&bin, "memfs", &root);
    check_serves(&root);
    check_ctrl_c_releases_the_blocked_client(&mut memfs, "memfs: cancelled command");
    memfs.signal(Signal::TERM);
    let status = memfs.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!is_mounted(&root), "SIGTERM should unmount");
    drop(memfs);
    // What was hydrated is in the root's own directory, now uncovered.
    assert_eq!(std::fs::read(root.join("README.txt")).unwrap(), README);
    assert_eq!(
        std::fs::read(root.join("data/blob07.bin")).unwrap(),
        blob(7)
    );

    // Again, no option: the same root, served again, hydrated files kept.
    let mut memfs = Example::start(&bin, "memfs", &root);
    let before = memfs.seen.len();
    assert_eq!(run("cat", &[&root.join("README.txt")]), README);
    assert_eq!(run("cat", &[&root.join("data/blob07.bin")]), blob(7));
    // A file never read before is fetched; its line comes after any the two
    // reads above would have caused.
    assert_eq!(run("cat", &[&root.join("data/blob08.bin")]), blob(8));
    memfs.wait_line("completed data/blob08.bin");
    let fetched: Vec<_> = memfs.seen[before..]
        .iter()
        .filter(|l| l.contains("get_file_data"))
        .collect();
    assert_eq!(fetched.len(), 1, "only blob08 is fetched: {fetched:?}");
    check_serves(&root);

    // SIGINT (Ctrl-C) stops it too, also with a client waiting: the client
    // is answered, the example exits 0.
    let mut cat = default_signals(&mut Command::new("cat"))
        .arg(root.join("slow/never.txt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting cat");
    memfs.wait_line("get_file_data slow/never.txt");
    memfs.signal(Signal::INT);
    let status = memfs.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!is_mounted(&root), "SIGINT should unmount");
    let status = wait_exit(&mut cat, DEADLINE).expect("the waiting cat should end");
    assert!(!status.success(), "cat of a file never delivered succeeded");
}

#[test]
fn async_memfs_serves_and_drops_the_future_of_a_client_that_gives_up() {
    if !mount_available() {
        return;
    }
    let bin = example_binary("async_memfs");
    let (_tmp, root) = fresh_root();
    let mut example = Example::start(&bin, "async_memfs", &root);
    check_serves(&root);
    check_ctrl_c_releases_the_blocked_client(&mut example, "async_memfs: cancelled command");
    example.signal(Signal::TERM);
    let status = example.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!is_mounted(&root));
    drop(example);
    let mut example = Example::start(&bin, "async_memfs", &root);
    assert_eq!(run("cat", &[&root.join("data/blob07.bin")]), blob(7));
    example.signal(Signal::TERM);
    assert_eq!(example.wait_exit().code(), Some(0));
}
