//! `prjfs bench git`: a projected checkout of a big repository against git's
//! own, in one run: `prjfs mount git:REPO@A` beside `git worktree add` of A, a
//! first-pass walk of each, reading every file of each, and moving each to
//! commit B (1,000 files changed) with `prjfs switch` and `git switch`.
//! With bindfs installed, the peer's first-pass walk of the checkout (a fresh
//! bindfs mount of it) runs too: what a plain FUSE mirror's first touch costs.
//!
//! The repository (N files of 20–330 bytes in N/100 directories, commit A;
//! every 100th file changed in commit B; packed by `git gc`) is built once
//! under the scratch base and reused by later runs (`prjfs-bench-git-N`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::fixture::{check, io_err, progress, timed, BenchMount, BindfsMount, Peer};
use super::report::{Note, Row, Section};
use super::workloads::walk;

/// `git` in `repo`, quiet, with a fixed identity and no background gc.
fn git(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"])
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(args)
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn file_path(i: usize) -> String {
    format!("d{:04}/f{:03}.txt", i / 100, i % 100)
}

fn file_body(i: usize, version: u32) -> String {
    format!("file {i} version {version}\n").repeat(1 + i % 13)
}

/// The repository with `files` files and its two commits, built unless a
/// complete one is there.
fn repository(base: &Path, files: usize) -> Result<(PathBuf, String, String), String> {
    let repo = base.join(format!("prjfs-bench-git-{files}"));
    let done = repo.join(".git/prjfs-bench-complete");
    if !done.exists() {
        if repo.exists() {
            std::fs::remove_dir_all(&repo).map_err(io_err(&repo))?;
        }
        progress(&format!(
            "building a {files}-file repository at {}",
            repo.display()
        ));
        std::fs::create_dir_all(&repo).map_err(io_err(&repo))?;
        git(&repo, &["init", "-q", "-b", "main"])?;
        for i in 0..files {
            if i % 10_000 == 0 {
                check()?;
            }
            let p = repo.join(file_path(i));
            if i % 100 == 0 {
                std::fs::create_dir_all(p.parent().unwrap()).map_err(io_err(&p))?;
            }
            std::fs::write(&p, file_body(i, 1)).map_err(io_err(&p))?;
        }
        git(&repo, &["add", "-A"])?;
        git(&repo, &["commit", "-q", "-m", "A"])?;
        git(&repo, &["tag", "A"])?;
        for i in (0..files).step_by(100) {
            let p = repo.join(file_path(i));
            std::fs::write(&p, file_body(i, 2)).map_err(io_err(&p))?;
        }
        git(&repo, &["commit", "-q", "-a", "-m", "B"])?;
        git(&repo, &["tag", "B"])?;
        git(&repo, &["gc", "-q"])?;
        std::fs::write(&done, "").map_err(io_err(&done))?;
    }
    let a = git(&repo, &["rev-parse", "A^{commit}"])?;
    let b = git(&repo, &["rev-parse", "B^{commit}"])?;
    Ok((repo, a, b))
}

/// Read every file below `top`; returns (files, bytes).
pub(super) fn read_all(top: &Path) -> Result<(u64, u64), String> {
    let mut dirs = vec![top.to_path_buf()];
    let (mut files, mut bytes) = (0, 0);
    while let Some(dir) = dirs.pop() {
        check()?;
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let p = e.path();
            // A worktree's `.git` file, the root's hidden directory.
            if dir == top && (e.file_name() == ".git" || e.file_name() == ".prjfs") {
                continue;
            }
            let t = e.file_type().map_err(io_err(&p))?;
            if t.is_dir() {
                dirs.push(p);
            } else if t.is_file() {
                bytes += std::fs::read(&p).map_err(io_err(&p))?.len() as u64;
                files += 1;
            }
        }
    }
    Ok((files, bytes))
}

fn once(f: impl FnOnce() -> Result<(), String>) -> Result<Duration, String> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// The git workload.
pub fn bench_git(
    base: &Path,
    scratch: &Path,
    files: usize,
    peer: Option<&Peer>,
) -> Result<Section, String> {
    let (repo, a, b) = repository(base, files)?;
    let paths = files + files.div_ceil(100);

    // git's own checkout: a new worktree at A, its walk and read, then B.
    let wt = scratch.join("git-worktree");
    let checkout = once(|| {
        git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                &wt.to_string_lossy(),
                &a,
            ],
        )
        .map(drop)
    })?;
    progress(&format!(
        "git worktree add: {:.2} s",
        checkout.as_secs_f64()
    ));
    let (n, git_walk) = timed(|| walk(&wt))?;
    if n != paths + 1 {
        // The checkout's walk also sees its `.git` file.
        progress(&format!("checkout walk saw {n} paths"));
    }
    // The peer: a fresh bindfs mount of the checkout, walked once.
    let bindfs_walk = match peer {
        Some(peer) => {
            let m = BindfsMount::new(peer, &wt, &scratch.join("git-bindfs"))?;
            let (n, t) = timed(|| walk(&m.root))?;
            if n != paths + 1 {
                return Err(format!("the bindfs walk saw {n} paths, not {}", paths + 1));
            }
            progress(&format!("bindfs first-pass walk: {:.2} s", t.as_secs_f64()));
            Some(t)
        }
        None => None,
    };
    let ((git_files, git_bytes), git_read) = timed(|| read_all(&wt))?;
    let git_switch = once(|| git(&wt, &["switch", "-q", "--detach", &b]).map(drop))?;
    progress(&format!("git switch: {:.2} s", git_switch.as_secs_f64()));
    // The worktree is removed after prjfs ran: on ext4 without a journal,
    // inodes freed just before would slow the creation of new ones (every
    // hydration creates one) by a scan for recently deleted inodes.

    // prjfs: a fresh root mounted at A, walked, read, switched to B.
    let root = scratch.join("git-root");
    let source = PathBuf::from(format!("git:{}@{a}", repo.display()));
    let (mount, mount_time) = timed(|| BenchMount::new(&[], &source, &root))?;
    progress(&format!("prjfs mount: {:.2} s", mount_time.as_secs_f64()));
    let (n, prjfs_walk) = timed(|| walk(&root))?;
    if n != paths {
        return Err(format!("the prjfs walk saw {n} paths, not {paths}"));
    }
    let ((p_files, p_bytes), prjfs_read) = timed(|| read_all(&root))?;
    if (p_files, p_bytes) != (git_files, git_bytes) {
        return Err(format!(
            "prjfs read {p_files} files, {p_bytes} bytes; the checkout {git_files}, {git_bytes}"
        ));
    }
    let req = crate::control::ControlRequest::Switch { rev: b.clone() };
    let (answer, prjfs_switch) = timed(|| {
        crate::control::call_within(&mount.root, &req, Duration::from_secs(3600))
            .map_err(|e| format!("prjfs switch: {e}"))
    })?;
    let changed = answer["changed"].as_u64().unwrap_or(0);
    let conflicts = answer["conflicts"].as_array().map_or(0, Vec::len);
    if conflicts != 0 {
        return Err(format!("prjfs switch reported {conflicts} conflicts"));
    }
    // The switched files read B's bytes.
    for i in (0..files).step_by(100).take(20) {
        let p = root.join(file_path(i));
        let got = std::fs::read_to_string(&p).map_err(io_err(&p))?;
        if got != file_body(i, 2) {
            return Err(format!(
                "{} does not read as commit B after the switch",
                p.display()
            ));
        }
    }
    progress(&format!(
        "prjfs switch: {:.2} s ({changed} paths)",
        prjfs_switch.as_secs_f64()
    ));
    drop(mount);
    git(
        &repo,
        &["worktree", "remove", "--force", &wt.to_string_lossy()],
    )?;

    let n = files as u64;
    let checkout_row = Row::new(
        "git",
        "git worktree add (checkout of A)",
        &[checkout],
        n,
        git_bytes,
    );
    let mount_row = Row::new("git", "prjfs mount git:REPO@A", &[mount_time], n, 0)
        .vs("prjfs/checkout", &checkout_row);
    let git_walk_row = Row::new("git", "walk of the checkout", &[git_walk], paths as u64, 0);
    let bindfs_walk_row = bindfs_walk.map(|t| {
        Row::new(
            "git",
            "bindfs first-pass walk of the checkout",
            &[t],
            paths as u64 + 1,
            0,
        )
        .vs("bindfs/checkout", &git_walk_row)
    });
    let prjfs_walk_row = Row::new(
        "git",
        "prjfs first-pass walk",
        &[prjfs_walk],
        paths as u64,
        0,
    )
    .vs("prjfs/checkout", &git_walk_row)
    .vs_opt("prjfs/bindfs", bindfs_walk_row.as_ref());
    let git_read_row = Row::new("git", "read all of the checkout", &[git_read], n, git_bytes).mb();
    let prjfs_read_row = Row::new(
        "git",
        "prjfs read all (hydrates)",
        &[prjfs_read],
        n,
        p_bytes,
    )
    .mb()
    .vs("prjfs/checkout", &git_read_row);
    let git_switch_row = Row::new(
        "git",
        "git switch A -> B (1% of files)",
        &[git_switch],
        changed,
        0,
    );
    let prjfs_switch_row = Row::new("git", "prjfs switch A -> B", &[prjfs_switch], changed, 0)
        .vs("prjfs/git", &git_switch_row);
    let goals = format!(
        "goals: mount <= 0.1 x checkout ({:.3}), walk <= 3 x ({:.2}), switch <= 1 x git switch ({:.2})",
        mount_time.as_secs_f64() / checkout.as_secs_f64(),
        prjfs_walk.as_secs_f64() / git_walk.as_secs_f64(),
        prjfs_switch.as_secs_f64() / git_switch.as_secs_f64()
    );
    Ok(Section {
        workload: "git".into(),
        description: format!(
            "a {files}-file repository (commit A; B changes {changed} paths), packed: git worktree add of A, a walk (list + lstat) and a read of every file of it, git switch to B in it; the peer's first-pass walk of it through a fresh bindfs mount (if installed); beside prjfs mount git:REPO@A on an empty root, its first-pass walk, read-all (hydrating every file), prjfs switch to B (every file hydrated); one run each"
        ),
        rows: [
            Some(checkout_row),
            Some(mount_row),
            Some(git_walk_row),
            bindfs_walk_row,
            Some(prjfs_walk_row),
            Some(git_read_row),
            Some(prjfs_read_row),
            Some(git_switch_row),
            Some(prjfs_switch_row),
        ]
        .into_iter()
        .flatten()
        .collect(),
        notes: vec![Note {
            key: "git_goals".into(),
            text: goals.clone(),
            value: serde_json::json!({
                "mount_over_checkout": mount_time.as_secs_f64() / checkout.as_secs_f64(),
                "walk_over_checkout_walk": prjfs_walk.as_secs_f64() / git_walk.as_secs_f64(),
                "switch_over_git_switch": prjfs_switch.as_secs_f64() / git_switch.as_secs_f64(),
            }),
        }],
    })
}
