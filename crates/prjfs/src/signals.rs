//! Stop signals (SIGINT, SIGTERM, SIGHUP) for
//! [`crate::VirtualizationInstance::run_until_signal`]: a process-wide handler
//! that writes the signal's number into a pipe the waiting thread polls.
//!
//! A handler, not `sigwait`: `sigwait` needs the signals blocked in every
//! thread of the process, which a library cannot promise for threads it did not
//! start (a provider's runtime, the application's); a handler works whichever
//! thread the kernel picks, and a process that did block them everywhere
//! ([`block_stop_signals`] before starting anything) still gets them, in the
//! waiting thread, which unblocks them for itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};

/// The signals that stop an instance.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The pipe's write end for the handler (-1 before the first use). The pipe
/// is created once and never closed, so the handler never writes to an fd
/// that was closed (and maybe reused) under it.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// The pipe (read end, write end), created at first use.
static PIPE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

/// Held while a thread waits for signals: handlers are process-wide, so one
/// waiter at a time.
static WAITER: Mutex<()> = Mutex::new(());

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it
/// starts afterwards. Call it first thing in `main`, before starting an
/// instance (or any thread), so that a stop signal arriving before
/// [`crate::VirtualizationInstance::run_until_signal`] is held back and taken
/// by it instead of ending the process.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is an initialized sigset; a null old-mask pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// The stop signals as a set.
fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the zeroed set; sigaddset only adds
    // valid signal numbers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// The handler: async-signal-safe (an atomic load and `write`), keeps `errno`.
extern "C" fn on_stop_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: errno is thread-local; writing one byte from a valid local to
    // an fd that is never closed. A full pipe (non-blocking) drops the byte:
    // the waiter has a signal to read already.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = sig as u8;
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// The stop signals routed to the pipe while this value lives; dropping it
/// restores the previous handlers and the thread's signal mask.
pub(crate) struct SignalPipe {
    read: BorrowedFd<'static>,
    old_actions: Vec<(libc::c_int, libc::sigaction)>,
    /// The thread's mask before `install` unblocked the signals.
    old_mask: Option<libc::sigset_t>,
    _waiter: MutexGuard<'static, ()>,
}

impl SignalPipe {
    /// Install the handlers and unblock the stop signals in this thread.
    pub(crate) fn install() -> io::Result<Self> {
        let waiter = match WAITER.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "another thread is already waiting for stop signals",
                ))
            }
        };
        let (read, write) = match PIPE.get() {
            Some(pipe) => pipe,
            None => {
                let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
                let pipe = rustix::pipe::pipe_with(flags)?;
                PIPE.get_or_init(|| pipe)
            }
        };
        PIPE_WRITE.store(write.as_raw_fd(), Ordering::Relaxed);
        let mut this = Self {
            read: read.as_fd(),
            old_actions: Vec::new(),
            old_mask: None,
            _waiter: waiter,
        };
        // Signals from an earlier wait that nobody took are stale.
        while this.take().is_some() {}
        for sig in STOP_SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler has the
            // one-argument signature `sa_sigaction` expects without SA_SIGINFO;
            // `old` receives the previous action, restored in Drop.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                this.old_actions.push((sig, old));
            }
        }
        let set = stop_set();
        // SAFETY: a zeroed sigset is valid and is overwritten with the old mask.
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sets; the old mask is stored for Drop.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old_mask) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        this.old_mask = Some(old_mask);
        Ok(this)
    }

    /// The pipe's read end, for `poll`.
    pub(crate) fn read_fd(&self) -> BorrowedFd<'_> {
        self.read
    }

    /// A signal that arrived, if any (without blocking).
    pub(crate) fn take(&self) -> Option<i32> {
        let mut byte = [0u8; 1];
        match rustix::io::read(self.read, &mut byte) {
            Ok(1) => Some(i32::from(byte[0])),
            _ => None,
        }
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for (sig, old) in self.old_actions.drain(..) {
            // SAFETY: restoring the action sigaction handed back earlier.
            unsafe {
                libc::sigaction(sig, &old, std::ptr::null_mut());
            }
        }
        if let Some(mask) = self.old_mask {
            // SAFETY: restoring this thread's mask saved in `install`.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            }
        }
    }
}
