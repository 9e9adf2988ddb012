//! `prjfs bench archive`: a 10k-file tree packed as `.tar`, `.tar.gz`,
//! `.tar.zst` and `.zip` by the real tools; for each, in one run, the peer
//! (unpacking it: `tar -x`, `unzip`) beside the prjfs projection of the same
//! archive: first mount (the index pass), remount with the index cached, 100
//! random members read through a fresh remount, every file read through a
//! fresh root, and the daemon's RSS after that. Ratios are prjfs time /
//! unpacking time; the goals (issue 11) are printed below the table.
//!
//! The read-all runs again through a root mounted `--no-open` (no OPEN or
//! RELEASE request per file).
//!
//! With bindfs installed, the FUSE peer reads every file too: the unpacked
//! tree through a fresh bindfs mount, by the same single reader as prjfs's
//! read-all, whose row then also shows `prjfs/bindfs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::fixture::{check, io_err, progress, BenchMount, BindfsMount, Peer};
use super::report::{Note, Row, Section};

/// The tree: `dirs` directories of `files / dirs` files, sizes between 1 KiB
/// and `1 KiB + spread`.
#[derive(Clone, Debug)]
pub struct ArchiveParams {
    pub files: usize,
    pub dirs: usize,
    pub spread: usize,
    pub reps: usize,
}

impl ArchiveParams {
    pub fn full() -> Self {
        Self {
            files: 10_000,
            dirs: 100,
            spread: 31 * 1024,
            reps: 3,
        }
    }

    pub fn quick() -> Self {
        Self {
            files: 1_000,
            dirs: 10,
            spread: 15 * 1024,
            reps: 1,
        }
    }
}

/// xorshift64*: the same tree and the same random members in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Text-like content (random words): compresses about 3:1, like source code.
// `is_multiple_of` is newer than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "fn", "let", "archive", "member", "index", "point", "window", "block", "the", "of", "read",
        "write", "prjfs", "mount", "0x1f8b", "return",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next();
        out.extend_from_slice(WORDS[(r % 16) as usize].as_bytes());
        out.push(if r >> 60 == 0 { b'\n' } else { b' ' });
        if (r >> 20) % 7 == 0 {
            out.extend_from_slice(format!("{}", r >> 44).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn make_tree(dir: &Path, p: &ArchiveParams) -> Result<(Vec<PathBuf>, u64), String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files = Vec::with_capacity(p.files);
    let mut bytes = 0u64;
    for i in 0..p.files {
        let rel = PathBuf::from(format!("d{:03}/file{i:05}.txt", i % p.dirs));
        let path = dir.join(&rel);
        if i < p.dirs {
            std::fs::create_dir_all(path.parent().expect("a parent")).map_err(io_err(dir))?;
        }
        let len = 1024 + (rng.next() as usize % p.spread);
        std::fs::write(&path, content(&mut rng, len)).map_err(io_err(&path))?;
        bytes += len as u64;
        files.push(rel);
    }
    Ok((files, bytes))
}

fn sh(script: &str) -> Result<(), String> {
    run_ok(Command::new("sh").arg("-c").arg(script), script)
}

/// Run `cmd` (`what` names it in errors); its stderr in the error on failure.
fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<Duration, String> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

fn read_files(root: &Path, files: &[PathBuf]) -> Result<u64, String> {
    let mut bytes = 0;
    for f in files {
        check()?;
        let path = root.join(f);
        bytes += std::fs::read(&path).map_err(io_err(&path))?.len() as u64;
    }
    Ok(bytes)
}

/// Copy the archive's state directory (its index) into a new root, so that
/// the new root is mounted "with the index cached" and nothing hydrated.
fn fresh_root(from: &Path, to: &Path) -> Result<(), String> {
    let dest = to.join(".prjfs");
    std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
    sh(&format!(
        "cp -a '{}' '{}'",
        from.join(".prjfs/archive").display(),
        dest.display()
    ))
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// One format: pack, unpack (the peer), then the prjfs rows.
fn one_format(
    scratch: &Path,
    kind: &str,
    files: &[PathBuf],
    bytes: u64,
    p: &ArchiveParams,
    bindfs: Option<&Peer>,
) -> Result<(Vec<Row>, Vec<Note>), String> {
    let src = scratch.join("src");
    let archive = scratch.join(format!("a.{kind}"));
    progress(&format!("archive: packing {kind}"));
    let pack = match kind {
        "tar" => format!("tar -C '{}' -cf '{}' .", src.display(), archive.display()),
        "tar.gz" => format!("tar -C '{}' -czf '{}' .", src.display(), archive.display()),
        "tar.zst" => format!(
            "tar -C '{}' --zstd -cf '{}' .",
            src.display(),
            archive.display()
        ),
        _ => format!(
            "cd '{}' && zip -qr '{}' .",
            src.display(),
            archive.display()
        ),
    };
    sh(&pack)?;
    let archive_len = std::fs::metadata(&archive).map_err(io_err(&archive))?.len();
    let n = files.len() as u64;
    // The peer: unpack into a new directory (page cache warm for the archive).
    let unpacked = scratch.join(format!("unpacked-{kind}"));
    let (peer_name, unpack) = if kind == "zip" {
        (
            "unzip",
            format!(
                "unzip -q '{}' -d '{}'",
                archive.display(),
                unpacked.display()
            ),
        )
    } else {
        (
            "tar -x",
            format!(
                "tar -C '{}' -xf '{}'",
                unpacked.display(),
                archive.display()
            ),
        )
    };
    // Unpacking and the default hydrate (the read-all goal's two sides) are
    // the best of `reps` runs each: one run of either varies by a third on a
    // shared machine.
    let mut t_unpack = Vec::new();
    for rep in 0..p.reps {
        progress(&format!("archive: {kind}: {peer_name} {}", rep + 1));
        std::fs::create_dir_all(&unpacked).map_err(io_err(&unpacked))?;
        sh("sync")?;
        t_unpack.push(timed(|| sh(&unpack))?);
        // The last unpacked tree is kept for the bindfs read-all.
        if rep + 1 < p.reps || bindfs.is_none() {
            sh(&format!("rm -rf '{}'", unpacked.display()))?;
        }
    }
    // The FUSE peer: every file of the unpacked tree read through a fresh
    // bindfs mount, as prjfs's read-all reads its root.
    let t_bindfs_all = match bindfs {
        Some(peer) => {
            progress(&format!("archive: {kind}: bindfs read-all"));
            sh("sync")?;
            let m = BindfsMount::new(peer, &unpacked, &scratch.join(format!("bindfs-{kind}")))?;
            let t = timed(|| read_files(&m.root, files).map(drop))?;
            drop(m);
            sh(&format!("rm -rf '{}'", unpacked.display()))?;
            Some(t)
        }
        None => None,
    };
    let peer = Row::new(
        kind,
        &format!("{peer_name} (unpack all)"),
        &t_unpack,
        n,
        bytes,
    )
    .mb();
    let mut rows = vec![peer.clone()];
    let what = peer_name;
    let bindfs_all = t_bindfs_all.map(|t| {
        Row::new(
            kind,
            "bindfs read-all, 1 reader (unpacked tree)",
            &[t],
            n,
            bytes,
        )
        .mb()
        .vs(what, &peer)
    });
    rows.extend(bindfs_all.clone());

    // First mount: the index pass.
    progress(&format!("archive: {kind}: first mount"));
    let root = scratch.join(format!("root-{kind}"));
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    let mut mount = None;
    let t_first = timed(|| {
        mount = Some(BenchMount::new(&[], &archive, &root)?);
        Ok(())
    })?;
    rows.push(
        Row::new(
            kind,
            "prjfs first mount (index pass)",
            &[t_first],
            n,
            archive_len,
        )
        .mb()
        .vs(what, &peer),
    );
    // Remounts with the index cached, each followed by 100 random members
    // read through that fresh daemon (a new seed each time: new members).
    let mut t_remount = Vec::new();
    let mut t_random = Vec::new();
    let mut random_bytes = 0;
    for rep in 0..p.reps {
        drop(mount.take());
        progress(&format!("archive: {kind}: remount {}", rep + 1));
        t_remount.push(timed(|| {
            mount = Some(BenchMount::new(&[], &archive, &root)?);
            Ok(())
        })?);
        let mut rng = Rng(0x51_7cc1_b727_220a + rep as u64);
        let picks: Vec<PathBuf> = (0..100)
            .map(|_| files[rng.next() as usize % files.len()].clone())
            .collect();
        t_random.push(timed(|| {
            random_bytes = read_files(&root, &picks)?;
            Ok(())
        })?);
    }
    drop(mount.take());
    let index_len = dir_bytes(&root.join(".prjfs/archive"));
    rows.push(Row::new(kind, "prjfs remount (index cached)", &t_remount, 1, 0).vs(what, &peer));
    rows.push(
        Row::new(
            kind,
            "prjfs 100 random members",
            &t_random,
            100,
            random_bytes,
        )
        .mb()
        .vs(what, &peer),
    );
    // Read everything through a new root (index copied: nothing hydrated).
    let root2 = scratch.join(format!("root-{kind}-all"));
    fresh_root(&root, &root2)?;
    let m = BenchMount::new(&[], &archive, &root2)?;
    let pid = m.daemon_pid()?;
    progress(&format!("archive: {kind}: read-all"));
    let t_all = timed(|| read_files(&root2, files).map(drop))?;
    let rss = status_kb(pid, "VmRSS:");
    let hwm = status_kb(pid, "VmHWM:");
    drop(m);
    // The same through a root mounted `--no-open`: opens and closes do not
    // reach the daemon, so each file costs a LOOKUP and a READ.
    let root_no_open = scratch.join(format!("root-{kind}-no-open"));
    fresh_root(&root, &root_no_open)?;
    let m = BenchMount::new(&["--no-open".to_string()], &archive, &root_no_open)?;
    progress(&format!("archive: {kind}: read-all --no-open"));
    let t_no_open = timed(|| read_files(&root_no_open, files).map(drop))?;
    drop(m);
    sh(&format!("rm -rf '{}'", root_no_open.display()))?;
    for (variant, t) in [
        ("prjfs read-all, 1 reader (fresh root)", t_all),
        (
            "prjfs read-all, 1 reader, --no-open (fresh root)",
            t_no_open,
        ),
    ] {
        rows.push(
            Row::new(kind, variant, &[t], n, bytes)
                .mb()
                .vs(what, &peer)
                .vs_opt("prjfs/bindfs", bindfs_all.as_ref()),
        );
    }
    // The prefetch command: reading through the mount as a client would
    // (`--read`), and by the daemon (no kernel round trip per file), 4 files
    // at a time and as by default (one per logical CPU). Each on a new root.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut hwm3 = 0;
    let variants: [(String, Vec<String>); 3] = [
        (format!("--read (--jobs {cores})"), vec!["--read".into()]),
        ("--jobs 4".into(), vec!["--jobs".into(), "4".into()]),
        (format!("(--jobs {cores})"), Vec::new()),
    ];
    for (i, (label, args)) in variants.iter().enumerate() {
        let runs = if i + 1 == variants.len() { p.reps } else { 1 };
        let mut t_hydrate = Vec::new();
        for rep in 0..runs {
            let root3 = scratch.join(format!("root-{kind}-hydrate-{i}"));
            fresh_root(&root, &root3)?;
            let m = BenchMount::new(&[], &archive, &root3)?;
            let pid3 = m.daemon_pid()?;
            progress(&format!(
                "archive: {kind}: prjfs hydrate {label} {}",
                rep + 1
            ));
            sh("sync")?;
            t_hydrate.push(timed(|| {
                run_ok(
                    Command::new(&exe).arg("hydrate").args(args).arg(&root3),
                    &format!("prjfs hydrate {label}"),
                )
            })?);
            hwm3 = hwm3.max(status_kb(pid3, "VmHWM:"));
            drop(m);
            sh(&format!("rm -rf '{}'", root3.display()))?;
        }
        rows.push(
            Row::new(
                kind,
                &format!("prjfs hydrate {label} (fresh root)"),
                &t_hydrate,
                n,
                bytes,
            )
            .mb()
            .vs(what, &peer),
        );
    }
    sh(&format!(
        "rm -rf '{}' '{}' '{}'",
        root.display(),
        root2.display(),
        archive.display()
    ))?;
    let notes = vec![Note {
        key: format!("{kind}_daemon"),
        text: format!(
            "{kind}: archive {:.1} MB, index {:.1} MB; daemon RSS after read-all {:.1} MB (peak {:.1} MB; with prjfs hydrate: peak {:.1} MB)",
            archive_len as f64 / 1e6,
            index_len as f64 / 1e6,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            hwm3 as f64 / 1024.0
        ),
        value: serde_json::json!({
            "archive_bytes": archive_len,
            "index_bytes": index_len,
            "rss_kb": rss,
            "peak_rss_kb": hwm,
            "peak_rss_kb_hydrate": hwm3,
        }),
    }];
    Ok((rows, notes))
}

/// The whole workload.
pub fn bench_archive(
    dir: &Path,
    p: &ArchiveParams,
    bindfs: Option<&Peer>,
) -> Result<Section, String> {
    for tool in ["tar", "gzip", "zstd", "zip", "unzip"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!("`{tool}` is not on PATH"));
        }
    }
    let scratch = dir.join("archive");
    let src = scratch.join("src");
    progress(&format!("archive: making {} files", p.files));
    let (files, bytes) = make_tree(&src, p)?;
    // Read-all walks the tree as `find | sort` would (directory by directory),
    // not in creation order (which hops between directories: see notes.md).
    let mut files = files;
    files.sort();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for kind in ["tar", "tar.gz", "tar.zst", "zip"] {
        let (r, n) = one_format(&scratch, kind, &files, bytes, p, bindfs)?;
        rows.extend(r);
        notes.extend(n);
    }
    notes.push(Note {
        key: "archive_goals".into(),
        text: "goals: remount <= 0.05, 100 random (tar.gz, tar.zst) <= 0.25, read-all <= 1 (x unpack); RSS <= 50 MB".into(),
        value: serde_json::Value::Null,
    });
    Ok(Section {
        workload: "archive".into(),
        description: format!(
            "{} files ({:.0} MB, 1-{} KiB each, {} dirs) packed by tar/gzip/zstd/zip; unpacking vs prjfs, and (if installed) bindfs reading the unpacked tree as prjfs's read-all reads its root. Unpacking and the default prjfs hydrate: best of {} runs (each after a sync, on a fresh root); the other rows one run each",
            files.len(),
            bytes as f64 / 1e6,
            (1024 + p.spread) / 1024,
            p.dirs,
            p.reps
        ),
        rows,
        notes,
    })
}
