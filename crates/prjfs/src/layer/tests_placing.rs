//! Unit tests of how a hydration puts its file in place: an item that appeared
//! beside the record is never replaced, an unnamed spare's owner and mode are
//! set only when they differ, and the record's removal waits for the next
//! batch until an item leaves the path.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::tests::{data, file_info, hydrate, is_root, new_layer, read_all};
use super::*;
use crate::types::PlaceholderInfo;

/// A file placed at the path of a record behind the layer's back (as an
/// operation still under way would, before dropping the record) is not
/// replaced by a hydration that began for the record: it finishes with an
/// error and the file keeps its bytes.
#[test]
fn a_hydration_never_replaces_an_item_beside_its_record() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(5))
        .expect("written"));
    let h = layer.begin_hydration(Path::new("f")).expect("begins");
    h.write_at(0, b"fetch").expect("write");
    std::fs::write(dir.path().join("f"), b"mine!").expect("plain file");
    let r = layer.finish_hydration(h, Path::new("f"));
    assert!(matches!(r, Err(LayerError::InvalidState { .. })), "{r:?}");
    assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"mine!");
}

fn info_with(perm: u32, owner: Option<(u32, u32)>, size: u64) -> PlaceholderInfo {
    let mut info = file_info(size);
    info.basic.mode = perm;
    info.basic.owner = owner;
    info
}

/// Many hydrations in a row (most of them into unnamed spares whose owner
/// and mode are known): each file gets exactly its placeholder's mode and
/// owner, whether or not the spare had them already.
#[test]
fn hydrated_files_get_their_own_mode_and_owner() {
    let (dir, layer) = new_layer();
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let perms = [0o644, 0o755, 0o600, 0o4755, 0o640];
    let mut expected = Vec::new();
    for i in 0..60u32 {
        let perm = perms[i as usize % perms.len()];
        // Every third file has an owner of its own (given away only as root).
        let owner = (i % 3 == 0 && is_root()).then_some((1000 + i, 2000 + i));
        let name = format!("f{i}");
        let content = data(i as usize, 100 + i as usize);
        assert!(layer
            .write_placeholder(
                Path::new(&name),
                &info_with(perm, owner, content.len() as u64)
            )
            .expect("written"));
        hydrate(&layer, &name, &content);
        expected.push((name, perm, owner.unwrap_or(me), content));
    }
    for (name, perm, (uid, gid), content) in expected {
        let md = std::fs::symlink_metadata(dir.path().join(&name)).expect("on disk");
        assert_eq!(md.mode() & 0o7777, perm, "{name}");
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{name}");
        assert_eq!(read_all(&layer, &name), content, "{name}");
    }
}

/// The removal of a hydrated file's record waits for the next batch: a crash
/// before it leaves the record in the log beside the hydrated file, and the
/// next open keeps the file and drops the record.
#[test]
fn a_record_left_beside_its_hydrated_file_by_a_crash_is_dropped_at_open() {
    let (dir, layer) = new_layer();
    assert!(layer
        .write_placeholder(Path::new("f"), &file_info(3))
        .expect("written"));
    layer.vstore.sync();
    let log = dir.path().join(".prjfs").join(super::vstore::LOG_NAME);
    let with_record = std::fs::read(&log).expect("log");
    hydrate(&layer, "f", b"abc");
    assert!(layer.virtual_at(Path::new("f")).is_none());
    drop(layer);
    // As if the removal had never reached the log.
    std::fs::write(&log, &with_record).expect("log rewound");
    let layer = Layer::open(dir.path()).expect("reopens");
    assert!(layer.virtual_at(Path::new("f")).is_none());
    let item = layer.lookup(Path::new("f")).expect("ok").expect("present");
    assert_eq!(item.state, super::tests::P | super::tests::H);
    assert_eq!(read_all(&layer, "f"), b"abc");
}
