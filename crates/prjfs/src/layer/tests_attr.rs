//! Unit tests of attribute changes, conversion to full, user xattrs, the record's
//! origin, and cleanup of `tmp`.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::tests::{
    data, dir_info, file_info, hydrate, is_root, new_layer, read_all, symlink_info, tmp_entries,
    version, H, P,
};
use super::tests_rw::{errno, item, now_secs, p, placeholder, state, tombstone, D, FULL};
use super::*;
use crate::types::FileKind;

#[test]
fn set_attr_on_placeholders_and_full_files() {
    let (dir, layer) = new_layer();
    placeholder(&layer, "f", 10);
    drop(
        layer
            .open_file(Path::new("f"), OFlags::RDONLY)
            .expect("on-disk item"),
    );
    // Let the disk times drift from the projected ones.
    let disk = dir.path().join("f");
    let drift = std::fs::FileTimes::new().set_modified(SystemTime::now());
    std::fs::File::options()
        .write(true)
        .open(&disk)
        .expect("open")
        .set_times(drift)
        .expect("times");
    layer
        .set_attr(
            p("f"),
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .expect("chmod");
    let f = item(&layer, "f");
    assert_eq!(f.state, P | D);
    assert_eq!(f.attr.mode, libc::S_IFREG | 0o600);
    assert_eq!(f.attr.size, 10, "still the projected size");
    assert_eq!(
        f.attr.mtime,
        (1_600_000_000, 123_456_789),
        "projected times copied"
    );
    assert_eq!(f.attr.atime, (1_600_000_100, 5));
    assert_eq!(
        std::fs::metadata(&disk).expect("disk").mtime(),
        1_600_000_000
    );
    assert!(matches!(
        layer.set_attr(
            p("f"),
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(LayerError::InvalidState { .. })
    ));
    layer
        .set_attr(
            p("f"),
            &SetAttr {
                mtime: Some(TimeSpec::At(1_234, 5)),
                atime: Some(TimeSpec::Now),
                uid: Some(42),
                gid: Some(43),
                ..Default::default()
            },
        )
        .expect("utimens, chown");
    let f = item(&layer, "f");
    assert_eq!(f.attr.mtime, (1_234, 5));
    assert!(f.attr.atime.0 >= now_secs() - 60);
    if is_root() {
        assert_eq!((f.attr.uid, f.attr.gid), (42, 43));
    }
    hydrate(&layer, "f", &data(3, 10));
    let f = item(&layer, "f");
    assert_eq!((f.state, f.attr.mtime), (P | H | D, (1_234, 5)));

    // Truncating a hydrated placeholder changes its content: it becomes full.
    placeholder(&layer, "g", 6);
    hydrate(&layer, "g", b"abcdef");
    layer
        .set_attr(
            p("g"),
            &SetAttr {
                size: Some(6),
                ..Default::default()
            },
        )
        .expect("same size");
    assert_eq!(state(&layer, "g"), P | H | D);
    layer
        .set_attr(
            p("g"),
            &SetAttr {
                size: Some(2),
                ..Default::default()
            },
        )
        .expect("truncate");
    assert_eq!(
        (state(&layer, "g"), read_all(&layer, "g")),
        (FULL, b"ab".to_vec())
    );

    // Full files: applied as is.
    let mut h = layer.create_file(p("h"), 0o644, 0, 0).expect("create");
    h.write_all(b"0123456789").expect("write");
    layer
        .set_attr(
            p("h"),
            &SetAttr {
                size: Some(4),
                ..Default::default()
            },
        )
        .expect("truncate");
    assert_eq!(
        (item(&layer, "h").attr.size, read_all(&layer, "h")),
        (4, b"0123".to_vec())
    );
    assert_eq!(state(&layer, "h"), FULL);
    layer.mkdir(p("d"), 0o755, 0, 0).expect("mkdir");
    assert_eq!(
        errno(layer.set_attr(
            p("d"),
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        )),
        libc::EISDIR
    );
    tombstone(&layer, "t");
    assert_eq!(
        errno(layer.set_attr(p("t"), &SetAttr::default())),
        libc::ENOENT
    );
    let bad = SetAttr {
        mtime: Some(TimeSpec::At(0, 1_000_000_000)),
        ..Default::default()
    };
    assert_eq!(errno(layer.set_attr(p("h"), &bad)), libc::EINVAL);
    // Symlinks: times and owner, not mode.
    layer
        .symlink(p("l"), OsStr::new("x"), 0, 0)
        .expect("symlink");
    layer
        .set_attr(
            p("l"),
            &SetAttr {
                mtime: Some(TimeSpec::At(99, 0)),
                ..Default::default()
            },
        )
        .expect("symlink times");
    assert_eq!(item(&layer, "l").attr.mtime, (99, 0));
    assert_eq!(
        errno(layer.set_attr(
            p("l"),
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )),
        libc::EOPNOTSUPP
    );
    // A placeholder directory.
    assert!(layer.write_placeholder(p("pd"), &dir_info()).expect("dir"));
    layer
        .set_attr(
            p("pd"),
            &SetAttr {
                mode: Some(0o700),
                ..Default::default()
            },
        )
        .expect("chmod dir");
    let pd = item(&layer, "pd");
    assert_eq!(
        (pd.state, pd.attr.mode, pd.attr.mtime),
        (P | D, libc::S_IFDIR | 0o700, (1_500_000_000, 7))
    );
    // The root.
    layer
        .set_attr(
            p(""),
            &SetAttr {
                mode: Some(0o711),
                ..Default::default()
            },
        )
        .expect("root");
    assert_eq!(item(&layer, "").attr.mode & 0o7777, 0o711);
}

#[test]
fn convert_to_full_with_and_without_content() {
    let (dir, layer) = new_layer();
    placeholder(&layer, "a", 5);
    layer
        .set_xattr(p("a"), OsStr::new("user.keep"), b"v", 0)
        .expect("xattr");
    assert!(matches!(
        layer.convert_to_full(p("a"), false),
        Err(LayerError::InvalidState { .. })
    ));
    assert_eq!(state(&layer, "a"), P | D);
    let before = item(&layer, "a");
    layer.convert_to_full(p("a"), true).expect("truncate");
    let a = item(&layer, "a");
    assert_eq!(
        (a.state, a.attr.size, a.version, a.origin),
        (FULL, 0, None, None)
    );
    assert_eq!(a.attr.mode, before.attr.mode);
    assert_eq!((a.attr.uid, a.attr.gid), (before.attr.uid, before.attr.gid));
    assert!(a.attr.mtime.0 >= now_secs() - 60, "times are now");
    assert_ne!(
        a.attr.ino, before.attr.ino,
        "a new file was renamed over it"
    );
    assert_eq!(
        layer
            .get_xattr(p("a"), OsStr::new("user.keep"))
            .expect("ok"),
        Some(b"v".to_vec())
    );

    placeholder(&layer, "b", 3);
    hydrate(&layer, "b", b"xyz");
    layer.convert_to_full(p("b"), false).expect("hydrated");
    let b = item(&layer, "b");
    assert_eq!(
        (b.state, b.attr.mtime),
        (FULL, (1_600_000_000, 123_456_789))
    );
    assert_eq!(read_all(&layer, "b"), b"xyz");
    layer
        .convert_to_full(p("b"), true)
        .expect("already full: no-op");
    assert_eq!(read_all(&layer, "b"), b"xyz");

    assert!(layer.write_placeholder(p("d"), &dir_info()).expect("dir"));
    assert_eq!(errno(layer.convert_to_full(p("d"), true)), libc::EINVAL);
    tombstone(&layer, "t");
    assert!(matches!(
        layer.convert_to_full(p("t"), true),
        Err(LayerError::InvalidState { .. })
    ));
    assert_eq!(errno(layer.convert_to_full(p("nope"), true)), libc::ENOENT);
    assert!(layer
        .write_placeholder(p("l"), &symlink_info("tgt"))
        .expect("link"));
    layer.convert_to_full(p("l"), false).expect("symlink");
    assert_eq!(state(&layer, "l"), FULL);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn user_xattrs_pass_through_and_layer_names_are_refused() {
    let (_dir, layer) = new_layer();
    let name = OsStr::new("user.color");
    layer.create_file(p("f"), 0o644, 0, 0).expect("create");
    assert_eq!(layer.get_xattr(p("f"), name).expect("ok"), None);
    layer.set_xattr(p("f"), name, b"blue", 0).expect("set");
    assert_eq!(
        layer.get_xattr(p("f"), name).expect("ok"),
        Some(b"blue".to_vec())
    );
    assert_eq!(
        errno(layer.set_xattr(p("f"), name, b"red", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(layer.set_xattr(p("f"), OsStr::new("user.new"), b"x", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    assert_eq!(
        layer.list_xattr(p("f")).expect("list"),
        [name.to_os_string()]
    );
    layer.remove_xattr(p("f"), name).expect("remove");
    assert_eq!(errno(layer.remove_xattr(p("f"), name)), libc::ENODATA);
    assert!(layer.list_xattr(p("f")).expect("list").is_empty());

    placeholder(&layer, "ph", 3);
    let own = OsString::from(layer.xattr_name());
    assert!(
        layer.list_xattr(p("ph")).expect("list").is_empty(),
        "the record is hidden"
    );
    assert_eq!(layer.get_xattr(p("ph"), &own).expect("ok"), None);
    for bad in [
        own.as_os_str(),
        OsStr::new("user.prjfs.state"),
        OsStr::new("trusted.prjfs.x"),
    ] {
        assert!(matches!(
            layer.set_xattr(p("ph"), bad, b"x", 0),
            Err(LayerError::Denied { .. })
        ));
        assert_eq!(errno(layer.remove_xattr(p("ph"), bad)), libc::EPERM);
    }
    assert_eq!(state(&layer, "ph"), P, "refusals change nothing");
    layer.set_xattr(p("ph"), name, b"green", 0).expect("set");
    assert_eq!(state(&layer, "ph"), P | D);
    assert_eq!(item(&layer, "ph").attr.mtime, (1_600_000_000, 123_456_789));
    // User xattrs survive hydration.
    hydrate(&layer, "ph", b"abc");
    assert_eq!(
        layer.get_xattr(p("ph"), name).expect("ok"),
        Some(b"green".to_vec())
    );
    assert_eq!(
        layer.list_xattr(p("ph")).expect("list"),
        [name.to_os_string()]
    );
    placeholder(&layer, "q", 1);
    layer
        .remove_xattr(p("q"), OsStr::new("user.none"))
        .expect_err("absent");
    assert_eq!(state(&layer, "q"), P, "a failed removal does not dirty");
    // Tombstones have none; the root has its own.
    tombstone(&layer, "t");
    assert_eq!(errno(layer.get_xattr(p("t"), name)), libc::ENOENT);
    layer.set_xattr(p(""), name, b"root", 0).expect("root");
    assert_eq!(
        layer.get_xattr(p(""), name).expect("ok"),
        Some(b"root".to_vec())
    );
    assert!(layer
        .list_xattr(p(""))
        .expect("list")
        .contains(&name.to_os_string()));
}

#[test]
fn origin_is_recorded_and_old_records_still_read() {
    let (dir, layer) = new_layer();
    assert!(layer.write_placeholder(p("d"), &dir_info()).expect("dir"));
    placeholder(&layer, "d/./f", 1);
    assert_eq!(item(&layer, "d/f").origin, Some(PathBuf::from("d/f")));
    assert_eq!(item(&layer, "d").origin, Some(PathBuf::from("d")));
    assert!(layer
        .write_placeholder_with_origin(p("g"), &file_info(2), p("store/name"))
        .expect("written"));
    assert_eq!(item(&layer, "g").origin, Some(PathBuf::from("store/name")));
    assert_eq!(
        errno(layer.write_placeholder_with_origin(p("h"), &file_info(2), p(""))),
        libc::EINVAL
    );
    let long = "x/".repeat(2000);
    assert_eq!(
        errno(layer.write_placeholder_with_origin(p("h"), &file_info(2), p(&long))),
        libc::ENAMETOOLONG
    );
    // A record of format version 1, as the previous release wrote it.
    let rec = super::meta::Record {
        state: P | H,
        kind: FileKind::File,
        size: 3,
        mtime: (1, 0),
        atime: (2, 0),
        version: version("v1"),
        origin: None,
        listed: false,
    };
    let v1 = super::meta::encode_v2(&rec, super::meta::FORMAT_V1);
    std::fs::write(dir.path().join("old"), b"abc").expect("write");
    let f = std::fs::File::open(dir.path().join("old")).expect("open");
    let cname = std::ffi::CString::new(layer.xattr_name()).expect("name");
    super::xattr::fset(std::os::fd::AsFd::as_fd(&f), &cname, &v1).expect("set");
    let old = item(&layer, "old");
    assert_eq!(
        (old.state, old.version, old.origin),
        (P | H, Some(version("v1")), None)
    );
    // Changing it writes the current format, origin still unknown.
    layer.mark_dirty(p("old")).expect("dirty");
    assert_eq!(item(&layer, "old").origin, None);
}

#[test]
fn user_xattrs_through_the_fd_fallback() {
    let (_dir, layer) = new_layer();
    layer.xattrs.force_fallback();
    let name = OsStr::new("user.k");
    placeholder(&layer, "f", 1);
    layer.set_xattr(p("f"), name, b"v", 0).expect("set");
    assert_eq!(state(&layer, "f"), P | D);
    assert_eq!(
        layer.list_xattr(p("f")).expect("list"),
        [name.to_os_string()]
    );
    assert_eq!(
        layer.get_xattr(p("f"), name).expect("get"),
        Some(b"v".to_vec())
    );
    layer.remove_xattr(p("f"), name).expect("remove");
    assert_eq!(errno(layer.remove_xattr(p("f"), name)), libc::ENODATA);
    layer
        .symlink(p("l"), OsStr::new("t"), 0, 0)
        .expect("symlink");
    assert!(layer.list_xattr(p("l")).expect("list").is_empty());
    assert_eq!(layer.get_xattr(p("l"), name).expect("get"), None);
    assert_eq!(errno(layer.remove_xattr(p("l"), name)), libc::ENODATA);
}

#[test]
fn leftovers_in_tmp_are_removed_even_without_permissions() {
    let (dir, layer) = new_layer();
    layer.mkdir(p("d"), 0o755, 0, 0).expect("mkdir");
    tombstone(&layer, "d/t");
    layer
        .set_attr(
            p("d"),
            &SetAttr {
                mode: Some(0o500),
                ..Default::default()
            },
        )
        .expect("chmod");
    layer.delete(p("d"), false).expect("rmdir");
    assert!(tmp_entries(dir.path()).is_empty());
    // What a crash would leave: a locked directory with contents in tmp.
    let stale = dir.path().join(".prjfs/tmp/stale");
    std::fs::create_dir_all(stale.join("sub")).expect("mkdir");
    std::fs::write(stale.join("sub/f"), b"x").expect("write");
    for d in [stale.join("sub"), stale.clone()] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o500))
            .expect("chmod");
    }
    drop(layer);
    Layer::open(dir.path()).expect("reopens");
    assert!(tmp_entries(dir.path()).is_empty());
}
