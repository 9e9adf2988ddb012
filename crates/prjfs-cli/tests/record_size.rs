//! Mounted tests of what an item's record costs on disk and of origins that
//! records leave out (format 3, `crates/prjfs/src/layer/meta.rs`): through the
//! `prjfs` binary with the dir provider, on a root in a fresh, sparse 1 GiB
//! ext4 image of default `mkfs.ext4` options (4 KiB blocks, 256-byte inodes;
//! images under 512 MiB get 1 KiB blocks), loop-mounted under a temp dir and
//! unmounted on drop, also when the test panics.
//!
//! Needs root, /dev/fuse, `mkfs.ext4` and loop devices (skipped elsewhere,
//! mandatory in CI).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use prjfs_testkit::{mount_available, CliMount};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// A fresh ext4 image loop-mounted at `mnt`; unmounted on drop.
struct Ext4 {
    _tmp: tempfile::TempDir,
    mnt: PathBuf,
}

impl Ext4 {
    fn new() -> Option<Ext4> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let img = tmp.path().join("fs.img");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(1 << 30))
            .expect("image file");
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status()
            .is_ok_and(|s| s.success());
        let mounted = made
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt)
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            let why = "mkfs.ext4 or a loop mount is not available";
            if std::env::var_os("CI").is_some() {
                panic!("this mounted test is mandatory in CI, but {why}");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        Some(Ext4 { _tmp: tmp, mnt })
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// `src/` (in the ext4 image too, it does not matter) and an empty `root/`.
fn dirs(fs: &Ext4) -> (PathBuf, PathBuf) {
    let source = fs.mnt.join("src");
    let root = fs.mnt.join("root");
    std::fs::create_dir(&source).expect("mkdir src");
    std::fs::create_dir(&root).expect("mkdir root");
    (source, root)
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

fn content(name: &str, len: usize) -> Vec<u8> {
    name.bytes().cycle().take(len).collect()
}

fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).expect("stat").ino()
}

fn names(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(path)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The record's xattr as the daemon (root) writes it.
fn record(path: &Path) -> Vec<u8> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "trusted.prjfs.meta"])
        .arg(path)
        .output()
        .expect("getfattr");
    assert!(out.status.success(), "{path:?} has no record");
    out.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_hydrated_4k_file_takes_no_xattr_block() {
    if !mount_available() {
        return;
    }
    let Some(fs) = Ext4::new() else { return };
    let (source, root) = dirs(&fs);
    let names_of = [
        "a.txt",
        "sub/dir/b.txt",
        "sub/dir/deeper/c-with-a-longer-name.txt",
    ];
    for n in names_of {
        write(&source.join(n), &content(n, 4096));
    }
    let m = CliMount::new(&bin(), &[], &source, &root);
    for n in names_of {
        assert_eq!(std::fs::read(root.join(n)).expect("read"), content(n, 4096));
    }
    m.unmount();
    for n in names_of {
        let on_disk = root.join(n);
        let meta = std::fs::metadata(&on_disk).expect("stat");
        assert_eq!(meta.len(), 4096);
        let len = record(&on_disk).len();
        assert!(len <= 60, "{n}: a record of {len} bytes");
        assert_eq!(
            meta.blocks(),
            8,
            "{n}: 4 KiB of data and a {len}-byte record take 8 sectors (no xattr block)"
        );
    }
}

/// Records that leave their origin out have it stored before anything moves
/// them: a renamed directory's hydrated files, placeholder subdirectories
/// and placeholder files keep their inode numbers and fetch from where the
/// provider has them, also after a remount.
#[test]
fn renamed_directories_keep_identity_and_origin_across_a_remount() {
    if !mount_available() {
        return;
    }
    let Some(fs) = Ext4::new() else { return };
    let (source, root) = dirs(&fs);
    for n in ["d/f", "d/g", "d/s/h", "d/s/i", "keep/k", "keep/stay"] {
        write(&source.join(n), &content(n, 4096));
    }
    let m = CliMount::new(&bin(), &[], &source, &root);
    let r = |n: &str| root.join(n);
    assert_eq!(std::fs::read(r("d/f")).expect("read"), content("d/f", 4096));
    for n in ["keep/k", "keep/stay"] {
        assert_eq!(std::fs::read(r(n)).expect("read"), content(n, 4096));
    }
    // Placed, never read: d/g (a record in the log), d/s and d/s/h.
    let before: Vec<u64> = ["d", "d/f", "d/g", "d/s", "d/s/h"]
        .iter()
        .map(|n| ino(&r(n)))
        .collect();
    assert!(Command::new("mv")
        .arg(r("d"))
        .arg(r("e"))
        .status()
        .expect("mv")
        .success());
    let after = |r: &dyn Fn(&str) -> PathBuf| -> Vec<u64> {
        ["e", "e/f", "e/g", "e/s", "e/s/h"]
            .iter()
            .map(|n| ino(&r(n)))
            .collect()
    };
    assert_eq!(after(&r), before, "inode numbers after mv");
    // A hydrated file moved by a rename of its own too.
    assert!(Command::new("mv")
        .arg(r("keep/k"))
        .arg(r("e/s/k2"))
        .status()
        .expect("mv")
        .success());
    let k = ino(&r("e/s/k2"));
    let stay = ino(&r("keep/stay"));
    m.unmount();
    // What moved stores its origin now; what did not still leaves it out.
    for (n, origin) in [
        ("e", "d"),
        ("e/f", "d/f"),
        ("e/s", "d/s"),
        ("e/s/k2", "keep/k"),
    ] {
        assert!(contains(&record(&r(n)), origin), "{n} stores {origin}");
    }
    assert!(!contains(&record(&r("keep/stay")), "keep/stay"));
    assert!(!contains(&record(&r("keep")), "keep"));
    let m = CliMount::new(&bin(), &[], &source, &root);
    assert_eq!(after(&r), before, "inode numbers after the remount");
    assert_eq!(ino(&r("e/s/k2")), k);
    assert_eq!(m.invoked("get_file_data"), 0);
    assert_eq!(ino(&r("keep/stay")), stay);
    assert_eq!(std::fs::read(r("e/f")).expect("read"), content("d/f", 4096));
    assert_eq!(std::fs::read(r("e/g")).expect("read"), content("d/g", 4096));
    assert_eq!(
        std::fs::read(r("e/s/h")).expect("read"),
        content("d/s/h", 4096)
    );
    assert_eq!(m.invoked("get_file_data"), 2, "e/g and e/s/h, from d/");
    assert_eq!(names(&r("e/s")), ["h", "i", "k2"]);
    assert_eq!(
        std::fs::read(r("e/s/i")).expect("read"),
        content("d/s/i", 4096)
    );
    assert_eq!(
        std::fs::read(r("e/s/k2")).expect("read"),
        content("keep/k", 4096)
    );
    m.unmount();
}
