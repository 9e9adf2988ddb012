//! Tests of the placeholder store and its log.

use super::*;
use std::os::fd::AsFd;

fn rec(size: u64) -> VRec {
    VRec {
        size,
        mtime: (1, 2),
        atime: (3, 4),
        perm: 0o644,
        uid: 5,
        gid: 6,
        version: Some(Box::new(VersionInfo {
            provider_id: b"p".to_vec(),
            content_id: b"c".to_vec(),
        })),
        origin: None,
        serial: 0,
    }
}

fn hidden() -> (tempfile::TempDir, rustix::fd::OwnedFd) {
    let d = tempfile::tempdir().unwrap();
    let fd = rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    (d, fd)
}

#[test]
fn a_listing_frames_its_entries_as_single_puts_do() {
    let moved = VRec {
        version: None,
        origin: Some(Box::new(PathBuf::from("old/x"))),
        ..rec(7)
    };
    for (dir, name, r) in [
        ("", "top", rec(1)),
        ("a/b", "x", moved.clone()),
        ("a/", "y", rec(2)),
    ] {
        let mut want = Vec::new();
        frame(&mut want, &encode_put(&Path::new(dir).join(name), &r));
        let mut got = vec![9];
        frame_put_at(&mut got, Path::new(dir), OsStr::new(name), &r);
        assert_eq!(&got[1..], &want[..], "{dir:?} {name:?}");
    }
}

#[test]
fn replays_puts_deletes_and_moves_after_reopen() {
    let (_d, fd) = hidden();
    {
        let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
        s.put(Path::new("a/x"), rec(1));
        s.put(
            Path::new("a/y"),
            VRec {
                version: None,
                ..rec(2)
            },
        );
        s.put(Path::new("b/z"), rec(3));
        s.remove(Path::new("b/z"));
        s.move_tree(Path::new("a"), Path::new("c"));
        s.stop();
    }
    let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.get(Path::new("b/z")), None);
    let x = s.get(Path::new("c/x")).unwrap();
    assert_eq!(x.size, 1);
    assert_eq!(
        x.origin.as_deref().map(|p| p.as_path()),
        Some(Path::new("a/x"))
    );
    assert_eq!(s.get(Path::new("c/y")).unwrap().version, None);
    assert!(s.has_children(Path::new("c")));
    assert!(!s.has_children(Path::new("a")));
}

#[test]
fn a_torn_tail_loses_only_the_last_batch() {
    let (_d, fd) = hidden();
    {
        let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
        s.put(Path::new("d/one"), rec(1));
        s.sync();
        s.put(Path::new("d/two"), rec(2));
        s.stop();
    }
    // Cut the last entry in half.
    let log = rustix::fs::openat(fd.as_fd(), LOG_NAME, OFlags::RDWR, Mode::empty()).unwrap();
    let len = rustix::fs::fstat(&log).unwrap().st_size as u64;
    rustix::fs::ftruncate(&log, len - 5).unwrap();
    let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
    assert_eq!(s.len(), 1);
    assert!(s.get(Path::new("d/one")).is_some());
    // The compacted log is whole again.
    s.put(Path::new("d/three"), rec(3));
    s.stop();
    drop(s);
    let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
    assert_eq!(s.len(), 2);
}

#[test]
fn open_drops_what_keep_refuses() {
    let (_d, fd) = hidden();
    {
        let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
        s.put(Path::new("k/keep"), rec(1));
        s.put(Path::new("k/drop"), rec(2));
        s.stop();
    }
    let s = VStore::open(fd.as_fd(), |p, _| p != Path::new("k/drop")).unwrap();
    assert_eq!(s.children(Path::new("k")).len(), 1);
    assert!(!s.put_new(Path::new("k/keep"), rec(9)));
    assert_eq!(s.get(Path::new("k/keep")).unwrap().size, 1);
}

#[test]
fn counters_follow_appends_and_batches() {
    let (_d, fd) = hidden();
    let s = VStore::open(fd.as_fd(), |_, _| true).unwrap();
    let opened = s.stats();
    assert_eq!(opened.log_bytes, LOG_MAGIC.len() as u64);
    s.put(Path::new("d/one"), rec(1));
    s.put(Path::new("d/two"), rec(2));
    let before = s.stats();
    assert_eq!((before.records, before.pending_entries), (2, 2));
    assert!(before.pending_bytes > 0);
    s.sync();
    let after = s.stats();
    assert_eq!((after.pending_entries, after.pending_bytes), (0, 0));
    assert_eq!(after.batches_written, opened.batches_written + 1);
    assert_eq!(after.log_bytes, opened.log_bytes + before.pending_bytes);
    let log = rustix::fs::openat(fd.as_fd(), LOG_NAME, OFlags::RDONLY, Mode::empty()).unwrap();
    assert_eq!(
        rustix::fs::fstat(&log).unwrap().st_size as u64,
        after.log_bytes
    );
    s.stop();
}
