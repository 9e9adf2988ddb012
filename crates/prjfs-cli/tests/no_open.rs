//! `prjfs mount --no-open` (FUSE no-open: opens and closes never reach the
//! daemon) through a real mount and real programs: every change a client makes
//! is applied to a plain copy of the source (`expect`) as well, and the root
//! must read as that copy, before and after a remount. Also: no OPEN reaches
//! the daemon, a file is fetched once, a placeholder becomes full at its first
//! write, `O_TRUNC` truncates, files whose last name went while open keep
//! their content, and `--no-open` is refused with notifications.
//!
//! Every test needs root and /dev/fuse (skipped elsewhere, mandatory in CI) and
//! holds a [`CliMount`], which unmounts even when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;

use prjfs_testkit::{make_tree, mount_available, run_ok, CliMount, TreeSpec};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// Run to completion; its stdout as text, panicking unless it succeeded.
fn ok(c: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(c)).into_owned()
}

fn sh(script: &str, dir: &Path) -> String {
    ok(Command::new("sh").arg("-c").arg(script).current_dir(dir))
}

/// `diff -r --no-dereference` of two trees, empty when they hold the same.
fn assert_same_tree(expect: &Path, root: &Path, when: &str) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", ".prjfs"])
        .arg(expect)
        .arg(root)
        .output()
        .expect("diff");
    assert!(
        out.status.success(),
        "{when}: the root differs from the expected tree:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn counter(m: &CliMount, path: &[&str]) -> u64 {
    let mut v = m.status();
    for p in path {
        v = v[*p].clone();
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("status has no {path:?}"))
}

/// Perl run in `dir`: open the first argument, make it lose its name the way
/// `how` says, then read (and for a `+<` open write) through the descriptor.
const KEEP: &str = r#"
my ($f, $how, $mode, $other) = @ARGV;
open(my $h, $mode, $f) or die "open: $!\n";
if ($how eq 'unlink') { unlink($f) or die "unlink: $!\n"; }
else { rename($other, $f) or die "rename: $!\n"; }
if ($mode eq '+<') {
    syswrite($h, "XY") == 2 or die "write: $!\n";
    sysseek($h, 0, 0) or die "seek: $!\n";
}
my $n = sysread($h, my $buf, 1 << 20);
defined $n or die "read: $!\n";
print $buf;
"#;

#[test]
fn no_open_mount_reads_and_changes_like_a_copy() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, root, expect) = (
        tmp.path().join("src"),
        tmp.path().join("root"),
        tmp.path().join("expect"),
    );
    for d in [&source, &root] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let files = make_tree(
        &source,
        TreeSpec {
            files: 300,
            dirs: 20,
            ..TreeSpec::default()
        },
    );
    ok(Command::new("cp").arg("-a").arg(&source).arg(&expect));
    let m = CliMount::new(&bin(), &["--no-open"], &source, &root);

    // Every file read cold (diff opens and reads each), then again.
    assert_same_tree(&expect, &root, "first read");
    let fetched = m.invoked("get_file_data");
    let non_empty = files
        .iter()
        .filter(|f| std::fs::metadata(source.join(f)).unwrap().len() > 0)
        .count() as u64;
    assert_eq!(fetched, non_empty, "one fetch per non-empty file");
    assert_same_tree(&expect, &root, "second read");
    assert_eq!(m.invoked("get_file_data"), fetched, "no second fetch");
    assert_eq!(counter(&m, &["opens", "daemon"]), 0, "no OPEN was served");
    assert_eq!(counter(&m, &["opens", "passthrough"]), 0);
    assert_eq!(m.status()["opens"]["no_open"], true);
    let text = ok(m.prjfs(&["status"]).arg(&root));
    assert!(text.contains("opens:     no-open"), "{text}");

    // The same changes in the root and in the copy.
    let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| {
        files
            .iter()
            .filter(|f| std::fs::metadata(source.join(f)).unwrap().len() > 100)
            .nth(i)
            .expect("enough non-empty files")
            .to_string_lossy()
            .into_owned()
    });
    let script = format!(
        "set -e
        echo appended >> '{a}'
        : > '{b}'
        printf 'MID' | dd of='{c}' bs=1 seek=50 conv=notrunc status=none
        echo new > created.txt
        mv created.txt moved.txt
        rm '{d}'
        cp '{e}' copy.dat
        mkdir -p newdir && echo x > newdir/x"
    );
    sh(&script, &root);
    sh(&script, &expect);
    assert_same_tree(&expect, &root, "after the changes");
    for (f, want) in [(&a, "Full (8)"), (&b, "Full (8)"), (&c, "Full (8)")] {
        assert!(
            m.state(&root.join(f)).ends_with(want),
            "{f}: {}",
            m.state(&root.join(f))
        );
    }
    assert_ne!(
        std::fs::read(source.join(&a)).unwrap(),
        std::fs::read(root.join(&a)).unwrap(),
        "the source is never written"
    );

    // Descriptors outlive the name: unlinked, renamed over, created, projected.
    let before = std::fs::read(root.join(&e)).unwrap();
    let out = run_ok(
        Command::new("perl")
            .args(["-e", KEEP])
            .arg(root.join(&e))
            .args(["unlink", "<"]),
    );
    assert!(
        out == before,
        "read after unlink: {} bytes, {} expected",
        out.len(),
        before.len()
    );
    std::fs::remove_file(expect.join(&e)).unwrap();
    let out = ok(Command::new("perl")
        .args(["-e", KEEP])
        .arg(root.join("moved.txt"))
        .args(["rename", "+<"])
        .arg(root.join("copy.dat")));
    assert_eq!(out, "XYw\n", "write and read after being renamed over");
    sh("mv copy.dat moved.txt", &expect);
    assert_same_tree(&expect, &root, "after the descriptors");
    assert_eq!(counter(&m, &["opens", "daemon"]), 0, "still no OPEN");

    m.unmount();
    let m = CliMount::new(&bin(), &["--no-open"], &source, &root);
    assert_same_tree(&expect, &root, "after a remount");
    m.unmount();
    let m = CliMount::new(&bin(), &[], &source, &root);
    assert_same_tree(&expect, &root, "remounted without --no-open");
    assert_eq!(m.status()["opens"]["no_open"], false);
    m.unmount();
}

#[test]
fn no_open_is_refused_with_notifications() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, root) = (tmp.path().join("src"), tmp.path().join("root"));
    for d in [&source, &root] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let out = Command::new(bin())
        .args(["mount", "--no-open", "--notify-log"])
        .arg(tmp.path().join("n.log"))
        .arg(&source)
        .arg(&root)
        .output()
        .expect("prjfs mount");
    assert!(!out.status.success(), "mounted anyway");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--no-open") && err.contains("--notify-log"),
        "{err}"
    );
    assert!(
        !prjfs_testkit::is_mounted(&root),
        "a refused mount left a mount"
    );
}
