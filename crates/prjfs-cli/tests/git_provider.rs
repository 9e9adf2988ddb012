//! Mounted tests of the git provider (`prjfs mount git:REPO[@REV]`) and
//! `prjfs switch`, against repositories built here with the `git` CLI
//! (several commits, a rename, a symlink, an executable, a submodule entry, a
//! 10k-file commit, loose and packed objects, a bare clone): every path's type,
//! mode, size, symlink target and bytes through the mount equal what
//! `git ls-tree -r -l -t` and `git cat-file` say; a `find` reads no blob.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prjfs_testkit::{mount_available, CliMount};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// `git` in `repo`, with a fixed identity and no user or system config.
fn git(repo: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // No background gc racing the test's own.
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "gc.auto")
        .env("GIT_CONFIG_VALUE_0", "0")
        .env("GIT_CONFIG_KEY_1", "maintenance.auto")
        .env("GIT_CONFIG_VALUE_1", "false")
        .env("HOME", repo)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn git_text(repo: &Path, args: &[&str]) -> String {
    String::from_utf8(git(repo, args).stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn write(repo: &Path, rel: &str, content: &str) {
    let p = repo.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A repository with two commits; returns (first, second) commit ids.
fn small_repo(repo: &Path) -> (String, String) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    write(repo, "a.txt", "alpha\n");
    write(repo, "dir/b.txt", "bravo\n");
    write(repo, "dir/deep/c.txt", "charlie\n");
    write(repo, "empty", "");
    write(repo, "changes.txt", "first\n");
    write(repo, "exec.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(repo.join("exec.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.txt", repo.join("link")).unwrap();
    std::os::unix::fs::symlink("dir/deep", repo.join("dirlink")).unwrap();
    git(repo, &["add", "-A"]);
    // A submodule entry (a gitlink) without a .gitmodules checkout.
    git(
        repo,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            "160000,1111111111111111111111111111111111111111,sub",
        ],
    );
    git(repo, &["commit", "-q", "-m", "one"]);
    let first = git_text(repo, &["rev-parse", "HEAD"]);
    git(repo, &["mv", "a.txt", "renamed.txt"]);
    write(repo, "dir/b.txt", "bravo, changed\n");
    write(repo, "changes.txt", "second\n");
    git(repo, &["rm", "-q", "dir/deep/c.txt"]);
    write(repo, "new/file.txt", "new\n");
    std::fs::set_permissions(repo.join("exec.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "two"]);
    let second = git_text(repo, &["rev-parse", "HEAD"]);
    (first, second)
}

/// `git ls-tree -r -l -t REV`: path → (mode, type, oid, size).
fn ls_tree(repo: &Path, rev: &str) -> BTreeMap<String, (String, String, String, Option<u64>)> {
    let text = git_text(repo, &["ls-tree", "-r", "-l", "-t", "--full-tree", rev]);
    text.lines()
        .map(|line| {
            let (meta, path) = line.split_once('\t').unwrap();
            let f: Vec<&str> = meta.split_whitespace().collect();
            (
                path.to_string(),
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].parse().ok(),
                ),
            )
        })
        .collect()
}

/// Every path below `root` (not `.prjfs`), relative.
fn walk(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args(["-path", "./.prjfs", "-prune", "-o", "-print"])
        .current_dir(root)
        .output()
        .expect("find");
    assert!(out.status.success());
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| *l != ".")
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    v.sort();
    v
}

/// Compare the mount with `rev`: the same paths, and for each its type,
/// mode, size, symlink target and (for every `sample`-th file) bytes.
fn check_tree(root: &Path, repo: &Path, rev: &str, sample: usize) {
    let tree = ls_tree(repo, rev);
    let mut expected: Vec<String> = tree.keys().cloned().collect();
    expected.sort();
    assert_eq!(walk(root), expected, "paths of {rev}");
    for (i, (path, (mode, kind, oid, size))) in tree.iter().enumerate() {
        let p = root.join(path);
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
        match (mode.as_str(), kind.as_str()) {
            ("040000", "tree") | ("160000", "commit") => {
                assert!(m.is_dir(), "{path}");
                assert_eq!(m.mode() & 0o7777, 0o755, "{path}");
                if kind == "commit" {
                    assert_eq!(
                        std::fs::read_dir(&p).unwrap().count(),
                        0,
                        "{path}: a submodule is empty"
                    );
                }
            }
            ("120000", "blob") => {
                assert!(m.file_type().is_symlink(), "{path}");
                let target = git(repo, &["cat-file", "blob", oid]).stdout;
                assert_eq!(
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    target.as_slice(),
                    "{path}"
                );
            }
            (mode, "blob") => {
                assert!(m.is_file(), "{path}");
                let want = if mode == "100755" { 0o755 } else { 0o644 };
                assert_eq!(m.mode() & 0o7777, want, "{path}: mode");
                assert_eq!(Some(m.len()), *size, "{path}: size");
                if i % sample == 0 {
                    let bytes = git(repo, &["cat-file", "blob", oid]).stdout;
                    assert_eq!(std::fs::read(&p).unwrap(), bytes, "{path}: bytes");
                }
            }
            other => panic!("{path}: unexpected entry {other:?}"),
        }
    }
}

fn git_reads(m: &CliMount) -> u64 {
    m.status()["git_reads"]["file_blobs"]
        .as_u64()
        .expect("git_reads in status")
}

#[test]
fn every_revision_reads_as_git_has_it_loose_packed_and_bare() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let (first, second) = small_repo(&repo);

    // Loose objects, an older revision by commit id.
    let root = tmp.path().join("r1");
    std::fs::create_dir(&root).unwrap();
    let src = format!("git:{}@{first}", repo.display());
    let m = CliMount::new(&bin(), &[], Path::new(&src), &root);
    assert_eq!(walk(&root).len(), ls_tree(&repo, &first).len());
    assert_eq!(git_reads(&m), 0, "a find reads no blob");
    assert_eq!(m.invoked("get_file_data"), 0);
    check_tree(&root, &repo, &first, 1);
    assert!(git_reads(&m) > 0);
    assert_eq!(m.status()["revision"].as_str(), Some(first.as_str()));
    m.unmount();

    // Packed, in a bare clone, HEAD by default.
    let bare = tmp.path().join("bare.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&repo)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success());
    git(&bare, &["repack", "-adq"]);
    assert!(
        git_text(&bare, &["count-objects", "-v"]).contains("count: 0"),
        "all packed"
    );
    let root = tmp.path().join("r2");
    std::fs::create_dir(&root).unwrap();
    let src = format!("git:{}", bare.display());
    let m = CliMount::new(&bin(), &[], Path::new(&src), &root);
    check_tree(&root, &bare, &second, 1);
    assert_eq!(m.status()["revision"].as_str(), Some(second.as_str()));
    m.unmount();
}

#[test]
fn a_ten_thousand_file_commit_lists_without_reading_blobs() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("big");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    for d in 0..100 {
        for f in 0..100 {
            write(
                &repo,
                &format!("d{d:02}/f{f:02}.txt"),
                &format!("file {d} {f}\n").repeat(f + 1),
            );
        }
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "big"]);
    git(&repo, &["gc", "-q"]);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let src = format!("git:{}", repo.display());
    let m = CliMount::new(&bin(), &[], Path::new(&src), &root);
    assert_eq!(walk(&root).len(), 10_100);
    assert_eq!(git_reads(&m), 0, "find read no blob");
    // Listings carry each directory's tree id: the root's listing placed the
    // 100 directories, so entering them asked the provider nothing.
    assert_eq!(m.invoked("get_placeholder_info"), 0);
    check_tree(&root, &repo, "HEAD", 97);
    m.unmount();
}

#[test]
fn switch_moves_the_view_keeps_local_changes_and_survives_a_remount() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let (first, second) = small_repo(&repo);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let src = format!("git:{}@{first}", repo.display());
    let m = CliMount::new(&bin(), &[], Path::new(&src), &root);
    // Use the tree: read some files (hydrated), change one the switch
    // changes, delete another it changes, add a file of our own.
    check_tree(&root, &repo, &first, 1);
    std::fs::write(root.join("changes.txt"), "mine\n").unwrap();
    std::fs::remove_file(root.join("dir/b.txt")).unwrap();
    std::fs::write(root.join("dir/mine.txt"), "my own\n").unwrap();

    let out = m
        .prjfs(&["switch"])
        .arg(&root)
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "conflicts make a non-zero exit");
    let conflicts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(conflicts, vec!["changes.txt", "dir/b.txt"]);

    // The second commit's tree, plus the user's changes.
    let mut expected: Vec<String> = ls_tree(&repo, &second).keys().cloned().collect();
    expected.retain(|p| p != "dir/b.txt");
    expected.push("dir/mine.txt".into());
    expected.sort();
    assert_eq!(walk(&root), expected);
    assert_eq!(
        std::fs::read_to_string(root.join("changes.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("renamed.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("new/file.txt")).unwrap(),
        "new\n"
    );
    assert!(!root.join("a.txt").exists() && !root.join("dir/deep/c.txt").exists());
    assert_eq!(
        root.join("exec.sh").metadata().unwrap().mode() & 0o777,
        0o644
    );
    assert_eq!(m.status()["revision"].as_str(), Some(second.as_str()));
    m.unmount();

    // A remount continues at the switched revision; naming another one is
    // refused and changes nothing.
    let src_plain = format!("git:{}", repo.display());
    let m = CliMount::new(&bin(), &[], Path::new(&src_plain), &root);
    assert_eq!(m.status()["revision"].as_str(), Some(second.as_str()));
    assert_eq!(
        std::fs::read_to_string(root.join("changes.txt")).unwrap(),
        "mine\n"
    );
    m.unmount();
    let out = Command::new(bin())
        .arg("mount")
        .arg(format!("git:{}@{first}", repo.display()))
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&second) && err.contains("prjfs switch"),
        "{err}"
    );
    assert!(!prjfs_testkit::is_mounted(&root));
}

#[test]
fn bad_repositories_revisions_and_objects_fail_clearly() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mount = |src: String| {
        Command::new(bin())
            .arg("mount")
            .arg(src)
            .arg(&root)
            .output()
            .unwrap()
    };
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let out = mount(format!("git:{}", plain.display()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a git repository"));

    let repo = tmp.path().join("repo");
    small_repo(&repo);
    let out = mount(format!("git:{}@no-such-branch", repo.display()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown revision"));
    assert!(!prjfs_testkit::is_mounted(&root));

    // A missing blob: that file fails with EIO and a log line, the rest reads.
    let oid = git_text(&repo, &["rev-parse", "HEAD:dir/b.txt"]);
    std::fs::remove_file(repo.join(".git/objects").join(&oid[..2]).join(&oid[2..])).unwrap();
    let m = CliMount::new(
        &bin(),
        &[],
        Path::new(&format!("git:{}", repo.display())),
        &root,
    );
    let err = std::fs::read(root.join("dir/b.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(
        std::fs::read_to_string(root.join("renamed.txt")).unwrap(),
        "alpha\n"
    );
    let log = m.status()["log"]["live"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains(&oid) && text.contains("dir/b.txt"), "{text}");

    // New commits in the repository do not change the view.
    write(&repo, "later.txt", "later\n");
    write(&repo, "changes.txt", "changed later\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "three"]);
    assert!(!root.join("later.txt").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("changes.txt")).unwrap(),
        "second\n"
    );
    m.unmount();
}
