//! The provider's own I/O never reaches the provider (it would deadlock):
//! requests from the process hosting an instance are answered from disk only.

use std::sync::Arc;

use prjfs::command::CallbackKind;
use prjfs::StartOptions;
use prjfs_providers::testing::{MemProvider, MemTree};
use prjfs_testkit::{mount_available, InstanceGuard};

fn invoked(guard: &InstanceGuard) -> u64 {
    guard.instance().stats().commands.invoked
}

fn by_kind(guard: &InstanceGuard, kind: CallbackKind) -> u64 {
    guard
        .instance()
        .stats()
        .commands
        .by_kind
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| *n)
}

#[test]
fn own_process_sees_only_what_is_on_disk_and_never_calls_the_provider() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    let tree = MemTree::new()
        .file("a.txt", "alpha\n")
        .file("b.txt", "bravo\n")
        .file("d/inner.txt", "inner\n");
    let provider: Arc<dyn prjfs::Provider> = Arc::new(MemProvider::new(tree));
    let guard = InstanceGuard::start(&root, provider, StartOptions::default());
    let root = guard.root().to_path_buf();

    // From this process: the virtual names are not there, the listing is empty,
    // and the provider heard nothing.
    let err =
        std::fs::metadata(root.join("a.txt")).expect_err("a virtual name from the own process");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    let names: Vec<_> = std::fs::read_dir(&root)
        .expect("listing the root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.is_empty(), "own process listed {names:?}");
    assert_eq!(
        invoked(&guard),
        0,
        "the provider was called for the own process"
    );

    // Another process reaches the provider: a placeholder and its content.
    let out = std::process::Command::new("cat")
        .arg(root.join("a.txt"))
        .output()
        .expect("cat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"alpha\n");
    assert_eq!(by_kind(&guard, CallbackKind::GetFileData), 1);

    // Now on disk, it is visible to the own process too, without a callback; a
    // placeholder that is not hydrated cannot be read from here (EIO), and no
    // GetFileData is issued for it.
    let before = invoked(&guard);
    assert_eq!(
        std::fs::read(root.join("a.txt")).expect("hydrated file"),
        b"alpha\n"
    );
    let st = std::process::Command::new("stat")
        .arg(root.join("b.txt"))
        .output()
        .expect("stat");
    assert!(st.status.success());
    let before_b = invoked(&guard);
    let err = std::fs::read(root.join("b.txt")).expect_err("placeholder read from own process");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        invoked(&guard),
        before_b,
        "the provider was called for the own process"
    );
    assert!(before_b > before, "stat from a child did call the provider");
    guard.stop();
}
