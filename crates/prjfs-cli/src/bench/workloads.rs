//! The file system workloads: each runs on the source directory (native) and
//! through a prjfs mount of it (default mount options), in this process.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fixture::{
    best_of, check, content, create_big, create_flat, io_err, progress, timed, BenchMount, Rng,
    TempDir, Tree,
};
use super::report::{Row, Section};

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
    /// The 4 KiB-file tree's source, and a mount of it whose files are hydrated.
    files_src: Option<PathBuf>,
    files_warm: Option<BenchMount>,
    big_src: Option<PathBuf>,
    big_mount: Option<BenchMount>,
    roots: usize,
    scratch: TempDir,
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
    pub fn new(sizes: Sizes, scratch: TempDir) -> Self {
        Self {
            sizes,
            files_src: None,
            files_warm: None,
            big_src: None,
            big_mount: None,
            roots: 0,
            scratch,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.scratch.0
    }

    /// A new, empty directory to mount on.
    fn fresh_root(&mut self, name: &str) -> PathBuf {
        self.roots += 1;
        self.dir().join(format!("root-{name}-{}", self.roots))
    }

    fn mount(&mut self, name: &str, source: &Path) -> Result<BenchMount, String> {
        let root = self.fresh_root(name);
        BenchMount::new(&[], source, &root)
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
    pub fn cold(&mut self) -> Result<Section, String> {
        let src = self.files_source()?;
        let t = self.sizes.files.clone();
        let files = t.files();
        let want = (files.len() * t.size) as u64;
        let reps = self.sizes.reps;
        let native = best_of(reps, "cold: native", || {
            let (n, d) = timed(|| read_files(&src, &files))?;
            expect("cold native bytes", n, want)?;
            Ok(d)
        })?;
        let mut last: Option<BenchMount> = None;
        let mut prjfs = Vec::new();
        for r in 0..reps {
            check()?;
            // The previous mount is unmounted outside the timed part.
            drop(last.take());
            let m = self.mount("cold", &src)?;
            let (n, d) = timed(|| read_files(&m.root, &files))?;
            expect("cold prjfs bytes", n, want)?;
            progress(&format!(
                "cold: prjfs run {}/{reps}: {:.3} s",
                r + 1,
                d.as_secs_f64()
            ));
            prjfs.push(d);
            last = Some(m);
        }
        if let Some(m) = &last {
            for (i, f) in files.iter().enumerate().step_by(997) {
                let p = m.root.join(f);
                let data = std::fs::read(&p).map_err(io_err(&p))?;
                if data != content(i, t.size) {
                    return Err(format!("{}: wrong content", p.display()));
                }
            }
        }
        if self.files_warm.is_none() {
            self.files_warm = last;
        }
        let ops = files.len() as u64;
        let native = Row::new("cold", "native", &native, ops, want);
        let prjfs =
            Row::new("cold", "prjfs (fresh mount)", &prjfs, ops, want).vs("prjfs/native", &native);
        Ok(Section {
            workload: "cold".into(),
            description: format!(
                "read every file of {} (open, read to EOF, close); prjfs: a fresh mount \
                 on an empty root per run, no latency; best of {reps}; ops = files",
                self.files_desc()
            ),
            rows: vec![native, prjfs],
        })
    }

    /// 2. warm metadata: stat every path of a tree that is already placeholders.
    pub fn stat(&mut self) -> Result<Section, String> {
        let t = self.sizes.stat.clone();
        let src = self.dir().join("src-stat");
        progress(&format!("creating {} empty files", t.file_count()));
        t.create(&src)?;
        let paths = t.paths();
        let reps = self.sizes.reps;
        let (_, native_first) = timed(|| stat_paths(&src, &paths))?;
        let native = best_of(reps, "stat: native", || {
            Ok(timed(|| stat_paths(&src, &paths))?.1)
        })?;
        let m = self.mount("stat", &src)?;
        let (_, first) = timed(|| stat_paths(&m.root, &paths))?;
        progress(&format!(
            "stat: prjfs first pass (placeholders created): {:.3} s",
            first.as_secs_f64()
        ));
        let prjfs = best_of(reps, "stat: prjfs", || {
            Ok(timed(|| stat_paths(&m.root, &paths))?.1)
        })?;
        drop(m);
        let ops = paths.len() as u64;
        let native_first = Row::new("stat", "native first pass", &[native_first], ops, 0);
        let native = Row::new("stat", "native", &native, ops, 0);
        let first = Row::new("stat", "prjfs first pass", &[first], ops, 0)
            .vs("prjfs/native", &native_first);
        let prjfs =
            Row::new("stat", "prjfs (placeholders)", &prjfs, ops, 0).vs("prjfs/native", &native);
        Ok(Section {
            workload: "stat".into(),
            description: format!(
                "symlink_metadata of every path of a {}-path tree ({} empty files in {}x{} \
                 nested dirs) after an untimed first pass (which, through prjfs, makes every \
                 path a placeholder; shown as 'first pass'); best of {reps}; ops = stats",
                paths.len(),
                t.file_count(),
                t.top,
                t.sub
            ),
            rows: vec![native_first, first, native, prjfs],
        })
    }

    /// The big file's source and a mount in which it is hydrated; the hydrating
    /// read's time is returned the first time.
    fn big_file(&mut self) -> Result<(PathBuf, PathBuf, Option<Duration>), String> {
        if let (Some(s), Some(m)) = (&self.big_src, &self.big_mount) {
            return Ok((s.join("big"), m.root.join("big"), None));
        }
        let src = self.dir().join("src-big");
        std::fs::create_dir_all(&src).map_err(io_err(&src))?;
        progress(&format!("creating a {} MiB file", self.sizes.big >> 20));
        create_big(&src.join("big"), self.sizes.big)?;
        let m = self.mount("big", &src)?;
        let (n, d) = timed(|| read_seq(&m.root.join("big")))?;
        expect("hydrating read bytes", n, self.sizes.big)?;
        progress(&format!(
            "seq: prjfs first read (hydration): {:.3} s",
            d.as_secs_f64()
        ));
        let out = (src.join("big"), m.root.join("big"), Some(d));
        self.big_src = Some(src);
        self.big_mount = Some(m);
        Ok(out)
    }

    /// 3a. sequential read of a hydrated file with 1 MiB buffers.
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
            rows.push(
                Row::new("seq", "prjfs first read (hydrates)", &[h], 1, size)
                    .mb()
                    .vs("prjfs/native", &native),
            );
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
                 sides; prjfs: the file hydrated by an earlier read; best of {reps}",
                size >> 20
            ),
            rows,
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
        })
    }

    /// 4. open+read+close of small hydrated files.
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
        let root = self.files_warm.as_ref().expect("mounted").root.clone();
        let reps = self.sizes.reps;
        let bench = |label: &str, dir: &Path| {
            best_of(reps, label, || {
                let (n, d) = timed(|| read_files(dir, &files))?;
                expect("small read bytes", n, want)?;
                Ok(d)
            })
        };
        let native = bench("small: native", &src)?;
        let prjfs = bench("small: prjfs", &root)?;
        let ops = files.len() as u64;
        let native = Row::new("small", "native", &native, ops, want);
        let prjfs =
            Row::new("small", "prjfs (hydrated)", &prjfs, ops, want).vs("prjfs/native", &native);
        Ok(Section {
            workload: "small".into(),
            description: format!(
                "open+read+close of {} already hydrated; best of {reps}; ops = files",
                self.files_desc()
            ),
            rows: vec![native, prjfs],
        })
    }

    /// 5. listing a directory of many entries: virtual, then on disk.
    pub fn list(&mut self) -> Result<Section, String> {
        let n = self.sizes.list;
        let src = self.dir().join("src-list");
        progress(&format!("creating a directory of {n} entries"));
        let names = create_flat(&src.join("dir"), n)?;
        let reps = self.sizes.reps;
        let native = best_of(reps, "list: native", || {
            let (got, d) = timed(|| list_dir(&src.join("dir")))?;
            expect("native listing entries", got, n)?;
            Ok(d)
        })?;
        let mut last: Option<BenchMount> = None;
        let mut virt = Vec::new();
        for r in 0..reps {
            check()?;
            drop(last.take());
            let m = self.mount("list", &src)?;
            let (got, d) = timed(|| list_dir(&m.root.join("dir")))?;
            expect("virtual listing entries", got, n)?;
            progress(&format!(
                "list: prjfs virtual run {}/{reps}: {:.3} s",
                r + 1,
                d.as_secs_f64()
            ));
            virt.push(d);
            last = Some(m);
        }
        let m = last.expect("reps >= 1");
        let dir = m.root.join("dir");
        let names: Vec<PathBuf> = names.into_iter().map(PathBuf::from).collect();
        let (_, d) = timed(|| stat_paths(&dir, &names))?;
        progress(&format!(
            "list: stat pass (placeholders created): {:.3} s",
            d.as_secs_f64()
        ));
        let disk = best_of(reps, "list: prjfs on disk", || {
            let (got, d) = timed(|| list_dir(&dir))?;
            expect("on-disk listing entries", got, n)?;
            Ok(d)
        })?;
        drop(m);
        let ops = n as u64;
        let native = Row::new("list", "native", &native, ops, 0);
        let virt =
            Row::new("list", "prjfs virtual (fresh)", &virt, ops, 0).vs("prjfs/native", &native);
        let disk = Row::new("list", "prjfs on disk", &disk, ops, 0).vs("prjfs/native", &native);
        Ok(Section {
            workload: "list".into(),
            description: format!(
                "read_dir of one directory of {n} entries (names only): virtual = first \
                 listing through a fresh mount; on disk = after a stat pass made every entry a \
                 placeholder; best of {reps}; ops = entries"
            ),
            rows: vec![native, virt, disk],
        })
    }
}
