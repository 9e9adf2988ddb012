//! What clients see of an item: stable inode numbers of placeholders, the
//! link count of projected directories, and the projection's attributes for
//! clean placeholder files.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::layer::Item;
use crate::types::{FileKind, OnDiskState};

/// An item as clients see it. A placeholder's inode number is derived from the
/// path the provider knows it by, so it stays the same when the placeholder is
/// hydrated (a new file on disk), renamed, or seen again after a remount, and
/// matches the number its listing entry showed while it was virtual.
///
/// A placeholder directory's link count is 1, "unknown" (as btrfs and many
/// FUSE file systems report): its provider's subdirectories are not on disk
/// until looked up, so the on-disk count (2 + subdirectories) would undercount
/// and mislead tools that skip leaf directories by it. A full directory's
/// subdirectories are all on disk: its count is exact.
///
/// A clean placeholder file (not dirty, not full) shows the projection's
/// attributes whether or not its content is on disk: ctime is the projected
/// mtime and `st_blocks` the size in 512-byte units, as a virtual placeholder
/// shows them ([`crate::layer`]'s records). So hydration changes nothing a
/// `stat` sees (ProjFS keeps a placeholder's basic information through
/// hydration), and the kernel's cached attributes stay right without an
/// invalidation (and the GETATTR it would cost the reader).
pub(crate) fn present(mut item: Item) -> Item {
    if item.state.contains(OnDiskState::PLACEHOLDER) {
        if let Some(origin) = &item.origin {
            item.attr.ino = synthetic_ino(origin);
        }
        match item.kind {
            FileKind::Directory => item.attr.nlink = 1,
            FileKind::File if is_clean(item.state) => {
                item.attr.ctime = item.attr.mtime;
                item.attr.blocks = item.attr.size.div_ceil(512);
            }
            _ => {}
        }
    }
    item
}

/// A placeholder nothing local has changed: neither dirty nor full.
fn is_clean(state: OnDiskState) -> bool {
    !state.contains(OnDiskState::DIRTY_PLACEHOLDER) && !state.contains(OnDiskState::FULL)
}

/// A stable inode number for the projected item at `provider_path` (high bit
/// set, so it never equals a real inode number of the layer's file system in
/// practice): a keyed-the-same-in-every-process SipHash of the path's bytes.
pub(crate) fn synthetic_ino(provider_path: &Path) -> u64 {
    synthetic_ino_of(&[provider_path.as_os_str().as_bytes()])
}

/// [`synthetic_ino`] of `dir.join(name)`, without building that path (a
/// listing computes one per projected entry).
pub(crate) fn synthetic_ino_at(dir: &Path, name: &OsStr) -> u64 {
    let dir = dir.as_os_str().as_bytes();
    if dir.is_empty() || dir.ends_with(b"/") {
        synthetic_ino_of(&[dir, name.as_bytes()])
    } else {
        synthetic_ino_of(&[dir, b"/", name.as_bytes()])
    }
}

fn synthetic_ino_of(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    // DefaultHasher::new() has fixed keys: the same number in every process.
    // Its `write` is a stream: the parts hash as their concatenation.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        h.write(p);
    }
    h.finish() | (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Attr;
    use std::path::PathBuf;

    #[test]
    fn a_listing_entry_gets_the_inode_number_of_its_joined_path() {
        for (dir, name) in [("", "a"), ("d", "x"), ("d/e/", "y"), ("long/dir/name", "ü")] {
            assert_eq!(
                synthetic_ino_at(Path::new(dir), OsStr::new(name)),
                synthetic_ino(&Path::new(dir).join(name)),
                "{dir:?} {name:?}"
            );
        }
        assert_ne!(
            synthetic_ino(Path::new("a/b")),
            synthetic_ino(Path::new("a/c"))
        );
        assert!(synthetic_ino(Path::new("a")) >= 1 << 63);
    }

    fn file(state: OnDiskState) -> Item {
        Item {
            kind: FileKind::File,
            attr: Attr {
                ino: 7,
                size: 5000,
                blocks: 16,
                atime: (1, 0),
                mtime: (2, 0),
                ctime: (3, 0),
                mode: libc::S_IFREG | 0o644,
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                blksize: 4096,
            },
            state,
            version: None,
            origin: Some(PathBuf::from("a/f")),
        }
    }

    #[test]
    fn a_clean_placeholder_file_shows_the_projection_hydrated_or_not() {
        let hydrated = OnDiskState::PLACEHOLDER | OnDiskState::HYDRATED_PLACEHOLDER;
        for state in [OnDiskState::PLACEHOLDER, hydrated] {
            let a = present(file(state)).attr;
            assert_eq!((a.ctime, a.blocks), ((2, 0), 10), "{state:?}");
            assert_eq!(a.ino, synthetic_ino(Path::new("a/f")));
        }
        let dirty = hydrated | OnDiskState::DIRTY_PLACEHOLDER;
        let a = present(file(dirty)).attr;
        assert_eq!((a.ctime, a.blocks), ((3, 0), 16), "dirty: as on disk");
        let a = present(file(OnDiskState::FULL)).attr;
        assert_eq!(
            (a.ino, a.ctime, a.blocks),
            (7, (3, 0), 16),
            "full: as on disk"
        );
    }
}
