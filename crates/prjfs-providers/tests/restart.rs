//! Mounted tests of starting an instance on a root again, and of the thread rules
//! of `wait` and `stop` (issue 13): a provider restarts on its own root with the
//! default `StartOptions`; a foreign directory is refused with a message that
//! says what to do; `stop` from one thread releases others in `wait`.
//!
//! Clients are child processes (the hosting process's own I/O never reaches the
//! provider). Every instance is stopped by a guard, also on panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prjfs::{RootMarker, StartError, StartOptions, VirtualizationInstance};
use prjfs_providers::testing::{MemProvider, MemTree};
use prjfs_testkit::{force_unmount, is_mounted, mount_available, InstanceGuard};

fn tree() -> MemTree {
    MemTree::new()
        .file("a.txt", "alpha\n")
        .file("dir/b.txt", "beta\n")
        .file("dir/c.txt", "gamma\n")
}

fn provider() -> Arc<MemProvider> {
    Arc::new(MemProvider::new(tree()))
}

fn fresh_root() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("creating the root");
    (tmp, root)
}

fn cat(path: &Path) -> String {
    let out = Command::new("cat").arg(path).output().expect("running cat");
    assert!(
        out.status.success(),
        "cat {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 content")
}

fn start_error(root: &Path, options: StartOptions) -> String {
    match VirtualizationInstance::start(root, provider(), options) {
        Ok(instance) => {
            let _ = instance.stop();
            panic!("{} should have been refused", root.display());
        }
        Err(e @ StartError::BadRoot { .. }) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
    }
}

#[test]
fn a_provider_restarts_on_its_own_root_with_default_options() {
    if !mount_available() {
        return;
    }
    let (_tmp, root) = fresh_root();
    let first = InstanceGuard::start(&root, provider(), StartOptions::default());
    assert_eq!(cat(&root.join("dir/b.txt")), "beta\n");
    assert_eq!(cat(&root.join("a.txt")), "alpha\n");
    first.stop();
    assert!(!is_mounted(&root));
    // Hydrated files are on disk: the root is not empty any more.
    assert!(root.join("dir/b.txt").is_file());

    let again = InstanceGuard::start(&root, provider(), StartOptions::default());
    assert_eq!(cat(&again.root().join("dir/b.txt")), "beta\n");
    assert_eq!(cat(&again.root().join("dir/c.txt")), "gamma\n");
    again.stop();

    // A root started without a marker is not taken for a marked projection.
    let marked = StartOptions {
        marker: Some(RootMarker {
            source: "/somewhere".into(),
            provider: "mem".into(),
        }),
        ..Default::default()
    };
    let msg = start_error(&root, marked.clone());
    assert!(msg.contains("StartOptions::marker unset"), "{msg}");

    // A marked root restarts with the same marker, and with none.
    let (_tmp2, root2) = fresh_root();
    InstanceGuard::start(&root2, provider(), marked.clone()).stop();
    InstanceGuard::start(&root2, provider(), marked).stop();
    InstanceGuard::start(&root2, provider(), StartOptions::default()).stop();
    force_unmount(&root2);
}

#[test]
fn a_foreign_directory_is_refused_with_what_to_do() {
    if !mount_available() {
        return;
    }
    let (_tmp, root) = fresh_root();
    std::fs::write(root.join("mine.txt"), "mine").unwrap();
    let msg = start_error(&root, StartOptions::default());
    assert!(msg.contains("not a prjfs root"), "{msg}");
    assert!(msg.contains("start on an empty directory"), "{msg}");
    assert!(!is_mounted(&root));
    assert_eq!(
        std::fs::read_to_string(root.join("mine.txt")).unwrap(),
        "mine"
    );
    assert!(!root.join(".prjfs").exists(), "nothing was written into it");
}

#[test]
fn stop_from_another_thread_releases_every_waiter() {
    if !mount_available() {
        return;
    }
    let (_tmp, root) = fresh_root();
    let guard = InstanceGuard::start(&root, provider(), StartOptions::default());
    let instance = guard.instance();
    let started = Instant::now();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3).map(|_| s.spawn(|| instance.wait())).collect();
        // The waiters are blocked while the mount stands.
        assert_eq!(cat(&root.join("a.txt")), "alpha\n");
        assert!(waiters.iter().all(|w| !w.is_finished()));
        instance.stop().expect("stop unmounts");
        for w in waiters {
            w.join().expect("a waiter returns");
        }
    });
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!is_mounted(&root));
    // Stopping again, and waiting after the end, return at once.
    instance.stop().expect("a second stop is fine");
    instance.wait();
    drop(guard);
}

#[test]
fn an_unmount_from_outside_ends_wait_and_stop_is_then_fine() {
    if !mount_available() {
        return;
    }
    let (_tmp, root) = fresh_root();
    let guard = InstanceGuard::start(&root, provider(), StartOptions::default());
    let instance = guard.instance();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| instance.wait());
        prjfs::unmount(guard.root()).expect("unmounting from outside");
        waiter.join().expect("wait returns once the mount is gone");
    });
    instance
        .stop()
        .expect("stop after an outside unmount is fine");
    drop(guard);
}
