//! The file system workloads: each runs on the source directory (native) and
//! through a prjfs mount of it (default mount options), in this process; `cold`,
//! `stat` (first pass), `small` and `list` also through a bindfs mount of the same
//! source when bindfs is installed (the peer). `write` is in `write.rs`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::fixture::{
    best_of, check, content, create_big, create_flat, io_err, progress, rss_bytes, timed,
    BenchMount, BindfsMount, Peer, Rng, TempDir, Tree,
};
use super::report::{Note, Row, Section};

/// How big the trees are and how often warm workloads repeat.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub reps: usize,
    /// cold and small: nested directories of 4 KiB files.
    pub files: Tree,
    /// stat: nested directories of empty files.
    pub stat: Tree,
    /// seq and rand: one file of this many bytes.
    pub big: u64,
    /// rand: this many 4 KiB preads.
    pub rand_reads: usize,
    /// list: one directory with this many entries.
    pub list: usize,
    /// write: the file written 4 KiB at a time has this many bytes.
    pub write_big: u64,
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            reps: 3,
            files: Tree {
                top: 10,
                sub: 10,
                files: 100,
                size: 4096,
            },
            stat: Tree {
                top: 10,
                sub: 10,
                files: 499,
                size: 0,
            },
            big: 1 << 30,
            rand_reads: 200_000,
            list: 100_000,
            write_big: 256 << 20,
        }
    }

    pub fn quick() -> Self {
        Self {
            reps: 1,
            files: Tree {
                top: 4,
                sub: 5,
                files: 50,
                size: 4096,
            },
            stat: Tree {
                top: 4,
                sub: 5,
                files: 249,
                size: 0,
            },
            big: 64 << 20,
            rand_reads: 20_000,
            list: 10_000,
            write_big: 16 << 20,
        }
    }
}

const SEED: u64 = 0x5eed_f00d;
const BLOCK: usize = 4096;

/// The trees and mounts of one run, created on first use and shared between the
/// workloads that read the same tree. Fields drop in order: the mounts before the
/// scratch directory that holds their sources and roots.
pub struct Suite {
    sizes: Sizes,
    /// bindfs, when installed: the peer run beside prjfs.
    peer: Option<Peer>,
    /// The 4 KiB-file tree's source, and a mount of it whose files are hydrated.
    files_src: Option<PathBuf>,
    files_warm: Option<BenchMount>,
    /// A bindfs mount of the same tree whose files were read once.
    files_bindfs: Option<BindfsMount>,
    big_src: Option<PathBuf>,
    big_mount: Option<BenchMount>,
    roots: usize,
    scratch: TempDir,
}

/// The first read of the big file through prjfs (hydrating it) and a `cp` of the
/// source file to a new file on the same file system, timed in the same run.
#[derive(Clone, Copy, Debug)]
struct Hydration {
    first_read: Duration,
    cp: Duration,
}

/// Reads every file (open, read to EOF, close); returns the bytes read.
fn read_files(dir: &Path, files: &[PathBuf]) -> Result<u64, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    for (i, f) in files.iter().enumerate() {
        if i % 1000 == 0 {
            check()?;
        }
        let p = dir.join(f);
        let mut file = File::open(&p).map_err(io_err(&p))?;
        loop {
            let n = file.read(&mut buf).map_err(io_err(&p))?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

fn stat_paths(dir: &Path, paths: &[PathBuf]) -> Result<(), String> {
    for (i, rel) in paths.iter().enumerate() {
        if i % 1000 == 0 {
            check()?;
        }
        let p = dir.join(rel);
        std::fs::symlink_metadata(&p).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Walks the tree below `top` the way `find -ls` or `os.walk` + `lstat` do: each
/// directory is listed whole, then every entry is `lstat`ed, and the
/// subdirectories are walked the same way, depth first in listing order (as
/// `find` and `os.walk` enter them). Returns the number of paths stat'd (every
/// path below `top`).
pub(super) fn walk(top: &Path) -> Result<usize, String> {
    let mut dirs = vec![top.to_path_buf()];
    let mut names = Vec::new();
    let mut subdirs = Vec::new();
    let mut n = 0;
    while let Some(dir) = dirs.pop() {
        check()?;
        names.clear();
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            names.push(e.map_err(io_err(&dir))?.file_name());
        }
        for name in &names {
            let p = dir.join(name);
            if std::fs::symlink_metadata(&p).map_err(io_err(&p))?.is_dir() {
                subdirs.push(p);
            }
            n += 1;
        }
        // The stack pops the last pushed first: push them last to first.
        dirs.extend(subdirs.drain(..).rev());
    }
    Ok(n)
}

/// A walk of `top` (see [`walk`]) that must see `want` paths; returns its time.
fn timed_walk(top: &Path, want: usize) -> Result<Duration, String> {
    let (n, d) = timed(|| walk(top))?;
    expect("paths walked", n, want)?;
    Ok(d)
}

/// `reps` runs, each through a new mount made by `mount` (the previous mount is
/// unmounted outside the timed part); returns every time and the last mount.
/// Every mount of this run is `--no-open` already (`prjfs bench --no-open`).
fn no_open_run() -> bool {
    super::fixture::mount_options()
        .iter()
        .any(|o| o == "--no-open")
}

fn fresh_runs<M>(
    reps: usize,
    label: &str,
    mut mount: impl FnMut() -> Result<M, String>,
    mut run: impl FnMut(&M) -> Result<Duration, String>,
) -> Result<(Vec<Duration>, M), String> {
    let mut last: Option<M> = None;
    let mut times = Vec::with_capacity(reps);
    for r in 0..reps.max(1) {
        check()?;
        drop(last.take());
        let m = mount()?;
        let d = run(&m)?;
        progress(&format!(
            "{label} run {}/{reps}: {:.3} s",
            r + 1,
            d.as_secs_f64()
        ));
        times.push(d);
        last = Some(m);
    }
    Ok((times, last.expect("at least one run")))
}

/// Copies `from` to a new file `to` with `cp` (the file system's own copy: GNU
/// cp uses reflinks or copy_file_range where it can); returns its time. Dirty
/// pages of earlier work are written back first, outside the timed part.
fn timed_cp(from: &Path, to: &Path) -> Result<Duration, String> {
    rustix::fs::sync();
    let (status, d) = timed(|| {
        Command::new("cp")
            .arg(from)
            .arg(to)
            .status()
            .map_err(|e| format!("cp: {e}"))
    })?;
    if !status.success() {
        return Err(format!("cp {} {}: {status}", from.display(), to.display()));
    }
    Ok(d)
}

fn list_dir(dir: &Path) -> Result<usize, String> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        e.map_err(io_err(dir))?;
        n += 1;
    }
    Ok(n)
}

fn read_seq(path: &Path) -> Result<u64, String> {
    let mut buf = vec![0u8; 1 << 20];
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        // One relaxed atomic load per MiB: nothing next to the copy.
        check()?;
    }
}

/// `reads` preads of 4 KiB at random aligned offsets; returns a checksum of the
/// bytes so that both sides can be compared.
fn read_rand(path: &Path, size: u64, reads: usize) -> Result<u64, String> {
    let f = File::open(path).map_err(io_err(path))?;
    let blocks = size / BLOCK as u64;
    let mut rng = Rng::new(SEED);
    let mut buf = [0u8; BLOCK];
    let mut sum = 0u64;
    for i in 0..reads {
        if i % 10_000 == 0 {
            check()?;
        }
        let off = (rng.next() % blocks) * BLOCK as u64;
        f.read_exact_at(&mut buf, off).map_err(io_err(path))?;
        sum = sum.wrapping_add(u64::from(buf[i % BLOCK]));
    }
    Ok(sum)
}

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

impl Suite {
    pub fn new(sizes: Sizes, peer: Option<Peer>, scratch: TempDir) -> Self {
        Self {
            sizes,
            peer,
            files_src: None,
            files_warm: None,
            files_bindfs: None,
            big_src: None,
            big_mount: None,
            roots: 0,
            scratch,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.scratch.0
    }

    pub(super) fn sizes(&self) -> &Sizes {
        &self.sizes
    }

    /// Whether bindfs runs beside prjfs.
    pub(super) fn has_peer(&self) -> bool {
        self.peer.is_some()
    }

    /// A new, empty directory to mount on.
    fn fresh_root(&mut self, name: &str) -> PathBuf {
        self.roots += 1;
        self.dir().join(format!("root-{name}-{}", self.roots))
    }

    pub(super) fn mount(&mut self, name: &str, source: &Path) -> Result<BenchMount, String> {
        let root = self.fresh_root(name);
        BenchMount::new(&[], source, &root)
    }

    /// A fresh `prjfs mount --no-open` of `source`, for the rows that show
    /// what no-open mode buys; `None` when every mount of the run is one
    /// already (`prjfs bench --no-open`).
    fn mount_no_open(&mut self, name: &str, source: &Path) -> Option<Result<BenchMount, String>> {
        if no_open_run() {
            return None;
        }
        let root = self.fresh_root(&format!("{name}-no-open"));
        Some(BenchMount::new(&["--no-open".into()], source, &root))
    }

    /// A fresh bindfs mount of `source` (call only when there is a peer).
    pub(super) fn bindfs(&mut self, name: &str, source: &Path) -> Result<BindfsMount, String> {
        let peer = self.peer.clone().ok_or("bindfs is not installed")?;
        let root = self.fresh_root(&format!("bindfs-{name}"));
        BindfsMount::new(&peer, source, &root)
    }

    fn files_source(&mut self) -> Result<PathBuf, String> {
        if let Some(p) = &self.files_src {
            return Ok(p.clone());
        }
        let src = self.dir().join("src-files");
        let t = &self.sizes.files;
        progress(&format!(
            "creating {} files of {} bytes",
            t.file_count(),
            t.size
        ));
        t.create(&src)?;
        self.files_src = Some(src.clone());
        Ok(src)
    }

    fn files_desc(&self) -> String {
        let t = &self.sizes.files;
        format!(
            "{} files of {} KiB in {}x{} nested dirs",
            t.file_count(),
            t.size / 1024,
            t.top,
            t.sub
        )
    }

    /// 1. cold: read everything through a fresh mount (lookups + hydration).
    ///
    /// The same through a fresh bindfs mount per run (the peer).
    pub fn cold(&mut self) -> Result<Section, String> {
        let src = self.files_source()?;
        let t = self.sizes.files.clone();
        let files = t.files();
        let want = (files.len() * t.size) as u64;
        let reps = self.sizes.reps;
        let read_all = |root: &Path, what: &str| -> Result<Duration, String> {
            let (n, d) = timed(|| read_files(root, &files))?;
            expect(what, n, want)?;
            Ok(d)
        };
        let native = best_of(reps, "cold: native", || read_all(&src, "cold native bytes"))?;
        let bindfs = if self.peer.is_some() {
            let (times, m) = fresh_runs(
                reps,
                "cold: bindfs",
                || self.bindfs("cold", &src),
                |m: &BindfsMount| read_all(&m.root, "cold bindfs bytes"),
            )?;
            if self.files_bindfs.is_none() {
                self.files_bindfs = Some(m);
            }
            Some(times)
        } else {
            None
        };
        let (prjfs, m) = fresh_runs(
            reps,
            "cold: prjfs",
            || self.mount("cold", &src),
            |m: &BenchMount| read_all(&m.root, "cold prjfs bytes"),
        )?;
        for (i, f) in files.iter().enumerate().step_by(997) {
            let p = m.root.join(f);
            let data = std::fs::read(&p).map_err(io_err(&p))?;
            if data != content(i, t.size) {
                return Err(format!("{}: wrong content", p.display()));
            }
        }
        if self.files_warm.is_none() {
            self.files_warm = Some(m);
        }
        let no_open = if no_open_run() {
            None
        } else {
            let (times, _) = fresh_runs(
                reps,
                "cold: prjfs --no-open",
                || {
                    let root = self.fresh_root("cold-no-open");
                    BenchMount::new(&["--no-open".into()], &src, &root)
                },
                |m: &BenchMount| read_all(&m.root, "cold prjfs --no-open bytes"),
            )?;
            Some(times)
        };
        let ops = files.len() as u64;
        let native = Row::new("cold", "native", &native, ops, want);
        let bindfs = bindfs.map(|b| {
            Row::new("cold", "bindfs (fresh mount)", &b, ops, want).vs("bindfs/native", &native)
        });
        let prjfs = Row::new("cold", "prjfs (fresh mount)", &prjfs, ops, want)
            .vs("prjfs/native", &native)
            .vs_opt("prjfs/bindfs", bindfs.as_ref());
        let no_open = no_open.map(|t| {
            Row::new("cold", "prjfs --no-open (fresh mount)", &t, ops, want)
                .vs("prjfs/native", &native)
                .vs_opt("prjfs/bindfs", bindfs.as_ref())
        });
        Ok(Section {
            workload: "cold".into(),
            description: format!(
                "read every file of {} (open, read to EOF, close); prjfs and bindfs: a fresh \
                 mount (prjfs: on an empty root) per run, no latency; best of {reps}; ops = files",
                self.files_desc()
            ),
            rows: [Some(native), bindfs, Some(prjfs), no_open]
                .into_iter()
                .flatten()
                .collect(),
            notes: Vec::new(),
        })
    }

    /// 2. metadata: a first-pass walk, then warm stats and warm walks.
    ///
    /// The first pass (list each directory, then stat every entry) runs through
    /// a fresh mount, prjfs (with the daemon's memory growth) and bindfs; then
    /// stats of the known paths and walks on the prjfs mount, beside native.
    pub fn stat(&mut self) -> Result<Section, String> {
        let t = self.sizes.stat.clone();
        let src = self.dir().join("src-stat");
        progress(&format!("creating {} empty files", t.file_count()));
        t.create(&src)?;
        let paths = t.paths();
        let count = paths.len();
        let reps = self.sizes.reps;
        let native_first = timed_walk(&src, count)?;
        let native = best_of(reps, "stat: native", || {
            Ok(timed(|| stat_paths(&src, &paths))?.1)
        })?;
        let bindfs_first = if self.peer.is_some() {
            let m = self.bindfs("stat", &src)?;
            let d = timed_walk(&m.root, count)?;
            progress(&format!(
                "stat: bindfs first pass (walk): {:.3} s",
                d.as_secs_f64()
            ));
            Some(d)
        } else {
            None
        };
        let m = self.mount("stat", &src)?;
        let pid = m.daemon_pid()?;
        let rss_before = rss_bytes(pid)?;
        let first = timed_walk(&m.root, count)?;
        let rss_after = rss_bytes(pid)?;
        progress(&format!(
            "stat: prjfs first pass (walk; placeholders created): {:.3} s",
            first.as_secs_f64()
        ));
        let prjfs = best_of(reps, "stat: prjfs", || {
            Ok(timed(|| stat_paths(&m.root, &paths))?.1)
        })?;
        let native_walk = best_of(reps, "stat: native walk", || timed_walk(&src, count))?;
        let prjfs_walk = best_of(reps, "stat: prjfs walk", || timed_walk(&m.root, count))?;
        drop(m);
        let ops = count as u64;
        let native_first = Row::new("stat", "native first pass (walk)", &[native_first], ops, 0);
        let bindfs_first = bindfs_first.map(|b| {
            Row::new("stat", "bindfs first pass (walk)", &[b], ops, 0)
                .vs("bindfs/native", &native_first)
        });
        let first = Row::new("stat", "prjfs first pass (walk)", &[first], ops, 0)
            .vs("prjfs/native", &native_first)
            .vs_opt("prjfs/bindfs", bindfs_first.as_ref());
        let native = Row::new("stat", "native", &native, ops, 0);
        let prjfs =
            Row::new("stat", "prjfs (placeholders)", &prjfs, ops, 0).vs("prjfs/native", &native);
        let native_walk = Row::new("stat", "native warm walk", &native_walk, ops, 0);
        let prjfs_walk = Row::new("stat", "prjfs warm walk", &prjfs_walk, ops, 0)
            .vs("prjfs/native", &native_walk);
        Ok(Section {
            workload: "stat".into(),
            description: format!(
                "a {count}-path tree ({} empty files in {}x{} nested dirs). First pass: one \
                 walk as find/os.walk do it (list each directory, then symlink_metadata every \
                 entry, recursing) on the source (native), through a fresh bindfs mount and \
                 through a fresh prjfs mount (which makes every path a placeholder). Then \
                 symlink_metadata of every known path, and warm walks (as `find -ls`), best of \
                 {reps}; ops = stats",
                t.file_count(),
                t.top,
                t.sub
            ),
            rows: [
                Some(native_first),
                bindfs_first,
                Some(first),
                Some(native),
                Some(prjfs),
                Some(native_walk),
                Some(prjfs_walk),
            ]
            .into_iter()
            .flatten()
            .collect(),
            notes: vec![rss_note(rss_before, rss_after, count)],
        })
    }

    /// The big file's source and a mount in which it is hydrated; the hydrating
    /// read's time, and that of a `cp` of the source file, the first time.
    fn big_file(&mut self) -> Result<(PathBuf, PathBuf, Option<Hydration>), String> {
        if let (Some(s), Some(m)) = (&self.big_src, &self.big_mount) {
            return Ok((s.join("big"), m.root.join("big"), None));
        }
        let src = self.dir().join("src-big");
        std::fs::create_dir_all(&src).map_err(io_err(&src))?;
        progress(&format!("creating a {} MiB file", self.sizes.big >> 20));
        create_big(&src.join("big"), self.sizes.big)?;
        let m = self.mount("big", &src)?;
        let (n, first_read) = timed(|| read_seq(&m.root.join("big")))?;
        expect("hydrating read bytes", n, self.sizes.big)?;
        progress(&format!(
            "seq: prjfs first read (hydration): {:.3} s",
            first_read.as_secs_f64()
        ));
        let copy = self.dir().join("cp-big");
        let cp = timed_cp(&src.join("big"), &copy);
        let _ = std::fs::remove_file(&copy);
        let cp = cp?;
        progress(&format!(
            "seq: cp of the source file: {:.3} s",
            cp.as_secs_f64()
        ));
        let out = (
            src.join("big"),
            m.root.join("big"),
            Some(Hydration { first_read, cp }),
        );
        self.big_src = Some(src);
        self.big_mount = Some(m);
        Ok(out)
    }

    /// 3a. sequential read of a hydrated file with 1 MiB buffers.
    ///
    /// Also the first (hydrating) read, beside a `cp` of the file.
    pub fn seq(&mut self) -> Result<Section, String> {
        let (native_path, prjfs_path, hydration) = self.big_file()?;
        let size = self.sizes.big;
        let reps = self.sizes.reps;
        let bench = |label: &str, p: &Path| {
            best_of(reps, label, || {
                let (n, d) = timed(|| read_seq(p))?;
                expect("sequential read bytes", n, size)?;
                Ok(d)
            })
        };
        let native = bench("seq: native", &native_path)?;
        let prjfs = bench("seq: prjfs", &prjfs_path)?;
        let native = Row::new("seq", "native", &native, 1, size).mb();
        let mut rows = vec![native.clone()];
        if let Some(h) = hydration {
            let cp = Row::new("seq", "native cp (to a new file)", &[h.cp], 1, size)
                .mb()
                .vs("cp/native", &native);
            rows.push(
                Row::new(
                    "seq",
                    "prjfs first read (hydrates)",
                    &[h.first_read],
                    1,
                    size,
                )
                .mb()
                .vs("prjfs/native", &native)
                .vs("prjfs first read/cp", &cp),
            );
            rows.insert(1, cp);
        }
        rows.push(
            Row::new("seq", "prjfs (hydrated)", &prjfs, 1, size)
                .mb()
                .vs("prjfs/native", &native),
        );
        Ok(Section {
            workload: "seq".into(),
            description: format!(
                "sequential read of a {} MiB file with 1 MiB buffers, page cache warm on both \
                 sides; prjfs: the file hydrated by an earlier read; best of {reps}. The first \
                 (hydrating) read is one run, beside one `cp` of the source file to a new file \
                 on the same file system (after a sync; removed after)",
                size >> 20
            ),
            rows,
            notes: Vec::new(),
        })
    }

    /// 3b. 4 KiB random preads on the hydrated file, the same offsets both sides.
    pub fn rand(&mut self) -> Result<Section, String> {
        let (native_path, prjfs_path, _) = self.big_file()?;
        let size = self.sizes.big;
        let reads = self.sizes.rand_reads;
        let reps = self.sizes.reps;
        let mut sums = Vec::new();
        let mut bench = |label: &str, p: &Path| {
            best_of(reps, label, || {
                let (sum, d) = timed(|| read_rand(p, size, reads))?;
                sums.push(sum);
                Ok(d)
            })
        };
        let native = bench("rand: native", &native_path)?;
        let prjfs = bench("rand: prjfs", &prjfs_path)?;
        if sums.windows(2).any(|w| w[0] != w[1]) {
            return Err("rand: prjfs and native read different bytes".into());
        }
        let (ops, bytes) = (reads as u64, (reads * BLOCK) as u64);
        let native = Row::new("rand", "native", &native, ops, bytes);
        let prjfs =
            Row::new("rand", "prjfs (hydrated)", &prjfs, ops, bytes).vs("prjfs/native", &native);
        Ok(Section {
            workload: "rand".into(),
            description: format!(
                "{reads} preads of 4 KiB at random aligned offsets (same seed both sides) of the \
                 {} MiB hydrated file, one thread; best of {reps}; ops = preads",
                size >> 20
            ),
            rows: vec![native, prjfs],
            notes: Vec::new(),
        })
    }

    /// 4. open+read+close of small hydrated files.
    ///
    /// Also through a bindfs mount whose files were read once.
    pub fn small(&mut self) -> Result<Section, String> {
        let src = self.files_source()?;
        let t = self.sizes.files.clone();
        let files = t.files();
        let want = (files.len() * t.size) as u64;
        if self.files_warm.is_none() {
            let m = self.mount("small", &src)?;
            let (_, d) = timed(|| read_files(&m.root, &files))?;
            progress(&format!("small: hydrating read: {:.3} s", d.as_secs_f64()));
            self.files_warm = Some(m);
        }
        if self.peer.is_some() && self.files_bindfs.is_none() {
            let m = self.bindfs("small", &src)?;
            let (_, d) = timed(|| read_files(&m.root, &files))?;
            progress(&format!(
                "small: bindfs first read: {:.3} s",
                d.as_secs_f64()
            ));
            self.files_bindfs = Some(m);
        }
        let root = self.files_warm.as_ref().expect("mounted").root.clone();
        let bindfs_root = self.files_bindfs.as_ref().map(|m| m.root.clone());
        let reps = self.sizes.reps;
        let bench = |label: &str, dir: &Path| {
            best_of(reps, label, || {
                let (n, d) = timed(|| read_files(dir, &files))?;
                expect("small read bytes", n, want)?;
                Ok(d)
            })
        };
        let native = bench("small: native", &src)?;
        let bindfs = match &bindfs_root {
            Some(r) => Some(bench("small: bindfs", r)?),
            None => None,
        };
        let prjfs = bench("small: prjfs", &root)?;
        let no_open = match self.mount_no_open("small", &src) {
            Some(m) => {
                let m = m?;
                let (_, d) = timed(|| read_files(&m.root, &files))?;
                progress(&format!(
                    "small: --no-open hydrating read: {:.3} s",
                    d.as_secs_f64()
                ));
                Some(bench("small: prjfs --no-open", &m.root)?)
            }
            None => None,
        };
        let ops = files.len() as u64;
        let native = Row::new("small", "native", &native, ops, want);
        let bindfs = bindfs.map(|b| {
            Row::new("small", "bindfs (read before)", &b, ops, want).vs("bindfs/native", &native)
        });
        let prjfs = Row::new("small", "prjfs (hydrated)", &prjfs, ops, want)
            .vs("prjfs/native", &native)
            .vs_opt("prjfs/bindfs", bindfs.as_ref());
        let no_open = no_open.map(|t| {
            Row::new("small", "prjfs --no-open (hydrated)", &t, ops, want)
                .vs("prjfs/native", &native)
                .vs_opt("prjfs/bindfs", bindfs.as_ref())
        });
        Ok(Section {
            workload: "small".into(),
            description: format!(
                "open+read+close of {} already hydrated (bindfs: every file read once \
                 before through the same mount); best of {reps}; ops = files",
                self.files_desc()
            ),
            rows: [Some(native), bindfs, Some(prjfs), no_open]
                .into_iter()
                .flatten()
                .collect(),
            notes: Vec::new(),
        })
    }

    /// 5. listing a directory of many entries: virtual, then on disk.
    ///
    /// Also the first listing through a fresh bindfs mount per run.
    pub fn list(&mut self) -> Result<Section, String> {
        let n = self.sizes.list;
        let src = self.dir().join("src-list");
        progress(&format!("creating a directory of {n} entries"));
        let names = create_flat(&src.join("dir"), n)?;
        let reps = self.sizes.reps;
        let list_n = |dir: &Path, what: &str| -> Result<Duration, String> {
            let (got, d) = timed(|| list_dir(dir))?;
            expect(what, got, n)?;
            Ok(d)
        };
        let native = best_of(reps, "list: native", || {
            list_n(&src.join("dir"), "native listing entries")
        })?;
        let bindfs = if self.peer.is_some() {
            let (times, _) = fresh_runs(
                reps,
                "list: bindfs",
                || self.bindfs("list", &src),
                |m: &BindfsMount| list_n(&m.root.join("dir"), "bindfs listing entries"),
            )?;
            Some(times)
        } else {
            None
        };
        let (virt, m) = fresh_runs(
            reps,
            "list: prjfs virtual",
            || self.mount("list", &src),
            |m: &BenchMount| list_n(&m.root.join("dir"), "virtual listing entries"),
        )?;
        let dir = m.root.join("dir");
        let names: Vec<PathBuf> = names.into_iter().map(PathBuf::from).collect();
        let (_, d) = timed(|| stat_paths(&dir, &names))?;
        progress(&format!(
            "list: stat pass (placeholders created): {:.3} s",
            d.as_secs_f64()
        ));
        let disk = best_of(reps, "list: prjfs on disk", || {
            list_n(&dir, "on-disk listing entries")
        })?;
        drop(m);
        let ops = n as u64;
        let native = Row::new("list", "native", &native, ops, 0);
        let bindfs = bindfs.map(|b| {
            Row::new("list", "bindfs (fresh mount)", &b, ops, 0).vs("bindfs/native", &native)
        });
        let virt = Row::new("list", "prjfs virtual (fresh)", &virt, ops, 0)
            .vs("prjfs/native", &native)
            .vs_opt("prjfs/bindfs", bindfs.as_ref());
        let disk = Row::new("list", "prjfs on disk", &disk, ops, 0)
            .vs("prjfs/native", &native)
            .vs_opt("prjfs/bindfs", bindfs.as_ref());
        Ok(Section {
            workload: "list".into(),
            description: format!(
                "read_dir of one directory of {n} entries (names only): virtual = first \
                 listing through a fresh mount; on disk = after a stat pass made every entry a \
                 placeholder; bindfs: first listing through a fresh mount; best of {reps}; \
                 ops = entries"
            ),
            rows: [Some(native), bindfs, Some(virt), Some(disk)]
                .into_iter()
                .flatten()
                .collect(),
            notes: Vec::new(),
        })
    }
}

/// The daemon's resident memory growth over the first-pass walk, per path.
fn rss_note(before: u64, after: u64, paths: usize) -> Note {
    let growth = after as i64 - before as i64;
    let per_path = growth as f64 / paths as f64;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Note {
        key: "daemon_rss_growth".into(),
        text: format!(
            "prjfs daemon RSS over the first pass: {:.1} -> {:.1} MiB, {:+.1} MiB for {paths} \
             paths = {per_path:.0} bytes/path",
            mib(before),
            mib(after),
            growth as f64 / (1024.0 * 1024.0)
        ),
        value: serde_json::json!({
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "paths": paths,
            "bytes_per_path": per_path,
        }),
    }
}
