//! Unit tests of the layer on temp directories (run as root on ext4 in CI; checks
//! that need root are skipped otherwise).

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::OFlags;

use super::*;
use crate::types::{FileBasicInfo, FileKind, OnDiskState, PlaceholderInfo, VersionInfo};

pub(super) const P: OnDiskState = OnDiskState::PLACEHOLDER;
pub(super) const H: OnDiskState = OnDiskState::HYDRATED_PLACEHOLDER;

pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The kernel refuses `user.` xattrs on symlinks, so only as root (`trusted.`) do
/// symlink placeholders carry a record.
fn symlinks_carry_records() -> bool {
    is_root()
}

pub(super) fn new_layer() -> (tempfile::TempDir, Layer) {
    let dir = tempfile::tempdir().expect("temp dir should be created");
    let layer = Layer::open(dir.path()).expect("layer should open");
    (dir, layer)
}

pub(super) fn at(secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

pub(super) fn version(tag: &str) -> VersionInfo {
    VersionInfo {
        provider_id: b"test-provider".to_vec(),
        content_id: tag.as_bytes().to_vec(),
    }
}

pub(super) fn file_info(size: u64) -> PlaceholderInfo {
    PlaceholderInfo {
        basic: FileBasicInfo {
            mode: 0o640,
            mtime: at(1_600_000_000, 123_456_789),
            atime: at(1_600_000_100, 5),
            owner: Some((1234, 5678)),
            ..FileBasicInfo::file(size)
        },
        version: version("file-v1"),
        symlink_target: None,
    }
}

pub(super) fn dir_info() -> PlaceholderInfo {
    PlaceholderInfo {
        basic: FileBasicInfo {
            mode: 0o750,
            mtime: at(1_500_000_000, 7),
            atime: at(1_500_000_001, 8),
            ..FileBasicInfo::directory()
        },
        version: version("dir-v1"),
        symlink_target: None,
    }
}

pub(super) fn symlink_info(target: &str) -> PlaceholderInfo {
    PlaceholderInfo {
        basic: FileBasicInfo {
            kind: FileKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime: at(1_400_000_000, 9),
            atime: at(1_400_000_000, 10),
            owner: None,
        },
        version: version("link-v1"),
        symlink_target: Some(target.into()),
    }
}

pub(super) fn data(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((seed * 31 + j * 7) % 251) as u8)
        .collect()
}

pub(super) fn hydrate(layer: &Layer, rel: &str, content: &[u8]) {
    let h = layer
        .begin_hydration(Path::new(rel))
        .expect("hydration should begin");
    h.write_at(0, content).expect("write should succeed");
    layer
        .finish_hydration(h, Path::new(rel))
        .expect("hydration should finish");
}

pub(super) fn read_all(layer: &Layer, rel: &str) -> Vec<u8> {
    let mut f = layer
        .open_file(Path::new(rel), OFlags::RDONLY)
        .expect("file should open");
    let mut out = Vec::new();
    f.read_to_end(&mut out).expect("file should read");
    out
}

pub(super) fn tmp_entries(root: &Path) -> Vec<OsString> {
    std::fs::read_dir(root.join(".prjfs/tmp"))
        .expect("tmp dir should exist")
        .map(|e| e.expect("entry").file_name())
        .collect()
}

#[test]
fn layer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Layer>();
    check::<Hydration>();
}

#[test]
fn open_creates_hidden_dir_and_picks_namespace() {
    let (dir, layer) = new_layer();
    assert!(dir.path().join(".prjfs/tmp").is_dir());
    let expected = if is_root() {
        "trusted.prjfs.meta"
    } else {
        "user.prjfs.meta"
    };
    assert_eq!(layer.xattr_name(), expected);
    assert!(layer.is_empty_root().expect("readable"));
    assert!(layer.list_dir(Path::new("")).expect("listable").is_empty());
    std::fs::write(dir.path().join("local"), b"x").expect("write");
    assert!(!layer.is_empty_root().expect("readable"));
}

#[test]
fn file_placeholder_projects_its_metadata() {
    let (dir, layer) = new_layer();
    let info = file_info(1000);
    assert!(layer
        .write_placeholder(Path::new("a.txt"), &info)
        .expect("written"));
    let item = layer
        .lookup(Path::new("a.txt"))
        .expect("ok")
        .expect("present");
    assert_eq!(item.kind, FileKind::File);
    assert_eq!(item.state, P);
    assert_eq!(item.version, Some(version("file-v1")));
    assert_eq!(item.attr.size, 1000);
    assert_eq!(item.attr.blocks, 2);
    assert_eq!(item.attr.mode, libc::S_IFREG | 0o640);
    assert_eq!(item.attr.mtime, (1_600_000_000, 123_456_789));
    assert_eq!(item.attr.atime, (1_600_000_100, 5));
    if is_root() {
        assert_eq!((item.attr.uid, item.attr.gid), (1234, 5678));
    }
    // A placeholder file is a record: nothing on disk until something needs it.
    assert!(std::fs::symlink_metadata(dir.path().join("a.txt")).is_err());
    // Once it has an on-disk item (here: opened), that item holds no data.
    drop(
        layer
            .open_file(Path::new("a.txt"), OFlags::RDONLY)
            .expect("opens"),
    );
    let md = std::fs::symlink_metadata(dir.path().join("a.txt")).expect("on disk");
    assert_eq!(md.len(), 0);
    assert_eq!(md.mtime(), 1_600_000_000);
    let mut on_disk = layer
        .lookup(Path::new("a.txt"))
        .expect("ok")
        .expect("present");
    // Only the inode number and ctime are the on-disk file's own.
    on_disk.attr.ino = item.attr.ino;
    on_disk.attr.ctime = item.attr.ctime;
    assert_eq!(on_disk, item, "the same item either way");
    assert!(
        tmp_entries(dir.path()).is_empty(),
        "no temp file left behind"
    );
    assert_eq!(layer.state(Path::new("a.txt")).expect("ok"), P);
    assert_eq!(
        layer.state(Path::new("nope")).expect("ok"),
        OnDiskState::VIRTUAL
    );
    assert!(layer
        .lookup(Path::new("nope/deeper"))
        .expect("ok")
        .is_none());
}

#[test]
fn dir_placeholder_keeps_projected_times_while_children_arrive() {
    let (_dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("d"), &dir_info())
        .expect("written"));
    let before = layer.lookup(Path::new("d")).expect("ok").expect("present");
    assert_eq!(before.kind, FileKind::Directory);
    assert_eq!(before.state, P);
    assert_eq!(before.attr.mode, libc::S_IFDIR | 0o750);
    assert_eq!(before.attr.mtime, (1_500_000_000, 7));
    assert!(layer
        .write_placeholder(Path::new("d/child"), &file_info(3))
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d/sub"), &dir_info())
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d/sub/x"), &file_info(1))
        .expect("written"));
    let after = layer.lookup(Path::new("d")).expect("ok").expect("present");
    assert_eq!(after.attr.mtime, (1_500_000_000, 7));
    assert_eq!(after.attr.atime, (1_500_000_001, 8));
    assert_eq!(
        layer.state(Path::new("d/sub/x")).expect("ok"),
        OnDiskState::PLACEHOLDER
    );
}

#[test]
fn symlink_placeholder_is_hydrated_and_carries_a_record() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("l"), &symlink_info("some/target"))
        .expect("written"));
    assert_eq!(
        layer.read_link(Path::new("l")).expect("link"),
        "some/target"
    );
    let item = layer.lookup(Path::new("l")).expect("ok").expect("present");
    assert_eq!(item.kind, FileKind::Symlink);
    assert_eq!(item.attr.size, 11);
    assert_eq!(item.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    // On-disk times are set too, so they match with or without a record.
    assert_eq!(item.attr.mtime, (1_400_000_000, 9));
    if symlinks_carry_records() {
        assert_eq!(item.state, P | H);
        assert_eq!(item.version, Some(version("link-v1")));
    } else {
        assert_eq!(item.state, OnDiskState::FULL);
    }
    let root_md = std::fs::metadata(dir.path()).expect("root");
    assert_eq!(
        (item.attr.uid, item.attr.gid),
        (root_md.uid(), root_md.gid())
    );
    // The layer never follows it.
    let err = layer.open_file(Path::new("l"), OFlags::RDONLY).unwrap_err();
    assert_eq!(err.errno(), libc::ELOOP);
    assert!(layer.lookup(Path::new("l/x")).expect("ok").is_none());
}

#[test]
fn symlinks_without_xattrat_carry_no_record() {
    let (_dir, layer) = new_layer();
    layer.xattrs.force_fallback();
    assert!(layer
        .write_placeholder(Path::new("l"), &symlink_info("t"))
        .expect("written"));
    assert_eq!(layer.state(Path::new("l")).expect("ok"), OnDiskState::FULL);
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(5))
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d"), &dir_info())
        .expect("written"));
    assert_eq!(layer.state(Path::new("f")).expect("ok"), P);
    assert_eq!(layer.state(Path::new("d")).expect("ok"), P);
    hydrate(&layer, "f", b"hello");
    assert_eq!(layer.state(Path::new("f")).expect("ok"), P | H);
}

#[test]
fn writing_over_an_existing_item_changes_nothing() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("a"), &file_info(10))
        .expect("written"));
    let mut other = file_info(99);
    other.version = version("other");
    assert!(!layer
        .write_placeholder(Path::new("a"), &other)
        .expect("no error"));
    let item = layer.lookup(Path::new("a")).expect("ok").expect("present");
    assert_eq!(item.attr.size, 10);
    assert_eq!(item.version, Some(version("file-v1")));
    std::fs::write(dir.path().join("local"), b"mine").expect("write");
    assert!(!layer
        .write_placeholder(Path::new("local"), &file_info(1))
        .expect("no error"));
    assert!(!layer
        .write_placeholder(Path::new("local"), &dir_info())
        .expect("no error"));
    assert_eq!(
        std::fs::read(dir.path().join("local")).expect("read"),
        b"mine"
    );
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn placeholder_needs_its_parent_and_valid_info() {
    let (_dir, layer) = new_layer();
    let err = layer
        .write_placeholder(Path::new("no/parent"), &file_info(1))
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    let mut long = file_info(1);
    long.version.content_id = vec![0; 129];
    assert!(matches!(
        layer.write_placeholder(Path::new("x"), &long),
        Err(LayerError::InvalidArgument(_))
    ));
    let mut no_target = symlink_info("t");
    no_target.symlink_target = None;
    assert!(layer.write_placeholder(Path::new("x"), &no_target).is_err());
    assert_eq!(
        layer.state(Path::new("x")).expect("ok"),
        OnDiskState::VIRTUAL
    );
}

#[test]
fn hydration_replaces_the_placeholder_with_complete_data() {
    let (dir, layer) = new_layer();
    let content = data(1, 100_000);
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(100_000))
        .expect("written"));
    let h = layer.begin_hydration(Path::new("f")).expect("begins");
    // Out of order, overlapping, from several threads.
    std::thread::scope(|s| {
        for part in 0..4usize {
            let (h, content) = (&h, &content);
            s.spawn(move || {
                for chunk in (part..25).step_by(4).rev() {
                    let start = chunk * 4000;
                    let end = (start + 4500).min(content.len());
                    h.write_at(start as u64, &content[start..end])
                        .expect("write");
                }
            });
        }
    });
    assert!(h.covers(0, 100_000));
    assert!(!h.covers(0, 100_001));
    layer.finish_hydration(h, Path::new("f")).expect("finishes");
    assert_eq!(read_all(&layer, "f"), content);
    let item = layer.lookup(Path::new("f")).expect("ok").expect("present");
    assert_eq!(item.state, P | H);
    assert_eq!(item.version, Some(version("file-v1")));
    assert_eq!(item.attr.size, 100_000);
    assert_eq!(item.attr.mode, libc::S_IFREG | 0o640);
    assert_eq!(item.attr.mtime, (1_600_000_000, 123_456_789));
    let md = std::fs::symlink_metadata(dir.path().join("f")).expect("on disk");
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
    if is_root() {
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
    }
    assert!(tmp_entries(dir.path()).is_empty());
    // Hydrated: neither begin nor finish again.
    assert!(matches!(
        layer.begin_hydration(Path::new("f")),
        Err(LayerError::InvalidState { .. })
    ));
}

/// `copy_from` hands content over from a file: in the kernel on the same file
/// system, through a buffer from another one (tmpfs, where `copy_file_range`
/// refuses); a short source ends the copy early and covers only what came.
#[test]
fn hydration_copies_from_a_file_on_this_or_another_file_system() {
    let content = data(3, 3 << 20);
    let shm = std::path::Path::new("/dev/shm");
    let (_dir, layer) = new_layer();
    let here = tempfile::tempdir().expect("a temp dir");
    let mut sources = vec![here.path().join("src")];
    if shm.is_dir() {
        sources.push(shm.join(format!("prjfs-copy-test-{}", std::process::id())));
    }
    for (n, src) in sources.iter().enumerate() {
        std::fs::write(src, &content).expect("writing the source");
        let file = std::fs::File::open(src).expect("opening the source");
        let rel = format!("f{n}");
        assert!(layer
            .write_placeholder(Path::new(&rel), &file_info(content.len() as u64))
            .expect("written"));
        let h = layer.begin_hydration(Path::new(&rel)).expect("begins");
        // Two pieces, the second asking past the end of the source.
        let first = h
            .copy_from(0, std::os::fd::AsFd::as_fd(&file), 0, 1 << 20)
            .expect("copies");
        assert_eq!(first, 1 << 20);
        assert!(h.covers(0, 1 << 20) && !h.covers(0, (1 << 20) + 1));
        let rest = h
            .copy_from(
                1 << 20,
                std::os::fd::AsFd::as_fd(&file),
                1 << 20,
                u64::from(u32::MAX),
            )
            .expect("copies");
        assert_eq!(rest, content.len() as u64 - (1 << 20), "{}", src.display());
        layer
            .finish_hydration(h, Path::new(&rel))
            .expect("finishes");
        assert_eq!(read_all(&layer, &rel), content, "{}", src.display());
        let _ = std::fs::remove_file(src);
    }
}

#[test]
fn incomplete_hydration_is_refused_and_leaves_the_placeholder() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(100))
        .expect("written"));
    let h = layer.begin_hydration(Path::new("f")).expect("begins");
    h.write_at(0, &[1; 40]).expect("write");
    h.write_at(60, &[1; 40]).expect("write");
    assert!(h.covers(10, 40));
    assert!(!h.covers(30, 70));
    assert_eq!(tmp_entries(dir.path()).len(), 1);
    match layer.finish_hydration(h, Path::new("f")) {
        Err(LayerError::IncompleteData {
            size: 100,
            missing_start: 40,
            missing_end: 60,
            ..
        }) => {}
        other => panic!("expected IncompleteData, got {other:?}"),
    }
    assert_eq!(layer.state(Path::new("f")).expect("ok"), P);
    assert!(
        tmp_entries(dir.path()).is_empty(),
        "dropped hydration removes its temp file"
    );
    let h = layer.begin_hydration(Path::new("f")).expect("begins");
    h.write_at(0, &[2; 50]).expect("write");
    assert!(matches!(
        layer.finish_hydration(h, Path::new("f")),
        Err(LayerError::IncompleteData {
            missing_start: 50,
            missing_end: 100,
            ..
        })
    ));
}

#[test]
fn hydration_cuts_extra_bytes_and_handles_empty_files() {
    let (_dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(5))
        .expect("written"));
    hydrate(&layer, "f", b"hello, and more");
    assert_eq!(read_all(&layer, "f"), b"hello");
    assert!(layer
        .write_placeholder(Path::new("empty"), &file_info(0))
        .expect("written"));
    let h = layer.begin_hydration(Path::new("empty")).expect("begins");
    layer
        .finish_hydration(h, Path::new("empty"))
        .expect("nothing to cover");
    assert_eq!(layer.state(Path::new("empty")).expect("ok"), P | H);
}

#[test]
fn finish_fails_when_the_placeholder_changed() {
    let (_dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(3))
        .expect("written"));
    let h1 = layer.begin_hydration(Path::new("f")).expect("begins");
    let h2 = layer.begin_hydration(Path::new("f")).expect("begins");
    h1.write_at(0, b"abc").expect("write");
    h2.write_at(0, b"xyz").expect("write");
    layer
        .finish_hydration(h1, Path::new("f"))
        .expect("first wins");
    assert!(matches!(
        layer.finish_hydration(h2, Path::new("f")),
        Err(LayerError::InvalidState { .. })
    ));
    assert_eq!(read_all(&layer, "f"), b"abc");
    assert!(layer
        .write_placeholder(Path::new("g"), &file_info(1))
        .expect("written"));
    let h = layer.begin_hydration(Path::new("g")).expect("begins");
    h.write_at(0, b"g").expect("write");
    layer.write_tombstone(Path::new("g")).expect("tombstone");
    assert!(matches!(
        layer.finish_hydration(h, Path::new("g")),
        Err(LayerError::InvalidState { .. })
    ));
    assert!(matches!(
        layer.begin_hydration(Path::new("absent")),
        Err(LayerError::NotFound { .. })
    ));
}

#[test]
fn open_removes_leftover_temp_files() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(4))
        .expect("written"));
    let h = layer.begin_hydration(Path::new("f")).expect("begins");
    h.write_at(0, b"ab").expect("write");
    // A crash: the hydration is never finished nor dropped.
    std::mem::forget(h);
    let tmp = dir.path().join(".prjfs/tmp");
    std::fs::create_dir(tmp.join("ph-1-1")).expect("mkdir");
    std::fs::write(tmp.join("ph-1-1/inner"), b"x").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", tmp.join("ph-1-2")).expect("symlink");
    assert_eq!(tmp_entries(dir.path()).len(), 3);
    drop(layer);
    let layer = Layer::open(dir.path()).expect("reopens");
    assert!(tmp_entries(dir.path()).is_empty());
    assert!(
        std::fs::metadata("/etc/passwd").is_ok(),
        "symlink target untouched"
    );
    assert_eq!(layer.state(Path::new("f")).expect("ok"), P);
}

#[test]
fn tombstones_hide_and_are_listed() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("a"), &file_info(1))
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d"), &dir_info())
        .expect("written"));
    std::fs::write(dir.path().join("b"), b"local").expect("write");
    layer
        .write_tombstone(Path::new("a"))
        .expect("tombstone over placeholder");
    layer
        .write_tombstone(Path::new("d"))
        .expect("tombstone over empty dir");
    layer
        .write_tombstone(Path::new("gone"))
        .expect("tombstone over nothing");
    let t = layer.lookup(Path::new("a")).expect("ok").expect("present");
    assert_eq!(t.state, OnDiskState::TOMBSTONE);
    assert_eq!(t.version, None);
    let listed: Vec<_> = layer
        .list_dir(Path::new(""))
        .expect("listable")
        .into_iter()
        .map(|(n, i)| (n.into_string().expect("utf8"), i.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("a".to_string(), OnDiskState::TOMBSTONE),
            ("b".to_string(), OnDiskState::FULL),
            ("d".to_string(), OnDiskState::TOMBSTONE),
            ("gone".to_string(), OnDiskState::TOMBSTONE),
        ]
    );
    assert!(!layer
        .write_placeholder(Path::new("a"), &file_info(1))
        .expect("no error"));
    layer.remove(Path::new("a")).expect("removed");
    assert!(layer.lookup(Path::new("a")).expect("ok").is_none());
    assert!(layer
        .write_placeholder(Path::new("a"), &file_info(1))
        .expect("written"));
    // A non-empty directory is not replaced.
    std::fs::create_dir(dir.path().join("full")).expect("mkdir");
    std::fs::write(dir.path().join("full/x"), b"x").expect("write");
    assert_eq!(
        layer
            .write_tombstone(Path::new("full"))
            .unwrap_err()
            .errno(),
        libc::ENOTEMPTY
    );
    assert_eq!(
        layer.state(Path::new("full")).expect("ok"),
        OnDiskState::FULL
    );
    assert!(tmp_entries(dir.path()).is_empty());
    assert_eq!(
        layer.remove(Path::new("nothing")).unwrap_err().errno(),
        libc::ENOENT
    );
}

#[test]
fn list_dir_is_sorted_and_hides_the_layer_dir() {
    let (dir, layer) = new_layer();
    for name in ["b", "B", "a", "ä", "_"] {
        assert!(layer
            .write_placeholder(Path::new(name), &file_info(1))
            .expect("written"));
    }
    std::fs::create_dir(dir.path().join("local")).expect("mkdir");
    std::fs::create_dir(dir.path().join("local/.prjfs")).expect("mkdir");
    let names: Vec<_> = layer
        .list_dir(Path::new(""))
        .expect("listable")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["B", "_", "a", "b", "local", "ä"]);
    let inner = layer.list_dir(Path::new("local")).expect("listable");
    assert_eq!(inner.len(), 1, "only the root's .prjfs is hidden");
    assert_eq!(inner[0].1.kind, FileKind::Directory);
    assert!(matches!(
        layer.list_dir(Path::new("missing")),
        Err(LayerError::NotFound { .. })
    ));
}

#[test]
fn count_states_walks_everything() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("d"), &dir_info())
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d/e"), &dir_info())
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d/e/f1"), &file_info(2))
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d/e/f2"), &file_info(2))
        .expect("written"));
    assert!(layer
        .write_placeholder(Path::new("d/l"), &symlink_info("e"))
        .expect("written"));
    hydrate(&layer, "d/e/f2", b"ok");
    layer
        .write_tombstone(Path::new("d/gone"))
        .expect("tombstone");
    std::fs::write(dir.path().join("d/e/local"), b"x").expect("write");
    std::fs::create_dir(dir.path().join("mine")).expect("mkdir");
    std::os::unix::fs::symlink("..", dir.path().join("mine/up")).expect("symlink");
    layer.mark_dirty(Path::new("d/e")).expect("dirty");
    // d/l is hydrated when it carries a record, else full.
    let link = u64::from(symlinks_carry_records());
    assert_eq!(
        layer.count_states().expect("counted"),
        StateCounts {
            placeholder: 2,       // d, d/e/f1
            hydrated: 1 + link,   // d/e/f2, d/l
            dirty: 1,             // d/e
            full: 3 + (1 - link), // d/e/local, mine, mine/up
            tombstone: 1,         // d/gone
        }
    );
}

#[test]
fn dirty_and_full_transitions() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(3))
        .expect("written"));
    layer.mark_dirty(Path::new("f")).expect("dirty");
    let item = layer.lookup(Path::new("f")).expect("ok").expect("present");
    assert_eq!(item.state, P | OnDiskState::DIRTY_PLACEHOLDER);
    assert_eq!(item.attr.size, 3, "still projected until hydrated");
    assert!(matches!(
        layer.mark_full(Path::new("f")),
        Err(LayerError::InvalidState { .. })
    ));
    hydrate(&layer, "f", b"abc");
    assert_eq!(
        layer.state(Path::new("f")).expect("ok"),
        P | H | OnDiskState::DIRTY_PLACEHOLDER
    );
    layer.mark_full(Path::new("f")).expect("full");
    let item = layer.lookup(Path::new("f")).expect("ok").expect("present");
    assert_eq!((item.state, item.version), (OnDiskState::FULL, None));
    assert_eq!(read_all(&layer, "f"), b"abc");
    assert!(layer
        .write_placeholder(Path::new("d"), &dir_info())
        .expect("written"));
    assert!(matches!(
        layer.mark_full(Path::new("d")),
        Err(LayerError::InvalidState { .. })
    ));
    std::fs::write(dir.path().join("local"), b"x").expect("write");
    assert!(matches!(
        layer.mark_dirty(Path::new("local")),
        Err(LayerError::InvalidState { .. })
    ));
    layer
        .mark_full(Path::new("local"))
        .expect("already full: no-op");
}

#[test]
fn bad_paths_are_rejected_everywhere() {
    let (_dir, layer) = new_layer();
    let info = file_info(1);
    for bad in ["..", "a/../b", "/etc/passwd", ".prjfs", ".prjfs/tmp/x"] {
        let p = Path::new(bad);
        let is_invalid = |r: Result<()>| matches!(r, Err(LayerError::InvalidPath { .. }));
        assert!(is_invalid(layer.lookup(p).map(drop)), "{bad}");
        assert!(
            is_invalid(layer.write_placeholder(p, &info).map(drop)),
            "{bad}"
        );
        assert!(is_invalid(layer.begin_hydration(p).map(drop)), "{bad}");
        assert!(
            is_invalid(layer.open_file(p, OFlags::RDONLY).map(drop)),
            "{bad}"
        );
        assert!(is_invalid(layer.read_link(p).map(drop)), "{bad}");
        assert!(is_invalid(layer.list_dir(p).map(drop)), "{bad}");
        assert!(is_invalid(layer.state(p).map(drop)), "{bad}");
        assert!(is_invalid(layer.write_tombstone(p)), "{bad}");
        assert!(is_invalid(layer.remove(p)), "{bad}");
    }
    assert!(matches!(
        layer.write_placeholder(Path::new(""), &info),
        Err(LayerError::InvalidPath { .. })
    ));
    assert_eq!(
        LayerError::InvalidPath {
            path: PathBuf::new(),
            reason: "x"
        }
        .errno(),
        libc::EINVAL
    );
}

#[test]
fn root_marker_round_trip() {
    let (dir, layer) = new_layer();
    assert_eq!(layer.root_marker().expect("ok"), None);
    let m = RootMarker {
        source: "/srv/store".into(),
        provider: "dir".into(),
    };
    layer.set_root_marker(&m).expect("set");
    assert_eq!(layer.root_marker().expect("ok"), Some(m.clone()));
    drop(layer);
    let layer = Layer::open(dir.path()).expect("reopens");
    assert_eq!(layer.root_marker().expect("ok"), Some(m));
    let name = format!("{}.prjfs.root", if is_root() { "trusted" } else { "user" });
    rustix::fs::setxattr(
        dir.path(),
        name.as_str(),
        b"PJRT\x01junk",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    assert!(matches!(
        layer.root_marker(),
        Err(LayerError::CorruptMeta { .. })
    ));
}

#[test]
fn corrupt_record_on_disk_is_an_error() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(1))
        .expect("written"));
    // Give the placeholder file its on-disk item, where the record can rot.
    drop(
        layer
            .open_file(Path::new("f"), OFlags::RDONLY)
            .expect("opens"),
    );
    let path = dir.path().join("f");
    let mut rec = vec![0u8; 512];
    let n = rustix::fs::getxattr(&path, layer.xattr_name(), &mut rec[..]).expect("record");
    rec.truncate(n);
    rec[14] ^= 0xff;
    rustix::fs::setxattr(
        &path,
        layer.xattr_name(),
        &rec,
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    match layer.lookup(Path::new("f")) {
        Err(e @ LayerError::CorruptMeta { .. }) => {
            assert_eq!(e.errno(), libc::EIO);
            assert!(e.to_string().contains("checksum"), "{e}");
        }
        other => panic!("expected CorruptMeta, got {other:?}"),
    }
    assert!(layer.list_dir(Path::new("")).is_err());
    // A record that contradicts the disk is corrupt too.
    std::fs::create_dir(dir.path().join("d")).expect("mkdir");
    let file_rec = meta::Record {
        state: P,
        kind: FileKind::File,
        size: 1,
        mtime: (0, 0),
        atime: (0, 0),
        version: VersionInfo::default(),
        origin: None,
        listed: false,
    };
    rustix::fs::setxattr(
        dir.path().join("d"),
        layer.xattr_name(),
        &file_rec.encode(),
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    assert!(matches!(
        layer.lookup(Path::new("d")),
        Err(LayerError::CorruptMeta { .. })
    ));
}

#[test]
fn root_lookup_and_statfs() {
    let (_dir, layer) = new_layer();
    let root = layer.lookup(Path::new("")).expect("ok").expect("root");
    assert_eq!(root.kind, FileKind::Directory);
    assert_eq!(root.state, OnDiskState::FULL);
    assert!(layer.statfs().expect("statfs").f_bsize > 0);
}

fn spare_count(root: &Path) -> usize {
    std::fs::read_dir(root.join(".prjfs/spare"))
        .expect("spare dir should exist")
        .count()
}

/// Wait (up to 30 s) until `.prjfs/spare` holds `n` items.
fn wait_for_spares(root: &Path, n: usize) {
    let start = std::time::Instant::now();
    while spare_count(root) < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "spares never reached {n}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn spare_inodes_are_made_ahead_taken_whole_and_released() {
    let (dir, layer) = new_layer();
    let root = dir.path();
    assert_eq!(
        spare_count(root),
        0,
        "nothing is made before it is asked for"
    );
    // The first directory placeholder starts the stock and makes its own.
    layer
        .write_placeholder(Path::new("d0"), &dir_info())
        .expect("placeholder");
    wait_for_spares(root, 32);
    // The stock is full, so its thread waits: the next placement takes one of
    // these very inodes.
    let stocked: std::collections::HashSet<u64> = std::fs::read_dir(root.join(".prjfs/spare"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().ino())
        .collect();
    layer
        .write_placeholder(Path::new("d1"), &dir_info())
        .expect("placeholder");
    let d1 = std::fs::metadata(root.join("d1")).unwrap();
    assert!(stocked.contains(&d1.ino()), "d1 is a spare directory");
    for i in 2..=8 {
        layer
            .write_placeholder(Path::new(&format!("d{i}")), &dir_info())
            .expect("placeholder");
    }
    // A hydration asks for a file: the stock of files starts too.
    layer
        .write_placeholder(Path::new("d0/f"), &file_info(5))
        .expect("placeholder");
    hydrate(&layer, "d0/f", b"hello");
    wait_for_spares(root, 64);
    hydrate_each(&layer);
    // Every placed item is what it was without spares.
    for i in 0..=8 {
        let item = layer
            .lookup(Path::new(&format!("d{i}")))
            .unwrap()
            .expect("placed");
        assert_eq!(item.kind, FileKind::Directory);
        assert_eq!(item.state, P);
        assert_eq!(item.attr.mode & 0o7777, 0o750, "d{i} has the info's mode");
    }
    assert_eq!(read_all(&layer, "d0/f"), b"hello");
    assert!(tmp_entries(root).is_empty());
    layer.release_spares();
    assert_eq!(spare_count(root), 0, "released spares are removed");
    // After a release, placing still works (without spares).
    layer
        .write_placeholder(Path::new("late"), &dir_info())
        .expect("placeholder after release");
    assert_eq!(spare_count(root), 0);
    drop(layer);
    // Spares a crash left are removed when the layer opens again.
    std::fs::create_dir(root.join(".prjfs/spare/d99")).unwrap();
    std::fs::write(root.join(".prjfs/spare/f99"), b"").unwrap();
    let _layer = Layer::open(root).expect("reopen");
    assert_eq!(spare_count(root), 0);
}

/// Hydrate ten more files, which take spare files.
fn hydrate_each(layer: &Layer) {
    for i in 0..10 {
        let rel = format!("d1/g{i}");
        layer
            .write_placeholder(Path::new(&rel), &file_info(3))
            .expect("placeholder");
        hydrate(layer, &rel, b"abc");
        assert_eq!(read_all(layer, &rel), b"abc");
    }
}
