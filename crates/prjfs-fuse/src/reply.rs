//! Replies: consumed when sent, movable to any thread, `EIO` from `Drop` if forgotten,
//! and the interrupt hook through which a pending request learns its client gave up.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use zerocopy::{Immutable, IntoBytes};

use crate::abi::FuseOutHeader;
use crate::transport::Transport;

type Hook = Box<dyn FnOnce() + Send>;

/// What the channel knows of one request that the daemon has read and not answered.
#[derive(Default)]
struct Inflight {
    interrupted: bool,
    hook: Option<Hook>,
    /// Answer `EINTR` as soon as the interrupt arrives, from the thread that
    /// reads it, without waiting for the worker handling the request (which may
    /// be stuck on a busy disk): for requests whose late real answer the kernel
    /// may drop without harm ([`Reply::answer_interrupt_at_once`]).
    at_once: bool,
    /// The `EINTR` of `at_once` has been written; the entry stays until the
    /// worker's own answer, so that its interrupt hook still runs. That answer
    /// is then not written (the kernel would refuse it) and its `try_*` send
    /// fails, so whatever it handed out is taken back.
    answered_early: bool,
}

/// The connection shared by the workers and every reply.
pub(crate) struct ChannelInner {
    transport: Arc<dyn Transport>,
    /// Invariant: holds exactly the uniques of requests that were read and whose
    /// worker has not written its reply yet (FORGET-like requests that take no
    /// reply are never inserted); an entry answered early (`EINTR` at the
    /// interrupt) stays until then.
    inflight: Mutex<HashMap<u64, Inflight>>,
    /// Workers still running.
    workers: std::sync::atomic::AtomicUsize,
}

impl ChannelInner {
    pub(crate) fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            inflight: Mutex::new(HashMap::new()),
            workers: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(crate) fn set_workers(&self, n: usize) {
        self.workers.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Returns true for the last worker to exit.
    pub(crate) fn worker_exited(&self) -> bool {
        self.workers
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
    }

    /// Write one message (header + body parts). Errors mean the request is gone
    /// (interrupted and dropped by the kernel: ENOENT) or the connection is closed
    /// (ENODEV); neither can be acted on, so they are only logged.
    pub(crate) fn write_message(&self, parts: &[&[u8]]) {
        let _ = self.write_message_checked(parts);
    }

    /// [`Self::write_message`], telling the caller whether the kernel took it.
    pub(crate) fn write_message_checked(&self, parts: &[&[u8]]) -> io::Result<()> {
        let r = self.transport.write_message(parts);
        if let Err(e) = &r {
            if !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV)) {
                tracing::warn!("writing a FUSE reply failed: {e}");
            }
        }
        r
    }

    pub(crate) fn send(&self, unique: u64, error: i32, body: &[&[u8]]) {
        let _ = self.send_checked(unique, error, body);
    }

    /// [`Self::send`], telling the caller whether the kernel took the reply (it
    /// does not when the request was aborted, or the connection is gone).
    pub(crate) fn send_checked(&self, unique: u64, error: i32, body: &[&[u8]]) -> io::Result<()> {
        let len: usize =
            std::mem::size_of::<FuseOutHeader>() + body.iter().map(|b| b.len()).sum::<usize>();
        let header = FuseOutHeader {
            len: len as u32,
            error: -error,
            unique,
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(body.len() + 1);
        parts.push(header.as_bytes());
        parts.extend_from_slice(body);
        // Remove before writing: once written the kernel may reuse the unique.
        let entry = self.inflight.lock().expect("inflight lock").remove(&unique);
        if entry.is_some_and(|e| e.answered_early) {
            // The interrupt answered it already; the kernel would refuse this.
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        self.write_message_checked(&parts)
    }

    /// `FUSE_DEV_IOC_BACKING_OPEN`: register the file `fd` as a backing file of
    /// this connection; returns its id (> 0).
    pub(crate) fn backing_open(&self, fd: BorrowedFd<'_>) -> io::Result<u32> {
        self.transport.backing_open(fd)
    }

    /// `FUSE_DEV_IOC_BACKING_CLOSE`: drop a backing id (open files keep their
    /// backing file).
    pub(crate) fn backing_close(&self, id: u32) -> io::Result<()> {
        self.transport.backing_close(id)
    }

    pub(crate) fn register(&self, unique: u64) {
        self.inflight
            .lock()
            .expect("inflight lock")
            .insert(unique, Inflight::default());
    }

    /// Handle FUSE_INTERRUPT for `target`. Returns false when the request is not
    /// known (not registered yet, or already answered): the caller then answers the
    /// interrupt with EAGAIN so the kernel re-queues it.
    pub(crate) fn interrupt(&self, target: u64) -> bool {
        let (hook, answer) = {
            let mut map = self.inflight.lock().expect("inflight lock");
            match map.get_mut(&target) {
                None => return false,
                Some(entry) => {
                    entry.interrupted = true;
                    let answer = entry.at_once && !entry.answered_early;
                    entry.answered_early |= answer;
                    (entry.hook.take(), answer)
                }
            }
        };
        if answer {
            // Written before the hook runs, so the client is released even if
            // the hook (a cancellation) takes a while. The worker's own answer
            // comes later and is refused by the kernel (ENOENT): uniques are
            // never reused.
            let header = FuseOutHeader {
                len: std::mem::size_of::<FuseOutHeader>() as u32,
                error: -libc::EINTR,
                unique: target,
            };
            self.write_message(&[header.as_bytes()]);
        }
        if let Some(hook) = hook {
            hook();
        }
        true
    }

    fn set_at_once(&self, unique: u64) {
        if let Some(entry) = self
            .inflight
            .lock()
            .expect("inflight lock")
            .get_mut(&unique)
        {
            entry.at_once = true;
        }
    }

    fn set_hook(&self, unique: u64, hook: Hook) {
        let run_now = {
            let mut map = self.inflight.lock().expect("inflight lock");
            match map.get_mut(&unique) {
                // Already answered: the hook has nothing to cancel.
                None => return,
                Some(entry) if entry.interrupted => Some(hook),
                Some(entry) => {
                    entry.hook = Some(hook);
                    None
                }
            }
        };
        if let Some(hook) = run_now {
            hook();
        }
    }

    fn is_interrupted(&self, unique: u64) -> bool {
        self.inflight
            .lock()
            .expect("inflight lock")
            .get(&unique)
            .is_some_and(|e| e.interrupted)
    }

    /// Number of requests read and not yet answered.
    pub(crate) fn inflight_count(&self) -> usize {
        self.inflight.lock().expect("inflight lock").len()
    }
}

/// The answer to one request. Send it once with one of the consuming methods; if it
/// is dropped unanswered the client gets `EIO` (never a hung client).
#[must_use = "an unanswered reply answers EIO when dropped"]
pub struct Reply {
    channel: Arc<ChannelInner>,
    unique: u64,
    answered: bool,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("unique", &self.unique)
            .finish()
    }
}

impl Reply {
    pub(crate) fn new(channel: Arc<ChannelInner>, unique: u64) -> Self {
        channel.register(unique);
        Self {
            channel,
            unique,
            answered: false,
        }
    }

    /// The request's unique id.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Answer with an error (a positive errno such as `libc::ENOENT`).
    pub fn error(mut self, errno: i32) {
        self.answered = true;
        self.channel.send(self.unique, errno, &[]);
    }

    /// Answer success with no body.
    pub fn ok(mut self) {
        self.answered = true;
        self.channel.send(self.unique, 0, &[]);
    }

    /// Answer success with raw bytes.
    pub fn bytes(mut self, data: &[u8]) {
        self.answered = true;
        self.channel.send(self.unique, 0, &[data]);
    }

    /// Answer success with one wire struct.
    pub fn value<T: IntoBytes + Immutable>(mut self, value: &T) {
        self.answered = true;
        self.channel.send(self.unique, 0, &[value.as_bytes()]);
    }

    /// Answer success with raw bytes; `Err` when the kernel did not take the
    /// answer (the request was aborted, or the connection is gone), so that
    /// whatever the answer handed out (an open handle) can be taken back.
    pub fn try_bytes(mut self, data: &[u8]) -> io::Result<()> {
        self.answered = true;
        self.channel.send_checked(self.unique, 0, &[data])
    }

    /// [`Reply::value`], telling whether the kernel took the answer (see
    /// [`Reply::try_bytes`]).
    pub fn try_value<T: IntoBytes + Immutable>(self, value: &T) -> io::Result<()> {
        self.try_bytes(value.as_bytes())
    }

    /// Answer with a `Result`: `Ok` as one wire struct, `Err` as an errno.
    pub fn result<T: IntoBytes + Immutable>(self, r: Result<T, i32>) {
        match r {
            Ok(v) => self.value(&v),
            Err(e) => self.error(e),
        }
    }

    /// Run `hook` when the kernel interrupts this request (FUSE_INTERRUPT): at once
    /// if the interrupt already arrived, never if the reply is sent first. The hook
    /// runs on the thread that read the interrupt and must not block for long.
    pub fn on_interrupt(&self, hook: impl FnOnce() + Send + 'static) {
        self.channel.set_hook(self.unique, Box::new(hook));
    }

    /// Let an interrupt of this request answer it `EINTR` at once, on the
    /// thread that reads the interrupt, whatever the worker handling it is
    /// doing; the worker's own answer then goes nowhere (its `try_*` send
    /// fails). Only for requests whose answer changes nothing the kernel must
    /// learn about: reads, attribute and xattr reads, and lookups and opens whose
    /// replies undo their reference when the send fails.
    pub fn answer_interrupt_at_once(&self) {
        self.channel.set_at_once(self.unique);
    }

    /// Whether an interrupt for this request has arrived.
    pub fn is_interrupted(&self) -> bool {
        self.channel.is_interrupted(self.unique)
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.answered {
            tracing::debug!(unique = self.unique, "reply dropped unanswered: EIO");
            self.channel.send(self.unique, libc::EIO, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A channel recording what it writes.
    fn channel() -> (Arc<ChannelInner>, Arc<crate::transport::Recorder>) {
        let rec = Arc::new(crate::transport::Recorder::new());
        (Arc::new(ChannelInner::new(rec.clone())), rec)
    }

    /// The (error, unique) of every message written since the last call.
    fn written(r: &mut Arc<crate::transport::Recorder>) -> Vec<(i32, u64)> {
        r.take().into_iter().map(|m| (m.error, m.unique)).collect()
    }

    #[test]
    fn an_interrupt_answers_at_once_only_when_asked_and_hooks_still_run() {
        let (ch, mut r) = channel();
        let hooks = Arc::new(AtomicUsize::new(0));
        let count = |hooks: &Arc<AtomicUsize>| {
            let hooks = hooks.clone();
            move || {
                hooks.fetch_add(1, Ordering::SeqCst);
            }
        };

        // At once: EINTR is written by the interrupt itself; a hook set later
        // (the worker got there after the interrupt) still runs; the worker's
        // own answer afterwards is not written, its send fails, and the entry
        // goes.
        let reply = Reply::new(ch.clone(), 7);
        reply.answer_interrupt_at_once();
        assert!(ch.interrupt(7));
        assert_eq!(written(&mut r), vec![(-libc::EINTR, 7)]);
        assert!(ch.interrupt(7), "still known until the worker answers");
        assert!(written(&mut r).is_empty(), "EINTR is written once");
        reply.on_interrupt(count(&hooks));
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        assert!(reply.try_bytes(b"late").is_err());
        assert!(written(&mut r).is_empty());
        assert_eq!(ch.inflight_count(), 0);
        assert!(!ch.interrupt(7), "answered: EAGAIN for the kernel");

        // Not at once: the interrupt only runs the hook; the worker answers.
        let reply = Reply::new(ch.clone(), 8);
        reply.on_interrupt(count(&hooks));
        assert!(ch.interrupt(8));
        assert_eq!(hooks.load(Ordering::SeqCst), 2);
        assert!(written(&mut r).is_empty());
        reply.error(libc::EINTR);
        assert_eq!(written(&mut r), vec![(-libc::EINTR, 8)]);
        assert_eq!(ch.inflight_count(), 0);
    }
}
