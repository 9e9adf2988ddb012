//! Mounted tests of FUSE passthrough and the kernel caches: opens of hydrated
//! and full files go to the on-disk file, a node keeps one io mode while it has
//! open files (a placeholder opened before its hydration keeps the node served
//! by the daemon), the same behaviour without passthrough, hydration that
//! changes no attribute a client sees, and on-disk changes of directories that
//! reach clients despite the long attribute timeout.
//!
//! Client work runs in child processes (`perl`, `cat`, `stat`): the provider's
//! own process never reaches the provider.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prjfs::StartOptions;
use prjfs_providers::testing::{MemProvider, MemTree};
use prjfs_testkit::{mount_available, InstanceGuard};

struct Mounted {
    guard: InstanceGuard,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    fn start(tree: MemTree, passthrough: bool) -> Mounted {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).expect("creating the root");
        let options = StartOptions {
            pool_threads: 4,
            concurrent_threads: 2,
            passthrough,
            ..Default::default()
        };
        let guard = InstanceGuard::start(&root, Arc::new(MemProvider::new(tree)), options);
        let root = guard.root().to_path_buf();
        Mounted {
            guard,
            root,
            _tmp: tmp,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn instance(&self) -> &prjfs::VirtualizationInstance {
        self.guard.instance()
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running a client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

/// Opens one file several times at once, across its hydration and its
/// conversion to full, writing through some handles and reading through others.
/// Any open answered against the kernel's io-mode rules fails with EIO.
const IO_MODES: &str = r#"
my ($f) = @ARGV;
open(my $a, '<', $f) or die "open a: $!\n";
my $x = do { local $/; <$a> };
open(my $b, '<', $f) or die "open b (hydrated, a still open): $!\n";
my $y = do { local $/; <$b> };
die "b read other bytes than a\n" unless $x eq $y;
open(my $w, '+<', $f) or die "open w (for write, a and b open): $!\n";
syswrite($w, "AB") == 2 or die "write w: $!\n";
sysseek($a, 0, 0) or die "seek a: $!\n";
sysread($a, my $s, 2) == 2 or die "read a: $!\n";
die "a reads '$s' after the write\n" unless $s eq "AB";
close $w; close $b; close $a;
# Let the kernel's background RELEASEs reach the daemon.
select(undef, undef, undef, 0.3);
open(my $c, '<', $f) or die "open c (full, nothing open): $!\n";
open(my $d, '+<', $f) or die "open d (for write, c open): $!\n";
sysseek($d, 2, 0) or die "seek d: $!\n";
syswrite($d, "CD") == 2 or die "write d: $!\n";
sysseek($c, 0, 0) or die "seek c: $!\n";
sysread($c, my $t, 4) == 4 or die "read c: $!\n";
die "c reads '$t' after the write through d\n" unless $t eq "ABCD";
my @st = stat($c);
die "size $st[7] through c\n" unless $st[7] == length($x);
print "ok\n";
"#;

fn io_modes(passthrough: bool) {
    if !mount_available() {
        return;
    }
    let content: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let m = Mounted::start(MemTree::new().file("d/f.txt", content.clone()), passthrough);
    let f = m.path("d/f.txt");
    assert_eq!(
        stdout(Command::new("perl").arg("-e").arg(IO_MODES).arg(&f)),
        "ok\n"
    );
    let mut expected = content;
    expected[..4].copy_from_slice(b"ABCD");
    assert_eq!(run(Command::new("cat").arg(&f)).stdout, expected);
    let opens = m.instance().open_stats();
    if passthrough && m.instance().passthrough() {
        // c, d and cat: the node was in caching mode only while a, b, w were open.
        assert!(opens.passthrough >= 2, "{opens:?}");
    } else {
        assert_eq!(opens.passthrough, 0, "{opens:?}");
    }
    assert!(
        opens.daemon >= 3,
        "a, b and w are served by the daemon: {opens:?}"
    );
}

#[test]
fn one_io_mode_per_node_across_hydration_with_passthrough() {
    io_modes(true);
}

#[test]
fn the_same_without_passthrough() {
    io_modes(false);
}

/// Passthrough is on by default where the kernel and the privileges allow it
/// (the tests run as root on kernels with CONFIG_FUSE_PASSTHROUGH); hydrated
/// files, new files and their reads then never reach the daemon.
#[test]
fn hydrated_and_created_files_open_in_passthrough() {
    if !mount_available() || !rustix::process::geteuid().is_root() {
        return;
    }
    let m = Mounted::start(MemTree::new().file("a.txt", "alpha\n"), true);
    if !m.instance().passthrough() {
        eprintln!("skipped: the kernel did not grant FUSE passthrough");
        return;
    }
    let a = m.path("a.txt");
    assert_eq!(stdout(Command::new("cat").arg(&a)), "alpha\n");
    let before = m.instance().open_stats();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stdout(Command::new("cat").arg(&a)), "alpha\n");
    let n = m.path("new.txt");
    let script = format!(
        "echo hello > '{0}' && echo more >> '{0}' && cat '{0}'",
        n.display()
    );
    assert_eq!(
        stdout(Command::new("sh").arg("-c").arg(script)),
        "hello\nmore\n"
    );
    let after = m.instance().open_stats();
    assert_eq!(after.refused, 0, "{after:?}");
    assert!(
        after.passthrough >= before.passthrough + 4,
        "the hydrated a.txt, the create, the append and cat of new.txt: {before:?} -> {after:?}"
    );
    // A passthrough file unlinked while open still answers fstat.
    let script = r#"my ($f) = @ARGV; open(my $h, '<', $f) or die "open: $!\n";
        unlink($f) or die "unlink: $!\n"; my @st = stat($h) or die "fstat: $!\n";
        print "$st[7]\n";"#;
    assert_eq!(
        stdout(Command::new("perl").arg("-e").arg(script).arg(&n)),
        "11\n"
    );
}

/// Hydration replaces the placeholder on disk (a new inode, its own ctime and
/// allocated blocks) without a request from the kernel. A clean placeholder
/// shows the projection's attributes whether hydrated or not, so what a client
/// had cached (for a day) stays right: the stat after the read equals the one
/// before, and so does the answer of a fresh mount (no kernel cache at all).
#[test]
fn hydration_changes_nothing_stat_shows() {
    if !mount_available() {
        return;
    }
    let tree = || MemTree::new().file("h.bin", vec![7u8; 5000]);
    let m = Mounted::start(tree(), true);
    let h = m.path("h.bin");
    let stat = |p: &Path| {
        stdout(
            Command::new("stat")
                .args(["-c", "%s %b %i %.9Y %.9Z"])
                .arg(p),
        )
    };
    let placeholder = stat(&h);
    assert!(placeholder.starts_with("5000 10 "), "{placeholder}");
    let fields: Vec<&str> = placeholder.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "ctime is the projected mtime");
    assert_eq!(stdout(Command::new("cat").arg(&h)).len(), 5000);
    let item = m
        .instance()
        .virtualizer()
        .layer()
        .lookup(Path::new("h.bin"))
        .expect("layer lookup")
        .expect("h.bin on disk");
    assert!(
        item.state
            .contains(prjfs::OnDiskState::HYDRATED_PLACEHOLDER),
        "{:?}",
        item.state
    );
    let on_disk_ctime = format!("{}.{:09}", item.attr.ctime.0, item.attr.ctime.1);
    assert_ne!(on_disk_ctime, fields[4], "the layer's file is a new inode");
    assert_eq!(stat(&h), placeholder, "through the kernel's cache");
    // A fresh mount of the same root: the daemon's answer, not a cache.
    let root = m.root.clone();
    let Mounted { guard, _tmp, .. } = m;
    guard.stop();
    let options = StartOptions {
        pool_threads: 4,
        concurrent_threads: 2,
        passthrough: true,
        ..Default::default()
    };
    let again = InstanceGuard::start(&root, Arc::new(MemProvider::new(tree())), options);
    assert_eq!(
        stat(&again.root().join("h.bin")),
        placeholder,
        "after a remount"
    );
    drop(again);
    drop(_tmp);
}

/// A lookup that makes a placeholder changes its directory on disk (a new
/// subdirectory: a new ctime) without a request on the directory: the
/// directory's cached attributes (kept for a day) must be dropped. (Its link
/// count is 1, "unknown", before and after: a projected directory's
/// subdirectories are not all on disk.)
#[test]
fn placeholder_creation_refreshes_the_directory_attributes() {
    if !mount_available() {
        return;
    }
    let m = Mounted::start(
        MemTree::new()
            .file("d/sub/x.txt", "x\n")
            .file("d/y.txt", "y\n"),
        true,
    );
    let d = m.path("d");
    // Through another process: this one hosts the instance, whose own I/O
    // never reaches the provider.
    let seen = |p: &Path| stdout(Command::new("stat").args(["-c", "%h %.9Z"]).arg(p));
    let on_disk = || {
        let item = m
            .instance()
            .virtualizer()
            .layer()
            .lookup(Path::new("d"))
            .expect("layer lookup")
            .expect("d on disk");
        format!("1 {}.{:09}\n", item.attr.ctime.0, item.attr.ctime.1)
    };
    assert_eq!(seen(&d), on_disk(), "d as on disk, link count unknown");
    let before = seen(&d);
    // ctime has nanoseconds, but give the clock a tick to move.
    std::thread::sleep(Duration::from_millis(20));
    run(Command::new("stat").arg(m.path("d/sub")));
    let after = on_disk();
    assert_ne!(after, before, "the placeholder changed d's ctime on disk");
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen(&d) != after {
        assert!(
            Instant::now() < deadline,
            "d still shows {:?} after its subdirectory became a placeholder (on disk {after:?})",
            seen(&d)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No-open mode has no opens or closes to raise notifications for: asking for
/// both is refused before anything is mounted or written.
#[test]
fn no_open_with_notifications_is_refused() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let options = StartOptions {
        no_open: true,
        notification_mappings: Some(vec![]),
        ..Default::default()
    };
    let provider = Arc::new(MemProvider::new(MemTree::new().file("a", "a")));
    match prjfs::VirtualizationInstance::start(tmp.path(), provider, options) {
        Err(e @ prjfs::StartError::BadOptions(_)) => {
            assert!(e.to_string().contains("no-open"), "{e}")
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("started"),
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
