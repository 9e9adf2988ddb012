//! Crash test of a mounted projection (issue 3, crash safety; design decision 3).
//!
//! A source tree (a few hundred small files, symlinks, an empty directory and a
//! few 1-4 MiB files of random bytes) is projected with `prjfs mount`. Worker
//! threads of this process drive the mount with std::fs: they hydrate files
//! (whole reads and 4 KiB head reads), create files with known content (fsyncing
//! half of them), overwrite and append to files (projected ones included), truncate
//! them, replace their content (`O_TRUNC`), rename files, placeholders and
//! directories (to new names, over files, over empty directories, onto
//! tombstones), unlink, mkdir, chmod, symlink and remove whole subtrees. Each
//! worker owns one top-level directory of the source (`w0`, `w1`, ...), so the
//! workers' operations commute and each keeps an exact model of its subtree: every
//! path's kind, mode, symlink target and file bytes, and which files' current
//! content was acknowledged by `fsync`.
//!
//! At a random moment (5-300 ms in, from the seeded RNG) the daemon (its pid from
//! `prjfs status --json`) gets SIGKILL. The workers' calls then fail
//! (ECONNABORTED for calls in flight, ENOTCONN for later ones);
//! each worker stops with one operation in flight and knows how many of that
//! operation's system calls were acknowledged. The test peeks at the layer's
//! `.prjfs/tmp` under the mount (through a directory fd opened before mounting) to
//! see what the kill interrupted, runs `prjfs mount` on the same root again (which
//! removes the stale mount) and compares each worker's subtree with the allowed
//! states:
//!
//! * Every acknowledged system call is durable: the mount negotiates no writeback
//!   cache, so a `write` returns only once the bytes are in the layer's file
//!   (written by the daemon, or by the kernel through passthrough), and a rename,
//!   create or unlink only after the layer renamed; a daemon crash (not a power
//!   cut) must not lose any of them, fsynced or not. Files whose content was
//!   acknowledged by `fsync` are counted and marked in failure messages.
//! * The system call in flight left its target in its old or its new state. The
//!   only finer grain allowed is a write torn at a page boundary (a killed
//!   `pwrite` into the layer stops between pages, as on any local file system),
//!   and the two intermediate states the layer documents for renames: a file
//!   renamed out of a projected directory briefly has both names (hard links),
//!   and a directory replacing an empty directory briefly leaves the target absent.
//! * Whole subtrees must match one allowed state: a directory rename never leaves
//!   some children behind.
//! * Every file that is local (state not a bare placeholder), every path the
//!   in-flight operation touched, and a sample of the placeholders are read in full
//!   and must equal the model byte for byte (source bytes for projected files that
//!   were never written: a file marked hydrated never holds partial data, and a
//!   renamed placeholder still hydrates from its origin). The others are compared by
//!   kind, mode and size; the last iteration of a chain reads everything.
//! * `prjfs status` and `prjfs state` answer; the state counts of `status` equal
//!   the states of the visible items (`user.prjfs.state`, and `prjfs state` for
//!   symlinks), and `prjfs state` agrees with the xattr.
//!
//! Iterations run in chains: a chain starts on an empty root, and each further
//! iteration continues on the root the previous crash left (after the remount
//! and check), so remounting after a crash is exercised repeatedly. A chain ends
//! with a full read, a clean unmount and an empty `.prjfs/tmp`.
//!
//! Environment: `PRJFS_CRASH_ITERS` (iterations, default 25), `PRJFS_CRASH_CHAIN`
//! (iterations per chain, default 5), `PRJFS_CRASH_SEED` (seed of the first chain,
//! default 1; chain `c` uses seed + c). A failure names the chain's seed and the
//! iteration; `PRJFS_CRASH_SEED=<seed> PRJFS_CRASH_ITERS=<chain length>` reruns
//! that chain (the operation sequence is seeded; where the kill lands within it
//! depends on timing).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prjfs_testkit::{eventually, make_tree, mount_available, CliMount, TreeSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "common/crash_probe.rs"]
mod crash_probe;
use crash_probe::{category, env_num, is_local, kill, state_xattr, wait_gone, STATE_XATTR};

const BIN: &str = env!("CARGO_BIN_EXE_prjfs");
/// Worker threads, each owning the source's top-level directory `w<k>`.
const WORKERS: usize = 3;
const PAGE: u64 = 4096;
/// Percentage of bare placeholders a (non-final) check reads.
const SAMPLE_PERCENT: u64 = 15;
/// Files of 1-4 MiB per worker.
const LARGE_FILES: usize = 4;

// ---------------------------------------------------------------------------
// The model

/// File bytes, printed by length and hash.
#[derive(Clone, PartialEq, Eq)]
struct Data(Arc<Vec<u8>>);

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes #{}>", self.0.len(), short_hash(&self.0))
    }
}

fn short_hash(b: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// What a path should hold.
#[derive(Clone, Debug)]
enum Node {
    File {
        mode: u32,
        data: Data,
        /// The current content was acknowledged by fsync.
        synced: bool,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

impl Node {
    fn file(mode: u32, data: Vec<u8>) -> Node {
        Node::File {
            mode,
            data: Data(Arc::new(data)),
            synced: false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Node::File { mode, data, synced } => format!(
                "file {mode:04o} {data:?}{}",
                if *synced { " (fsynced)" } else { "" }
            ),
            Node::Dir { mode } => format!("dir {mode:04o}"),
            Node::Symlink { target } => format!("symlink -> {}", target.display()),
        }
    }
}

/// One worker's subtree: paths relative to the mount root (`w<k>/...`).
type Tree = BTreeMap<PathBuf, Node>;

/// Paths of `t` at or under `top` (contiguous: `Path` orders by component).
fn subtree(t: &Tree, top: &Path) -> Vec<PathBuf> {
    t.range(top.to_path_buf()..)
        .take_while(|(k, _)| k.starts_with(top))
        .map(|(k, _)| k.clone())
        .collect()
}

fn move_subtree(t: &mut Tree, from: &Path, to: &Path) {
    for p in subtree(t, from) {
        let node = t.remove(&p).expect("listed");
        let rest = p.strip_prefix(from).expect("under from");
        let q = if rest.as_os_str().is_empty() {
            to.to_path_buf()
        } else {
            to.join(rest)
        };
        t.insert(q, node);
    }
}

fn file_of(t: &Tree, p: &Path) -> (u32, Arc<Vec<u8>>) {
    match t.get(p) {
        Some(Node::File { mode, data, .. }) => (*mode, data.0.clone()),
        other => panic!("model: {} is not a file: {other:?}", p.display()),
    }
}

/// `base` with `data` written at `off` (a hole before it reads as zeros).
fn written(base: &[u8], off: u64, data: &[u8]) -> Vec<u8> {
    let off = off as usize;
    let mut v = base.to_vec();
    if v.len() < off + data.len() {
        v.resize(off + data.len(), 0);
    }
    v[off..off + data.len()].copy_from_slice(data);
    v
}

fn resized(base: &[u8], len: u64) -> Vec<u8> {
    let mut v = base.to_vec();
    v.resize(len as usize, 0);
    v
}

/// A write in flight: the file may hold `base` with any page-aligned prefix of
/// `data` written at `off`.
#[derive(Clone, Debug)]
struct Torn {
    path: PathBuf,
    mode: u32,
    base: Arc<Vec<u8>>,
    off: u64,
    data: Arc<Vec<u8>>,
}

impl Torn {
    /// End offsets of the torn prefixes: page boundaries strictly inside the write.
    fn cuts(&self) -> Vec<u64> {
        let end = self.off + self.data.len() as u64;
        let first = (self.off / PAGE + 1) * PAGE;
        (0..)
            .map(|i| first + i * PAGE)
            .take_while(|&c| c < end)
            .collect()
    }

    fn len_at(&self, cut: u64) -> u64 {
        (self.base.len() as u64).max(cut)
    }

    fn content_at(&self, cut: u64) -> Vec<u8> {
        written(
            &self.base,
            self.off,
            &self.data[..(cut - self.off) as usize],
        )
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Read the whole file (`head`: only its first 4 KiB; either hydrates it).
    Read {
        path: PathBuf,
        head: bool,
    },
    /// open(O_CREAT|O_EXCL), write, [fsync].
    Create {
        path: PathBuf,
        data: Data,
        fsync: bool,
    },
    /// open(O_WRONLY [|O_APPEND]), pwrite at `off` (for append: the size), [fsync].
    Write {
        path: PathBuf,
        off: u64,
        data: Data,
        fsync: bool,
        append: bool,
    },
    /// open(O_WRONLY), ftruncate.
    Truncate {
        path: PathBuf,
        len: u64,
    },
    /// open(O_WRONLY|O_TRUNC), write, [fsync].
    Replace {
        path: PathBuf,
        data: Data,
        fsync: bool,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    Unlink {
        path: PathBuf,
    },
    Mkdir {
        path: PathBuf,
    },
    /// unlink/rmdir of every entry of a subtree, deepest first, then the directory.
    RemoveTree {
        path: PathBuf,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Read { head: false, .. } => "read",
            Op::Read { head: true, .. } => "read-head",
            Op::Create { .. } => "create",
            Op::Write { append: false, .. } => "write",
            Op::Write { append: true, .. } => "append",
            Op::Truncate { .. } => "truncate",
            Op::Replace { .. } => "replace",
            Op::Rename { .. } => "rename",
            Op::Unlink { .. } => "unlink",
            Op::Mkdir { .. } => "mkdir",
            Op::RemoveTree { .. } => "remove-tree",
            Op::Chmod { .. } => "chmod",
            Op::Symlink { .. } => "symlink",
        }
    }
}

/// One acknowledged system call of an operation: the state after it, and what
/// else may be seen while it is in flight.
struct Step {
    name: &'static str,
    /// The path, when the operation has several steps of one name.
    detail: String,
    after: Tree,
    /// Documented intermediate states while the call is in flight.
    between: Vec<(String, Tree)>,
    /// A write that may be torn at page boundaries (`after` holds it whole).
    torn: Option<Torn>,
}

impl Step {
    fn new(name: &'static str, after: Tree) -> Step {
        Step {
            name,
            detail: String::new(),
            after,
            between: Vec::new(),
            torn: None,
        }
    }
}

/// The system calls of `op` applied to `t`, one step each.
fn plan(t: &Tree, op: &Op) -> Vec<Step> {
    let mut steps = Vec::new();
    let with = |t: &Tree, p: &Path, n: Node| {
        let mut a = t.clone();
        a.insert(p.to_path_buf(), n);
        a
    };
    let synced = |t: &Tree, p: &Path| {
        let mut a = t.clone();
        if let Some(Node::File { synced, .. }) = a.get_mut(p) {
            *synced = true;
        }
        a
    };
    match op {
        Op::Read { .. } => steps.push(Step::new("read", t.clone())),
        Op::Create { path, data, fsync } => {
            let empty = with(t, path, Node::file(0o644, Vec::new()));
            steps.push(Step::new("open(O_CREAT)", empty));
            let mut s = Step::new("write", with(t, path, Node::file(0o644, data.0.to_vec())));
            s.torn = Some(Torn {
                path: path.clone(),
                mode: 0o644,
                base: Arc::new(Vec::new()),
                off: 0,
                data: data.0.clone(),
            });
            steps.push(s);
            if *fsync {
                let a = synced(&steps[1].after, path);
                steps.push(Step::new("fsync", a));
            }
        }
        Op::Write {
            path,
            off,
            data,
            fsync,
            ..
        } => {
            let (mode, base) = file_of(t, path);
            steps.push(Step::new("open(O_WRONLY)", t.clone()));
            let mut s = Step::new(
                "write",
                with(t, path, Node::file(mode, written(&base, *off, &data.0))),
            );
            s.torn = Some(Torn {
                path: path.clone(),
                mode,
                base,
                off: *off,
                data: data.0.clone(),
            });
            steps.push(s);
            if *fsync {
                let a = synced(&steps[1].after, path);
                steps.push(Step::new("fsync", a));
            }
        }
        Op::Truncate { path, len } => {
            let (mode, base) = file_of(t, path);
            steps.push(Step::new("open(O_WRONLY)", t.clone()));
            steps.push(Step::new(
                "ftruncate",
                with(t, path, Node::file(mode, resized(&base, *len))),
            ));
        }
        Op::Replace { path, data, fsync } => {
            let (mode, _) = file_of(t, path);
            let empty = with(t, path, Node::file(mode, Vec::new()));
            steps.push(Step::new("open(O_TRUNC)", empty));
            let mut s = Step::new("write", with(t, path, Node::file(mode, data.0.to_vec())));
            s.torn = Some(Torn {
                path: path.clone(),
                mode,
                base: Arc::new(Vec::new()),
                off: 0,
                data: data.0.clone(),
            });
            steps.push(s);
            if *fsync {
                let a = synced(&steps[1].after, path);
                steps.push(Step::new("fsync", a));
            }
        }
        Op::Rename { from, to } => {
            let mut after = t.clone();
            let mut between = Vec::new();
            if let Some(Node::Dir { .. }) = t.get(from) {
                if t.contains_key(to) {
                    // Replacing an (empty) directory: the layer first swaps a
                    // tombstone in for it (documented in layer/rename.rs).
                    let mut gone = t.clone();
                    gone.remove(to);
                    between.push((
                        "target directory removed, source not moved yet".into(),
                        gone,
                    ));
                }
                after.remove(to);
                move_subtree(&mut after, from, to);
            } else {
                // Out of a projected directory the file first gets its new name as
                // a hard link, then a tombstone replaces the old name.
                let node = after.remove(from).expect("from exists");
                between.push((
                    "both names (new one linked, old not yet replaced)".into(),
                    {
                        let mut both = t.clone();
                        both.insert(to.clone(), node.clone());
                        both
                    },
                ));
                after.insert(to.clone(), node);
            }
            let mut s = Step::new("rename", after);
            s.between = between;
            steps.push(s);
        }
        Op::Unlink { path } => {
            let mut a = t.clone();
            a.remove(path);
            steps.push(Step::new("unlink", a));
        }
        Op::Mkdir { path } => {
            steps.push(Step::new("mkdir", with(t, path, Node::Dir { mode: 0o755 })))
        }
        Op::RemoveTree { path } => {
            let mut a = t.clone();
            for p in subtree(t, path).into_iter().rev() {
                let is_dir = matches!(a.get(&p), Some(Node::Dir { .. }));
                a.remove(&p);
                let mut s = Step::new(if is_dir { "rmdir" } else { "unlink" }, a.clone());
                s.detail = format!(" {}", p.display());
                steps.push(s);
            }
        }
        Op::Chmod { path, mode } => {
            let mut a = t.clone();
            match a.get_mut(path) {
                Some(Node::File { mode: m, .. }) | Some(Node::Dir { mode: m }) => *m = *mode,
                other => panic!("model: chmod of {other:?}"),
            }
            steps.push(Step::new("chmod", a));
        }
        Op::Symlink { path, target } => steps.push(Step::new(
            "symlink",
            with(
                t,
                path,
                Node::Symlink {
                    target: target.clone(),
                },
            ),
        )),
    }
    steps
}

/// The tree after `op` completed.
fn apply(t: &Tree, op: &Op) -> Tree {
    plan(t, op).pop().expect("at least one step").after
}

/// Paths the operation may change (with everything under them).
fn op_paths(op: &Op) -> Vec<PathBuf> {
    match op {
        Op::Rename { from, to } => vec![from.clone(), to.clone()],
        Op::Read { path, .. }
        | Op::Create { path, .. }
        | Op::Write { path, .. }
        | Op::Truncate { path, .. }
        | Op::Replace { path, .. }
        | Op::Unlink { path }
        | Op::Mkdir { path }
        | Op::RemoveTree { path }
        | Op::Chmod { path, .. }
        | Op::Symlink { path, .. } => vec![path.clone()],
    }
}

// ---------------------------------------------------------------------------
// The workload

struct Worker {
    top: PathBuf,
    tree: Tree,
    rng: StdRng,
    next_name: u64,
    /// Recently removed names: creating there again replaces a tombstone.
    removed: Vec<PathBuf>,
}

/// How a worker's run ended.
struct Outcome {
    ops: usize,
    /// The operation the kill interrupted, the number of its system calls that
    /// returned, and the error of the one that failed.
    inflight: Option<(Op, usize, std::io::Error)>,
    /// A failure while the daemon was alive (an error, or a read returning wrong
    /// bytes).
    error: Option<String>,
}

fn random_data(rng: &mut StdRng) -> Data {
    let n = match rng.random_range(0..100) {
        0..=49 => rng.random_range(0..PAGE as usize),
        50..=79 => rng.random_range(PAGE as usize..64 * 1024),
        80..=96 => rng.random_range(64 * 1024..400 * 1024),
        _ => rng.random_range(1 << 20..3 << 19),
    };
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    Data(Arc::new(v))
}

impl Worker {
    fn files(&self) -> Vec<PathBuf> {
        self.tree
            .iter()
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.tree
            .iter()
            .filter(|(_, n)| matches!(n, Node::Dir { .. }))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn nondirs(&self) -> Vec<PathBuf> {
        self.tree
            .iter()
            .filter(|(_, n)| !matches!(n, Node::Dir { .. }))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn size(&self, p: &Path) -> u64 {
        file_of(&self.tree, p).1.len() as u64
    }

    /// A name nothing is at, in one of `dirs`: sometimes a recently removed one.
    fn new_path(&mut self, dirs: &[PathBuf]) -> PathBuf {
        if !self.removed.is_empty() && self.rng.random_bool(0.3) {
            let p = self.removed[self.rng.random_range(0..self.removed.len())].clone();
            let parent_ok = p.parent().is_some_and(|d| dirs.iter().any(|x| x == d));
            if parent_ok && !self.tree.contains_key(&p) {
                return p;
            }
        }
        let d = dirs[self.rng.random_range(0..dirs.len())].clone();
        self.next_name += 1;
        d.join(format!("n{}", self.next_name))
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.rng.random_range(0..v.len())].clone()
    }

    /// A file to read: mostly one that still needs hydration, so that kills
    /// land in hydrations.
    fn pick_to_read(&mut self, root: &Path, files: &[PathBuf]) -> PathBuf {
        let mut f = self.pick(files);
        if self.rng.random_bool(0.75) {
            for _ in 0..8 {
                if state_xattr(&root.join(&f)).is_ok_and(|s| !is_local(s)) {
                    break;
                }
                f = self.pick(files);
            }
        }
        f
    }

    fn next_op(&mut self, root: &Path) -> Op {
        let files = self.files();
        let dirs = self.dirs();
        let nondirs = self.nondirs();
        let sub_dirs: Vec<PathBuf> = dirs.iter().filter(|d| **d != self.top).cloned().collect();
        loop {
            let k = self.rng.random_range(0..100);
            let op = match k {
                0..=17 if !files.is_empty() => Op::Read {
                    path: self.pick_to_read(root, &files),
                    head: false,
                },
                18..=21 if !files.is_empty() => Op::Read {
                    path: self.pick_to_read(root, &files),
                    head: true,
                },
                22..=34 => Op::Create {
                    path: self.new_path(&dirs),
                    data: random_data(&mut self.rng),
                    fsync: self.rng.random_bool(0.5),
                },
                35..=46 if !files.is_empty() => {
                    let path = self.pick(&files);
                    let size = self.size(&path);
                    let off = if self.rng.random_bool(0.1) {
                        size + self.rng.random_range(0..2 * PAGE)
                    } else {
                        self.rng.random_range(0..=size)
                    };
                    let n = self.rng.random_range(1..=3 * PAGE as usize);
                    let mut v = vec![0u8; n];
                    self.rng.fill(&mut v[..]);
                    Op::Write {
                        path,
                        off,
                        data: Data(Arc::new(v)),
                        fsync: self.rng.random_bool(0.3),
                        append: false,
                    }
                }
                47..=50 if !files.is_empty() => {
                    let path = self.pick(&files);
                    let off = self.size(&path);
                    let n = self.rng.random_range(1..=2 * PAGE as usize);
                    let mut v = vec![0u8; n];
                    self.rng.fill(&mut v[..]);
                    Op::Write {
                        path,
                        off,
                        data: Data(Arc::new(v)),
                        fsync: self.rng.random_bool(0.3),
                        append: true,
                    }
                }
                51..=55 if !files.is_empty() => {
                    let path = self.pick(&files);
                    let size = self.size(&path);
                    let len = if self.rng.random_bool(0.2) {
                        0
                    } else {
                        self.rng.random_range(0..=size + 2 * PAGE)
                    };
                    Op::Truncate { path, len }
                }
                56..=59 if !files.is_empty() => Op::Replace {
                    path: self.pick(&files),
                    data: random_data(&mut self.rng),
                    fsync: self.rng.random_bool(0.5),
                },
                60..=70 if !nondirs.is_empty() => {
                    let from = self.pick(&nondirs);
                    let others: Vec<PathBuf> =
                        files.iter().filter(|f| **f != from).cloned().collect();
                    let to = if !others.is_empty() && self.rng.random_bool(0.25) {
                        self.pick(&others)
                    } else {
                        self.new_path(&dirs)
                    };
                    Op::Rename { from, to }
                }
                71..=75 if !sub_dirs.is_empty() => {
                    let from = self.pick(&sub_dirs);
                    let outside: Vec<PathBuf> = dirs
                        .iter()
                        .filter(|d| !d.starts_with(&from))
                        .cloned()
                        .collect();
                    let empty: Vec<PathBuf> = sub_dirs
                        .iter()
                        .filter(|d| !d.starts_with(&from) && subtree(&self.tree, d).len() == 1)
                        .cloned()
                        .collect();
                    if outside.is_empty() {
                        continue;
                    }
                    let to = if !empty.is_empty() && self.rng.random_bool(0.25) {
                        self.pick(&empty)
                    } else {
                        self.new_path(&outside)
                    };
                    if to.starts_with(&from) {
                        continue;
                    }
                    Op::Rename { from, to }
                }
                76..=83 if !nondirs.is_empty() => Op::Unlink {
                    path: self.pick(&nondirs),
                },
                84..=87 => Op::Mkdir {
                    path: self.new_path(&dirs),
                },
                88..=89 => {
                    let small: Vec<PathBuf> = sub_dirs
                        .iter()
                        .filter(|d| subtree(&self.tree, d).len() <= 12)
                        .cloned()
                        .collect();
                    if small.is_empty() {
                        continue;
                    }
                    Op::RemoveTree {
                        path: self.pick(&small),
                    }
                }
                90..=94 => {
                    let path = if self.rng.random_bool(0.7) && !files.is_empty() {
                        self.pick(&files)
                    } else if !sub_dirs.is_empty() {
                        self.pick(&sub_dirs)
                    } else {
                        continue;
                    };
                    let mode = if matches!(self.tree.get(&path), Some(Node::Dir { .. })) {
                        self.pick(&[0o755, 0o700, 0o750])
                    } else {
                        self.pick(&[0o644, 0o600, 0o755, 0o444, 0o640])
                    };
                    Op::Chmod { path, mode }
                }
                95..=97 => {
                    let target = PathBuf::from(format!("t{}", self.rng.random_range(0..100)));
                    Op::Symlink {
                        path: self.new_path(&dirs),
                        target,
                    }
                }
                _ => continue,
            };
            return op;
        }
    }

    fn remember_removed(&mut self, op: &Op) {
        let gone = match op {
            Op::Unlink { path } | Op::RemoveTree { path } => path.clone(),
            Op::Rename { from, .. } => from.clone(),
            _ => return,
        };
        self.removed.push(gone);
        if self.removed.len() > 50 {
            self.removed.remove(0);
        }
    }
}

/// Perform `op` under `root`; `acked` counts the system calls that returned.
/// Returns what a read read.
fn exec(root: &Path, op: &Op, acked: &mut usize) -> std::io::Result<Option<Vec<u8>>> {
    let p = |r: &Path| root.join(r);
    match op {
        Op::Read { path, head } => {
            let data = if *head {
                let mut f = File::open(p(path))?;
                let mut buf = vec![0u8; PAGE as usize];
                let mut n = 0;
                while n < buf.len() {
                    match f.read(&mut buf[n..])? {
                        0 => break,
                        k => n += k,
                    }
                }
                buf.truncate(n);
                buf
            } else {
                std::fs::read(p(path))?
            };
            *acked += 1;
            Ok(Some(data))
        }
        Op::Create { path, data, fsync } => {
            let mut f = File::options().write(true).create_new(true).open(p(path))?;
            *acked += 1;
            f.write_all(&data.0)?;
            *acked += 1;
            if *fsync {
                f.sync_all()?;
                *acked += 1;
            }
            Ok(None)
        }
        Op::Write {
            path,
            off,
            data,
            fsync,
            append,
        } => {
            let mut f = if *append {
                File::options().append(true).open(p(path))?
            } else {
                File::options().write(true).open(p(path))?
            };
            *acked += 1;
            if *append {
                f.write_all(&data.0)?;
            } else {
                f.write_all_at(&data.0, *off)?;
            }
            *acked += 1;
            if *fsync {
                f.sync_all()?;
                *acked += 1;
            }
            Ok(None)
        }
        Op::Truncate { path, len } => {
            let f = File::options().write(true).open(p(path))?;
            *acked += 1;
            f.set_len(*len)?;
            *acked += 1;
            Ok(None)
        }
        Op::Replace { path, data, fsync } => {
            let mut f = File::options().write(true).truncate(true).open(p(path))?;
            *acked += 1;
            f.write_all(&data.0)?;
            *acked += 1;
            if *fsync {
                f.sync_all()?;
                *acked += 1;
            }
            Ok(None)
        }
        Op::Rename { from, to } => {
            std::fs::rename(p(from), p(to))?;
            *acked += 1;
            Ok(None)
        }
        Op::Unlink { path } => {
            std::fs::remove_file(p(path))?;
            *acked += 1;
            Ok(None)
        }
        Op::Mkdir { path } => {
            std::fs::create_dir(p(path))?;
            *acked += 1;
            Ok(None)
        }
        Op::RemoveTree { .. } => unreachable!("exec_remove_tree"),
        Op::Chmod { path, mode } => {
            std::fs::set_permissions(p(path), std::fs::Permissions::from_mode(*mode))?;
            *acked += 1;
            Ok(None)
        }
        Op::Symlink { path, target } => {
            std::os::unix::fs::symlink(target, p(path))?;
            *acked += 1;
            Ok(None)
        }
    }
}

/// `RemoveTree` needs the model (its entries, deepest first).
fn exec_op(root: &Path, t: &Tree, op: &Op, acked: &mut usize) -> std::io::Result<Option<Vec<u8>>> {
    if let Op::RemoveTree { path } = op {
        for q in subtree(t, path).into_iter().rev() {
            if matches!(t.get(&q), Some(Node::Dir { .. })) {
                std::fs::remove_dir(root.join(&q))?;
            } else {
                std::fs::remove_file(root.join(&q))?;
            }
            *acked += 1;
        }
        return Ok(None);
    }
    exec(root, op, acked)
}

fn run_worker(mut w: Worker, root: PathBuf, killed: Arc<AtomicBool>) -> (Worker, Outcome) {
    let mut ops = 0;
    // The worker's last operations, for a read that returns wrong bytes.
    let mut recent: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut killed_at: Option<Instant> = None;
    loop {
        if killed.load(Ordering::SeqCst) {
            let at = *killed_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_secs(10) {
                let error = Some("the workload kept succeeding 10 s after the kill".into());
                return (
                    w,
                    Outcome {
                        ops,
                        inflight: None,
                        error,
                    },
                );
            }
        }
        let op = w.next_op(&root);
        let mut acked = 0;
        match exec_op(&root, &w.tree, &op, &mut acked) {
            Ok(read) => {
                if let (Op::Read { path, head }, Some(got)) = (&op, read) {
                    let (_, want) = file_of(&w.tree, path);
                    let want = if *head {
                        &want[..want.len().min(PAGE as usize)]
                    } else {
                        &want[..]
                    };
                    if got != want {
                        // What the mount says now tells a stale size in the
                        // client's kernel from content the daemon lost.
                        let again = std::fs::read(root.join(path)).map(|d| d == want);
                        let size = std::fs::metadata(root.join(path)).map(|m| m.len());
                        let error = Some(format!(
                            "{op:?} while the daemon was alive read {} bytes #{}, the model holds {} bytes #{}{}; then a second read {} and stat gave {size:?} bytes; the worker's operations before, oldest first:\n  {}",
                            got.len(),
                            short_hash(&got),
                            want.len(),
                            short_hash(want),
                            first_difference(&got, want),
                            match again {
                                Ok(true) => "matched the model".to_string(),
                                Ok(false) => "did not match the model".to_string(),
                                Err(e) => format!("failed: {e}"),
                            },
                            Vec::from(recent).join("\n  ")
                        ));
                        return (
                            w,
                            Outcome {
                                ops,
                                inflight: None,
                                error,
                            },
                        );
                    }
                }
                w.tree = apply(&w.tree, &op);
                w.remember_removed(&op);
                ops += 1;
                if recent.len() == 12 {
                    recent.pop_front();
                }
                recent.push_back(format!("{op:?}"));
            }
            Err(e) => {
                let error = (!killed.load(Ordering::SeqCst)).then(|| {
                    format!(
                        "{op:?} failed while the daemon was alive, after {acked} acknowledged calls: {e}"
                    )
                });
                return (
                    w,
                    Outcome {
                        ops,
                        inflight: Some((op, acked, e)),
                        error,
                    },
                );
            }
        }
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(", first difference at byte {i}"),
        None if a.len() != b.len() => format!(", equal up to byte {}", a.len().min(b.len())),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Observation after the crash

/// What a path holds through the mount.
#[derive(Debug)]
enum Seen {
    File {
        mode: u32,
        size: u64,
        /// Read when asked for (reading hydrates).
        data: Option<Vec<u8>>,
        state: u32,
    },
    Dir {
        mode: u32,
        state: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

impl Seen {
    fn describe(&self) -> String {
        match self {
            Seen::File {
                mode,
                size,
                data,
                state,
            } => match data {
                Some(d) => format!(
                    "file {mode:04o} <{} bytes #{}> (state {state})",
                    d.len(),
                    short_hash(d)
                ),
                None => format!("file {mode:04o} of {size} bytes, not read (state {state})"),
            },
            Seen::Dir { mode, state } => format!("dir {mode:04o} (state {state})"),
            Seen::Symlink { target } => format!("symlink -> {}", target.display()),
        }
    }
}

/// Walk `root/top` through the mount; `read(rel, state)` says which files to read.
fn observe(
    root: &Path,
    top: &Path,
    read: &dyn Fn(&Path, u32) -> bool,
) -> Result<BTreeMap<PathBuf, Seen>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![top.to_path_buf()];
    let mut first = true;
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let md =
            std::fs::symlink_metadata(&p).map_err(|e| format!("lstat {}: {e}", rel.display()))?;
        let mode = md.permissions().mode() & 0o7777;
        let seen = if md.file_type().is_symlink() {
            Seen::Symlink {
                target: std::fs::read_link(&p)
                    .map_err(|e| format!("readlink {}: {e}", rel.display()))?,
            }
        } else if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .and_then(|d| d.map(|e| e.map(|e| e.file_name())).collect())
                .map_err(|e| format!("readdir {}: {e}", rel.display()))?;
            names.sort();
            stack.extend(names.into_iter().map(|n| rel.join(n)));
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
                data,
                state,
            }
        } else {
            return Err(format!("{}: unexpected file type {md:?}", rel.display()));
        };
        if first && !matches!(seen, Seen::Dir { .. }) {
            return Err(format!("{} is not a directory", top.display()));
        }
        first = false;
        out.insert(rel, seen);
    }
    Ok(out)
}

/// Whether `seen` is what `want` describes (`Ok`), else why not.
fn compare(seen: Option<&Seen>, want: Option<&Node>) -> Result<(), String> {
    let mismatch = |why: &str| -> Result<(), String> {
        Err(format!(
            "expected {}, found {}{why}",
            want.map_or("nothing".into(), Node::describe),
            seen.map_or("nothing".into(), Seen::describe)
        ))
    };
    match (seen, want) {
        (None, None) => Ok(()),
        (
            Some(Seen::File {
                mode, size, data, ..
            }),
            Some(Node::File {
                mode: m, data: d, ..
            }),
        ) => {
            if mode != m || *size != d.0.len() as u64 {
                return mismatch("");
            }
            match data {
                Some(got) if got[..] != d.0[..] => mismatch(&first_difference(got, &d.0)),
                _ => Ok(()),
            }
        }
        (Some(Seen::Dir { mode, .. }), Some(Node::Dir { mode: m })) if mode == m => Ok(()),
        (Some(Seen::Symlink { target }), Some(Node::Symlink { target: t })) if target == t => {
            Ok(())
        }
        _ => mismatch(""),
    }
}

/// Differences between the observed subtree and `want`, except at `skip`.
fn differences(seen: &BTreeMap<PathBuf, Seen>, want: &Tree, skip: Option<&Path>) -> Vec<String> {
    let keys: BTreeSet<&PathBuf> = seen.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| Some(k.as_path()) != skip)
        .filter_map(|k| {
            compare(seen.get(k), want.get(k))
                .err()
                .map(|e| format!("{}: {e}", k.display()))
        })
        .collect()
}

/// One state the subtree may be in after the crash.
struct Candidate {
    /// Which state, for statistics (no paths).
    class: String,
    /// Which state, for messages.
    label: String,
    tree: Tree,
    /// The write in flight, torn at a page boundary (`tree` holds it whole).
    torn: Option<Torn>,
}

/// The allowed states of a subtree whose last acknowledged state is `t`, with
/// `op` in flight after `acked` of its calls returned.
fn candidates(t: &Tree, op: &Op, acked: usize) -> Vec<Candidate> {
    let mut steps = plan(t, op);
    let mut out = Vec::new();
    let cand = |class: String, detail: &str, tree: Tree, torn: Option<Torn>| Candidate {
        label: class.replacen(':', &format!("{detail}:"), 1),
        class,
        tree,
        torn,
    };
    let base = if acked == 0 {
        cand("before the operation:".into(), "", t.clone(), None)
    } else {
        let s = &steps[acked - 1];
        let class = format!("after {}: acknowledged", s.name);
        cand(class, &s.detail, s.after.clone(), None)
    };
    out.push(base);
    if acked < steps.len() {
        let s = steps.swap_remove(acked);
        for (what, tree) in s.between {
            let class = format!("during {}: {what}", s.name);
            out.push(cand(class, &s.detail, tree, None));
        }
        if let Some(torn) = s.torn {
            let class = format!("during {}: torn at a page boundary", s.name);
            out.push(cand(class, &s.detail, s.after.clone(), Some(torn)));
        }
        let class = format!("after {}: in flight", s.name);
        out.push(cand(class, &s.detail, s.after, None));
    }
    out
}

/// Whether the observed subtree is in state `c`: `Ok(resolved model)` or the
/// differences.
fn matches(seen: &BTreeMap<PathBuf, Seen>, c: &Candidate) -> Result<Tree, Vec<String>> {
    let Some(torn) = &c.torn else {
        let d = differences(seen, &c.tree, None);
        return if d.is_empty() {
            Ok(c.tree.clone())
        } else {
            Err(d)
        };
    };
    let mut d = differences(seen, &c.tree, Some(&torn.path));
    let got = match seen.get(&torn.path) {
        Some(Seen::File {
            mode,
            data: Some(data),
            ..
        }) if *mode == torn.mode => Some(data),
        _ => None,
    };
    let cut = got.and_then(|got| {
        torn.cuts()
            .into_iter()
            .find(|&cut| torn.len_at(cut) == got.len() as u64 && torn.content_at(cut) == *got)
    });
    match cut {
        Some(cut) if d.is_empty() => {
            let mut t = c.tree.clone();
            t.insert(
                torn.path.clone(),
                Node::file(torn.mode, torn.content_at(cut)),
            );
            Ok(t)
        }
        Some(_) => Err(d),
        None => {
            d.push(format!(
                "{}: found {}, which is no page-aligned prefix of the write of {} bytes at {} over the old {} bytes #{}",
                torn.path.display(),
                seen.get(&torn.path).map_or("nothing".into(), Seen::describe),
                torn.data.len(),
                torn.off,
                torn.base.len(),
                short_hash(&torn.base)
            ));
            Err(d)
        }
    }
}

// ---------------------------------------------------------------------------
// The test

#[derive(Default)]
struct Stats {
    iterations: usize,
    ops: usize,
    /// In-flight operations at the kill, by kind.
    inflight: BTreeMap<&'static str, usize>,
    /// Which allowed state the in-flight operations were found in.
    resolved: BTreeMap<String, usize>,
    /// Errors the in-flight calls got.
    errnos: BTreeMap<String, usize>,
    /// Kills that left temp items in `.prjfs/tmp`, by prefix.
    leftovers: BTreeMap<String, usize>,
    files_read: usize,
    fsynced_checked: usize,
    both_names: usize,
    /// Longest time a killed daemon's threads outlived its main thread.
    lingered: Duration,
}

struct Chain<'a> {
    seed: u64,
    source: &'a Path,
    root: PathBuf,
    args: Vec<&'static str>,
    /// The root directory opened before any mount covered it.
    under: File,
}

impl Chain<'_> {
    /// The last warning and error lines of the root's daemon log (every
    /// daemon of the chain appends to it).
    fn log_problems(&self) -> String {
        let log = format!(
            "/proc/self/fd/{}/.prjfs/log/daemon.log",
            self.under.as_raw_fd()
        );
        let text = match std::fs::read_to_string(&log) {
            Ok(t) => t,
            // The log is made at the first line logged.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return "(none: nothing was logged)".into()
            }
            Err(e) => return format!("{log}: {e}"),
        };
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn tmp_entries(&self) -> Vec<String> {
        let dir = format!("/proc/self/fd/{}/.prjfs/tmp", self.under.as_raw_fd());
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// Walk `dir` on the plain file system into a tree keyed by `prefix/...`.
fn snapshot(dir: &Path, prefix: &Path) -> Tree {
    let mut t = Tree::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = dir.join(&rel);
        let md = std::fs::symlink_metadata(&p).expect("lstat source");
        let mode = md.permissions().mode() & 0o7777;
        let node = if md.file_type().is_symlink() {
            Node::Symlink {
                target: std::fs::read_link(&p).expect("readlink"),
            }
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir source") {
                stack.push(rel.join(e.expect("entry").file_name()));
            }
            Node::Dir { mode }
        } else {
            Node::file(mode, std::fs::read(&p).expect("read source"))
        };
        let key = if rel.as_os_str().is_empty() {
            prefix.to_path_buf()
        } else {
            prefix.join(&rel)
        };
        t.insert(key, node);
    }
    t
}

/// The source: per worker a generated tree plus [`LARGE_FILES`] files of random
/// bytes.
fn build_source(source: &Path) -> Vec<Tree> {
    (0..WORKERS)
        .map(|k| {
            let top = PathBuf::from(format!("w{k}"));
            let dir = source.join(&top);
            std::fs::create_dir_all(&dir).expect("mkdir source");
            let files = make_tree(
                &dir,
                TreeSpec {
                    files: 90,
                    dirs: 12,
                    depth: 3,
                    symlinks: 3,
                    max_size: 40_000,
                    seed: 1000 + k as u64,
                },
            );
            let mut rng = StdRng::seed_from_u64(2000 + k as u64);
            for j in 0..LARGE_FILES {
                let parent = files[rng.random_range(0..files.len())]
                    .parent()
                    .expect("in a dir")
                    .to_path_buf();
                let mut data = vec![0u8; rng.random_range(1 << 20..=4 << 20)];
                rng.fill(&mut data[..]);
                std::fs::write(dir.join(parent).join(format!("large{j}.bin")), &data)
                    .expect("write large file");
            }
            snapshot(&dir, &top)
        })
        .collect()
}

/// Whether `rel` falls in the read sample of iteration `salt`.
fn sampled(rel: &Path, salt: u64) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (rel, salt).hash(&mut h);
    h.finish() % 100 < SAMPLE_PERCENT
}

/// `prjfs state` of `paths`: the state number per path.
fn prjfs_state(mount: &CliMount, paths: &[PathBuf]) -> Result<BTreeMap<PathBuf, u32>, String> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let abs: Vec<PathBuf> = paths.iter().map(|p| mount.root.join(p)).collect();
    let out = mount
        .prjfs(&["state"])
        .args(&abs)
        .output()
        .map_err(|e| format!("prjfs state: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "prjfs state failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    for (line, rel) in text.lines().zip(paths) {
        let n = line
            .rsplit_once('(')
            .and_then(|(_, r)| r.strip_suffix(')'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("prjfs state printed {line:?}"))?;
        map.insert(rel.clone(), n);
    }
    if map.len() != paths.len() {
        return Err(format!(
            "prjfs state printed {} lines for {} paths",
            map.len(),
            paths.len()
        ));
    }
    Ok(map)
}

/// `status` and `state` answer, and agree with the items' xattrs.
fn check_states(
    mount: &CliMount,
    seen: &BTreeMap<PathBuf, Seen>,
    op_paths: &[PathBuf],
) -> Vec<String> {
    let mut failures = Vec::new();
    let status = mount.status();
    if let Some(e) = status.get("error") {
        return vec![format!("prjfs status reports an error: {e}")];
    }
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut symlinks = Vec::new();
    let mut xattrs = BTreeMap::new();
    for (rel, s) in seen {
        match s {
            Seen::Symlink { .. } => symlinks.push(rel.clone()),
            _ => match state_xattr(&mount.root.join(rel)) {
                Ok(n) => {
                    xattrs.insert(rel.clone(), n);
                    *counts.entry(category(n)).or_default() += 1;
                }
                Err(e) => failures.push(e),
            },
        }
    }
    let existing: Vec<PathBuf> = op_paths
        .iter()
        .filter(|p| xattrs.contains_key(*p))
        .cloned()
        .collect();
    let asked: Vec<PathBuf> = symlinks.iter().chain(&existing).cloned().collect();
    match prjfs_state(mount, &asked) {
        Ok(states) => {
            for l in &symlinks {
                *counts.entry(category(states[l])).or_default() += 1;
            }
            for p in &existing {
                if states[p] != xattrs[p] {
                    failures.push(format!(
                        "{}: prjfs state says {}, {STATE_XATTR} says {}",
                        p.display(),
                        states[p],
                        xattrs[p]
                    ));
                }
            }
        }
        Err(e) => failures.push(e),
    }
    let status = mount.status();
    for cat in ["placeholder", "hydrated", "dirty", "full"] {
        let reported = status["states"][cat].as_u64();
        let walked = counts.get(cat).copied().unwrap_or(0);
        if reported != Some(walked) {
            failures.push(format!(
                "prjfs status counts {reported:?} {cat} items, the mount shows {walked}"
            ));
        }
    }
    failures
}

/// Prints where a panic happened (any panic: a failed remount, a hung workload).
struct OnPanic(String);

impl Drop for OnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILED at {}", self.0);
        }
    }
}

/// One crash: run the workload on `mount`, kill its daemon, remount, check.
/// Returns the new mount.
fn crash_iteration(
    chain: &Chain<'_>,
    iteration: usize,
    mount: CliMount,
    workers: &mut Vec<Worker>,
    rng: &mut StdRng,
    full: bool,
    stats: &mut Stats,
) -> CliMount {
    let started = Instant::now();
    let _context = OnPanic(format!(
        "seed {} iteration {iteration}; rerun: PRJFS_CRASH_SEED={} PRJFS_CRASH_ITERS={}",
        chain.seed,
        chain.seed,
        iteration + 1
    ));
    let pid = mount.pid.expect("daemon pid from prjfs status");
    let kill_after = Duration::from_millis(rng.random_range(5..=300));
    for w in workers.iter_mut() {
        w.rng = StdRng::seed_from_u64(rng.random());
    }
    let killed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = workers
        .drain(..)
        .map(|w| {
            let root = mount.root.clone();
            let killed = killed.clone();
            std::thread::spawn(move || run_worker(w, root, killed))
        })
        .collect();
    std::thread::sleep(kill_after);
    killed.store(true, Ordering::SeqCst);
    kill(pid);
    let lingered = wait_gone(pid);
    stats.lingered = stats.lingered.max(lingered);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handles.iter().all(|h| h.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "seed {} iteration {iteration}: the workload hangs 30 s after the daemon was killed",
            chain.seed
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        let (w, o) = h.join().expect("worker panicked");
        workers.push(w);
        outcomes.push(o);
    }
    let leftovers = chain.tmp_entries();
    let prefixes: BTreeSet<String> = leftovers
        .iter()
        .map(|n| n.split('-').next().unwrap_or("").to_string())
        .collect();
    for p in prefixes {
        *stats.leftovers.entry(p).or_default() += 1;
    }

    // The next mount removes the stale one; the dead daemon's guard has nothing
    // left to clean up (dropping it would unmount the new mount).
    let new = CliMount::new(Path::new(BIN), &chain.args, chain.source, &chain.root);
    std::mem::forget(mount);

    let mut failures: Vec<String> = Vec::new();
    let mut all_seen = BTreeMap::new();
    let mut all_op_paths = Vec::new();
    let mut summary = Vec::new();
    for (k, (w, o)) in workers.iter_mut().zip(&outcomes).enumerate() {
        stats.ops += o.ops;
        if let Some(e) = &o.error {
            failures.push(format!("worker {k}: {e}"));
        }
        let touched = o
            .inflight
            .as_ref()
            .map(|(op, _, _)| op_paths(op))
            .unwrap_or_default();
        all_op_paths.extend(touched.iter().cloned());
        let salt = chain.seed * 1000 + iteration as u64;
        let read = |rel: &Path, state: u32| {
            full || is_local(state)
                || touched.iter().any(|t| rel.starts_with(t))
                || sampled(rel, salt)
        };
        let mut seen = match observe(&new.root, &w.top, &read) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("worker {k}: after the remount: {e}"));
                continue;
            }
        };
        let cands = match &o.inflight {
            Some((op, acked, _)) => candidates(&w.tree, op, *acked),
            None => vec![Candidate {
                class: "the model".into(),
                label: "the model".into(),
                tree: w.tree.clone(),
                torn: None,
            }],
        };
        let mut misses = Vec::new();
        let mut found = None;
        for c in &cands {
            match matches(&seen, c) {
                Ok(t) => {
                    found = Some((c.label.clone(), c.class.clone(), t));
                    break;
                }
                Err(d) => misses.push((c.label.clone(), d)),
            }
        }
        let what = match &o.inflight {
            Some((op, acked, e)) => {
                *stats.inflight.entry(op.kind()).or_default() += 1;
                let errno = e.raw_os_error().map_or(format!("{e}"), |n| {
                    format!("{}", std::io::Error::from_raw_os_error(n))
                });
                *stats.errnos.entry(errno).or_default() += 1;
                format!("{op:?} after {acked} acknowledged calls, failed with: {e}")
            }
            None => "no operation in flight".into(),
        };
        match found {
            Some((label, class, t)) => {
                stats.fsynced_checked += t
                    .values()
                    .filter(|n| matches!(n, Node::File { synced: true, .. }))
                    .count();
                stats.files_read += seen
                    .values()
                    .filter(|s| matches!(s, Seen::File { data: Some(_), .. }))
                    .count();
                summary.push(format!(
                    "w{k}: {} ops, {}: {label}",
                    o.ops,
                    o.inflight.as_ref().map_or("-", |x| x.0.kind())
                ));
                if let Some((op, _, _)) = &o.inflight {
                    *stats
                        .resolved
                        .entry(format!("{}: {class}", op.kind()))
                        .or_default() += 1;
                }
                w.tree = t;
                // Both names of a renamed file are hard links to one inode: drop
                // the old one, so that later writes through one name do not show
                // through the other (which the model cannot express).
                if class.contains("both names") {
                    stats.both_names += 1;
                    if let Some((Op::Rename { from, .. }, _, _)) = &o.inflight {
                        std::fs::remove_file(new.root.join(from))
                            .unwrap_or_else(|e| panic!("unlink {}: {e}", from.display()));
                        w.tree.remove(from);
                        seen.remove(from);
                    }
                }
            }
            None => {
                let mut msg = format!(
                    "worker {k}: after the crash, {} matches none of the allowed states.\n  in flight: {what}\n",
                    w.top.display()
                );
                for (label, d) in misses {
                    msg += &format!("  vs {label}: {} differences\n", d.len());
                    for line in d.iter().take(8) {
                        msg += &format!("      {line}\n");
                    }
                }
                failures.push(msg);
            }
        }
        all_seen.extend(seen);
    }
    // A read through the mount returns once its bytes have arrived: a big
    // file's hydration (or one a readahead started) may still be finishing,
    // and moves the file from placeholder to hydrated between two counts.
    // So the states are checked again until they hold (10 s at most): a
    // disagreement that lasts fails, one a finishing hydration made does not.
    let mut state_failures = Vec::new();
    let mut tries = 0;
    eventually(Duration::from_secs(10), || {
        tries += 1;
        state_failures = check_states(&new, &all_seen, &all_op_paths);
        state_failures.is_empty()
    });
    if tries > 1 && state_failures.is_empty() {
        eprintln!(
            "seed {} iteration {iteration}: the states held at check {tries}",
            chain.seed
        );
    }
    failures.extend(state_failures);
    if !failures.is_empty() {
        panic!(
            "seed {} iteration {iteration} (kill after {kill_after:?}, {} in .prjfs/tmp: {leftovers:?}):\n{}\nthe daemon log's warnings and errors:\n{}\nrerun: PRJFS_CRASH_SEED={} PRJFS_CRASH_ITERS={}",
            chain.seed,
            leftovers.len(),
            failures.join("\n"),
            chain.log_problems(),
            chain.seed,
            iteration + 1
        );
    }
    eprintln!(
        "seed {} iteration {iteration}: kill after {kill_after:?}, tmp {leftovers:?}; {}; {:?}",
        chain.seed,
        summary.join("; "),
        started.elapsed()
    );
    stats.iterations += 1;
    new
}

fn run_chain(dir: &Path, source: &Path, initial: &[Tree], seed: u64, n: usize, stats: &mut Stats) {
    let root = dir.join(format!("root{seed}"));
    std::fs::create_dir(&root).expect("mkdir root");
    let under = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&root)
        .expect("open root");
    let chain = Chain {
        seed,
        source,
        root: root.clone(),
        args: if seed % 2 == 1 {
            vec!["--sync"]
        } else {
            vec![]
        },
        under,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mount = CliMount::new(Path::new(BIN), &chain.args, source, &root);
    let mut workers: Vec<Worker> = initial
        .iter()
        .enumerate()
        .map(|(k, t)| Worker {
            top: PathBuf::from(format!("w{k}")),
            tree: t.clone(),
            rng: StdRng::seed_from_u64(0),
            next_name: 0,
            removed: Vec::new(),
        })
        .collect();
    for i in 0..n {
        mount = crash_iteration(&chain, i, mount, &mut workers, &mut rng, i + 1 == n, stats);
    }
    mount.unmount();
    let left = chain.tmp_entries();
    assert!(
        left.is_empty(),
        "seed {seed}: .prjfs/tmp holds {left:?} after a clean unmount"
    );
}

/// SIGKILL the daemon at random moments of a read-write workload; after each
/// remount every path is in a state the model allows.
#[test]
fn sigkill_during_a_read_write_workload_loses_nothing_acknowledged() {
    if !mount_available() {
        return;
    }
    // Modes of new files and directories are 0644 and 0755 in the model.
    // SAFETY: umask(2) has no memory effects; the other test of this binary
    // creates no files.
    unsafe { libc::umask(0o022) };
    let iterations = env_num("PRJFS_CRASH_ITERS", 25) as usize;
    let chain_len = env_num("PRJFS_CRASH_CHAIN", 5).max(1) as usize;
    let base = env_num("PRJFS_CRASH_SEED", 1);
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("source");
    let initial = build_source(&source);
    let mut stats = Stats::default();
    let mut done = 0;
    let mut seed = base;
    while done < iterations {
        let n = chain_len.min(iterations - done);
        run_chain(tmp.path(), &source, &initial, seed, n, &mut stats);
        done += n;
        seed += 1;
    }
    for (k, t) in initial.iter().enumerate() {
        let now = snapshot(&source.join(format!("w{k}")), Path::new(&format!("w{k}")));
        let d: Vec<String> = t
            .keys()
            .chain(now.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|p| {
                let (a, b) = (t.get(*p), now.get(*p));
                a.map(Node::describe) != b.map(Node::describe)
            })
            .map(|p| p.display().to_string())
            .collect();
        assert!(d.is_empty(), "the source changed: {d:?}");
    }
    eprintln!(
        "{} crashes in {:?}: {} operations acknowledged; in flight at the kill: {:?}; found in: {:?}; errors: {:?}; kills leaving .prjfs/tmp items (by prefix): {:?}; {} files read in checks, {} fsynced files verified, {} renames seen with both names; threads of a killed daemon outlived its main thread by up to {:?}",
        stats.iterations,
        started.elapsed(),
        stats.ops,
        stats.inflight,
        stats.resolved,
        stats.errnos,
        stats.leftovers,
        stats.files_read,
        stats.fsynced_checked,
        stats.both_names,
        stats.lingered
    );
}

/// The checker itself, without a mount: which observations each in-flight
/// operation allows.
#[test]
fn model_allows_exactly_the_documented_states() {
    let p = PathBuf::from;
    let mut t = Tree::new();
    t.insert(p("w0"), Node::Dir { mode: 0o755 });
    t.insert(p("w0/a"), Node::file(0o644, vec![1; 5000]));
    let seen_with = |a: Option<Vec<u8>>, b: Option<Vec<u8>>| {
        let mut s = BTreeMap::new();
        s.insert(
            p("w0"),
            Seen::Dir {
                mode: 0o755,
                state: 1,
            },
        );
        for (name, d) in [("w0/a", a), ("w0/b", b)] {
            if let Some(d) = d {
                let size = d.len() as u64;
                s.insert(
                    p(name),
                    Seen::File {
                        mode: 0o644,
                        size,
                        data: Some(d),
                        state: 8,
                    },
                );
            }
        }
        s
    };
    let verdict = |t: &Tree, op: &Op, acked: usize, seen: &BTreeMap<PathBuf, Seen>| {
        candidates(t, op, acked)
            .iter()
            .find(|c| matches(seen, c).is_ok())
            .map(|c| c.class.clone())
    };

    // A write of 5000 bytes at 1000 in flight: old, torn at 4096, or new.
    let data = Data(Arc::new(vec![2; 5000]));
    let w = Op::Write {
        path: p("w0/a"),
        off: 1000,
        data,
        fsync: true,
        append: false,
    };
    let old = vec![1u8; 5000];
    let new = written(&old, 1000, &[2; 5000]);
    let torn = written(&old, 1000, &[2; 3096]);
    let ragged = written(&old, 1000, &[2; 1000]);
    let v = |d: &Vec<u8>| verdict(&t, &w, 1, &seen_with(Some(d.clone()), None));
    assert_eq!(
        v(&old).as_deref(),
        Some("after open(O_WRONLY): acknowledged")
    );
    assert_eq!(
        v(&torn).as_deref(),
        Some("during write: torn at a page boundary")
    );
    assert_eq!(v(&new).as_deref(), Some("after write: in flight"));
    assert_eq!(v(&ragged), None, "a write torn inside a page");
    // The write returned, fsync did not: the old bytes are a lost write.
    let v2 = |d: &Vec<u8>| verdict(&t, &w, 2, &seen_with(Some(d.clone()), None));
    assert_eq!(v2(&old), None, "an acknowledged write is lost");
    assert_eq!(v2(&new).as_deref(), Some("after write: acknowledged"));
    // An unread file is compared by size only.
    let mut unread = seen_with(None, None);
    unread.insert(
        p("w0/a"),
        Seen::File {
            mode: 0o644,
            size: 5000,
            data: None,
            state: 1,
        },
    );
    assert!(matches(&unread, &candidates(&t, &w, 0)[0]).is_ok());

    // A rename in flight: old name, new name, or both; never neither.
    let r = Op::Rename {
        from: p("w0/a"),
        to: p("w0/b"),
    };
    let v = |a: Option<&Vec<u8>>, b: Option<&Vec<u8>>| {
        verdict(&t, &r, 0, &seen_with(a.cloned(), b.cloned()))
    };
    assert_eq!(
        v(Some(&old), None).as_deref(),
        Some("before the operation:")
    );
    assert_eq!(
        v(None, Some(&old)).as_deref(),
        Some("after rename: in flight")
    );
    assert!(v(Some(&old), Some(&old)).is_some_and(|c| c.contains("both names")));
    assert_eq!(v(None, None), None, "content lost in a rename");
    assert_eq!(v(None, Some(&torn)), None, "content changed in a rename");

    // A create with fsync whose write was acknowledged must hold all its bytes.
    let c = Op::Create {
        path: p("w0/b"),
        data: Data(Arc::new(vec![3; 9000])),
        fsync: true,
    };
    let v = |b: Option<Vec<u8>>| verdict(&t, &c, 2, &seen_with(Some(old.clone()), b));
    assert_eq!(v(None), None);
    assert_eq!(v(Some(vec![3; 8192])), None);
    assert_eq!(
        v(Some(vec![3; 9000])).as_deref(),
        Some("after write: acknowledged")
    );
    let v = |b: Option<Vec<u8>>| verdict(&t, &c, 1, &seen_with(Some(old.clone()), b));
    assert_eq!(
        v(Some(vec![3; 8192])).as_deref(),
        Some("during write: torn at a page boundary")
    );
    assert_eq!(
        v(Some(Vec::new())).as_deref(),
        Some("after open(O_CREAT): acknowledged")
    );
    assert_eq!(v(None), None, "an acknowledged create is lost");
}
