//! Items under construction in `.prjfs/tmp`: each is named by a [`Temp`] guard that
//! removes whatever is left under its name unless it was placed.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{remove_contents, Layer};

/// A name in `.prjfs/tmp`. Dropping the guard removes what is there (a file,
/// symlink, or directory with all it holds), so an operation that fails half-way,
/// or that swapped an old item into the name (`RENAME_EXCHANGE`), leaves nothing
/// behind. A crash leaves it to the next [`Layer::open`].
#[derive(Debug)]
pub(super) struct Temp<'a> {
    layer: &'a Layer,
    name: CString,
    live: bool,
}

impl<'a> Temp<'a> {
    /// Reserve a fresh name; nothing is created yet.
    pub(super) fn new(layer: &'a Layer, prefix: &str) -> Self {
        Temp {
            layer,
            name: layer.temp_name(prefix),
            live: true,
        }
    }

    /// The name in `.prjfs/tmp`.
    pub(super) fn name(&self) -> &CStr {
        &self.name
    }

    /// The name relative to the root, for error messages.
    pub(super) fn rel(&self) -> PathBuf {
        tmp_rel(&self.name)
    }

    /// The item was renamed out of `tmp`: nothing is left to remove.
    pub(super) fn placed(mut self) {
        self.live = false;
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if self.live {
            self.layer.discard_temp_tree(&self.name);
        }
    }
}

/// `.prjfs/tmp/<name>`.
pub(super) fn tmp_rel(name: &CStr) -> PathBuf {
    Path::new(".prjfs/tmp").join(OsStr::from_bytes(name.to_bytes()))
}

impl Layer {
    /// Remove `tmp/name` whatever it is (a directory with its contents); absent is
    /// fine. Failures are logged: the next [`Layer::open`] retries.
    pub(super) fn discard_temp_tree(&self, name: &CStr) {
        let tmp = self.tmp.as_fd();
        let result = (|| {
            let st = match rustix::fs::statat(tmp, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let dir = rustix::fs::openat(tmp, name, flags, Mode::empty())?;
                remove_contents(dir.as_fd())?;
                rustix::fs::unlinkat(tmp, name, AtFlags::REMOVEDIR)
            } else {
                rustix::fs::unlinkat(tmp, name, AtFlags::empty())
            }
        })();
        if let Err(e) = result {
            tracing::warn!(path = ?tmp_rel(name), "removing a temp item failed: {e}");
        }
    }
}
