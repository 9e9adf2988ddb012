//! The `write` workload: what a build, an unpack or a copy into a projection
//! does, through a fresh mount of an empty source (every file is local, full),
//! beside the same work in a plain directory of the same file system and,
//! when bindfs is installed, through a fresh bindfs mount of an empty directory:
//!
//! - `tree`: create the 10k-file tree of `cold` and `small` (mkdir, then
//!   create + write + close every file), as `tar -x` or `cp -r` do;
//! - `4k`: write a new file of `write_big` bytes with 4 KiB `write(2)` calls
//!   (no fsync), as a compiler or a logger does.
//!
//! Every run starts after a `sync` (outside the timed part) on a new directory,
//! and the bytes written are removed after it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::fixture::{best_of, io_err, progress, timed, BenchMount, BindfsMount};
use super::report::{Row, Section};
use super::workloads::Suite;

const BLOCK: usize = 4096;

/// Writes `size` bytes to the new file `path` in 4 KiB `write(2)` calls.
fn write_4k(path: &Path, size: u64) -> Result<(), String> {
    let mut f = File::create_new(path).map_err(io_err(path))?;
    let block = [0x5au8; BLOCK];
    let mut left = size;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        f.write_all(&block[..n]).map_err(io_err(path))?;
        left -= n as u64;
    }
    Ok(())
}

/// Where a run writes: a plain directory, or a mount kept for all the runs.
enum Target {
    Native(std::path::PathBuf),
    Prjfs(BenchMount),
    Bindfs(BindfsMount),
}

impl Target {
    fn dir(&self) -> &Path {
        match self {
            Target::Native(p) => p,
            Target::Prjfs(m) => &m.root,
            Target::Bindfs(m) => &m.root,
        }
    }
}

/// Best of `reps` runs of `work` in a new directory under `target` each, after
/// a sync; the directory is removed after each run.
fn runs(
    reps: usize,
    label: &str,
    target: &Target,
    work: impl Fn(&Path) -> Result<(), String>,
) -> Result<Vec<Duration>, String> {
    let mut n = 0;
    best_of(reps, label, || {
        n += 1;
        let dir = target.dir().join(format!("run-{n}"));
        std::fs::create_dir(&dir).map_err(io_err(&dir))?;
        rustix::fs::sync();
        let ((), d) = timed(|| work(&dir))?;
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(d)
    })
}

impl Suite {
    /// 7. writes into a projection: a tree of small files, and a file written
    ///    4 KiB at a time.
    pub fn write(&mut self) -> Result<Section, String> {
        let reps = self.sizes().reps;
        let tree = self.sizes().files.clone();
        let big = self.sizes().write_big;
        let empty = self.dir().join("src-empty");
        std::fs::create_dir_all(&empty).map_err(io_err(&empty))?;
        let native_dir = self.dir().join("native-writes");
        std::fs::create_dir_all(&native_dir).map_err(io_err(&native_dir))?;
        let mut targets = vec![("native", Target::Native(native_dir))];
        if self.has_peer() {
            let bindfs_src = self.dir().join("src-empty-bindfs");
            std::fs::create_dir_all(&bindfs_src).map_err(io_err(&bindfs_src))?;
            targets.push(("bindfs", Target::Bindfs(self.bindfs("write", &bindfs_src)?)));
        }
        targets.push(("prjfs", Target::Prjfs(self.mount("write", &empty)?)));

        let files = tree.file_count() as u64;
        let tree_bytes = files * tree.size as u64;
        let mut tree_rows: Vec<Row> = Vec::new();
        let mut big_rows: Vec<Row> = Vec::new();
        for (name, target) in &targets {
            let t = runs(reps, &format!("write: tree: {name}"), target, |d| {
                tree.create(d)
            })?;
            let b = runs(reps, &format!("write: 4k: {name}"), target, |d| {
                write_4k(&d.join("big"), big)
            })?;
            let label = match *name {
                "native" => "native".to_string(),
                other => format!("{other} (fresh mount, empty source)"),
            };
            tree_rows.push(Row::new(
                "write",
                &format!("tree: {label}"),
                &t,
                files,
                tree_bytes,
            ));
            big_rows.push(Row::new(
                "write",
                &format!("4k: {label}"),
                &b,
                big / BLOCK as u64,
                big,
            ));
        }
        progress("write: done");
        let ratios = |rows: Vec<Row>| -> Vec<Row> {
            let native = rows[0].clone();
            let bindfs = rows.iter().find(|r| r.variant.contains("bindfs")).cloned();
            rows.into_iter()
                .map(|r| {
                    if r.variant.contains("bindfs") {
                        r.vs("bindfs/native", &native)
                    } else if r.variant.contains("prjfs") {
                        r.vs("prjfs/native", &native)
                            .vs_opt("prjfs/bindfs", bindfs.as_ref())
                    } else {
                        r
                    }
                })
                .collect()
        };
        let mut rows = ratios(tree_rows);
        rows.extend(ratios(big_rows));
        Ok(Section {
            workload: "write".into(),
            description: format!(
                "writes into a directory: tree = create {} files of {} KiB in {}x{} nested dirs \
                 (mkdir, create + write + close each; ops = files); 4k = a new file of {} MiB \
                 written 4 KiB per write(2), no fsync (ops = writes). prjfs and bindfs: one \
                 fresh mount of an empty source for all runs; every run in a new directory \
                 after a sync, removed after; best of {reps}",
                tree.file_count(),
                tree.size / 1024,
                tree.top,
                tree.sub,
                big >> 20
            ),
            rows,
            notes: Vec::new(),
        })
    }
}
