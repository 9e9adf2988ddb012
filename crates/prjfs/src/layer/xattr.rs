//! Extended-attribute system calls on items named by (directory fd, name), including
//! symlinks: the `*xattrat` family (Linux 6.13+), with a fallback through an opened fd
//! on older kernels (where symlinks then carry no metadata).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, XattrFlags};
use rustix::io::Errno;

// The syscall numbers are shared by every architecture since Linux 5.1 renumbered
// new calls into one table (x86_64 and aarch64 alike).
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// `struct xattr_args` of `include/uapi/linux/xattr.h`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// Which mechanism reaches an item's xattrs. Starts with the `*xattrat` calls and
/// switches to the fallback for good on the first `ENOSYS`.
#[derive(Debug, Default)]
pub(crate) struct Xattrs {
    fallback: AtomicBool,
}

fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

impl Xattrs {
    /// Use the fd fallback from now on (kernels without `*xattrat`; tests).
    pub(crate) fn force_fallback(&self) {
        self.fallback.store(true, Ordering::Relaxed);
    }

    pub(crate) fn use_at(&self) -> bool {
        !self.fallback.load(Ordering::Relaxed)
    }

    fn saw_enosys(&self) {
        tracing::debug!("getxattrat family unavailable (ENOSYS); symlinks carry no prjfs metadata");
        self.force_fallback();
    }

    /// Read `attr` of `dir/name` (not following a final symlink) into `buf`.
    /// `Ok(None)` when the item has no such attribute, or cannot carry one (a
    /// symlink or socket under the fallback).
    pub(crate) fn get(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        attr: &CStr,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Errno> {
        if self.use_at() {
            let args = XattrArgs {
                value: buf.as_mut_ptr() as u64,
                size: u32::try_from(buf.len()).unwrap_or(u32::MAX),
                flags: 0,
            };
            // SAFETY: every pointer is valid for the call: `name` and `attr` are
            // NUL-terminated, `args` points at a live struct of the size passed, and
            // its `value` at `buf`, writable for `size` bytes.
            let ret = unsafe {
                libc::syscall(
                    SYS_GETXATTRAT,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    attr.as_ptr(),
                    &args as *const XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            };
            if ret >= 0 {
                return Ok(Some(ret as usize));
            }
            match last_errno() {
                Errno::NODATA => return Ok(None),
                Errno::NOSYS => self.saw_enosys(),
                e => return Err(e),
            }
        }
        let Some(fd) = open_for_fallback(dir, name)? else {
            return Ok(None);
        };
        match rustix::fs::fgetxattr(&fd, attr, buf) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::NODATA) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set `attr` of `dir/name` (not following a final symlink). Under the fallback a
    /// symlink cannot carry it: `Err(ELOOP)`.
    pub(crate) fn set(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        attr: &CStr,
        value: &[u8],
    ) -> Result<(), Errno> {
        self.set_with(dir, name, attr, value, 0)
    }

    /// [`Xattrs::set`] with `XATTR_CREATE` / `XATTR_REPLACE` flags.
    pub(crate) fn set_with(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        attr: &CStr,
        value: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        if self.use_at() {
            let args = XattrArgs {
                value: value.as_ptr() as u64,
                size: u32::try_from(value.len()).map_err(|_| Errno::TOOBIG)?,
                flags,
            };
            // SAFETY: as in `get`; the kernel only reads `value.len()` bytes.
            let ret = unsafe {
                libc::syscall(
                    SYS_SETXATTRAT,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    attr.as_ptr(),
                    &args as *const XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            };
            if ret >= 0 {
                return Ok(());
            }
            match last_errno() {
                Errno::NOSYS => self.saw_enosys(),
                e => return Err(e),
            }
        }
        let fd = open_for_fallback(dir, name)?.ok_or(Errno::LOOP)?;
        rustix::fs::fsetxattr(&fd, attr, value, XattrFlags::from_bits_retain(flags))
    }

    /// Remove `attr` of `dir/name`; absent is fine.
    pub(crate) fn remove(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        attr: &CStr,
    ) -> Result<(), Errno> {
        match self.remove_existing(dir, name, attr) {
            Err(Errno::NODATA) => Ok(()),
            r => r,
        }
    }

    /// Remove `attr` of `dir/name`; `Err(ENODATA)` when absent (also for items
    /// that cannot carry xattrs under the fallback).
    pub(crate) fn remove_existing(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        attr: &CStr,
    ) -> Result<(), Errno> {
        if self.use_at() {
            // SAFETY: `name` and `attr` are NUL-terminated strings alive for the call.
            let ret = unsafe {
                libc::syscall(
                    SYS_REMOVEXATTRAT,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    attr.as_ptr(),
                )
            };
            if ret >= 0 {
                return Ok(());
            }
            match last_errno() {
                Errno::NOSYS => self.saw_enosys(),
                e => return Err(e),
            }
        }
        let Some(fd) = open_for_fallback(dir, name)? else {
            return Err(Errno::NODATA);
        };
        rustix::fs::fremovexattr(&fd, attr)
    }

    /// The names of every xattr of `dir/name` (not following a final symlink), as
    /// the kernel lists them: NUL-terminated, concatenated. Empty for items that
    /// cannot carry xattrs under the fallback.
    pub(crate) fn list(&self, dir: BorrowedFd<'_>, name: &CStr) -> Result<Vec<u8>, Errno> {
        // The kernel's limit for a whole list (XATTR_LIST_MAX).
        let mut buf = vec![0u8; 65536];
        if self.use_at() {
            // SAFETY: `name` is NUL-terminated and `buf` writable for its length.
            let ret = unsafe {
                libc::syscall(
                    SYS_LISTXATTRAT,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if ret >= 0 {
                buf.truncate(ret as usize);
                return Ok(buf);
            }
            match last_errno() {
                Errno::NOSYS => self.saw_enosys(),
                e => return Err(e),
            }
        }
        let Some(fd) = open_for_fallback(dir, name)? else {
            return Ok(Vec::new());
        };
        let n = rustix::fs::flistxattr(&fd, &mut buf[..])?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Open an item to reach its xattrs through its fd. `None` for items that cannot be
/// opened without side effects or following them (symlinks, sockets).
fn open_for_fallback(
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> Result<Option<std::os::fd::OwnedFd>, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(dir.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::LOOP) | Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Read `attr` of an open fd into `buf`; `Ok(None)` when absent.
pub(crate) fn fget(
    fd: BorrowedFd<'_>,
    attr: &CStr,
    buf: &mut [u8],
) -> Result<Option<usize>, Errno> {
    match rustix::fs::fgetxattr(fd, attr, buf) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::NODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Set `attr` of an open fd.
pub(crate) fn fset(fd: BorrowedFd<'_>, attr: &CStr, value: &[u8]) -> Result<(), Errno> {
    rustix::fs::fsetxattr(fd, attr, value, XattrFlags::empty())
}
