//! Unit tests of the read-write operations on names: creation, links, deletion and
//! rename (attributes, xattrs and origin: `tests_attr.rs`).

use std::ffi::OsStr;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::SystemTime;

use super::tests::{
    data, dir_info, file_info, hydrate, is_root, new_layer, read_all, tmp_entries, version, H, P,
};
use super::*;
use crate::types::{FileKind, OnDiskState};

pub(super) const D: OnDiskState = OnDiskState::DIRTY_PLACEHOLDER;
pub(super) const FULL: OnDiskState = OnDiskState::FULL;
pub(super) const TOMB: OnDiskState = OnDiskState::TOMBSTONE;

pub(super) fn p(s: &str) -> &Path {
    Path::new(s)
}

pub(super) fn item(layer: &Layer, rel: &str) -> Item {
    layer.lookup(p(rel)).expect("valid").expect("present")
}

pub(super) fn state(layer: &Layer, rel: &str) -> OnDiskState {
    layer.state(p(rel)).expect("valid")
}

pub(super) fn placeholder(layer: &Layer, rel: &str, size: u64) {
    assert!(layer
        .write_placeholder(p(rel), &file_info(size))
        .expect("written"));
}

pub(super) fn tombstone(layer: &Layer, rel: &str) {
    layer.write_tombstone(p(rel)).expect("tombstone");
    assert_eq!(state(layer, rel), TOMB);
}

pub(super) fn errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("should fail").errno()
}

pub(super) fn now_secs() -> i64 {
    time_pair(SystemTime::now()).0
}

#[test]
fn create_file_over_nothing_a_tombstone_and_an_item() {
    let (dir, layer) = new_layer();
    let mut f = layer
        .create_file(p("new"), 0o640, 1000, 1001)
        .expect("created");
    f.write_all(b"hello").expect("writable");
    f.rewind().expect("seek");
    let mut back = String::new();
    f.read_to_string(&mut back).expect("readable");
    assert_eq!(back, "hello");
    let it = item(&layer, "new");
    assert_eq!((it.state, it.kind, it.origin), (FULL, FileKind::File, None));
    assert_eq!(it.attr.mode, libc::S_IFREG | 0o640);
    if is_root() {
        assert_eq!((it.attr.uid, it.attr.gid), (1000, 1001));
    }
    tombstone(&layer, "gone");
    layer
        .create_file(p("gone"), 0o600, 0, 0)
        .expect("over a tombstone");
    assert_eq!(state(&layer, "gone"), FULL);
    assert_eq!(
        errno(layer.create_file(p("new"), 0o600, 0, 0)),
        libc::EEXIST
    );
    placeholder(&layer, "ph", 4);
    assert!(matches!(
        layer.create_file(p("ph"), 0o600, 0, 0),
        Err(LayerError::Exists { .. })
    ));
    assert_eq!(
        errno(layer.create_file(p("no/x"), 0o600, 0, 0)),
        libc::ENOENT
    );
    assert_eq!(
        errno(layer.create_file(p("new/x"), 0o600, 0, 0)),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(layer.create_file(p("gone/x"), 0o600, 0, 0)),
        libc::ENOTDIR
    );
    tombstone(&layer, "t2");
    assert_eq!(
        errno(layer.create_file(p("t2/x"), 0o600, 0, 0)),
        libc::ENOENT
    );
    assert_eq!(read_all(&layer, "new"), b"hello");
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn mkdir_symlink_and_mknod_replace_tombstones_only() {
    let (dir, layer) = new_layer();
    layer.mkdir(p("d"), 0o751, 7, 8).expect("mkdir");
    let d = item(&layer, "d");
    assert_eq!(
        (d.kind, d.state, d.attr.mode),
        (FileKind::Directory, FULL, libc::S_IFDIR | 0o751)
    );
    if is_root() {
        assert_eq!((d.attr.uid, d.attr.gid), (7, 8));
    }
    tombstone(&layer, "d/t");
    layer
        .mkdir(p("d/t"), 0o700, 0, 0)
        .expect("mkdir over a tombstone");
    assert_eq!(item(&layer, "d/t").kind, FileKind::Directory);
    assert_eq!(errno(layer.mkdir(p("d"), 0o700, 0, 0)), libc::EEXIST);

    layer
        .symlink(p("d/l"), OsStr::new("../x"), 5, 6)
        .expect("symlink");
    tombstone(&layer, "d/l2");
    layer
        .symlink(p("d/l2"), OsStr::new("y"), 5, 6)
        .expect("over a tombstone");
    assert_eq!(layer.read_link(p("d/l")).expect("link"), "../x");
    assert_eq!(layer.read_link(p("d/l2")).expect("link"), "y");
    assert_eq!(item(&layer, "d/l").kind, FileKind::Symlink);
    if is_root() {
        let md = std::fs::symlink_metadata(dir.path().join("d/l")).expect("on disk");
        assert_eq!((md.uid(), md.gid()), (5, 6));
    }
    assert_eq!(
        errno(layer.symlink(p("d/l"), OsStr::new("z"), 0, 0)),
        libc::EEXIST
    );
    assert_eq!(
        errno(layer.symlink(p("d/l3"), OsStr::new(""), 0, 0)),
        libc::EINVAL
    );

    layer
        .mknod(p("fifo"), libc::S_IFIFO | 0o640, 0, 0, 0)
        .expect("fifo");
    tombstone(&layer, "sock");
    layer
        .mknod(p("sock"), libc::S_IFSOCK | 0o600, 0, 0, 0)
        .expect("socket over a tombstone");
    let fifo = std::fs::symlink_metadata(dir.path().join("fifo")).expect("fifo");
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o640, "no umask applied");
    assert!(std::fs::symlink_metadata(dir.path().join("sock"))
        .expect("sock")
        .file_type()
        .is_socket());
    assert_eq!(state(&layer, "sock"), FULL);
    assert_eq!(
        errno(layer.mknod(p("fifo"), libc::S_IFIFO, 0, 0, 0)),
        libc::EEXIST
    );
    assert_eq!(
        errno(layer.mknod(p("x"), libc::S_IFDIR | 0o700, 0, 0, 0)),
        libc::EINVAL
    );
    if is_root() {
        layer
            .mknod(p("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3), 0, 0)
            .expect("device");
        assert_eq!(item(&layer, "null").attr.rdev, (1 << 8) | 3);
    }
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn link_needs_local_content() {
    let (dir, layer) = new_layer();
    placeholder(&layer, "ph", 3);
    assert!(matches!(
        layer.link(p("ph"), p("ph2")),
        Err(LayerError::InvalidState { .. })
    ));
    assert_eq!(errno(layer.link(p("ph"), p("ph2"))), libc::EINVAL);
    hydrate(&layer, "ph", b"abc");
    layer.link(p("ph"), p("ph2")).expect("hydrated: linkable");
    let (a, b) = (item(&layer, "ph"), item(&layer, "ph2"));
    assert_eq!(a.attr.ino, b.attr.ino);
    assert_eq!(
        (b.state, b.version.clone()),
        (P | H, Some(version("file-v1")))
    );
    assert_eq!(b.attr.nlink, 2);
    let mut f = layer.create_file(p("full"), 0o644, 0, 0).expect("created");
    f.write_all(b"x").expect("write");
    tombstone(&layer, "t");
    layer.link(p("full"), p("t")).expect("over a tombstone");
    assert_eq!(read_all(&layer, "t"), b"x");
    assert_eq!(errno(layer.link(p("full"), p("ph"))), libc::EEXIST);
    assert_eq!(errno(layer.link(p("nope"), p("n2"))), libc::ENOENT);
    tombstone(&layer, "t2");
    assert_eq!(errno(layer.link(p("t2"), p("n3"))), libc::ENOENT);
    layer.mkdir(p("d"), 0o755, 0, 0).expect("mkdir");
    assert_eq!(errno(layer.link(p("d"), p("d2"))), libc::EPERM);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn delete_files_and_directories() {
    let (dir, layer) = new_layer();
    placeholder(&layer, "a", 1);
    placeholder(&layer, "b", 1);
    layer
        .symlink(p("l"), OsStr::new("t"), 0, 0)
        .expect("symlink");
    layer.delete(p("a"), true).expect("delete with tombstone");
    assert_eq!(state(&layer, "a"), TOMB);
    layer.delete(p("b"), false).expect("delete");
    assert!(layer.lookup(p("b")).expect("valid").is_none());
    layer.delete(p("l"), true).expect("symlink");
    assert_eq!(state(&layer, "l"), TOMB);
    assert_eq!(
        errno(layer.delete(p("a"), true)),
        libc::ENOENT,
        "a tombstone is nothing"
    );
    assert_eq!(errno(layer.delete(p("b"), false)), libc::ENOENT);

    // A directory with only tombstones, with and without a tombstone of its own.
    for (name, leave) in [("d1", true), ("d2", false)] {
        assert!(layer.write_placeholder(p(name), &dir_info()).expect("dir"));
        placeholder(&layer, &format!("{name}/x"), 1);
        layer.delete(p(&format!("{name}/x")), true).expect("child");
        assert!(layer.is_dir_empty_on_disk(p(name)).expect("dir"));
        layer.delete(p(name), leave).expect("delete dir");
        let expect = if leave { TOMB } else { OnDiskState::VIRTUAL };
        assert_eq!(state(&layer, name), expect);
    }
    // A directory with a real child.
    layer.mkdir(p("full"), 0o755, 0, 0).expect("mkdir");
    layer.create_file(p("full/c"), 0o644, 0, 0).expect("child");
    tombstone(&layer, "full/t");
    assert!(!layer.is_dir_empty_on_disk(p("full")).expect("dir"));
    assert!(matches!(
        layer.delete(p("full"), true),
        Err(LayerError::NotEmpty { .. })
    ));
    assert_eq!(errno(layer.delete(p("full"), false)), libc::ENOTEMPTY);
    assert_eq!(state(&layer, "full"), FULL, "unchanged");
    assert_eq!(
        errno(layer.is_dir_empty_on_disk(p("full/c"))),
        libc::ENOTDIR
    );
    assert_eq!(errno(layer.is_dir_empty_on_disk(p("nope"))), libc::ENOENT);
    assert!(!layer.is_dir_empty_on_disk(p("")).expect("root"));
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn deletes_and_creates_make_a_placeholder_parent_dirty_keeping_its_times() {
    let (dir, layer) = new_layer();
    assert!(layer.write_placeholder(p("d"), &dir_info()).expect("dir"));
    placeholder(&layer, "d/f", 1);
    // Placeholders arriving changed the directory's disk mtime; it still shows the
    // projected one, and keeps showing it when it becomes dirty.
    assert_eq!(state(&layer, "d"), P);
    layer.mark_dirty(p("d")).expect("dirty");
    assert_eq!(item(&layer, "d").attr.mtime, (1_500_000_000, 7));
    let md = std::fs::metadata(dir.path().join("d")).expect("on disk");
    assert_eq!(md.mtime(), 1_500_000_000);

    assert!(layer.write_placeholder(p("e"), &dir_info()).expect("dir"));
    placeholder(&layer, "e/f", 1);
    layer.delete(p("e/f"), true).expect("delete");
    let e = item(&layer, "e");
    assert_eq!(e.state, P | D);
    assert!(
        e.attr.mtime.0 >= now_secs() - 60,
        "the delete updated mtime"
    );
    assert!(layer.write_placeholder(p("g"), &dir_info()).expect("dir"));
    layer.create_file(p("g/new"), 0o644, 0, 0).expect("create");
    assert_eq!(state(&layer, "g"), P | D);
}

#[test]
fn rename_moves_items_and_records() {
    let (dir, layer) = new_layer();
    assert!(layer.write_placeholder(p("a"), &dir_info()).expect("dir"));
    layer.mkdir(p("b"), 0o755, 0, 0).expect("mkdir");
    placeholder(&layer, "a/f", 5);
    layer
        .rename(p("a/f"), p("b/g"), RenameFlags::default(), false)
        .expect("across directories");
    assert!(layer.lookup(p("a/f")).expect("valid").is_none());
    let g = item(&layer, "b/g");
    assert_eq!((g.state, g.attr.size), (P, 5));
    assert_eq!(g.version, Some(version("file-v1")));
    assert_eq!(g.origin.as_deref(), Some(p("a/f")));
    assert_eq!(state(&layer, "a"), P | D);

    // With a tombstone at `from`, and hydration at the new name.
    layer
        .rename(p("b/g"), p("h"), RenameFlags::default(), true)
        .expect("tombstone at from");
    assert_eq!(state(&layer, "b/g"), TOMB);
    assert_eq!(item(&layer, "h").origin.as_deref(), Some(p("a/f")));
    hydrate(&layer, "h", &data(1, 5));
    let h = item(&layer, "h");
    assert_eq!((h.state, h.origin.as_deref()), (P | H, Some(p("a/f"))));
    assert_eq!(read_all(&layer, "h"), data(1, 5));

    // Over an existing file, over a tombstone (also with noreplace).
    placeholder(&layer, "x", 1);
    layer.create_file(p("y"), 0o644, 0, 0).expect("create");
    layer
        .rename(p("x"), p("y"), RenameFlags::default(), false)
        .expect("over a file");
    assert_eq!(state(&layer, "y"), P);
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    layer
        .rename(p("y"), p("b/g"), noreplace, false)
        .expect("a tombstone is nothing, even for noreplace");
    assert_eq!(state(&layer, "b/g"), P);
    assert!(layer.lookup(p("y")).expect("valid").is_none());
    assert!(matches!(
        layer.rename(p("b/g"), p("h"), noreplace, false),
        Err(LayerError::Exists { .. })
    ));
    // Over an existing file, leaving a tombstone.
    layer
        .rename(p("b/g"), p("h"), RenameFlags::default(), true)
        .expect("over a file, tombstone");
    assert_eq!((state(&layer, "h"), state(&layer, "b/g")), (P, TOMB));
    // Over a tombstone, leaving one: the tombstones trade places.
    tombstone(&layer, "t");
    layer
        .rename(p("h"), p("t"), RenameFlags::default(), true)
        .expect("over a tombstone, tombstone");
    assert_eq!((state(&layer, "t"), state(&layer, "h")), (P, TOMB));
    assert_eq!(
        errno(layer.rename(p("h"), p("z"), RenameFlags::default(), false)),
        libc::ENOENT
    );
    assert_eq!(
        errno(layer.rename(p("nope"), p("z"), RenameFlags::default(), false)),
        libc::ENOENT
    );
    assert_eq!(
        errno(layer.rename(p("t"), p("no/z"), RenameFlags::default(), false)),
        libc::ENOENT
    );
    layer
        .rename(p("t"), p("t"), RenameFlags::default(), true)
        .expect("to itself: nothing");
    assert_eq!(state(&layer, "t"), P);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn rename_exchange_and_directories() {
    let (dir, layer) = new_layer();
    placeholder(&layer, "f", 1);
    layer.mkdir(p("d"), 0o755, 0, 0).expect("mkdir");
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    layer
        .rename(p("f"), p("d"), exchange, false)
        .expect("exchange");
    assert_eq!(
        (item(&layer, "f").kind, state(&layer, "d")),
        (FileKind::Directory, P)
    );
    assert_eq!(item(&layer, "d").origin.as_deref(), Some(p("f")));
    assert_eq!(
        errno(layer.rename(p("f"), p("d"), exchange, true)),
        libc::EINVAL
    );
    let both = RenameFlags {
        noreplace: true,
        exchange: true,
    };
    assert_eq!(
        errno(layer.rename(p("f"), p("d"), both, false)),
        libc::EINVAL
    );
    tombstone(&layer, "t");
    assert_eq!(
        errno(layer.rename(p("f"), p("t"), exchange, false)),
        libc::ENOENT
    );

    // Kind mismatches and directories beneath themselves.
    assert_eq!(
        errno(layer.rename(p("d"), p("f"), RenameFlags::default(), false)),
        libc::EISDIR
    );
    assert_eq!(
        errno(layer.rename(p("f"), p("d"), RenameFlags::default(), false)),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(layer.rename(p("f"), p("f/sub"), RenameFlags::default(), false)),
        libc::EINVAL
    );

    // A directory over a directory holding only tombstones, over a non-empty one.
    assert!(layer.write_placeholder(p("old"), &dir_info()).expect("dir"));
    tombstone(&layer, "old/gone");
    layer.create_file(p("f/keep"), 0o644, 0, 0).expect("child");
    layer
        .rename(p("f"), p("old"), RenameFlags::default(), true)
        .expect("over an emptied directory");
    assert_eq!(state(&layer, "f"), TOMB);
    let names: Vec<_> = layer
        .list_dir(p("old"))
        .expect("dir")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["keep"],
        "the old tombstones went with the old directory"
    );
    assert_eq!(item(&layer, "old").state, FULL);
    layer.mkdir(p("full"), 0o755, 0, 0).expect("mkdir");
    layer.create_file(p("full/x"), 0o644, 0, 0).expect("child");
    assert_eq!(
        errno(layer.rename(p("old"), p("full"), RenameFlags::default(), false)),
        libc::ENOTEMPTY
    );
    layer.mkdir(p("empty"), 0o755, 0, 0).expect("mkdir");
    assert_eq!(
        errno(layer.rename(p("old"), p("empty"), no_replace(), false)),
        libc::EEXIST
    );
    layer
        .rename(p("old"), p("empty"), RenameFlags::default(), false)
        .expect("over an empty directory");
    assert!(layer.lookup(p("old")).expect("valid").is_none());
    assert_eq!(read_all(&layer, "empty/keep"), b"");

    // Directories over a tombstone and to a new name, with and without one at from.
    tombstone(&layer, "t2");
    layer
        .rename(p("empty"), p("t2"), RenameFlags::default(), false)
        .expect("dir over a tombstone");
    assert!(layer.lookup(p("empty")).expect("valid").is_none());
    layer
        .rename(p("t2"), p("t"), RenameFlags::default(), true)
        .expect("dir over a tombstone, tombstone");
    assert_eq!(
        (state(&layer, "t2"), item(&layer, "t").kind),
        (TOMB, FileKind::Directory)
    );
    layer
        .rename(p("t"), p("moved"), RenameFlags::default(), true)
        .expect("dir to a new name, tombstone");
    assert_eq!(state(&layer, "t"), TOMB);
    assert_eq!(read_all(&layer, "moved/keep"), b"");
    // Two links of one file: nothing happens.
    layer.create_file(p("l1"), 0o644, 0, 0).expect("create");
    layer.link(p("l1"), p("l2")).expect("link");
    layer
        .rename(p("l1"), p("l2"), RenameFlags::default(), true)
        .expect("no-op");
    assert_eq!((state(&layer, "l1"), state(&layer, "l2")), (FULL, FULL));
    assert!(tmp_entries(dir.path()).is_empty());
}

fn no_replace() -> RenameFlags {
    RenameFlags {
        noreplace: true,
        exchange: false,
    }
}

#[test]
fn hydration_follows_its_placeholder_through_renames() {
    let (_dir, layer) = new_layer();
    placeholder(&layer, "a", 4);
    let h = layer.begin_hydration(p("a")).expect("begins");
    h.write_at(0, b"abcd").expect("write");
    layer
        .rename(p("a"), p("b"), RenameFlags::default(), true)
        .expect("rename");
    layer
        .finish_hydration(h, p("b"))
        .expect("finishes at the new name");
    assert_eq!(
        (state(&layer, "b"), read_all(&layer, "b")),
        (P | H, b"abcd".to_vec())
    );

    // Another placeholder at the name the hydration began for: refused.
    placeholder(&layer, "c", 4);
    let h = layer.begin_hydration(p("c")).expect("begins");
    h.write_at(0, b"wxyz").expect("write");
    layer
        .rename(p("c"), p("c2"), RenameFlags::default(), false)
        .expect("rename");
    placeholder(&layer, "c", 4);
    assert!(matches!(
        layer.finish_hydration(h, p("c")),
        Err(LayerError::InvalidState { .. })
    ));
    assert_eq!((state(&layer, "c"), state(&layer, "c2")), (P, P));
}

/// Which names count as projected (a delete leaves a tombstone there): the
/// marks of full items are set when they replace a tombstone, when a
/// placeholder becomes full, and by renames onto projected names; removed by
/// renames onto free names; invisible in the state (Full).
#[test]
fn projected_names_and_their_marks() {
    let (_dir, layer) = new_layer();
    let projected = |rel: &str| layer.is_projected_name(p(rel)).expect("valid");
    assert!(projected(""), "the root");
    assert!(!projected("nothing"));
    // Created over nothing: not projected; over a tombstone: marked.
    drop(layer.create_file(p("fresh"), 0o644, 0, 0).expect("create"));
    assert!(!projected("fresh"));
    tombstone(&layer, "t");
    assert!(projected("t"));
    drop(layer.create_file(p("t"), 0o644, 0, 0).expect("create"));
    assert_eq!(state(&layer, "t"), FULL, "a mark is no state");
    assert!(projected("t"));
    tombstone(&layer, "td");
    layer.mkdir(p("td"), 0o755, 0, 0).expect("mkdir");
    assert!(projected("td"));
    layer.mkdir(p("fd"), 0o755, 0, 0).expect("mkdir");
    assert!(!projected("fd"));
    // Placeholders, in any state, and once full.
    placeholder(&layer, "ph", 3);
    assert!(projected("ph"));
    layer.convert_to_full(p("ph"), true).expect("full");
    assert_eq!(state(&layer, "ph"), FULL);
    assert!(projected("ph"), "O_TRUNC of a placeholder");
    placeholder(&layer, "hy", 3);
    hydrate(&layer, "hy", b"abc");
    layer.convert_to_full(p("hy"), false).expect("full");
    assert!(projected("hy"), "a hydrated placeholder made full");
    placeholder(&layer, "sz", 3);
    hydrate(&layer, "sz", b"abc");
    let grow = SetAttr {
        size: Some(9),
        ..Default::default()
    };
    layer.set_attr(p("sz"), &grow).expect("truncate");
    assert_eq!(state(&layer, "sz"), FULL);
    assert!(projected("sz"), "a size change");
    // Renames: onto a projected name marks, onto a free one unmarks.
    layer
        .rename(p("fresh"), p("t"), RenameFlags::default(), false)
        .expect("over a marked file");
    assert!(projected("t"));
    layer
        .rename(p("t"), p("free"), RenameFlags::default(), true)
        .expect("to a free name");
    assert_eq!(state(&layer, "t"), TOMB);
    assert!(!projected("free"), "moved to a free name: unmarked");
    layer
        .rename(p("free"), p("t"), RenameFlags::default(), false)
        .expect("onto the tombstone");
    assert!(projected("t"));
    assert!(!projected("free"));
    // Exchange: each name keeps what it was.
    drop(layer.create_file(p("x"), 0o644, 0, 0).expect("create"));
    layer
        .rename(
            p("x"),
            p("hy"),
            RenameFlags {
                exchange: true,
                ..Default::default()
            },
            false,
        )
        .expect("exchange");
    assert!(projected("hy"));
    assert!(!projected("x"));
    // One inode, one mark: a second name of a marked file is projected too, and
    // keeps the mark when it moves to a free name.
    layer.link(p("hy"), p("hy2")).expect("link");
    assert!(projected("hy2"));
    layer
        .rename(p("hy2"), p("hy3"), RenameFlags::default(), false)
        .expect("rename a link");
    assert!(projected("hy") && projected("hy3"));
    // A link of an unmarked file onto a tombstone marks the inode.
    tombstone(&layer, "lt");
    layer.link(p("x"), p("lt")).expect("link over a tombstone");
    assert!(projected("lt") && projected("x"));
    // A directory moved onto a free name loses its mark; onto a tombstone gets one.
    layer
        .rename(p("td"), p("td2"), RenameFlags::default(), true)
        .expect("rename dir");
    assert!(!projected("td2"));
    assert_eq!(state(&layer, "td"), TOMB);
    layer
        .rename(p("fd"), p("td"), RenameFlags::default(), false)
        .expect("dir onto a tombstone");
    assert!(projected("td"));
    // Special files and symlinks: marked where records stick, else projected.
    tombstone(&layer, "sl");
    layer
        .symlink(p("sl"), OsStr::new("x"), 0, 0)
        .expect("symlink");
    assert!(projected("sl"));
    layer
        .symlink(p("sl2"), OsStr::new("x"), 0, 0)
        .expect("symlink");
    let sticks = is_root() && layer.xattrs.use_at();
    assert_eq!(projected("sl2"), !sticks);
}

/// A root written before full items carried marks: its full items in projected
/// directories are marked once (they may stand at projected names), those in
/// full directories are not, and the root is flagged so it happens once.
#[test]
fn upgrade_marks_full_items_of_an_old_root_once() {
    let (_dir, layer) = new_layer();
    let projected = |rel: &str| layer.is_projected_name(p(rel)).expect("valid");
    drop(layer.create_file(p("a"), 0o644, 0, 0).expect("create"));
    layer.mkdir(p("fd"), 0o755, 0, 0).expect("mkdir");
    drop(
        layer
            .create_file(p("fd/inner"), 0o644, 0, 0)
            .expect("create"),
    );
    assert!(layer.write_placeholder(p("pd"), &dir_info()).expect("dir"));
    drop(layer.create_file(p("pd/x"), 0o644, 0, 0).expect("create"));
    placeholder(&layer, "pd/ph", 2);
    tombstone(&layer, "t");
    for rel in ["a", "fd", "fd/inner", "pd/x"] {
        assert!(!projected(rel), "{rel} before");
    }
    assert_eq!(layer.upgrade_marks().expect("upgrade"), 3);
    for rel in ["a", "fd", "pd/x", "pd/ph", "t"] {
        assert!(projected(rel), "{rel} after");
    }
    assert!(!projected("fd/inner"), "in a full directory");
    assert_eq!(state(&layer, "a"), FULL);
    assert_eq!(state(&layer, "pd/ph"), P);
    // Once: later items are not marked again.
    drop(layer.create_file(p("b"), 0o644, 0, 0).expect("create"));
    assert_eq!(layer.upgrade_marks().expect("again"), 0);
    assert!(!projected("b"));
}

/// The parent directories the layer keeps open by path are forgotten whenever
/// a directory moves or goes: every lookup below sees the directory that is at
/// its path now, after the path was used (and its directory kept) before.
#[test]
fn kept_parent_directories_follow_moves_and_removals() {
    let (_dir, layer) = new_layer();
    let present = |rel: &str| layer.lookup(p(rel)).expect("valid").is_some();
    for d in ["a", "b", "e"] {
        layer.mkdir(p(d), 0o755, 0, 0).expect("mkdir");
    }
    layer
        .create_file(p("a/x"), 0o644, 0, 0)
        .expect("create a/x");
    layer
        .create_file(p("b/y"), 0o644, 0, 0)
        .expect("create b/y");
    assert!(present("a/x") && present("b/y") && !present("e/q"));

    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    layer
        .rename(p("a"), p("b"), exchange, false)
        .expect("exchange");
    assert!(present("a/y") && present("b/x"));
    assert!(!present("a/x") && !present("b/y"));

    layer
        .rename(p("a"), p("c"), RenameFlags::default(), false)
        .expect("rename");
    assert!(!present("a/y") && present("c/y"));

    layer.delete(p("c/y"), false).expect("delete c/y");
    layer.delete(p("c"), false).expect("rmdir c");
    assert!(!present("c/y"));
    layer.mkdir(p("c"), 0o755, 0, 0).expect("mkdir c again");
    layer
        .create_file(p("c/z"), 0o644, 0, 0)
        .expect("create c/z");
    assert!(present("c/z") && !present("c/y"));

    // A directory replaced by a tombstone, then by a new directory.
    layer.write_tombstone(p("e")).expect("tombstone over e");
    assert_eq!(state(&layer, "e"), TOMB);
    layer
        .mkdir(p("e"), 0o755, 0, 0)
        .expect("mkdir over the tombstone");
    layer
        .create_file(p("e/q"), 0o644, 0, 0)
        .expect("create e/q");
    assert!(present("e/q"));

    // Removed whatever its state, then made again.
    layer.delete(p("e/q"), false).expect("delete e/q");
    layer.remove(p("e")).expect("remove e");
    assert!(!present("e/q"));
    layer.mkdir(p("e"), 0o755, 0, 0).expect("mkdir e again");
    layer
        .create_file(p("e/r"), 0o644, 0, 0)
        .expect("create e/r");
    assert!(present("e/r") && !present("e/q"));
}
