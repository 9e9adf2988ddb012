//! Test support for prjfs.
//!
//! - [`mount_available`]: whether mounted tests can run here; with `CI` set a
//!   missing prerequisite is a failure, elsewhere a skip with a message.
//! - [`CliMount`]: a `prjfs mount` daemon under a temp dir, unmounted (and its
//!   daemon ended) on drop, also when the test panics.
//! - [`InstanceGuard`]: an in-process instance, stopped on drop, lazily unmounted
//!   as a last resort.
//! - [`make_tree`]: a deterministic source tree.
//! - [`SourceRootNative`]: a temp dir with a store, a mount point and a plain
//!   directory beside them, for tests that compare a mount with ext4.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// A temp dir holding `src/` (a provider's store), `root/` (where it is
/// mounted) and `native/` (a plain directory of the same file system, where a
/// test does the same operations for the reference results). Removed on drop;
/// drop every mount of `root` first (declare the mount after this).
pub struct SourceRootNative {
    _tmp: tempfile::TempDir,
    /// The store.
    pub source: PathBuf,
    /// The mount point.
    pub root: PathBuf,
    /// The plain directory.
    pub native: PathBuf,
}

impl SourceRootNative {
    /// The three directories, empty; with `searchable` the temp dir and all
    /// three are mode 0755, so processes of other users (a test's
    /// unprivileged clients) can reach them.
    pub fn new(searchable: bool) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let [source, root, native] = ["src", "root", "native"].map(|d| tmp.path().join(d));
        for d in [&source, &root, &native] {
            std::fs::create_dir(d).expect("mkdir");
        }
        if searchable {
            for d in [tmp.path(), &source, &root, &native] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        }
        Self {
            _tmp: tmp,
            source,
            root,
            native,
        }
    }
}

/// Whether mounted tests can run (root and /dev/fuse). Returns false (and prints
/// why) when they cannot and `CI` is unset; panics when `CI` is set, because CI
/// requires them.
pub fn mount_available() -> bool {
    let root = unsafe_free_geteuid() == 0;
    let fuse = Path::new("/dev/fuse").exists();
    if root && fuse {
        return true;
    }
    let why = if !root {
        "not running as root"
    } else {
        "/dev/fuse is missing"
    };
    if std::env::var_os("CI").is_some() {
        panic!("mounted tests are mandatory in CI, but {why}");
    }
    eprintln!("SKIPPED: mounted test needs root and /dev/fuse ({why})");
    false
}

fn unsafe_free_geteuid() -> u32 {
    // /proc/self/status "Uid:" line: real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Whether `path` is currently a prjfs mountpoint.
pub fn is_mounted(path: &Path) -> bool {
    prjfs::instance_mounts()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
}

/// Unmount `path` if mounted: normally, else lazily.
pub fn force_unmount(path: &Path) {
    if is_mounted(path) && prjfs::unmount(path).is_err() {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// A `prjfs mount` daemon. Dropping it unmounts and waits for the daemon to end
/// (killing it by pid as a last resort).
pub struct CliMount {
    /// The `prjfs` binary.
    pub bin: PathBuf,
    /// The projected source.
    pub source: PathBuf,
    /// The mounted root.
    pub root: PathBuf,
    /// Daemon pid (from `status --json`).
    pub pid: Option<u32>,
}

impl CliMount {
    /// Run `prjfs mount ARGS.. SOURCE ROOT`; panics with the daemon's message when
    /// it fails.
    pub fn new(bin: &Path, args: &[&str], source: &Path, root: &Path) -> CliMount {
        let out = Command::new(bin)
            .arg("mount")
            .args(args)
            .arg(source)
            .arg(root)
            .output()
            .expect("running prjfs mount");
        assert!(
            out.status.success(),
            "prjfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = CliMount {
            bin: bin.to_path_buf(),
            source: source.to_path_buf(),
            root: std::path::absolute(root).expect("absolute root"),
            pid: None,
        };
        m.pid = m.status()["pid"].as_u64().map(|p| p as u32);
        m
    }

    /// `prjfs status --json` of this root.
    pub fn status(&self) -> serde_json::Value {
        let out = self
            .prjfs(&["status", "--json"])
            .arg(&self.root)
            .output()
            .expect("prjfs status");
        assert!(
            out.status.success(),
            "prjfs status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    /// A callback counter by kind (e.g. `get_file_data`).
    pub fn invoked(&self, kind: &str) -> u64 {
        self.status()["callbacks"]["by_kind"][kind]
            .as_u64()
            .unwrap_or(0)
    }

    /// A `prjfs` command.
    pub fn prjfs(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args);
        c
    }

    /// `prjfs state PATH` output for one path.
    pub fn state(&self, path: &Path) -> String {
        let out = self
            .prjfs(&["state"])
            .arg(path)
            .output()
            .expect("prjfs state");
        assert!(
            out.status.success(),
            "prjfs state failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Unmount through `prjfs unmount`, asserting it succeeds, and wait for the
    /// daemon to exit.
    pub fn unmount(mut self) {
        let out = self
            .prjfs(&["unmount"])
            .arg(&self.root)
            .output()
            .expect("prjfs unmount");
        assert!(
            out.status.success(),
            "prjfs unmount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_daemon_exit();
        self.pid = None;
    }

    fn wait_daemon_exit(&self) {
        let Some(pid) = self.pid else { return };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            // A zombie of ours would linger forever; the daemon is not our child
            // (it was started by `prjfs mount`), so /proc disappears on exit.
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if s.split_whitespace().nth(2) == Some("Z") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CliMount {
    fn drop(&mut self) {
        force_unmount(&self.root);
        if let Some(pid) = self.pid.take() {
            self.pid = Some(pid);
            self.wait_daemon_exit();
            if Path::new(&format!("/proc/{pid}")).exists() {
                // Our own daemon, by pid: never by name.
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

/// An in-process instance that is stopped on drop; a lazy unmount follows if the
/// root is still mounted.
pub struct InstanceGuard {
    instance: Option<prjfs::VirtualizationInstance>,
    root: PathBuf,
}

impl InstanceGuard {
    /// Start `provider` at `root`.
    pub fn start(
        root: &Path,
        provider: std::sync::Arc<dyn prjfs::Provider>,
        options: prjfs::StartOptions,
    ) -> InstanceGuard {
        let instance = prjfs::VirtualizationInstance::start(root, provider, options)
            .expect("starting the instance");
        let root = instance.root().to_path_buf();
        InstanceGuard {
            instance: Some(instance),
            root,
        }
    }

    /// The running instance.
    pub fn instance(&self) -> &prjfs::VirtualizationInstance {
        self.instance.as_ref().expect("instance is running")
    }

    /// The mounted root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stop now.
    pub fn stop(mut self) {
        if let Some(i) = self.instance.take() {
            i.stop().expect("unmount");
        }
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        if let Some(i) = self.instance.take() {
            let _ = i.stop();
        }
        force_unmount(&self.root);
    }
}

/// Give the command's process the default action for SIGINT, SIGQUIT and
/// SIGTERM, whatever this process has: a test that signals a client expects
/// the signal to reach it, and a test run started in the background by a
/// non-interactive shell (as CI jobs may be) inherits SIGINT and SIGQUIT
/// ignored, which `exec` keeps.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only `signal(2)`, which is async-signal-safe, runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// Whether `cond` holds within `timeout`, asking every 5 ms: for waiting on
/// a condition another process brings about (the timeout only bounds a
/// failure).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run a command, returning its output (panics if it cannot start).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running a command")
}

/// Run a command to completion and return its stdout; panics, with the
/// command, its status and its stderr, unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Shape of a generated tree.
#[derive(Clone, Copy, Debug)]
pub struct TreeSpec {
    /// Regular files.
    pub files: usize,
    /// Directories (nested up to `depth`).
    pub dirs: usize,
    /// Nesting depth.
    pub depth: usize,
    /// Symlinks (to files, dirs, and one dangling).
    pub symlinks: usize,
    /// Largest file size in bytes.
    pub max_size: usize,
    /// RNG seed.
    pub seed: u64,
}

impl Default for TreeSpec {
    fn default() -> Self {
        Self {
            files: 2000,
            dirs: 120,
            depth: 5,
            symlinks: 20,
            max_size: 64 * 1024,
            seed: 7,
        }
    }
}

/// Create a deterministic tree at `dir` (which must exist): nested directories, an
/// empty directory, files of varied sizes, modes and mtimes, and symlinks. Returns
/// the relative paths of the regular files.
pub fn make_tree(dir: &Path, spec: TreeSpec) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut dirs = vec![PathBuf::new()];
    for i in 0..spec.dirs {
        let parent = dirs[rng.random_range(0..dirs.len())].clone();
        if parent.components().count() >= spec.depth {
            continue;
        }
        let d = parent.join(format!("dir{i:03}"));
        std::fs::create_dir_all(dir.join(&d)).expect("mkdir");
        dirs.push(d);
    }
    std::fs::create_dir_all(dir.join("empty")).expect("mkdir empty");
    let mut files = Vec::new();
    for i in 0..spec.files {
        let parent = &dirs[rng.random_range(0..dirs.len())];
        let f = parent.join(format!("file{i:05}.dat"));
        let size = if i % 10 == 0 {
            0
        } else {
            rng.random_range(0..=spec.max_size)
        };
        let data: Vec<u8> = (0..size).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        std::fs::write(dir.join(&f), &data).expect("write file");
        let mode = [0o644, 0o600, 0o755, 0o444][i % 4];
        std::fs::set_permissions(dir.join(&f), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + i as u64 * 3600);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(&f))
            .expect("open");
        file.set_modified(mtime).expect("set mtime");
        files.push(f);
    }
    for i in 0..spec.symlinks {
        let target: PathBuf = match i % 3 {
            0 => Path::new("..").join(&files[i % files.len()]),
            1 => PathBuf::from("/nonexistent/dangling"),
            _ => dirs[i % dirs.len()].clone(),
        };
        let at = dirs[(i * 7) % dirs.len()].join(format!("link{i:02}"));
        let _ = std::os::unix::fs::symlink(&target, dir.join(at));
    }
    files
}
