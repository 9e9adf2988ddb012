//! Crash test aimed at the placeholder log's batch window (issue 7: "extend the
//! crash test to kill during batches").
//!
//! A placeholder file that nothing changed is a record in memory and in the
//! root's append-only log `.prjfs/placeholders`, written in batches (every
//! 50 ms, at 256 KiB, and at once for a removal or a directory's move). The
//! promise under test (SEMANTICS.md, "Crashes"): a record still in an unwritten
//! batch may be lost by a crash only if the projection then comes back from
//! the provider as before; nothing a client did is undone.
//!
//! The source holds large directories (thousands of small files) and
//! directories of a hundred files with a subdirectory. One worker thread drives
//! `prjfs mount` with a workload dominated by what creates and changes records:
//! listings (READDIRPLUS places every file of a directory as a record), lookups,
//! opens without a read (GetPlaceholderInfo fills a listed record's version),
//! and between them operations that force a batch write or interleave with one:
//! renames of placeholder files and of directories full of records (also
//! `RENAME_EXCHANGE` of two), unlinks of placeholders, chmod and utimens of
//! records (the layer materializes them), hydrations, appends and creates. It
//! keeps an exact model: every path's kind, mode, bytes and, where known, mtime.
//!
//! The daemon gets SIGKILL at a moment chosen by condition, never by time:
//!
//! * **pending** iterations poll `prjfs status --json` and kill right after an
//!   answer saying log entries are pending (`placeholder_log.pending_entries`).
//!   Whether the kill landed before the next batch write is then decided
//!   exactly: the log's length after the kill equals the `log_bytes` of that
//!   answer only if no batch was written in between. Both outcomes are legal;
//!   the ones with entries pending are counted.
//! * **hold** iterations use the daemon's test-only hook
//!   (`PRJFS_TEST_HOLD_BATCH`, `crates/prjfs/src/layer/vstore_hold.rs`): the
//!   test opens the hook's FIFO, the daemon's next batch write stops in the
//!   middle of its last entry (a torn tail) and reports why it was writing
//!   (tick, size, removal, directory move, sync); the test then kills it. Such
//!   a kill always lands with entries pending, so the window is hit
//!   deterministically on every run.
//!
//! After each kill the root is mounted again (which removes the stale mount,
//! replays the log, ignores a torn last entry with a warning in the daemon's
//! log, and compacts it) and checked through the mount:
//!
//! * every path the client created, wrote, renamed, chmodded or touched is
//!   exactly as acknowledged; the operation in flight at the kill left its
//!   paths in their old or new state (or the documented intermediate of a file
//!   renamed out of a projected directory: both names);
//! * every other path shows the provider's projection: kind, mode, size and
//!   mtime, and the bytes of every local file, of the in-flight operation's
//!   paths and of a sample of placeholders (another sample each time);
//! * no name the client deleted or renamed away is there (the walk must list
//!   exactly the model's names);
//! * the state counts of `prjfs status` equal the states of the visible items;
//! * the remount logged a torn log entry after every hold (and after a pending
//!   kill only when a batch write was cut by it), never otherwise: a torn tail
//!   left by an earlier crash would mean the log was not compacted.
//!
//! Iterations run in chains on one root (each after the previous crash's
//! remount), cycling hold, pending, hold after only listings, lookups and
//! opens (so the held batch is the flusher's tick), pending; a chain ends with
//! a clean unmount, an empty `.prjfs/tmp`, and one more mount that must log no
//! torn entry and show the same tree.
//!
//! What it found: a crash between a `RENAME_EXCHANGE` of two directories on
//! disk and the log's move of their records replayed each directory's
//! records into the other (fixed: the log's replay drops a record whose
//! provider path is outside its directory's origin); and `prjfs status`
//! failing while a client renamed a directory it was counting.
//!
//! Environment: `PRJFS_BATCH_ITERS` (iterations, default 12),
//! `PRJFS_BATCH_CHAIN` (iterations per chain, default 4), `PRJFS_BATCH_SEED`
//! (seed of the first chain, default 1; chain `c` uses seed + c). The
//! operation sequence is seeded; where the kill lands depends on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use prjfs_testkit::{mount_available, CliMount};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "common/crash_probe.rs"]
mod crash_probe;
use crash_probe::{category, env_num, is_local, kill, state_xattr, wait_gone};

const BIN: &str = env!("CARGO_BIN_EXE_prjfs");
/// The daemon's test-only hold of the log writer (a FIFO's path).
const HOLD_ENV: &str = "PRJFS_TEST_HOLD_BATCH";
/// What the daemon logs when the placeholder log ends in a torn entry.
const TORN_WARNING: &str = "ends in a torn or corrupt entry";
/// Files of the large directory `big`.
const BIG_FILES: usize = 2500;
/// Directories `dNN`, each with files and a subdirectory `sub`.
const DIRS: usize = 20;
const DIR_FILES: usize = 70;
const SUB_FILES: usize = 25;
/// Source files are smaller than this, and appends keep files within it: a
/// write into one page is whole or absent after a kill.
const PAGE: usize = 4096;
/// Percentage of placeholders a (non-final) check reads.
const SAMPLE_PERCENT: u64 = 15;

// ---------------------------------------------------------------------------
// The model

/// What a path should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        /// Seconds; `None` where a write set it to "now".
        mtime: Option<i64>,
        data: Arc<Vec<u8>>,
    },
    Dir {
        mode: u32,
    },
}

impl Node {
    fn describe(&self) -> String {
        match self {
            Node::File { mode, mtime, data } => {
                format!("file {mode:04o} mtime {mtime:?} <{} bytes>", data.len())
            }
            Node::Dir { mode } => format!("dir {mode:04o}"),
        }
    }
}

/// Relative path → node; the root itself is not in it.
type Tree = BTreeMap<PathBuf, Node>;

/// Paths at or under `top` (contiguous: `Path` orders by component).
fn subtree(t: &Tree, top: &Path) -> Vec<PathBuf> {
    t.range(top.to_path_buf()..)
        .take_while(|(k, _)| k.starts_with(top))
        .map(|(k, _)| k.clone())
        .collect()
}

/// `t` with the subtree at `from` moved to `to`.
fn moved(t: &Tree, from: &Path, to: &Path) -> Tree {
    let mut a = t.clone();
    let nodes: Vec<(PathBuf, Node)> = subtree(t, from)
        .into_iter()
        .map(|p| {
            let n = a.remove(&p).expect("listed");
            (p, n)
        })
        .collect();
    for (p, n) in nodes {
        a.insert(rebase(&p, from, to), n);
    }
    a
}

fn rebase(p: &Path, from: &Path, to: &Path) -> PathBuf {
    let rest = p.strip_prefix(from).expect("under from");
    if rest.as_os_str().is_empty() {
        to.to_path_buf()
    } else {
        to.join(rest)
    }
}

/// `t` with the subtrees at `a` and `b` swapped.
fn exchanged(t: &Tree, a: &Path, b: &Path) -> Tree {
    let mut out = t.clone();
    let (sa, sb) = (subtree(t, a), subtree(t, b));
    for p in sa.iter().chain(&sb) {
        out.remove(p);
    }
    for p in sa {
        out.insert(rebase(&p, a, b), t[&p].clone());
    }
    for p in sb {
        out.insert(rebase(&p, b, a), t[&p].clone());
    }
    out
}

#[derive(Clone, Debug)]
enum Op {
    /// readdir, compared with the model's names.
    List {
        dir: PathBuf,
    },
    /// lstat of each, compared with the model.
    Stat {
        paths: Vec<PathBuf>,
    },
    /// open(O_RDONLY) and close of each: fills listed records' versions.
    OpenClose {
        paths: Vec<PathBuf>,
    },
    /// Read the whole file (hydrates it).
    Read {
        path: PathBuf,
    },
    RenameFile {
        from: PathBuf,
        to: PathBuf,
    },
    RenameDir {
        from: PathBuf,
        to: PathBuf,
    },
    /// `renameat2(RENAME_EXCHANGE)` of two directories.
    Exchange {
        a: PathBuf,
        b: PathBuf,
    },
    Unlink {
        path: PathBuf,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    /// utimensat: atime and mtime to `mtime` seconds.
    Touch {
        path: PathBuf,
        mtime: i64,
    },
    /// open(O_APPEND), write.
    Append {
        path: PathBuf,
        data: Vec<u8>,
    },
    /// open(O_CREAT|O_EXCL), write.
    Create {
        path: PathBuf,
        data: Vec<u8>,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::List { .. } => "list",
            Op::Stat { .. } => "stat",
            Op::OpenClose { .. } => "open-close",
            Op::Read { .. } => "read",
            Op::RenameFile { .. } => "rename-file",
            Op::RenameDir { .. } => "rename-dir",
            Op::Exchange { .. } => "exchange",
            Op::Unlink { .. } => "unlink",
            Op::Chmod { .. } => "chmod",
            Op::Touch { .. } => "touch",
            Op::Append { .. } => "append",
            Op::Create { .. } => "create",
        }
    }

    /// Paths whose bytes a check reads (with everything under them).
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Op::RenameFile { from, to } | Op::RenameDir { from, to } => {
                vec![from.clone(), to.clone()]
            }
            Op::Exchange { a, b } => vec![a.clone(), b.clone()],
            Op::Read { path }
            | Op::Unlink { path }
            | Op::Chmod { path, .. }
            | Op::Touch { path, .. }
            | Op::Append { path, .. }
            | Op::Create { path, .. } => vec![path.clone()],
            Op::List { .. } | Op::Stat { .. } | Op::OpenClose { .. } => Vec::new(),
        }
    }
}

/// The tree after each system call of `op` that changes something, with the
/// documented intermediate states while that call is in flight.
fn plan(t: &Tree, op: &Op) -> Vec<(Tree, Vec<(&'static str, Tree)>)> {
    let with = |p: &Path, n: Node| {
        let mut a = t.clone();
        a.insert(p.to_path_buf(), n);
        a
    };
    match op {
        Op::List { .. } | Op::Stat { .. } | Op::OpenClose { .. } | Op::Read { .. } => {
            vec![(t.clone(), Vec::new())]
        }
        Op::RenameFile { from, to } => {
            let node = t[from].clone();
            let mut after = t.clone();
            after.remove(from);
            after.insert(to.clone(), node.clone());
            // Out of a projected directory the file gets its new name as a
            // hard link first, then a tombstone replaces the old name.
            vec![(after, vec![("both names", with(to, node))])]
        }
        Op::RenameDir { from, to } => vec![(moved(t, from, to), Vec::new())],
        Op::Exchange { a, b } => vec![(exchanged(t, a, b), Vec::new())],
        Op::Unlink { path } => {
            let mut a = t.clone();
            a.remove(path);
            vec![(a, Vec::new())]
        }
        Op::Chmod { path, mode } => {
            let mut a = t.clone();
            match a.get_mut(path) {
                Some(Node::File { mode: m, .. }) | Some(Node::Dir { mode: m }) => *m = *mode,
                None => panic!("model: chmod of nothing"),
            }
            vec![(a, Vec::new())]
        }
        Op::Touch { path, mtime } => {
            let mut a = t.clone();
            if let Some(Node::File { mtime: m, .. }) = a.get_mut(path) {
                *m = Some(*mtime);
            }
            vec![(a, Vec::new())]
        }
        Op::Append { path, data } => {
            let Some(Node::File {
                mode, data: old, ..
            }) = t.get(path)
            else {
                panic!("model: append to a non-file");
            };
            let mut v = old.to_vec();
            v.extend_from_slice(data);
            let node = Node::File {
                mode: *mode,
                mtime: None,
                data: Arc::new(v),
            };
            vec![(t.clone(), Vec::new()), (with(path, node), Vec::new())]
        }
        Op::Create { path, data } => {
            let file = |d: Vec<u8>| Node::File {
                mode: 0o644,
                mtime: None,
                data: Arc::new(d),
            };
            vec![
                (with(path, file(Vec::new())), Vec::new()),
                (with(path, file(data.clone())), Vec::new()),
            ]
        }
    }
}

/// The allowed trees after a kill with `op` in flight after `acked` of its
/// system calls returned: (label, tree).
fn candidates(t: &Tree, op: &Op, acked: usize) -> Vec<(String, Tree)> {
    let mut steps = plan(t, op);
    let mut out = vec![if acked == 0 {
        ("before the operation".to_string(), t.clone())
    } else {
        (
            format!("after call {acked}: acknowledged"),
            steps[acked - 1].0.clone(),
        )
    }];
    if acked < steps.len() {
        let (after, between) = steps.swap_remove(acked);
        for (what, tree) in between {
            out.push((format!("during call {}: {what}", acked + 1), tree));
        }
        out.push((format!("after call {}: in flight", acked + 1), after));
    }
    out
}

// ---------------------------------------------------------------------------
// The workload

struct Worker {
    tree: Tree,
    rng: StdRng,
    next_name: u64,
}

/// How a worker's run ended.
struct Outcome {
    ops: usize,
    /// The operation the kill interrupted and how many of its calls returned.
    inflight: Option<(Op, usize, Fail)>,
    /// A failure while the daemon was alive.
    error: Option<String>,
}

impl Worker {
    fn paths(&self, dirs: bool) -> Vec<PathBuf> {
        self.tree
            .iter()
            .filter(|(_, n)| matches!(n, Node::Dir { .. }) == dirs)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.rng.random_range(0..v.len())].clone()
    }

    fn picks(&mut self, v: &[PathBuf], n: usize) -> Vec<PathBuf> {
        (0..n).map(|_| self.pick(v)).collect()
    }

    /// A free name in `dir` (the root when empty).
    fn new_name(&mut self, dir: &Path, stem: &str) -> PathBuf {
        self.next_name += 1;
        dir.join(format!("{stem}{}", self.next_name))
    }

    /// The next operation; with `only_records`, one that only creates and
    /// changes records (a listing, lookups, opens) and forces no batch write.
    fn next_op(&mut self, only_records: bool) -> Op {
        let files = self.paths(false);
        let dirs = self.paths(true);
        let mut parents = dirs.clone();
        parents.push(PathBuf::new());
        loop {
            let roll = self
                .rng
                .random_range(0..if only_records { 42 } else { 100 });
            let op = match roll {
                0..=19 if !dirs.is_empty() => Op::List {
                    dir: self.pick(&dirs),
                },
                20..=27 if !files.is_empty() => Op::Stat {
                    paths: self.picks(&files, 30),
                },
                28..=41 if !files.is_empty() => Op::OpenClose {
                    paths: self.picks(&files, 40),
                },
                42..=49 if !files.is_empty() => Op::Read {
                    path: self.pick(&files),
                },
                50..=58 if !files.is_empty() => {
                    let from = self.pick(&files);
                    let dir = if self.rng.random_bool(0.5) {
                        from.parent().expect("a parent").to_path_buf()
                    } else {
                        self.pick(&parents)
                    };
                    Op::RenameFile {
                        from,
                        to: self.new_name(&dir, "mv"),
                    }
                }
                59..=65 if !dirs.is_empty() => {
                    let from = self.pick(&dirs);
                    let outside: Vec<PathBuf> = parents
                        .iter()
                        .filter(|d| !d.starts_with(&from))
                        .cloned()
                        .collect();
                    let dir = self.pick(&outside);
                    Op::RenameDir {
                        from,
                        to: self.new_name(&dir, "rd"),
                    }
                }
                66..=71 if dirs.len() > 1 => {
                    let a = self.pick(&dirs);
                    let others: Vec<PathBuf> = dirs
                        .iter()
                        .filter(|d| !d.starts_with(&a) && !a.starts_with(d))
                        .cloned()
                        .collect();
                    if others.is_empty() {
                        continue;
                    }
                    let b = self.pick(&others);
                    Op::Exchange { a, b }
                }
                72..=79 if !files.is_empty() => Op::Unlink {
                    path: self.pick(&files),
                },
                80..=86 => {
                    let path = if self.rng.random_bool(0.8) && !files.is_empty() {
                        self.pick(&files)
                    } else if !dirs.is_empty() {
                        self.pick(&dirs)
                    } else {
                        continue;
                    };
                    let mode = if matches!(self.tree[&path], Node::Dir { .. }) {
                        self.pick(&[0o755, 0o750, 0o700])
                    } else {
                        self.pick(&[0o644, 0o600, 0o755, 0o444, 0o640])
                    };
                    Op::Chmod { path, mode }
                }
                87..=92 if !files.is_empty() => Op::Touch {
                    path: self.pick(&files),
                    mtime: 1_500_000_000 + self.rng.random_range(0..10_000_000),
                },
                93..=96 if !files.is_empty() => {
                    let path = self.pick(&files);
                    let Node::File { data, .. } = &self.tree[&path] else {
                        unreachable!("a file")
                    };
                    let room = PAGE - 1 - data.len().min(PAGE - 1);
                    if room == 0 {
                        continue;
                    }
                    let mut v = vec![0u8; self.rng.random_range(1..=room.min(300))];
                    self.rng.fill(&mut v[..]);
                    Op::Append { path, data: v }
                }
                97..=99 => {
                    let dir = self.pick(&parents);
                    let mut v = vec![0u8; self.rng.random_range(0..PAGE)];
                    self.rng.fill(&mut v[..]);
                    Op::Create {
                        path: self.new_name(&dir, "new"),
                        data: v,
                    }
                }
                _ => continue,
            };
            return op;
        }
    }
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
    let (a, b) = (c(from), c(to));
    // SAFETY: two valid NUL-terminated paths relative to the cwd fd.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_times(p: &Path, secs: i64) -> std::io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: a valid path and an array of two timespecs, as utimensat needs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How an operation failed.
#[derive(Debug)]
enum Fail {
    /// A system call failed (after the kill: `ENOTCONN`, `ECONNABORTED`).
    Io(std::io::Error),
    /// An answer differs from the model (bytes, names or sizes).
    Wrong(String),
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Io(e)
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Io(e) => write!(f, "{e}"),
            Fail::Wrong(why) => write!(f, "wrong answer: {why}"),
        }
    }
}

/// Run `op` under `root`, counting acknowledged calls that change something in
/// `acked`.
fn exec(root: &Path, t: &Tree, op: &Op, acked: &mut usize) -> Result<(), Fail> {
    let p = |r: &Path| root.join(r);
    let wrong = |what: String| Err(Fail::Wrong(what));
    match op {
        Op::List { dir } => {
            let mut got: Vec<PathBuf> = std::fs::read_dir(p(dir))?
                .map(|e| e.map(|e| dir.join(e.file_name())))
                .collect::<std::io::Result<_>>()?;
            got.sort();
            let want: Vec<PathBuf> = subtree(t, dir)
                .into_iter()
                .filter(|q| q.parent() == Some(dir.as_path()))
                .collect();
            if got != want {
                let g: BTreeSet<_> = got.iter().collect();
                let w: BTreeSet<_> = want.iter().collect();
                return wrong(format!(
                    "listing {} has {:?} extra, {:?} missing",
                    dir.display(),
                    g.difference(&w).take(5).collect::<Vec<_>>(),
                    w.difference(&g).take(5).collect::<Vec<_>>()
                ));
            }
        }
        Op::Stat { paths } => {
            for q in paths {
                let md = std::fs::symlink_metadata(p(q))?;
                let Node::File { data, .. } = &t[q] else {
                    unreachable!("files only")
                };
                if !md.is_file() || md.len() != data.len() as u64 {
                    return wrong(format!(
                        "{}: {md:?}, model {}",
                        q.display(),
                        t[q].describe()
                    ));
                }
            }
        }
        Op::OpenClose { paths } => {
            for q in paths {
                drop(File::open(p(q))?);
            }
        }
        Op::Read { path } => {
            let got = std::fs::read(p(path))?;
            let Node::File { data, .. } = &t[path] else {
                unreachable!("a file")
            };
            if got != **data {
                return wrong(format!(
                    "{} read {} bytes, the model holds {}",
                    path.display(),
                    got.len(),
                    data.len()
                ));
            }
        }
        Op::RenameFile { from, to } | Op::RenameDir { from, to } => {
            std::fs::rename(p(from), p(to))?;
            *acked += 1;
        }
        Op::Exchange { a, b } => {
            renameat2(&p(a), &p(b), libc::RENAME_EXCHANGE)?;
            *acked += 1;
        }
        Op::Unlink { path } => {
            std::fs::remove_file(p(path))?;
            *acked += 1;
        }
        Op::Chmod { path, mode } => {
            std::fs::set_permissions(p(path), std::fs::Permissions::from_mode(*mode))?;
            *acked += 1;
        }
        Op::Touch { path, mtime } => {
            set_times(&p(path), *mtime)?;
            *acked += 1;
        }
        Op::Append { path, data } => {
            let mut f = File::options().append(true).open(p(path))?;
            *acked += 1;
            f.write_all(data)?;
            *acked += 1;
        }
        Op::Create { path, data } => {
            let mut f = File::options().write(true).create_new(true).open(p(path))?;
            *acked += 1;
            f.write_all(data)?;
            *acked += 1;
        }
    }
    Ok(())
}

/// Operations a worker finished, and whether it has ended.
#[derive(Default)]
struct Progress {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Progress {
    fn update(&self, f: impl FnOnce(&mut (usize, bool))) {
        f(&mut self.state.lock().expect("progress lock"));
        self.changed.notify_all();
    }

    /// Wait until `n` operations are done or the worker ended; a worker that
    /// makes no progress for a minute is a hang, and fails the test.
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut st = self.state.lock().expect("progress lock");
        while st.0 < n && !st.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the workload hangs: {} of {n} operations done",
                st.0
            );
            st = self
                .changed
                .wait_timeout(st, left)
                .expect("progress lock")
                .0;
        }
    }

    fn done(&self) -> usize {
        self.state.lock().expect("progress lock").0
    }

    fn ended(&self) -> bool {
        self.state.lock().expect("progress lock").1
    }
}

/// What the test tells its worker.
#[derive(Default)]
struct Signals {
    /// The daemon was killed: calls may fail from now on.
    killed: AtomicBool,
    /// Only operations that leave record batches to the flusher's tick.
    only_records: AtomicBool,
}

fn run_worker(
    w: Worker,
    root: PathBuf,
    signals: Arc<Signals>,
    progress: Arc<Progress>,
) -> (Worker, Outcome) {
    let r = work(w, &root, &signals, &progress);
    progress.update(|p| p.1 = true);
    r
}

fn work(mut w: Worker, root: &Path, signals: &Signals, progress: &Progress) -> (Worker, Outcome) {
    let killed = &signals.killed;
    let mut ops = 0;
    let mut killed_at: Option<Instant> = None;
    loop {
        if killed.load(Ordering::SeqCst) {
            let at = *killed_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_secs(10) {
                let error = Some("the workload kept succeeding 10 s after the kill".into());
                let o = Outcome {
                    ops,
                    inflight: None,
                    error,
                };
                return (w, o);
            }
        }
        let op = w.next_op(signals.only_records.load(Ordering::SeqCst));
        let mut acked = 0;
        match exec(root, &w.tree, &op, &mut acked) {
            Ok(()) => {
                w.tree = plan(&w.tree, &op).pop().expect("a step").0;
                ops += 1;
                progress.update(|p| p.0 += 1);
            }
            Err(e) => {
                let wrong = matches!(e, Fail::Wrong(_));
                let error = (wrong || !killed.load(Ordering::SeqCst)).then(|| {
                    format!("{op:?} failed while the daemon was alive, after {acked} calls: {e}")
                });
                let o = Outcome {
                    ops,
                    inflight: Some((op, acked, e)),
                    error,
                };
                return (w, o);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Observation

/// What a path holds through the mount.
#[derive(Debug)]
enum Seen {
    File {
        mode: u32,
        size: u64,
        mtime: i64,
        data: Option<Vec<u8>>,
        state: u32,
    },
    Dir {
        mode: u32,
        state: u32,
    },
    Other(String),
}

impl Seen {
    fn describe(&self) -> String {
        match self {
            Seen::File {
                mode,
                size,
                mtime,
                data,
                state,
            } => format!(
                "file {mode:04o} mtime {mtime} <{size} bytes{}> (state {state})",
                if data.is_some() { ", read" } else { "" }
            ),
            Seen::Dir { mode, state } => format!("dir {mode:04o} (state {state})"),
            Seen::Other(s) => s.clone(),
        }
    }

    fn state(&self) -> Option<u32> {
        match self {
            Seen::File { state, .. } | Seen::Dir { state, .. } => Some(*state),
            Seen::Other(_) => None,
        }
    }
}

/// Walk the whole mount; `read(rel, state)` says which files to read.
fn observe(
    root: &Path,
    read: &dyn Fn(&Path, u32) -> bool,
) -> Result<BTreeMap<PathBuf, Seen>, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .and_then(|d| {
                d.map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| format!("readdir {}: {e}", dir.display()))?;
        for name in entries {
            let rel = dir.join(name);
            let p = root.join(&rel);
            let md = std::fs::symlink_metadata(&p)
                .map_err(|e| format!("lstat {}: {e}", rel.display()))?;
            let mode = md.permissions().mode() & 0o7777;
            let seen = if md.is_dir() {
                dirs.push(rel.clone());
                Seen::Dir {
                    mode,
                    state: state_xattr(&p)?,
                }
            } else if md.is_file() {
                let state = state_xattr(&p)?;
                let data = if read(&rel, state) {
                    Some(std::fs::read(&p).map_err(|e| format!("read {}: {e}", rel.display()))?)
                } else {
                    None
                };
                Seen::File {
                    mode,
                    size: md.len(),
                    mtime: md.mtime(),
                    data,
                    state,
                }
            } else {
                Seen::Other(format!("{:?}", md.file_type()))
            };
            out.insert(rel, seen);
        }
    }
    Ok(out)
}

/// Differences between what the mount shows and `want`.
fn differences(seen: &BTreeMap<PathBuf, Seen>, want: &Tree) -> Vec<String> {
    let keys: BTreeSet<&PathBuf> = seen.keys().chain(want.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (s, w) = (seen.get(k), want.get(k));
        let ok = match (s, w) {
            (
                Some(Seen::File {
                    mode,
                    size,
                    mtime,
                    data,
                    ..
                }),
                Some(Node::File {
                    mode: m,
                    mtime: t,
                    data: d,
                }),
            ) => {
                mode == m
                    && *size == d.len() as u64
                    && t.is_none_or(|t| t == *mtime)
                    && data.as_ref().is_none_or(|got| got[..] == d[..])
            }
            (Some(Seen::Dir { mode, .. }), Some(Node::Dir { mode: m })) => mode == m,
            _ => false,
        };
        if !ok {
            let bytes = match (s, w) {
                (Some(Seen::File { data: Some(g), .. }), Some(Node::File { data: d, .. }))
                    if g[..] != d[..] =>
                {
                    ", different bytes"
                }
                _ => "",
            };
            out.push(format!(
                "{}: expected {}, found {}{bytes}",
                k.display(),
                w.map_or("nothing".into(), Node::describe),
                s.map_or("nothing".into(), Seen::describe),
            ));
        }
    }
    out
}

/// The state counts of `prjfs status` equal those of the visible items.
fn check_counts(mount: &CliMount, seen: &BTreeMap<PathBuf, Seen>) -> Vec<String> {
    let status = mount.status();
    if let Some(e) = status.get("error") {
        return vec![format!("prjfs status reports an error: {e}")];
    }
    // The state of a file the walk read is read again: reading a placeholder
    // hydrated it. Nothing else changed since the walk.
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for (rel, s) in seen {
        let state = match s {
            Seen::File { data: Some(_), .. } => state_xattr(&mount.root.join(rel)).map(Some),
            _ => Ok(s.state()),
        };
        match state {
            Ok(Some(st)) => *counts.entry(category(st)).or_default() += 1,
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
    }
    failures.extend(
        ["placeholder", "hydrated", "dirty", "full"]
            .iter()
            .filter_map(|cat| {
                let reported = status["states"][cat].as_u64();
                let walked = counts.get(cat).copied().unwrap_or(0);
                (reported != Some(walked)).then(|| {
                    format!(
                        "prjfs status counts {reported:?} {cat} items, the mount shows {walked}"
                    )
                })
            }),
    );
    failures
}

// ---------------------------------------------------------------------------
// The source, mounts and kills

/// The source: `big/` with [`BIG_FILES`] files, `dNN/` with [`DIR_FILES`]
/// files and `sub/` with [`SUB_FILES`]; small files of random bytes, varied
/// modes, distinct mtimes.
fn build_source(source: &Path) -> Tree {
    let mut rng = StdRng::seed_from_u64(77);
    let mut t = Tree::new();
    let mut dirs = vec![(PathBuf::from("big"), BIG_FILES)];
    for d in 0..DIRS {
        let top = PathBuf::from(format!("d{d:02}"));
        dirs.push((top.join("sub"), SUB_FILES));
        dirs.push((top, DIR_FILES));
    }
    dirs.sort();
    let mut n = 0i64;
    for (dir, files) in dirs {
        std::fs::create_dir_all(source.join(&dir)).expect("mkdir source");
        t.insert(dir.clone(), Node::Dir { mode: 0o755 });
        for i in 0..files {
            let rel = dir.join(format!("f{i:04}"));
            let len = if i % 10 == 0 {
                0
            } else {
                rng.random_range(1..PAGE - 1000)
            };
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            let mode = [0o644, 0o600, 0o755, 0o444][i % 4];
            let mtime = 1_600_000_000 + n * 60;
            n += 1;
            let p = source.join(&rel);
            std::fs::write(&p, &data).expect("write source file");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime as u64)))
                .expect("set mtime");
            let node = Node::File {
                mode,
                mtime: Some(mtime),
                data: Arc::new(data),
            };
            t.insert(rel, node);
        }
    }
    t
}

struct Chain<'a> {
    seed: u64,
    source: &'a Path,
    root: PathBuf,
    args: Vec<&'static str>,
    /// The hold hook's FIFO.
    fifo: PathBuf,
    /// The root directory opened before any mount covered it.
    under: File,
}

impl Chain<'_> {
    fn hidden(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/self/fd/{}/.prjfs/{name}",
            self.under.as_raw_fd()
        ))
    }

    /// `prjfs mount` with the hold hook's FIFO in its environment.
    fn mount(&self) -> CliMount {
        let out = Command::new(BIN)
            .arg("mount")
            .args(&self.args)
            .arg(self.source)
            .arg(&self.root)
            .env(HOLD_ENV, &self.fifo)
            .output()
            .expect("running prjfs mount");
        assert!(
            out.status.success(),
            "prjfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = CliMount {
            bin: PathBuf::from(BIN),
            source: self.source.to_path_buf(),
            root: self.root.clone(),
            pid: None,
        };
        m.pid = m.status()["pid"].as_u64().map(|p| p as u32);
        assert!(m.pid.is_some(), "prjfs status gives no pid");
        m
    }

    /// Length of the placeholder log on disk.
    fn log_len(&self) -> u64 {
        std::fs::metadata(self.hidden("placeholders")).map_or(0, |m| m.len())
    }

    /// How many torn-log warnings the daemons of this root logged.
    fn torn_warnings(&self) -> usize {
        let log = std::fs::read_to_string(self.hidden("log/daemon.log")).unwrap_or_default();
        log.matches(TORN_WARNING).count()
    }

    fn tmp_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.hidden("tmp"))
            .expect("read .prjfs/tmp")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// The hold hook's FIFO, opened for reading: the daemon's next batch write
/// stops mid-batch and writes one byte here.
struct Armed(File);

impl Armed {
    fn arm(fifo: &Path) -> Armed {
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .expect("open the hold FIFO for reading");
        Armed(f)
    }

    /// The byte saying why the held batch was being written; `None` when
    /// `give_up` says the workload ended first.
    fn wait(&mut self, give_up: &dyn Fn() -> bool) -> Option<u8> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n > 0 && pfd.revents & libc::POLLIN != 0 {
                let mut b = [0u8; 1];
                if self.0.read(&mut b).expect("read the hold FIFO") == 1 {
                    return Some(b[0]);
                }
            }
            if give_up() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "no batch write reached the hold in 60 s"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The test

#[derive(Default)]
struct Stats {
    iterations: usize,
    ops: usize,
    /// Kills that landed with log entries pending, by how that is known.
    pending_hits: usize,
    hold_hits: usize,
    /// Pending iterations where a batch was written between the status answer
    /// and the kill.
    flushed_between: usize,
    /// Entries the pending hits lost, at least.
    entries_lost: u64,
    /// Held batch writes by why they were written.
    held_for: BTreeMap<char, usize>,
    inflight: BTreeMap<&'static str, usize>,
    resolved: BTreeMap<String, usize>,
    torn_after_pending: usize,
    files_read: usize,
    leftovers: usize,
}

/// Prints where a panic happened.
struct OnPanic(String);

impl Drop for OnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILED at {}", self.0);
        }
    }
}

fn sampled(rel: &Path, salt: u64) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (rel, salt).hash(&mut h);
    h.finish() % 100 < SAMPLE_PERCENT
}

/// How the kill of one iteration is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// Right after a status answer with entries pending.
    Pending,
    /// With the log writer held mid-batch.
    Hold,
    /// The same, the workload restricted to listings, lookups and opens
    /// before the hold is armed: the held batch is the flusher's.
    HoldTick,
}

/// One crash: run the workload on `mount`, kill at the condition, remount,
/// check. Returns the new mount.
#[allow(clippy::too_many_arguments)]
fn crash_iteration(
    chain: &Chain<'_>,
    iteration: usize,
    mount: CliMount,
    worker: &mut Option<Worker>,
    rng: &mut StdRng,
    how: Kill,
    stats: &mut Stats,
) -> CliMount {
    let started = Instant::now();
    let _context = OnPanic(format!(
        "seed {} iteration {iteration} ({how:?}); rerun: PRJFS_BATCH_SEED={} PRJFS_BATCH_ITERS={} PRJFS_BATCH_CHAIN={}",
        chain.seed,
        chain.seed,
        iteration + 1,
        iteration + 1
    ));
    let pid = mount.pid.expect("daemon pid");
    let warnings_before = chain.torn_warnings();
    let mut w = worker.take().expect("the worker");
    w.rng = StdRng::seed_from_u64(rng.random());
    // Operations acknowledged before the kill condition is looked at.
    let warmup = rng.random_range(1..=12);
    let signals = Arc::new(Signals::default());
    let killed = &signals.killed;
    let progress = Arc::new(Progress::default());
    let handle = {
        let (root, signals, progress) = (mount.root.clone(), signals.clone(), progress.clone());
        std::thread::spawn(move || run_worker(w, root, signals, progress))
    };
    // The worker ends early only by a failure: then the kill comes at once.
    progress.wait_for(warmup);
    // What decides the kill: (entries pending, log length) of a status answer,
    // or the byte of a held batch write.
    let mut snapshot = None;
    let mut held = None;
    match how {
        Kill::Pending => {
            while !progress.ended() {
                let s = mount.status();
                let log = &s["placeholder_log"];
                let pending = log["pending_entries"].as_u64().expect("pending_entries");
                if pending > 0 {
                    killed.store(true, Ordering::SeqCst);
                    kill(pid);
                    snapshot = Some((pending, log["log_bytes"].as_u64().expect("log_bytes")));
                    break;
                }
            }
        }
        Kill::Hold | Kill::HoldTick => {
            if how == Kill::HoldTick {
                // The operation in flight may still force a batch; once it is
                // done, the next ones leave theirs to the flusher's tick.
                signals.only_records.store(true, Ordering::SeqCst);
                progress.wait_for(progress.done() + 1);
            }
            let mut armed = Armed::arm(&chain.fifo);
            held = armed.wait(&|| progress.ended());
            if held.is_some() {
                killed.store(true, Ordering::SeqCst);
                kill(pid);
            }
        }
    }
    if !killed.load(Ordering::SeqCst) {
        // The worker failed while the daemon was alive: kill it all the same
        // and report the worker's failure below.
        killed.store(true, Ordering::SeqCst);
        kill(pid);
    }
    wait_gone(pid);
    let (w, outcome) = handle.join().expect("worker panicked");
    stats.ops += outcome.ops;
    let log_after = chain.log_len();
    let mut landed_pending = false;
    let mut batch_cut = false;
    match (snapshot, held) {
        (Some((pending, log_bytes)), _) => {
            if log_after == log_bytes {
                landed_pending = true;
                stats.pending_hits += 1;
                stats.entries_lost += pending;
            } else {
                stats.flushed_between += 1;
                batch_cut = true;
            }
        }
        (_, Some(b)) => {
            landed_pending = true;
            stats.hold_hits += 1;
            *stats.held_for.entry(b as char).or_default() += 1;
        }
        _ => {}
    }
    let leftovers = chain.tmp_entries();
    if !leftovers.is_empty() {
        stats.leftovers += 1;
    }

    // The next mount removes the stale one; the dead daemon's guard has
    // nothing left to clean up (dropping it would unmount the new mount).
    let new = chain.mount();
    std::mem::forget(mount);

    let mut failures = Vec::new();
    if let Some(e) = &outcome.error {
        failures.push(format!("worker: {e}"));
    }
    let torn = chain.torn_warnings() - warnings_before;
    match (held.is_some(), batch_cut, torn) {
        (true, _, 1) | (false, _, 0) => {}
        (false, true, 1) => stats.torn_after_pending += 1,
        _ => failures.push(format!(
            "the remount logged {torn} torn-log warnings (held: {}, a batch written since the status answer: {batch_cut})",
            held.is_some()
        )),
    }
    let touched = outcome
        .inflight
        .as_ref()
        .map(|(op, _, _)| op.paths())
        .unwrap_or_default();
    let salt = chain.seed * 1000 + iteration as u64;
    let read = |rel: &Path, state: u32| {
        is_local(state) || touched.iter().any(|t| rel.starts_with(t)) || sampled(rel, salt)
    };
    let mut tree = w.tree.clone();
    let mut summary = String::from("no operation in flight");
    match observe(&new.root, &read) {
        Err(e) => failures.push(format!("after the remount: {e}")),
        Ok(mut seen) => {
            let cands = match &outcome.inflight {
                Some((op, acked, _)) => candidates(&w.tree, op, *acked),
                None => vec![("the model".to_string(), w.tree.clone())],
            };
            let mut misses = Vec::new();
            let mut found = None;
            for (label, t) in cands {
                let d = differences(&seen, &t);
                if d.is_empty() {
                    found = Some((label, t));
                    break;
                }
                misses.push((label, d));
            }
            if let Some((op, acked, e)) = &outcome.inflight {
                *stats.inflight.entry(op.kind()).or_default() += 1;
                summary = format!("{} after {acked} calls ({e})", op.kind());
            }
            match found {
                Some((label, t)) => {
                    if let Some((op, _, _)) = &outcome.inflight {
                        *stats
                            .resolved
                            .entry(format!("{}: {label}", op.kind()))
                            .or_default() += 1;
                        summary += &format!(": {label}");
                    }
                    tree = t;
                    // Both names are links to one inode: drop the old one,
                    // which the model cannot express.
                    if let Some((Op::RenameFile { from, .. }, _, _)) = &outcome.inflight {
                        if label.contains("both names") {
                            std::fs::remove_file(new.root.join(from))
                                .unwrap_or_else(|e| panic!("unlink {}: {e}", from.display()));
                            seen.remove(from);
                            tree.remove(from);
                        }
                    }
                    stats.files_read += seen
                        .values()
                        .filter(|s| matches!(s, Seen::File { data: Some(_), .. }))
                        .count();
                }
                None => {
                    let what = outcome
                        .inflight
                        .as_ref()
                        .map_or("nothing".into(), |(op, acked, e)| {
                            format!("{op:?} after {acked} calls ({e})")
                        });
                    let mut msg = format!(
                        "after the crash the mount matches none of the allowed states.\n  in flight: {what}\n"
                    );
                    for (label, d) in misses {
                        msg += &format!("  vs {label}: {} differences\n", d.len());
                        for line in d.iter().take(10) {
                            msg += &format!("      {line}\n");
                        }
                    }
                    failures.push(msg);
                }
            }
            failures.extend(check_counts(&new, &seen));
        }
    }
    if !failures.is_empty() {
        panic!(
            "seed {} iteration {iteration} ({how:?}, held {held:?}, landed with entries pending: {landed_pending}, {} items in .prjfs/tmp):\n{}",
            chain.seed,
            leftovers.len(),
            failures.join("\n"),
        );
    }
    eprintln!(
        "seed {} iteration {iteration}: {how:?}, {} ops, entries pending at the kill: {landed_pending}{}; {summary}; {:?}",
        chain.seed,
        outcome.ops,
        held.map_or(String::new(), |b| format!(" (held a '{}' batch)", b as char)),
        started.elapsed()
    );
    *worker = Some(Worker { tree, ..w });
    stats.iterations += 1;
    new
}

fn run_chain(dir: &Path, source: &Path, initial: &Tree, seed: u64, n: usize, stats: &mut Stats) {
    let root = dir.join(format!("root{seed}"));
    std::fs::create_dir(&root).expect("mkdir root");
    let fifo = dir.join(format!("hold{seed}.fifo"));
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let under = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&root)
        .expect("open root");
    let chain = Chain {
        seed,
        source,
        root: std::path::absolute(&root).expect("absolute root"),
        // Callbacks answered inline, or pended and completed by the provider's
        // workers.
        args: if seed % 2 == 1 {
            vec![]
        } else {
            vec!["--async"]
        },
        fifo,
        under,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mount = chain.mount();
    let mut worker = Some(Worker {
        tree: initial.clone(),
        rng: StdRng::seed_from_u64(0),
        next_name: 0,
    });
    for i in 0..n {
        // Starting with a hold: every chain hits the window.
        let how = [Kill::Hold, Kill::Pending, Kill::HoldTick, Kill::Pending][i % 4];
        mount = crash_iteration(&chain, i, mount, &mut worker, &mut rng, how, stats);
    }
    mount.unmount();
    let left = chain.tmp_entries();
    assert!(
        left.is_empty(),
        "seed {seed}: .prjfs/tmp holds {left:?} after a clean unmount"
    );
    // The compacted log is whole: a clean mount replays it without a torn
    // entry and shows the same tree.
    let warnings = chain.torn_warnings();
    let again = chain.mount();
    let seen = observe(&again.root, &|_, _| false).expect("walk after a clean remount");
    let tree = worker.expect("the worker").tree;
    let d = differences(&seen, &tree);
    assert!(
        d.is_empty(),
        "seed {seed}: after a clean unmount and mount: {d:#?}"
    );
    assert_eq!(
        chain.torn_warnings(),
        warnings,
        "seed {seed}: a clean mount found a torn placeholder log"
    );
    again.unmount();
    // Long runs (PRJFS_BATCH_ITERS) keep one root at a time on disk.
    drop(chain);
    std::fs::remove_dir_all(&root).expect("remove the chain's root");
}

/// SIGKILL the daemon while placeholder records wait for their batch, and
/// while a batch is being written; after each remount the mount shows exactly
/// what the client did and, elsewhere, exactly the provider's projection.
#[test]
fn sigkill_with_placeholder_records_pending_loses_only_projections() {
    if !mount_available() {
        return;
    }
    // Modes of created files are 0644 in the model.
    // SAFETY: umask(2) has no memory effects.
    unsafe { libc::umask(0o022) };
    let iterations = env_num("PRJFS_BATCH_ITERS", 12) as usize;
    let chain_len = env_num("PRJFS_BATCH_CHAIN", 4).max(1) as usize;
    let base = env_num("PRJFS_BATCH_SEED", 1);
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("source");
    let initial = build_source(&source);
    let mut stats = Stats::default();
    let (mut done, mut seed) = (0, base);
    while done < iterations {
        let n = chain_len.min(iterations - done);
        run_chain(tmp.path(), &source, &initial, seed, n, &mut stats);
        done += n;
        seed += 1;
    }
    eprintln!(
        "{} kills in {:?}: {} operations acknowledged; kills with log entries pending: {} (held mid-batch: {}, by why the batch was written: {:?}; after a status answer, no batch written before the kill: {}, losing at least {} entries); status answers followed by a batch write before the kill: {} ({} of them cut it); in flight: {:?}; found in: {:?}; {} files read in checks; {} kills left .prjfs/tmp items",
        stats.iterations,
        started.elapsed(),
        stats.ops,
        stats.hold_hits + stats.pending_hits,
        stats.hold_hits,
        stats.held_for,
        stats.pending_hits,
        stats.entries_lost,
        stats.flushed_between,
        stats.torn_after_pending,
        stats.inflight,
        stats.resolved,
        stats.files_read,
        stats.leftovers,
    );
    assert!(
        stats.hold_hits + stats.pending_hits > 0,
        "no kill landed with placeholder log entries pending"
    );
}

/// The checker itself, without a mount.
#[test]
fn model_allows_exactly_the_documented_states() {
    let p = PathBuf::from;
    let file = |d: &[u8]| Node::File {
        mode: 0o644,
        mtime: Some(5),
        data: Arc::new(d.to_vec()),
    };
    let mut t = Tree::new();
    t.insert(p("a"), Node::Dir { mode: 0o755 });
    t.insert(p("a/x"), file(b"x"));
    t.insert(p("b"), Node::Dir { mode: 0o700 });
    t.insert(p("b/y"), file(b"y"));
    t.insert(p("b/y/z"), file(b"z"));
    let e = exchanged(&t, Path::new("a"), Path::new("b"));
    assert_eq!(e[&p("a")], Node::Dir { mode: 0o700 });
    assert_eq!(e[&p("b/x")], file(b"x"));
    assert_eq!(e[&p("a/y/z")], file(b"z"));
    assert_eq!(e.len(), t.len());
    let m = moved(&t, Path::new("b"), Path::new("a/b2"));
    assert!(m.contains_key(&p("a/b2/y/z")) && !m.contains_key(&p("b")));

    let r = Op::RenameFile {
        from: p("a/x"),
        to: p("a/w"),
    };
    let labels: Vec<String> = candidates(&t, &r, 0).into_iter().map(|c| c.0).collect();
    assert_eq!(
        labels,
        [
            "before the operation",
            "during call 1: both names",
            "after call 1: in flight"
        ]
    );
    let c = Op::Create {
        path: p("a/n"),
        data: b"new".to_vec(),
    };
    let after_open = candidates(&t, &c, 1);
    assert_eq!(after_open.len(), 2);
    assert_eq!(after_open[0].1[&p("a/n")], {
        let mut f = file(b"");
        if let Node::File { mtime, .. } = &mut f {
            *mtime = None;
        }
        f
    });
    // A read changes nothing: only the model is allowed.
    let read = Op::Read { path: p("a/x") };
    let c = candidates(&t, &read, 0);
    assert!(c.iter().all(|(_, tree)| *tree == t));
}
