//! Where the channel's messages go: the `/dev/fuse` descriptor of a mount, or
//! any other [`Transport`], such as the in-memory [`Recorder`] that tests and
//! fuzzers hand to a [`crate::server::Server`] to serve requests without a kernel.

use std::collections::HashSet;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use crate::abi::{
    FuseBackingMap, FuseOutHeader, FUSE_DEV_IOC_BACKING_CLOSE, FUSE_DEV_IOC_BACKING_OPEN,
};

/// The write side of a FUSE connection: replies, notifications and the
/// passthrough ioctls. Reading requests is the owner's business (a session's
/// workers read `/dev/fuse`; a test calls [`crate::server::Server::handle`]).
///
/// Implementations are called from any thread, concurrently.
pub trait Transport: Send + Sync + 'static {
    /// Write one complete message, given as consecutive parts, at once (the
    /// kernel takes a message in one `write`). `ENOENT` means the request is
    /// gone (interrupted and dropped), `ENODEV` that the connection is closed.
    fn write_message(&self, parts: &[&[u8]]) -> io::Result<()>;

    /// `FUSE_DEV_IOC_BACKING_OPEN`: register `fd` as a backing file; its id (> 0).
    fn backing_open(&self, fd: BorrowedFd<'_>) -> io::Result<u32>;

    /// `FUSE_DEV_IOC_BACKING_CLOSE`: drop a backing id.
    fn backing_close(&self, id: u32) -> io::Result<()>;
}

/// An `_IOW` ioctl whose argument is passed by pointer and whose result is the
/// call's return value.
struct IntIoctl<T> {
    opcode: rustix::ioctl::Opcode,
    arg: T,
}

// SAFETY: `as_ptr` points at `arg`, which lives as long as the call; the kernel
// only reads it (the opcodes used are `_IOW`), and the output is the return value.
unsafe impl<T> rustix::ioctl::Ioctl for IntIoctl<T> {
    type Output = i32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> rustix::ioctl::Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        (&mut self.arg as *mut T).cast()
    }

    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

/// The `/dev/fuse` descriptor of a mount: requests are read from it, messages
/// written to it.
pub(crate) struct DevFuse {
    fd: OwnedFd,
}

impl DevFuse {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Read one request into `buf`; `None` once the mount is gone.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match rustix::io::read(&self.fd, &mut *buf) {
                Ok(n) => return Ok(Some(n)),
                // The request was interrupted and dropped before we read it; or a signal.
                Err(rustix::io::Errno::NOENT)
                | Err(rustix::io::Errno::INTR)
                | Err(rustix::io::Errno::AGAIN) => continue,
                // Unmounted or aborted.
                Err(rustix::io::Errno::NODEV) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Transport for DevFuse {
    fn write_message(&self, parts: &[&[u8]]) -> io::Result<()> {
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        rustix::io::writev(&self.fd, &slices)
            .map(drop)
            .map_err(Into::into)
    }

    fn backing_open(&self, fd: BorrowedFd<'_>) -> io::Result<u32> {
        let map = FuseBackingMap {
            fd: fd.as_raw_fd(),
            flags: 0,
            padding: 0,
        };
        // SAFETY: FUSE_DEV_IOC_BACKING_OPEN is _IOW(229, 1, struct fuse_backing_map):
        // the kernel reads one `fuse_backing_map` (same layout, size-checked in abi)
        // and returns the id or -errno; it writes nothing back.
        let id = unsafe {
            rustix::ioctl::ioctl(
                &self.fd,
                IntIoctl {
                    opcode: FUSE_DEV_IOC_BACKING_OPEN,
                    arg: map,
                },
            )
        }?;
        u32::try_from(id)
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| io::Error::other(format!("FUSE_DEV_IOC_BACKING_OPEN returned {id}")))
    }

    fn backing_close(&self, id: u32) -> io::Result<()> {
        // SAFETY: FUSE_DEV_IOC_BACKING_CLOSE is _IOW(229, 2, uint32_t): the kernel
        // reads one u32 and writes nothing back.
        unsafe {
            rustix::ioctl::ioctl(
                &self.fd,
                IntIoctl {
                    opcode: FUSE_DEV_IOC_BACKING_CLOSE,
                    arg: id,
                },
            )
        }?;
        Ok(())
    }
}

/// One message a [`Recorder`] received, split at its `fuse_out_header`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// `fuse_out_header.len`.
    pub len: u32,
    /// `fuse_out_header.error`: 0 or a negative errno for a reply, the
    /// notification code (> 0) for a notification.
    pub error: i32,
    /// `fuse_out_header.unique`: the request answered, or 0 for a notification.
    pub unique: u64,
    /// Everything after the header.
    pub body: Vec<u8>,
    /// Bytes actually written (compare with `len`).
    pub written: usize,
}

impl Recorded {
    /// Whether this is a kernel cache notification (`unique` 0, `error` a
    /// positive code) rather than a reply.
    pub fn is_notification(&self) -> bool {
        self.unique == 0 && self.error > 0
    }
}

#[derive(Default)]
struct RecorderState {
    messages: Vec<Recorded>,
    next_backing: u32,
    backing: HashSet<u32>,
    bad_backing_closes: u64,
}

/// An in-memory [`Transport`]: keeps every message written, hands out backing
/// ids as the kernel would (counting closes of ids it never gave), and lets a
/// caller wait for messages.
///
/// Invariant: messages are kept in the order their writes completed; a message
/// shorter than a `fuse_out_header` is kept with `len`, `error` and `unique` 0.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<RecorderState>,
    changed: Condvar,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remove and return what was recorded so far.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().messages)
    }

    /// How many messages are recorded (not taken yet).
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether nothing is recorded (or everything was taken).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until `done` holds for the recorded messages, at most `timeout`;
    /// returns whether it held.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Recorded]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if done(&st.messages) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Backing ids handed out and not closed yet.
    pub fn open_backing_ids(&self) -> usize {
        self.lock().backing.len()
    }

    /// Closes of backing ids that were not open (never given, or closed before).
    pub fn bad_backing_closes(&self) -> u64 {
        self.lock().bad_backing_closes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderState> {
        // A panicking writer cannot leave the list half-changed: pushes are atomic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Transport for Recorder {
    fn write_message(&self, parts: &[&[u8]]) -> io::Result<()> {
        let bytes = parts.concat();
        let header = FuseOutHeader::read_from_prefix(&bytes).map(|(h, _)| h);
        let recorded = match header {
            Ok(h) => Recorded {
                len: h.len,
                error: h.error,
                unique: h.unique,
                body: bytes[size_of::<FuseOutHeader>()..].to_vec(),
                written: bytes.len(),
            },
            Err(_) => Recorded {
                len: 0,
                error: 0,
                unique: 0,
                written: bytes.len(),
                body: bytes,
            },
        };
        self.lock().messages.push(recorded);
        self.changed.notify_all();
        Ok(())
    }

    fn backing_open(&self, _fd: BorrowedFd<'_>) -> io::Result<u32> {
        let mut st = self.lock();
        st.next_backing += 1;
        let id = st.next_backing;
        st.backing.insert(id);
        Ok(id)
    }

    fn backing_close(&self, id: u32) -> io::Result<()> {
        let mut st = self.lock();
        if st.backing.remove(&id) {
            Ok(())
        } else {
            st.bad_backing_closes += 1;
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
    }
}
