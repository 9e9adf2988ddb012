//! Unit tests of origins that records leave out (format 3: the origin is the
//! item's own path): every move stores them first, so each item keeps its
//! origin through renames of itself or of a directory above it, exchanges
//! and links, and after the layer is opened again.

use std::path::Path;
use std::time::{Duration, Instant};

use super::tests::{dir_info, hydrate, new_layer, symlink_info, tmp_entries, H, P};
use super::tests_rw::{item, p, placeholder};
use super::*;

/// The raw record of a file or directory on disk.
fn raw(root: &Path, rel: &str, layer: &Layer) -> Vec<u8> {
    let f = std::fs::File::open(root.join(rel)).expect("open on disk");
    let name = CString::new(layer.xattr_name()).expect("name");
    let mut buf = vec![0u8; meta::MAX_RECORD_LEN];
    let n = xattr::fget(f.as_fd(), &name, &mut buf)
        .expect("fgetxattr")
        .expect("a record");
    buf.truncate(n);
    buf
}

fn origin(layer: &Layer, rel: &str) -> Option<PathBuf> {
    item(layer, rel).origin
}

#[test]
fn moves_store_the_origins_records_leave_out() {
    let (dir, layer) = new_layer();
    let root = dir.path();
    layer.write_placeholder(p("d"), &dir_info()).expect("d");
    layer.write_placeholder(p("d/s"), &dir_info()).expect("d/s");
    layer
        .write_placeholder(p("d/l"), &symlink_info("f"))
        .expect("d/l");
    for f in ["d/f", "d/s/g", "d/v", "x", "y", "k"] {
        placeholder(&layer, f, 3);
    }
    for f in ["d/f", "d/s/g", "x", "y", "k"] {
        hydrate(&layer, f, b"abc");
    }
    for rel in ["d", "d/s", "d/f", "d/s/g", "x"] {
        assert!(meta::origin_is_implicit(&raw(root, rel, &layer)), "{rel}");
        assert_eq!(origin(&layer, rel).as_deref(), Some(p(rel)));
    }
    let symlink_has_record = item(&layer, "d/l").origin.is_some();

    // A directory: itself and everything below it.
    layer
        .rename(p("d"), p("e"), RenameFlags::default(), true)
        .expect("rename");
    let moved = [
        ("e", "d"),
        ("e/s", "d/s"),
        ("e/f", "d/f"),
        ("e/s/g", "d/s/g"),
        ("e/v", "d/v"),
    ];
    let check = |layer: &Layer| {
        for (rel, was) in moved {
            assert_eq!(origin(layer, rel).as_deref(), Some(p(was)), "{rel}");
        }
        if symlink_has_record {
            assert_eq!(origin(layer, "e/l").as_deref(), Some(p("d/l")));
        }
        assert_eq!(item(layer, "e/f").state, P | H);
    };
    check(&layer);
    for (rel, _) in moved.iter().filter(|(r, _)| *r != "e/v") {
        assert!(!meta::origin_is_implicit(&raw(root, rel, &layer)), "{rel}");
    }

    // An exchange: both.
    layer
        .rename(
            p("x"),
            p("y"),
            RenameFlags {
                exchange: true,
                ..RenameFlags::default()
            },
            false,
        )
        .expect("exchange");
    assert_eq!(origin(&layer, "x").as_deref(), Some(p("y")));
    assert_eq!(origin(&layer, "y").as_deref(), Some(p("x")));

    // A hard link: one record for two paths.
    layer.link(p("k"), p("k2")).expect("link");
    assert_eq!(origin(&layer, "k2"), origin(&layer, "k"));
    if let Some(o) = origin(&layer, "k") {
        assert_eq!(o, p("k"));
    }

    // Moved back to its origin: the same, either way.
    layer
        .rename(p("e/f"), p("f"), RenameFlags::default(), false)
        .expect("rename");
    assert_eq!(origin(&layer, "f").as_deref(), Some(p("d/f")));

    // Opened again: what the records say, not what memory held.
    drop(layer);
    let layer = Layer::open(root).expect("reopen");
    let moved_after = moved.iter().filter(|(r, _)| *r != "e/f");
    for (rel, was) in moved_after {
        assert_eq!(origin(&layer, rel).as_deref(), Some(p(was)), "{rel}");
    }
    assert_eq!(origin(&layer, "f").as_deref(), Some(p("d/f")));
    assert_eq!(origin(&layer, "x").as_deref(), Some(p("y")));
    assert_eq!(origin(&layer, "y").as_deref(), Some(p("x")));
}

#[test]
fn placeholders_written_at_their_origin_leave_it_out_and_others_store_it() {
    let (dir, layer) = new_layer();
    let root = dir.path();
    layer
        .write_placeholder(p("here"), &dir_info())
        .expect("here");
    layer
        .write_placeholder_with_origin(p("there"), &dir_info(), p("elsewhere"))
        .expect("there");
    assert!(meta::origin_is_implicit(&raw(root, "here", &layer)));
    assert!(!meta::origin_is_implicit(&raw(root, "there", &layer)));
    assert_eq!(origin(&layer, "there").as_deref(), Some(p("elsewhere")));
    // A path in another spelling reads the same origin.
    assert_eq!(
        layer
            .lookup(p("./here"))
            .expect("valid")
            .expect("present")
            .origin
            .as_deref(),
        Some(p("here"))
    );
}

/// `write_placeholder` runs without the lock: a directory above the
/// placeholder it is building may move before its item lands (in the moved
/// directory). The rename then could not store the new item's origin, so the
/// writer stores it itself.
#[test]
fn a_placeholder_placed_while_its_parent_moves_stores_its_origin() {
    let (dir, layer) = new_layer();
    let root = dir.path();
    layer.write_placeholder(p("d"), &dir_info()).expect("d");
    std::thread::scope(|s| {
        let guard = layer.lock();
        let writer = s.spawn(|| layer.write_placeholder(p("d/x"), &dir_info()));
        // The writer located `d` and builds its item in tmp; it then waits
        // for the lock.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tmp_entries(root)
            .iter()
            .any(|n| n.to_string_lossy().starts_with("ph-"))
        {
            assert!(Instant::now() < deadline, "the writer never built its item");
            std::thread::yield_now();
        }
        // `d` moves, as `Layer::rename` moves it: under the lock, then the
        // directory cache told.
        std::fs::rename(root.join("d"), root.join("e")).expect("rename");
        layer.dirs.moved();
        drop(guard);
        assert!(writer.join().expect("no panic").expect("written"));
    });
    assert_eq!(origin(&layer, "e/x").as_deref(), Some(p("d/x")));
    assert!(!meta::origin_is_implicit(&raw(root, "e/x", &layer)));
}
