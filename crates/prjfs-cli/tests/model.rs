//! Model-based test of the read-write projection: random operation sequences are
//! applied to a prjfs mount and to a reference directory (a plain copy of the
//! source), and the two must agree on the success or failure of each operation.
//! After every step the trees agree on names, kinds, modes, sizes and symlink
//! targets, and on the content of every file the step touched; at the end they
//! agree on every file's content. (Reading every file after every step would
//! hydrate the whole tree at step one and leave no placeholder to test.)
//! Remounts are one of the operations.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use prjfs_testkit::{make_tree, mount_available, CliMount, TreeSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_prjfs");

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        size: u64,
        /// Read only when asked for (reading hydrates).
        content: Option<Vec<u8>>,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

fn snapshot(root: &Path, content_of: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        entries.sort();
        for name in entries {
            let r = rel.join(&name);
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let node = if md.file_type().is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&p).expect("readlink"),
                }
            } else if md.is_dir() {
                stack.push(r.clone());
                Node::Dir {
                    mode: md.permissions().mode() & 0o7777,
                }
            } else {
                Node::File {
                    mode: md.permissions().mode() & 0o7777,
                    size: md.len(),
                    content: content_of(&r).then(|| {
                        std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
                    }),
                }
            };
            out.insert(r, node);
        }
    }
    out
}

/// Paths of the reference tree, by kind.
fn listing(reference: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    for (p, n) in snapshot(reference, &|_| false) {
        match n {
            Node::Dir { .. } => dirs.push(p),
            _ => files.push(p),
        }
    }
    (files, dirs)
}

/// File data, printed by length only.
#[derive(Clone)]
struct Data(Vec<u8>);

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(PathBuf, Data),
    Overwrite(PathBuf, u64, Data),
    Append(PathBuf, Data),
    Truncate(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
    Mkdir(PathBuf),
    Rmdir(PathBuf),
    Chmod(PathBuf, u32),
    Link(PathBuf, PathBuf),
    Symlink(PathBuf, PathBuf),
    Read(PathBuf),
    Remount,
}

fn random_op(rng: &mut StdRng, reference: &Path, step: usize) -> Op {
    let (files, dirs) = listing(reference);
    let pick = |rng: &mut StdRng, v: &Vec<PathBuf>| v[rng.random_range(0..v.len())].clone();
    let new_name = |rng: &mut StdRng, dirs: &Vec<PathBuf>| {
        let d = dirs[rng.random_range(0..dirs.len())].clone();
        d.join(format!("n{step}_{}", rng.random_range(0..1000)))
    };
    let data = |rng: &mut StdRng| {
        let n = rng.random_range(0..5000);
        Data((0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
    };
    loop {
        let k = rng.random_range(0..100);
        let op = match k {
            0..=9 => Op::Create(new_name(rng, &dirs), data(rng)),
            10..=19 if !files.is_empty() => {
                let f = pick(rng, &files);
                Op::Overwrite(f, rng.random_range(0..3000), data(rng))
            }
            20..=24 if !files.is_empty() => Op::Append(pick(rng, &files), data(rng)),
            25..=32 if !files.is_empty() => {
                Op::Truncate(pick(rng, &files), rng.random_range(0..4000))
            }
            33..=44 => {
                let all: Vec<PathBuf> = files.iter().chain(dirs.iter().skip(1)).cloned().collect();
                if all.is_empty() {
                    continue;
                }
                let from = pick(rng, &all);
                let to = if rng.random_bool(0.3) && !files.is_empty() {
                    pick(rng, &files)
                } else {
                    new_name(rng, &dirs)
                };
                Op::Rename(from, to)
            }
            45..=54 if !files.is_empty() => Op::Unlink(pick(rng, &files)),
            55..=61 => Op::Mkdir(new_name(rng, &dirs)),
            62..=67 if dirs.len() > 1 => Op::Rmdir(dirs[rng.random_range(1..dirs.len())].clone()),
            68..=75 => {
                let all: Vec<PathBuf> = files.iter().chain(dirs.iter().skip(1)).cloned().collect();
                if all.is_empty() {
                    continue;
                }
                let mode = [0o644, 0o600, 0o755, 0o700, 0o444][rng.random_range(0..5)];
                Op::Chmod(pick(rng, &all), mode)
            }
            76..=80 if !files.is_empty() => Op::Link(pick(rng, &files), new_name(rng, &dirs)),
            81..=84 => Op::Symlink(
                PathBuf::from(format!("target{}", rng.random_range(0..5))),
                new_name(rng, &dirs),
            ),
            85..=96 if !files.is_empty() => Op::Read(pick(rng, &files)),
            97..=99 => Op::Remount,
            _ => continue,
        };
        return op;
    }
}

/// Paths whose content `op` may have changed (or that it reads).
fn touched(op: &Op) -> Vec<PathBuf> {
    match op {
        Op::Create(f, _)
        | Op::Overwrite(f, _, _)
        | Op::Append(f, _)
        | Op::Truncate(f, _)
        | Op::Read(f) => {
            vec![f.clone()]
        }
        Op::Rename(_, b) => vec![b.clone()],
        Op::Link(a, b) => vec![a.clone(), b.clone()],
        _ => Vec::new(),
    }
}

/// Apply `op` under `root`; the result is the error kind (or raw errno).
fn apply(root: &Path, op: &Op) -> Result<(), String> {
    use std::io::{Seek, SeekFrom, Write};
    let p = |r: &PathBuf| root.join(r);
    let res: std::io::Result<()> = match op {
        Op::Create(f, d) => std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(p(f))
            .and_then(|mut file| file.write_all(d)),
        Op::Overwrite(f, off, d) => {
            std::fs::File::options()
                .write(true)
                .open(p(f))
                .and_then(|mut file| {
                    file.seek(SeekFrom::Start(*off))?;
                    file.write_all(d)
                })
        }
        Op::Append(f, d) => std::fs::File::options()
            .append(true)
            .open(p(f))
            .and_then(|mut file| file.write_all(d)),
        Op::Truncate(f, n) => std::fs::File::options()
            .write(true)
            .open(p(f))
            .and_then(|file| file.set_len(*n)),
        Op::Rename(a, b) => std::fs::rename(p(a), p(b)),
        Op::Unlink(f) => std::fs::remove_file(p(f)),
        Op::Mkdir(d) => std::fs::create_dir(p(d)),
        Op::Rmdir(d) => std::fs::remove_dir(p(d)),
        Op::Chmod(f, m) => std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(*m)),
        Op::Link(a, b) => std::fs::hard_link(p(a), p(b)),
        Op::Symlink(t, l) => std::os::unix::fs::symlink(t, p(l)),
        Op::Read(f) => std::fs::read(p(f)).map(|_| ()),
        Op::Remount => Ok(()),
    };
    res.map_err(|e| match e.raw_os_error() {
        Some(n) => format!("errno {n}"),
        None => format!("{:?}", e.kind()),
    })
}

fn run_seed(seed: u64, steps: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("source");
    let reference = tmp.path().join("reference");
    let root = tmp.path().join("root");
    for d in [&source, &root] {
        std::fs::create_dir(d).expect("mkdir");
    }
    make_tree(
        &source,
        TreeSpec {
            files: 40,
            dirs: 8,
            depth: 3,
            symlinks: 3,
            max_size: 8000,
            seed,
        },
    );
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&source)
        .arg(&reference)
        .status()
        .expect("cp -a");
    assert!(status.success());
    let source_before = snapshot(&source, &|_| true);
    let mut mount = Some(CliMount::new(Path::new(BIN), &[], &source, &root));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    for step in 0..steps {
        let op = random_op(&mut rng, &reference, step);
        history.push(op.clone());
        if let Op::Remount = op {
            mount.take().expect("mounted").unmount();
            mount = Some(CliMount::new(Path::new(BIN), &[], &source, &root));
        }
        let want = apply(&reference, &op);
        let got = apply(&root, &op);
        assert_eq!(
            got, want,
            "seed {seed} step {step}: {op:?} gave {got:?} through prjfs, {want:?} on the reference\nhistory: {history:#?}"
        );
        let t = touched(&op);
        compare(seed, step, &op, &history, &root, &reference, &|p| {
            t.iter().any(|x| x == p)
        });
    }
    compare(
        seed,
        steps,
        &Op::Read(PathBuf::from("*")),
        &history,
        &root,
        &reference,
        &|_| true,
    );
    assert!(
        snapshot(&source, &|_| true) == source_before,
        "seed {seed}: the source changed"
    );
    drop(mount);
}

fn compare(
    seed: u64,
    step: usize,
    op: &Op,
    history: &[Op],
    root: &Path,
    reference: &Path,
    content_of: &dyn Fn(&Path) -> bool,
) {
    let a = snapshot(root, content_of);
    let b = snapshot(reference, content_of);
    if a != b {
        let only_mount: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
        let only_ref: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
        let differ: Vec<_> = a
            .iter()
            .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
            .map(|(k, v)| (k, v, b.get(k)))
            .map(|(k, v, w)| {
                format!("{}: mount {v:?} reference {w:?}", k.display())
                    .chars()
                    .take(400)
                    .collect::<String>()
            })
            .collect();
        panic!(
            "seed {seed} step {step} after {op:?}: trees differ\nonly in mount: {only_mount:?}\nonly in reference: {only_ref:?}\ndiffer: {differ:#?}\nhistory: {history:#?}"
        );
    }
}

/// Dozens of seeds, hundreds of operations each (fewer with PRJFS_MODEL_QUICK).
#[test]
fn random_operation_sequences_match_a_plain_directory() {
    if !mount_available() {
        return;
    }
    let quick = std::env::var_os("PRJFS_MODEL_QUICK").is_some();
    let (seeds, steps) = if quick { (4, 100) } else { (24, 300) };
    let base: u64 = std::env::var("PRJFS_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in base..base + seeds {
        run_seed(seed, steps);
    }
}
