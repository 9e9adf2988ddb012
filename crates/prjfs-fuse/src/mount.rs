//! Mounting and unmounting: `mount(2)` as root, `fusermount3` otherwise.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of a new mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// File-system name shown in `/proc/mounts` (the "device" column).
    pub fs_name: String,
    /// Subtype: the mount's type is `fuse.<subtype>`.
    pub subtype: String,
    /// Let users other than the mounting one in (needs root or `user_allow_other`).
    pub allow_other: bool,
    /// Let the kernel check permissions from the file modes.
    pub default_permissions: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            fs_name: "prjfs".into(),
            subtype: "prjfs".into(),
            allow_other: true,
            default_permissions: true,
        }
    }
}

/// A mounted FUSE connection: the `/dev/fuse` fd and where it is mounted.
#[derive(Debug)]
pub struct Mount {
    fd: OwnedFd,
    mountpoint: PathBuf,
}

impl Mount {
    /// Mount a FUSE file system at `mountpoint`. Uses `mount(2)` when the process
    /// may (root), else falls back to `fusermount3`.
    pub fn new(mountpoint: &Path, opts: &MountOptions) -> io::Result<Mount> {
        let mountpoint = mountpoint.to_path_buf();
        if rustix::process::geteuid().is_root() {
            match mount_direct(&mountpoint, opts) {
                Ok(fd) => return Ok(Mount { fd, mountpoint }),
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    tracing::debug!("mount(2) refused, trying fusermount3");
                }
                Err(e) => return Err(e),
            }
        }
        // fusermount3 refuses allow_other unless /etc/fuse.conf allows it.
        let mut opts = opts.clone();
        if opts.allow_other && !user_allow_other() {
            opts.allow_other = false;
        }
        let fd = mount_fusermount(&mountpoint, &opts)?;
        Ok(Mount { fd, mountpoint })
    }

    /// The connection's fd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Where the file system is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Split into the fd and the mountpoint (the caller then owns unmounting).
    pub fn into_parts(self) -> (OwnedFd, PathBuf) {
        (self.fd, self.mountpoint)
    }
}

/// Whether `/etc/fuse.conf` lets unprivileged users mount with `allow_other`.
fn user_allow_other() -> bool {
    std::fs::read_to_string("/etc/fuse.conf").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other")
    })
}

fn option_string(opts: &MountOptions, fd: Option<i32>, root_mode: u32) -> String {
    let mut s = String::new();
    if let Some(fd) = fd {
        s.push_str(&format!("fd={fd},"));
    }
    s.push_str(&format!(
        "rootmode={:o},user_id={},group_id={}",
        root_mode,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    ));
    if opts.allow_other {
        s.push_str(",allow_other");
    }
    if opts.default_permissions {
        s.push_str(",default_permissions");
    }
    s
}

fn mount_direct(mountpoint: &Path, opts: &MountOptions) -> io::Result<OwnedFd> {
    let dev = File::options()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/fuse: {e}")))?;
    let fd: OwnedFd = dev.into();
    let data = option_string(opts, Some(fd.as_raw_fd()), libc::S_IFDIR);
    let fstype = format!("fuse.{}", opts.subtype);
    let data = std::ffi::CString::new(data).expect("mount options have no NUL");
    rustix::mount::mount(
        opts.fs_name.as_str(),
        mountpoint,
        fstype.as_str(),
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        Some(data.as_c_str()),
    )
    .map_err(io::Error::from)?;
    Ok(fd)
}

fn mount_fusermount(mountpoint: &Path, opts: &MountOptions) -> io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    // The child must inherit `theirs`: clear close-on-exec on it only.
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty())?;
    let mut o = format!("fsname={},subtype={}", opts.fs_name, opts.subtype);
    if opts.allow_other {
        o.push_str(",allow_other");
    }
    if opts.default_permissions {
        o.push_str(",default_permissions");
    }
    let status = Command::new("fusermount3")
        .arg("-o")
        .arg(&o)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .status()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("not root and fusermount3 could not be run ({e}); install fuse3"),
            )
        })?;
    drop(theirs);
    if !status.success() {
        return Err(io::Error::other(format!(
            "fusermount3 failed to mount {} ({status})",
            mountpoint.display()
        )));
    }
    receive_fd(&ours)
}

/// Receive one fd sent with SCM_RIGHTS.
fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    rustix::net::recvmsg(sock, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)?;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other("fusermount3 did not pass a /dev/fuse fd"))
}

/// Unmount `mountpoint`. `lazy` detaches it even while busy (`umount -l`).
/// Falls back to `fusermount3 -u` when not root.
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let flags = if lazy {
        rustix::mount::UnmountFlags::DETACH
    } else {
        rustix::mount::UnmountFlags::empty()
    };
    match rustix::mount::unmount(mountpoint, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) => {
            let mut cmd = Command::new("fusermount3");
            cmd.arg("-u");
            if lazy {
                cmd.arg("-z");
            }
            let status = cmd.arg("--").arg(mountpoint).status()?;
            if status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "fusermount3 -u failed ({status})"
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A FUSE mount listed in `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// The type (e.g. `fuse.prjfs`).
    pub fstype: String,
    /// The source ("device") column.
    pub source: String,
}

/// Every mount of type `fstype` currently visible to this process.
pub fn mounts_of_type(fstype: &str) -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        // Fields: id parent major:minor root mountpoint opts [optional...] - type source superopts
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.len() < dash + 3 || fields.len() < 5 {
            continue;
        }
        if fields[dash + 1] != fstype.as_bytes() {
            continue;
        }
        out.push(MountEntry {
            mountpoint: PathBuf::from(unescape_mountinfo(fields[4])),
            fstype: String::from_utf8_lossy(fields[dash + 1]).into_owned(),
            source: unescape_mountinfo(fields[dash + 2])
                .to_string_lossy()
                .into_owned(),
        });
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let oct = &field[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// Whether `path` is itself a mountpoint of type `fstype`.
pub fn is_mounted(path: &Path, fstype: &str) -> io::Result<bool> {
    let want = path.as_os_str().as_bytes();
    Ok(mounts_of_type(fstype)?
        .iter()
        .any(|m| m.mountpoint.as_os_str().as_bytes() == want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(
            unescape_mountinfo(b"/tmp/a\\040b"),
            OsString::from("/tmp/a b")
        );
        assert_eq!(unescape_mountinfo(b"/x\\134y"), OsString::from("/x\\y"));
        assert_eq!(unescape_mountinfo(b"plain"), OsString::from("plain"));
    }

    #[test]
    fn option_string_has_fd_and_rootmode() {
        let s = option_string(&MountOptions::default(), Some(7), 0o40000);
        assert!(s.starts_with("fd=7,rootmode=40000,user_id="), "{s}");
        assert!(s.contains("allow_other") && s.contains("default_permissions"));
    }
}
