//! Directories of a bucket: one LIST with delimiter `/` per directory (paged
//! by the server, 1000 keys a page), turned into entries and kept.
//!
//! Mapping keys to names (as mountpoint-s3 does):
//! * A common prefix `P/NAME/` is the directory `NAME`; an object `P/NAME` the
//!   file `NAME`. Where both exist the directory wins and the file is hidden.
//! * A key ending in `/` is a directory marker: `P/NAME/` alone shows the
//!   (empty) directory `NAME`, and the marker of the directory being listed is
//!   not an entry of it.
//! * Keys `object_store` cannot represent (an empty segment `a//b`, `.` or
//!   `..` segments) make the listing of their directory fail (`EIO`, logged);
//!   names longer than 255 bytes are left out, logged.
//!
//! Invariant: a kept listing is the whole directory as one LIST saw it; lookups
//! in a listed directory are answered from it (no request), so walking a
//! directory of N objects costs ceil(N/1000) LIST requests. Kept listings
//! change only by [`Listings::put`] (a refresh).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use object_store::path::Path as Key;
use object_store::ObjectStore;

/// What a name in a directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A common prefix or a directory marker.
    Dir,
    /// An object.
    File {
        /// Its size.
        size: u64,
        /// Its last-modified time.
        mtime: SystemTime,
        /// Its ETag as the listing gave it (quotes included), if any.
        etag: Option<String>,
    },
}

/// One directory: names to entries.
pub type Dir = BTreeMap<OsString, Entry>;

/// Kept listings by directory path (relative to the root).
#[derive(Default)]
pub struct Listings {
    dirs: Mutex<HashMap<PathBuf, Arc<Dir>>>,
}

impl Listings {
    /// The kept listing of `rel`, if it was listed.
    pub fn get(&self, rel: &Path) -> Option<Arc<Dir>> {
        self.dirs.lock().expect("listings lock").get(rel).cloned()
    }

    /// Keep `dir` as the listing of `rel`; returns what is kept (the one already
    /// there when another task listed it first, so all callers agree).
    pub fn put(&self, rel: &Path, dir: Dir, replace: bool) -> Arc<Dir> {
        let mut dirs = self.dirs.lock().expect("listings lock");
        if !replace {
            if let Some(d) = dirs.get(rel) {
                return d.clone();
            }
        }
        let dir = Arc::new(dir);
        dirs.insert(rel.to_path_buf(), dir.clone());
        dir
    }

    /// Forget `rel` and every listing below it.
    pub fn forget_below(&self, rel: &Path) {
        self.dirs
            .lock()
            .expect("listings lock")
            .retain(|p, _| !p.starts_with(rel));
    }
}

/// The key of `rel` below `prefix` (`None` for the bucket's root). Fails for
/// a path `object_store` cannot name.
pub fn key_of(prefix: &str, rel: &Path) -> Result<Option<Key>, String> {
    let mut s = prefix.to_string();
    for c in rel.components() {
        let part = c.as_os_str().to_str().ok_or("a name that is not UTF-8")?;
        if !s.is_empty() {
            s.push('/');
        }
        s.push_str(part);
    }
    if s.is_empty() {
        return Ok(None);
    }
    Key::parse(&s).map(Some).map_err(|e| e.to_string())
}

/// List the directory at `key` (`None`: the bucket's root) with one
/// paginated LIST.
pub async fn list(store: &dyn ObjectStore, key: Option<&Key>) -> object_store::Result<Dir> {
    let result = store.list_with_delimiter(key).await?;
    let mut dir = Dir::new();
    let own = key.map(|k| k.as_ref()).unwrap_or("");
    for meta in result.objects {
        if meta.location.as_ref() == own {
            continue; // this directory's own marker
        }
        let Some(name) = meta.location.filename() else {
            continue;
        };
        if name.len() > 255 {
            tracing::warn!(
                "s3: key {} has a name over 255 bytes; not shown",
                meta.location
            );
            continue;
        }
        dir.insert(
            OsString::from(name),
            Entry::File {
                size: meta.size,
                mtime: SystemTime::from(meta.last_modified),
                etag: meta.e_tag,
            },
        );
    }
    for prefix in result.common_prefixes {
        let Some(name) = prefix.filename() else {
            continue;
        };
        if name.len() > 255 {
            tracing::warn!("s3: prefix {prefix}/ has a name over 255 bytes; not shown");
            continue;
        }
        // A directory hides a file of the same name.
        dir.insert(OsString::from(name), Entry::Dir);
    }
    Ok(dir)
}
