//! Clients' own extended attributes, passed through to the on-disk items. The
//! layer's names (`trusted.prjfs.*`, `user.prjfs.*`) are never listed, read or
//! changed this way.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::io::Errno;

use super::error::{LayerError, Result};
use super::path::{self, Loc};
use super::{xattr, Layer};

/// Whether `name` belongs to the layer.
pub(super) fn is_layer_name(name: &[u8]) -> bool {
    name.starts_with(b"trusted.prjfs.") || name.starts_with(b"user.prjfs.")
}

/// The names of a kernel xattr list (NUL-terminated, concatenated), the layer's
/// own left out.
fn split_names(list: &[u8]) -> Vec<OsString> {
    list.split(|&b| b == 0)
        .filter(|n| !n.is_empty() && !is_layer_name(n))
        .map(|n| OsString::from_vec(n.to_vec()))
        .collect()
}

fn xattr_name(name: &OsStr) -> Result<CString> {
    if name.is_empty() {
        return Err(LayerError::InvalidArgument("empty xattr name".into()));
    }
    CString::new(name.as_bytes())
        .map_err(|_| LayerError::InvalidArgument("NUL byte in an xattr name".into()))
}

impl Layer {
    /// Locate `rel` for an xattr operation: `None` for the root (reached through
    /// its fd), else its location, which must hold an item (not a tombstone).
    fn xattr_target(&self, rel: &Path) -> Result<Option<(Loc, Option<super::meta::Record>)>> {
        let comps = path::components(rel)?;
        if comps.is_empty() {
            return Ok(None);
        }
        let loc = self.locate_in_dir(rel, &comps)?;
        let (_, rec) = self.existing(loc.dir(self.root.as_fd()), &loc.name, rel)?;
        Ok(Some((loc, rec)))
    }

    /// The value of the user xattr `name` of the item at `rel` (empty: the root);
    /// `None` when it has none. The layer's own names always read as absent.
    pub fn get_xattr(&self, rel: &Path, name: &OsStr) -> Result<Option<Vec<u8>>> {
        let cname = xattr_name(name)?;
        if self.is_virtual(rel) {
            return Ok(None);
        }
        let target = self.xattr_target(rel)?;
        if is_layer_name(name.as_bytes()) {
            return Ok(None);
        }
        // The kernel's limit for one value (XATTR_SIZE_MAX).
        let mut buf = vec![0u8; 65536];
        let n = match &target {
            None => xattr::fget(self.root.as_fd(), &cname, &mut buf),
            Some((loc, _)) => {
                self.xattrs
                    .get(loc.dir(self.root.as_fd()), &loc.name, &cname, &mut buf)
            }
        }
        .map_err(|e| LayerError::io("getxattr", rel, e))?;
        Ok(n.map(|n| {
            buf.truncate(n);
            buf
        }))
    }

    /// The user xattr names of the item at `rel` (empty: the root), never the
    /// layer's own.
    pub fn list_xattr(&self, rel: &Path) -> Result<Vec<OsString>> {
        if self.is_virtual(rel) {
            return Ok(Vec::new());
        }
        let list = match self.xattr_target(rel)? {
            None => {
                let mut buf = vec![0u8; 65536];
                rustix::fs::flistxattr(self.root.as_fd(), &mut buf[..]).map(|n| {
                    buf.truncate(n);
                    buf
                })
            }
            Some((loc, _)) => self.xattrs.list(loc.dir(self.root.as_fd()), &loc.name),
        }
        .map_err(|e| LayerError::io("listxattr", rel, e))?;
        Ok(split_names(&list))
    }

    /// Set the user xattr `name` of the item at `rel` (empty: the root) to
    /// `value`; `flags` as `setxattr(2)` (`XATTR_CREATE`, `XATTR_REPLACE`). The
    /// layer's names are [`LayerError::Denied`]. A placeholder becomes dirty first.
    pub fn set_xattr(&self, rel: &Path, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let cname = self.user_xattr_name(rel, name)?;
        let flags = u32::try_from(flags)
            .ok()
            .filter(|f| f & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) as u32 == 0)
            .ok_or_else(|| LayerError::InvalidArgument(format!("xattr flags {flags:#x}")))?;
        let _guard = self.lock();
        let result = match self.xattr_target(rel)? {
            None => rustix::fs::fsetxattr(
                self.root.as_fd(),
                &cname,
                value,
                rustix::fs::XattrFlags::from_bits_retain(flags),
            ),
            Some((loc, rec)) => {
                let dir = loc.dir(self.root.as_fd());
                self.dirty_for_xattr(dir, &loc.name, rel, rec)?;
                self.xattrs.set_with(dir, &loc.name, &cname, value, flags)
            }
        };
        result.map_err(|e| LayerError::io("setxattr", rel, e))
    }

    /// Remove the user xattr `name` of the item at `rel` (empty: the root);
    /// `ENODATA` when it has none. The layer's names are [`LayerError::Denied`]. A
    /// placeholder becomes dirty first.
    pub fn remove_xattr(&self, rel: &Path, name: &OsStr) -> Result<()> {
        let cname = self.user_xattr_name(rel, name)?;
        let _guard = self.lock();
        let result = match self.xattr_target(rel)? {
            None => rustix::fs::fremovexattr(self.root.as_fd(), &cname),
            Some((loc, rec)) => {
                let dir = loc.dir(self.root.as_fd());
                let present = self
                    .xattrs
                    .get(dir, &loc.name, &cname, &mut [])
                    .or_else(|e| {
                        if e == Errno::RANGE {
                            Ok(Some(1))
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| LayerError::io("getxattr", rel, e))?
                    .is_some();
                if present {
                    self.dirty_for_xattr(dir, &loc.name, rel, rec)?;
                }
                self.xattrs.remove_existing(dir, &loc.name, &cname)
            }
        };
        result.map_err(|e| LayerError::io("removexattr", rel, e))
    }

    /// A name a client may change: not the layer's.
    fn user_xattr_name(&self, rel: &Path, name: &OsStr) -> Result<CString> {
        let cname = xattr_name(name)?;
        if is_layer_name(name.as_bytes()) {
            return Err(LayerError::Denied {
                path: rel.to_path_buf(),
                reason: format!("{} belongs to prjfs", name.to_string_lossy()),
            });
        }
        Ok(cname)
    }

    fn dirty_for_xattr(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        rec: Option<super::meta::Record>,
    ) -> Result<()> {
        match rec {
            Some(rec) => self.make_dirty(dir, name, rel, rec),
            None => Ok(()),
        }
    }

    /// Copy the xattrs of `dir/name` other than the layer's onto the open item
    /// `dst` (an item being formed in `tmp` to replace it). Names the kernel does
    /// not let this process set outside the `user.` and `trusted.` namespaces
    /// (`security.*`, ACLs) are skipped with a log line.
    pub(super) fn copy_user_xattrs(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        dst: BorrowedFd<'_>,
        rel: &Path,
    ) -> Result<()> {
        let list = self
            .xattrs
            .list(dir, name)
            .map_err(|e| LayerError::io("listxattr", rel, e))?;
        let mut buf = vec![0u8; 65536];
        for attr in split_names(&list) {
            let cattr = CString::new(attr.into_vec()).expect("split at NUL bytes");
            let Some(n) = self
                .xattrs
                .get(dir, name, &cattr, &mut buf)
                .map_err(|e| LayerError::io("getxattr", rel, e))?
            else {
                continue; // removed meanwhile
            };
            if let Err(e) = xattr::fset(dst, &cattr, &buf[..n]) {
                let bytes = cattr.to_bytes();
                if bytes.starts_with(b"user.") || bytes.starts_with(b"trusted.") {
                    return Err(LayerError::io("setxattr", rel, e));
                }
                tracing::debug!(path = ?rel, attr = ?cattr, "xattr not copied: {e}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_are_filtered() {
        let list = b"user.a\0trusted.prjfs.meta\0user.prjfs.state\0security.x\0user.prjfsish\0";
        assert_eq!(
            split_names(list),
            ["user.a", "security.x", "user.prjfsish"].map(OsString::from)
        );
        assert!(is_layer_name(b"user.prjfs.meta"));
        assert!(!is_layer_name(b"user.prjfs"));
    }
}
