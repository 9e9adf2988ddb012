//! Unit tests of the git provider without a mount: its listing read-ahead
//! against a repository made with the `git` CLI.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prjfs::testing::EnumerationDriver;

use super::GitProvider;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn names(provider: &GitProvider, rel: &str) -> Vec<String> {
    EnumerationDriver::new(provider)
        .list(rel)
        .expect("the listing should succeed")
        .names()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn listings_read_ahead_follow_the_projected_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    git(repo, &["init", "-q"]);
    for d in ["a", "b"] {
        std::fs::create_dir(repo.join(d)).unwrap();
        std::fs::write(repo.join(d).join("one"), d).unwrap();
    }
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "first"]);
    std::fs::write(repo.join("b/two"), "2").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "second"]);

    let provider = GitProvider::open(repo, "HEAD~1").unwrap();
    let c = provider.read_ahead_counters();
    let read = || c.read.load(Ordering::Relaxed);
    let used = || c.used.load(Ordering::Relaxed);
    let stale = || c.stale.load(Ordering::Relaxed);

    assert_eq!(names(&provider, ""), ["a", "b"]);
    wait_until("both directories read ahead", || read() == 2);
    assert_eq!(names(&provider, "a"), ["one"]);
    assert_eq!((used(), stale()), (1, 0));

    // A switch to the next commit makes what was read ahead stale.
    provider.set_view(provider.resolve("HEAD").unwrap());
    assert_eq!(names(&provider, "b"), ["one", "two"]);
    assert_eq!((used(), stale()), (1, 1));
}
