//! A git repository projected through prjfs works with git itself: status, log,
//! diff, a commit made through the mount, and fsck — reads hydrate lazily, writes
//! (the index, new objects, refs) stay local.

use std::path::Path;
use std::process::{Command, Output};

use prjfs_testkit::{mount_available, CliMount};

const BIN: &str = env!("CARGO_BIN_EXE_prjfs");

fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "prjfs test")
        .env("GIT_AUTHOR_EMAIL", "test@prjfs.invalid")
        .env("GIT_COMMITTER_NAME", "prjfs test")
        .env("GIT_COMMITTER_EMAIL", "test@prjfs.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn git_works_inside_a_projected_repository() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("source");
    let root = tmp.path().join("root");
    std::fs::create_dir(&source).expect("mkdir");
    std::fs::create_dir(&root).expect("mkdir");
    git(&source, &["init", "-q", "-b", "main"]);
    for i in 0..30 {
        let dir = source.join(format!("src/mod{}", i % 5));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("file{i}.txt")),
            format!("line {i}\n").repeat(50),
        )
        .expect("write");
    }
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-q", "-m", "first"]);
    std::fs::write(source.join("src/mod0/file0.txt"), "changed\n").expect("write");
    git(&source, &["commit", "-q", "-am", "second"]);
    let source_log = text(&git(&source, &["log", "--format=%H %s"]));

    let mount = CliMount::new(Path::new(BIN), &[], &source, &root);
    assert_eq!(text(&git(&root, &["log", "--format=%H %s"])), source_log);
    assert_eq!(
        text(&git(&root, &["status", "--porcelain"])),
        "",
        "a fresh projection is clean"
    );
    git(&root, &["fsck", "--no-progress"]);

    // A change through the mount is a change to git; a commit stays local.
    std::fs::write(root.join("src/mod1/file1.txt"), "edited through prjfs\n").expect("write");
    assert_eq!(
        text(&git(&root, &["status", "--porcelain"])),
        " M src/mod1/file1.txt\n"
    );
    let diff = text(&git(&root, &["diff"]));
    assert!(diff.contains("+edited through prjfs"), "{diff}");
    git(&root, &["commit", "-q", "-am", "third"]);
    let log = text(&git(&root, &["log", "--format=%s"]));
    assert_eq!(log, "third\nsecond\nfirst\n");
    assert_eq!(text(&git(&root, &["status", "--porcelain"])), "");
    git(&root, &["fsck", "--no-progress"]);
    // The source is untouched.
    assert_eq!(text(&git(&source, &["log", "--format=%H %s"])), source_log);

    // After a remount the local commit is still there.
    mount.unmount();
    let _mount = CliMount::new(Path::new(BIN), &[], &source, &root);
    assert_eq!(
        text(&git(&root, &["log", "--format=%s"])),
        "third\nsecond\nfirst\n"
    );
    assert_eq!(text(&git(&root, &["status", "--porcelain"])), "");
}
