//! The soak's client threads: each owns one directory of the root (`wNN/`) and
//! does random operations in it — reads, stats, listings, overwrites, appends,
//! writes in place, truncations, renames and exchanges, deletes, mkdirs, xattrs
//! — checking every answer against its part of the model, and reads the shared
//! read-only files (`shared/`) that all threads read at once.
//!
//! Invariants: only worker `i` changes `wNN/`, so its model is exact without
//! locks across workers; the model changes only after the operation succeeded;
//! `EIO` (an injected provider fault) is counted and must have changed nothing;
//! any other unexpected errno or byte is a failure. Workers pass the [`Gate`]
//! between operations only, so a paused soak has no operation in flight.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::model::{bytes_of, is_fault, is_not_found, read_xattrs, show, state_bits};
use super::model::{Content, Model, Node, Xattrs, XATTR_PREFIX};
use crate::bench::fixture::Rng;

/// Pauses the client threads between operations.
///
/// Invariant: `parked` counts the threads blocked in [`Gate::pass`]; a
/// successful [`Gate::pause`] returns only when every participant is parked.
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

struct GateState {
    paused: bool,
    stopped: bool,
    parked: usize,
}

impl Gate {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(GateState {
                paused: false,
                stopped: false,
                parked: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Three plain fields, each written whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called between operations: waits while paused; false once stopped.
    pub fn pass(&self) -> bool {
        let mut s = self.lock();
        if s.paused && !s.stopped {
            s.parked += 1;
            self.cv.notify_all();
            while s.paused && !s.stopped {
                s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.parked -= 1;
        }
        !s.stopped
    }

    /// Pause, and wait until `n` participants are parked (or `limit` passed).
    pub fn pause(&self, n: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut s = self.lock();
        s.paused = true;
        while s.parked < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "only {} of {n} clients paused within {} s",
                    s.parked,
                    limit.as_secs()
                ));
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    pub fn resume(&self) {
        self.lock().paused = false;
        self.cv.notify_all();
    }

    pub fn stop(&self) {
        self.lock().stopped = true;
        self.cv.notify_all();
    }
}

/// What every worker adds up.
#[derive(Default)]
pub struct WorkerStats {
    pub ops: AtomicU64,
    /// Operations answered `EIO` (injected faults).
    pub faults: AtomicU64,
    /// Failures: unexpected errnos, wrong bytes, wrong listings.
    pub failures: AtomicU64,
    /// The first failures, described.
    pub messages: Mutex<Vec<String>>,
    /// Per worker: the operation in flight and since when (for a hang report).
    pub current: Mutex<Vec<Option<(String, Instant)>>>,
}

impl WorkerStats {
    pub fn new(workers: usize) -> Self {
        let s = Self::default();
        *s.current.lock().expect("fresh") = vec![None; workers];
        s
    }

    fn fail(&self, msg: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut m = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < 50 {
            m.push(msg);
        }
    }

    /// Operations in flight for longer than `limit`.
    pub fn stuck(&self, limit: Duration) -> Vec<String> {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        cur.iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|(op, t)| (i, op, t.elapsed())))
            .filter(|(_, _, d)| *d > limit)
            .map(|(i, op, d)| format!("worker {i}: {op} for {:.1} s", d.as_secs_f64()))
            .collect()
    }
}

/// One worker's fixed inputs.
pub struct Worker {
    pub index: usize,
    pub root: PathBuf,
    pub source: PathBuf,
    /// `wNN`, the directory it owns.
    pub home: PathBuf,
    /// Its part of the model (everything below `home`, and `home`).
    pub model: Arc<Mutex<Model>>,
    /// The shared read-only files (relative paths; their content is the source's).
    pub shared: Arc<Vec<PathBuf>>,
    pub seed: u64,
}

/// The names the workers create, delete and rename among: some are the source's
/// (so creates land on tombstones), some are new to the provider.
const FILE_NAMES: usize = 20;
const DIR_NAMES: [&str; 5] = ["d0", "d1", "d2", "x0", "x1"];
const MAX_DEPTH: usize = 4;

/// A number below `n`.
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next() % n
}

/// True one time in `n`, at random.
fn one_in(rng: &mut Rng, n: u64) -> bool {
    below(rng, n) == 0
}

/// What one operation found.
enum Found {
    Ok,
    /// The provider's fault (`EIO`).
    Fault,
    Bad(String),
}

fn io(op: &str, p: &Path, e: std::io::Error) -> Found {
    if is_fault(&e) {
        Found::Fault
    } else {
        Found::Bad(format!("{op} {}: unexpected error {e}", show(p)))
    }
}

impl Worker {
    /// Random operations until the gate stops.
    pub fn run(self, gate: &Gate, stats: &WorkerStats) {
        let mut rng = Rng::new(self.seed);
        let initial_files = self.lock().nodes.values().filter(|n| !n.is_dir()).count();
        while gate.pass() {
            let files = self.lock().nodes.values().filter(|n| !n.is_dir()).count();
            let r = rng.next() % 100;
            // Keep the population between half and three times the initial one.
            let r = if files > 3 * initial_files && r < 60 {
                60
            } else if files < initial_files / 2 && (60..72).contains(&r) {
                30
            } else {
                r
            };
            let name = match r {
                0..=21 => "read",
                22..=29 => "stat",
                30..=37 => "list",
                38..=45 => "overwrite",
                46..=50 => "append",
                51..=54 => "pwrite",
                55..=57 => "truncate",
                58..=65 => "rename",
                66..=71 => "delete",
                72..=74 => "mkdir",
                75..=89 => "xattr",
                _ => "shared",
            };
            self.set_current(stats, Some(name.to_string()));
            let found = match name {
                "read" => self.read(&mut rng),
                "stat" => self.stat(&mut rng),
                "list" => self.list(&mut rng),
                "overwrite" => self.overwrite(&mut rng),
                "append" => self.append(&mut rng),
                "pwrite" => self.pwrite(&mut rng),
                "truncate" => self.truncate(&mut rng),
                "rename" => self.rename(&mut rng),
                "delete" => self.delete(&mut rng),
                "mkdir" => self.mkdir(&mut rng),
                "xattr" => self.xattr(&mut rng),
                _ => self.read_shared(&mut rng),
            };
            stats.ops.fetch_add(1, Ordering::Relaxed);
            self.set_current(stats, None);
            match found {
                Found::Ok => {}
                Found::Fault => {
                    stats.faults.fetch_add(1, Ordering::Relaxed);
                }
                Found::Bad(msg) => stats.fail(format!("worker {} {name}: {msg}", self.index)),
            }
        }
    }

    fn set_current(&self, stats: &WorkerStats, what: Option<String>) {
        let mut cur = stats.current.lock().unwrap_or_else(|e| e.into_inner());
        cur[self.index] = what.map(|w| (w, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        // Only this worker's thread and the paused controller touch it.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// A random node of the model (a file when `dirs` is false, a directory other
    /// than `home` when true).
    fn pick(&self, rng: &mut Rng, dirs: bool) -> Option<PathBuf> {
        let m = self.lock();
        let all: Vec<&PathBuf> = m
            .nodes
            .iter()
            .filter(|(k, n)| n.is_dir() == dirs && (!dirs || *k != &self.home))
            .map(|(k, _)| k)
            .collect();
        (!all.is_empty()).then(|| all[rng.next() as usize % all.len()].clone())
    }

    /// A random directory (`home` included).
    fn pick_dir(&self, rng: &mut Rng) -> PathBuf {
        self.pick(rng, true)
            .filter(|_| !one_in(rng, 4))
            .unwrap_or_else(|| self.home.clone())
    }

    /// A name in a random directory that the model does not have.
    fn free_name(&self, rng: &mut Rng, dir_names: bool) -> Option<PathBuf> {
        let dir = self.pick_dir(rng);
        if dir_names && dir.components().count() >= MAX_DEPTH {
            return None;
        }
        let name = if dir_names {
            DIR_NAMES[rng.next() as usize % DIR_NAMES.len()].to_string()
        } else {
            format!("f{:02}", rng.next() as usize % FILE_NAMES)
        };
        let p = dir.join(name);
        (!self.lock().nodes.contains_key(&p)).then_some(p)
    }

    fn bytes(&self, content: &Content) -> std::io::Result<Arc<Vec<u8>>> {
        bytes_of(&self.source, content)
    }

    fn file(&self, p: &Path) -> Option<(Content, Xattrs)> {
        match self.lock().get(p) {
            Some(Node::File { content, xattrs }) => Some((content.clone(), xattrs.clone())),
            _ => None,
        }
    }

    fn set_file(&self, p: &Path, bytes: Vec<u8>, xattrs: Xattrs) {
        let content = Content::Local(Arc::new(bytes));
        self.lock()
            .nodes
            .insert(p.to_path_buf(), Node::File { content, xattrs });
    }

    fn read(&self, rng: &mut Rng) -> Found {
        if one_in(rng, 7) {
            // A name that is not there (deleted, renamed away, never created).
            let Some(p) = self.free_name(rng, false) else {
                return Found::Ok;
            };
            return match std::fs::read(self.abs(&p)) {
                Err(e) if is_not_found(&e) => Found::Ok,
                Err(e) => io("read absent", &p, e),
                Ok(_) => Found::Bad(format!(
                    "{}: readable, the model has no such name",
                    show(&p)
                )),
            };
        }
        let Some(p) = self.pick(rng, false) else {
            return Found::Ok;
        };
        let (content, _) = self.file(&p).expect("picked a file");
        match std::fs::read(self.abs(&p)) {
            Ok(got) => self.check_bytes(&p, &got, &content),
            Err(e) => io("read", &p, e),
        }
    }

    fn check_bytes(&self, p: &Path, got: &[u8], content: &Content) -> Found {
        match self.bytes(content) {
            Ok(want) if want[..] == got[..] => Found::Ok,
            Ok(want) => Found::Bad(format!(
                "{}: read {} bytes, the model has {} (first difference at {})",
                show(p),
                got.len(),
                want.len(),
                got.iter()
                    .zip(want.iter())
                    .take_while(|(a, b)| a == b)
                    .count()
            )),
            Err(e) => Found::Bad(format!("{}: model bytes: {e}", show(p))),
        }
    }

    fn read_shared(&self, rng: &mut Rng) -> Found {
        if self.shared.is_empty() {
            return Found::Ok;
        }
        let p = &self.shared[rng.next() as usize % self.shared.len()];
        match std::fs::read(self.abs(p)) {
            Ok(got) => self.check_bytes(p, &got, &Content::Source(p.clone())),
            Err(e) => io("read shared", p, e),
        }
    }

    fn stat(&self, rng: &mut Rng) -> Found {
        let dirs = one_in(rng, 4);
        let Some(p) = self.pick(rng, dirs) else {
            return Found::Ok;
        };
        let node = self.lock().get(&p).cloned().expect("picked");
        match std::fs::symlink_metadata(self.abs(&p)) {
            Err(e) => io("stat", &p, e),
            Ok(m) if m.is_dir() != node.is_dir() => Found::Bad(format!(
                "{}: stat says dir={}, the model says dir={}",
                show(&p),
                m.is_dir(),
                node.is_dir()
            )),
            Ok(m) => match &node {
                Node::File { content, .. } => match self.bytes(content) {
                    Ok(b) if b.len() as u64 == m.len() => Found::Ok,
                    Ok(b) => Found::Bad(format!(
                        "{}: size {}, the model has {}",
                        show(&p),
                        m.len(),
                        b.len()
                    )),
                    Err(e) => Found::Bad(format!("{}: model bytes: {e}", show(&p))),
                },
                Node::Dir { .. } => Found::Ok,
            },
        }
    }

    fn list(&self, rng: &mut Rng) -> Found {
        let dir = self.pick_dir(rng);
        let got = std::fs::read_dir(self.abs(&dir)).and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<std::collections::BTreeSet<_>>>()
        });
        match got {
            Err(e) => io("list", &dir, e),
            Ok(names) => {
                let want = self.lock().children(&dir);
                if names == want {
                    Found::Ok
                } else {
                    Found::Bad(format!(
                        "{}/: listing {:?}, the model has {:?}",
                        show(&dir),
                        names,
                        want
                    ))
                }
            }
        }
    }

    fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
        let n = rng.next() as usize % (max + 1);
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&rng.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// `O_CREAT|O_TRUNC` and new bytes, on a file or a free name.
    fn overwrite(&self, rng: &mut Rng) -> Found {
        let target = if rng.next() % 5 < 3 {
            self.pick(rng, false)
        } else {
            self.free_name(rng, false)
        };
        let Some(p) = target else {
            return Found::Ok;
        };
        let xattrs = self.file(&p).map(|(_, x)| x).unwrap_or_default();
        let data = Self::random_bytes(rng, 32 * 1024);
        match std::fs::write(self.abs(&p), &data) {
            Ok(()) => {
                self.set_file(&p, data, xattrs);
                Found::Ok
            }
            Err(e) => io("overwrite", &p, e),
        }
    }

    /// Current bytes, a change through a handle opened without `O_TRUNC`, and
    /// the bytes it must leave.
    fn change(
        &self,
        rng: &mut Rng,
        op: &str,
        f: impl FnOnce(&mut Rng, &std::fs::File, &mut Vec<u8>) -> std::io::Result<()>,
        append: bool,
    ) -> Found {
        let Some(p) = self.pick(rng, false) else {
            return Found::Ok;
        };
        let (content, xattrs) = self.file(&p).expect("picked a file");
        let mut bytes = match self.bytes(&content) {
            Ok(b) => (*b).clone(),
            Err(e) => return Found::Bad(format!("{}: model bytes: {e}", show(&p))),
        };
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .append(append)
            .open(self.abs(&p));
        let file = match opened {
            Ok(f) => f,
            Err(e) => return io(op, &p, e),
        };
        match f(rng, &file, &mut bytes) {
            Ok(()) => {
                self.set_file(&p, bytes, xattrs);
                Found::Ok
            }
            Err(e) => io(op, &p, e),
        }
    }

    fn append(&self, rng: &mut Rng) -> Found {
        self.change(
            rng,
            "append",
            |rng, mut f, bytes| {
                let data = Self::random_bytes(rng, 4096);
                std::io::Write::write_all(&mut f, &data)?;
                bytes.extend_from_slice(&data);
                Ok(())
            },
            true,
        )
    }

    fn pwrite(&self, rng: &mut Rng) -> Found {
        self.change(
            rng,
            "pwrite",
            |rng, f, bytes| {
                let at = rng.next() as usize % (bytes.len() + 1);
                let data = Self::random_bytes(rng, 4096);
                f.write_all_at(&data, at as u64)?;
                if bytes.len() < at + data.len() {
                    bytes.resize(at + data.len(), 0);
                }
                bytes[at..at + data.len()].copy_from_slice(&data);
                Ok(())
            },
            false,
        )
    }

    fn truncate(&self, rng: &mut Rng) -> Found {
        self.change(
            rng,
            "truncate",
            |rng, f, bytes| {
                let to = rng.next() as usize % (bytes.len() + 2048);
                let to = if one_in(rng, 4) { 0 } else { to };
                f.set_len(to as u64)?;
                bytes.resize(to, 0);
                Ok(())
            },
            false,
        )
    }

    fn rename(&self, rng: &mut Rng) -> Found {
        let dir = one_in(rng, 4);
        let Some(from) = self.pick(rng, dir) else {
            return Found::Ok;
        };
        if !dir && one_in(rng, 5) {
            // RENAME_EXCHANGE of two files.
            let Some(other) = self.pick(rng, false).filter(|o| *o != from) else {
                return Found::Ok;
            };
            let r = rustix::fs::renameat_with(
                rustix::fs::CWD,
                self.abs(&from),
                rustix::fs::CWD,
                self.abs(&other),
                rustix::fs::RenameFlags::EXCHANGE,
            );
            return match r {
                Ok(()) => {
                    self.lock().exchange(&from, &other);
                    Found::Ok
                }
                Err(e) => io("exchange", &from, e.into()),
            };
        }
        let to = if !dir && one_in(rng, 3) {
            self.pick(rng, false).filter(|t| *t != from)
        } else {
            self.free_name(rng, dir)
        };
        let Some(to) = to else {
            return Found::Ok;
        };
        if to.starts_with(&from) {
            return Found::Ok; // a directory into itself
        }
        if dir && to.components().count() + self.depth_below(&from) > MAX_DEPTH + 1 {
            return Found::Ok;
        }
        match std::fs::rename(self.abs(&from), self.abs(&to)) {
            Ok(()) => {
                self.lock().rename(&from, &to);
                Found::Ok
            }
            Err(e) => io("rename", &from, e),
        }
    }

    /// How many levels of directories `dir` holds below itself.
    fn depth_below(&self, dir: &Path) -> usize {
        let base = dir.components().count();
        self.lock()
            .subtree(dir)
            .map(|(k, _)| k.components().count() - base)
            .max()
            .unwrap_or(0)
    }

    fn delete(&self, rng: &mut Rng) -> Found {
        if !one_in(rng, 6) {
            let Some(p) = self.pick(rng, false) else {
                return Found::Ok;
            };
            return match std::fs::remove_file(self.abs(&p)) {
                Ok(()) => {
                    self.lock().nodes.remove(&p);
                    Found::Ok
                }
                Err(e) => io("unlink", &p, e),
            };
        }
        let Some(dir) = self.pick(rng, true) else {
            return Found::Ok;
        };
        // rm -r, one step at a time, the model following each step; deepest first.
        let mut items: Vec<(PathBuf, bool)> = self
            .lock()
            .subtree(&dir)
            .map(|(k, n)| (k.clone(), n.is_dir()))
            .collect();
        items.sort_by_key(|(k, _)| std::cmp::Reverse(k.components().count()));
        for (p, is_dir) in items {
            let r = if is_dir {
                std::fs::remove_dir(self.abs(&p))
            } else {
                std::fs::remove_file(self.abs(&p))
            };
            match r {
                Ok(()) => {
                    self.lock().nodes.remove(&p);
                }
                Err(e) => return io(if is_dir { "rmdir" } else { "rm -r" }, &p, e),
            }
        }
        Found::Ok
    }

    fn mkdir(&self, rng: &mut Rng) -> Found {
        let Some(p) = self.free_name(rng, true) else {
            return Found::Ok;
        };
        match std::fs::create_dir(self.abs(&p)) {
            Ok(()) => {
                let xattrs = Xattrs::new();
                self.lock().nodes.insert(p, Node::Dir { xattrs });
                Found::Ok
            }
            Err(e) => io("mkdir", &p, e),
        }
    }

    fn xattr(&self, rng: &mut Rng) -> Found {
        let dirs = one_in(rng, 4);
        let p = self.pick(rng, dirs).unwrap_or_else(|| self.home.clone());
        let abs = self.abs(&p);
        let name = format!("{XATTR_PREFIX}k{}", rng.next() % 4);
        let have = self
            .lock()
            .get(&p)
            .and_then(|n| n.xattrs().get(&name).cloned());
        match rng.next() % 5 {
            0 | 1 => {
                let value = Self::random_bytes(rng, 64);
                match rustix::fs::setxattr(
                    &abs,
                    name.as_str(),
                    &value,
                    rustix::fs::XattrFlags::empty(),
                ) {
                    Ok(()) => {
                        if let Some(n) = self.lock().nodes.get_mut(&p) {
                            n.xattrs_mut().insert(name, value);
                        }
                        Found::Ok
                    }
                    Err(e) => io("setxattr", &p, e.into()),
                }
            }
            2 => {
                let mut buf = vec![0u8; 256];
                match (
                    rustix::fs::getxattr(&abs, name.as_str(), &mut buf[..]),
                    have,
                ) {
                    (Ok(n), Some(v)) if buf[..n] == v[..] => Found::Ok,
                    (Err(rustix::io::Errno::NODATA), None) => Found::Ok,
                    (Err(e), _) if e != rustix::io::Errno::NODATA => io("getxattr", &p, e.into()),
                    (got, want) => Found::Bad(format!(
                        "{} {name}: getxattr {:?}, the model has {:?}",
                        show(&p),
                        got.map(|n| buf[..n].to_vec()),
                        want
                    )),
                }
            }
            3 => match (rustix::fs::removexattr(&abs, name.as_str()), have) {
                (Ok(()), Some(_)) => {
                    if let Some(n) = self.lock().nodes.get_mut(&p) {
                        n.xattrs_mut().remove(&name);
                    }
                    Found::Ok
                }
                (Err(rustix::io::Errno::NODATA), None) => Found::Ok,
                (Err(e), _) if e != rustix::io::Errno::NODATA => io("removexattr", &p, e.into()),
                (got, want) => Found::Bad(format!(
                    "{} {name}: removexattr {got:?}, the model has {want:?}",
                    show(&p)
                )),
            },
            _ => {
                // List them all, and read the state (which fetches nothing).
                let want = self.lock().get(&p).map(|n| n.xattrs().clone());
                match (read_xattrs(&abs), state_bits(&abs)) {
                    (Ok(got), Ok(_)) if Some(&got) == want.as_ref() => Found::Ok,
                    (Err(e), _) | (_, Err(e)) => io("listxattr", &p, e),
                    (Ok(got), _) => Found::Bad(format!(
                        "{}: xattrs {:?}, the model has {:?}",
                        show(&p),
                        got.keys().collect::<Vec<_>>(),
                        want.map(|w| w.into_keys().collect::<Vec<_>>())
                    )),
                }
            }
        }
    }
}
