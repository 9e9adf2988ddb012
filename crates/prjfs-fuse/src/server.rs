//! The per-message half of a session: one request, as read from `/dev/fuse`,
//! decoded, answered or handed to the [`Filesystem`], with the answers going to
//! a [`Transport`]. [`crate::Session`] feeds it from its worker threads; tests
//! and fuzzers feed it bytes and read the answers from a [`crate::transport::Recorder`].
//!
//! What [`Server::handle`] guarantees for each message, whatever its bytes:
//! - it never panics (a panic of the file system's `dispatch` is caught and
//!   the request answered `EIO`);
//! - a message of fewer than 40 bytes (no readable `fuse_in_header`) gets no
//!   answer: there is no `unique` to answer;
//! - before INIT is settled, every other message gets exactly one answer (the
//!   INIT reply, `EIO` for anything else, `EPROTO` for a major below 7);
//! - after that, `FORGET`, `BATCH_FORGET` and `NOTIFY_REPLY` get none, `INTERRUPT` gets none if
//!   its target is in flight (the target is answered instead) and `EAGAIN`
//!   otherwise, and every other request exactly one: `EIO` if undecodable, else
//!   whatever the file system answers through its [`Reply`], now or later.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::abi;
use crate::reply::{ChannelInner, Reply};
use crate::request::{decode, Operation};
use crate::session::{Filesystem, InitInfo, Notifier, Request, SessionConfig};
use crate::session::{PROTO_MAJOR, PROTO_MINOR};
use crate::transport::Transport;

/// Pages per request when INIT did not grant `FUSE_MAX_PAGES`
/// (`FUSE_DEFAULT_MAX_PAGES_PER_REQ` in the kernel).
const FUSE_DEFAULT_MAX_PAGES: u32 = 32;

/// Serves the requests of one connection, one message at a time, from any
/// number of threads once INIT is settled.
pub struct Server<F: Filesystem> {
    pub(crate) channel: Arc<ChannelInner>,
    fs: Arc<F>,
    config: SessionConfig,
    /// Set once INIT succeeded; never changes after.
    info: OnceLock<InitInfo>,
    /// Held while a message before INIT is handled: negotiation is sequential.
    negotiating: Mutex<()>,
}

impl<F: Filesystem> Server<F> {
    /// A server for a new connection: the first message must be `FUSE_INIT`.
    pub fn new(transport: Arc<dyn Transport>, config: SessionConfig, fs: Arc<F>) -> Self {
        let channel = Arc::new(ChannelInner::new(transport));
        channel.set_workers(config.threads.max(1));
        Self {
            channel,
            fs,
            config,
            info: OnceLock::new(),
            negotiating: Mutex::new(()),
        }
    }

    /// What INIT settled on; `None` before.
    pub fn init_info(&self) -> Option<InitInfo> {
        self.info.get().copied()
    }

    /// Requests handed to the file system and not answered yet.
    pub fn inflight(&self) -> usize {
        self.channel.inflight_count()
    }

    /// A handle for notifications and backing files on this connection.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            channel: self.channel.clone(),
        }
    }

    /// Handle one message as read from the kernel (see the module doc for what
    /// is answered). `Err` only before INIT is settled, when the connection
    /// cannot go on: the INIT was undecodable or of a major below 7.
    pub fn handle(&self, msg: &[u8]) -> io::Result<()> {
        match self.info.get() {
            Some(info) => {
                self.serve(msg, info.minor);
                Ok(())
            }
            None => {
                let _one = self.negotiating.lock().unwrap_or_else(|e| e.into_inner());
                match self.info.get() {
                    Some(info) => {
                        self.serve(msg, info.minor);
                        Ok(())
                    }
                    None => self.negotiate(msg),
                }
            }
        }
    }

    /// One message before INIT is settled. On success the file system hears
    /// `connected` and `init` before any request reaches it.
    fn negotiate(&self, msg: &[u8]) -> io::Result<()> {
        let channel = &self.channel;
        let config = &self.config;
        let (header, op) = match decode(msg, 0) {
            Ok(x) => x,
            Err(e) => {
                if let Some(unique) = e.unique {
                    channel.send(unique, libc::EIO, &[]);
                }
                return Err(io::Error::other(e.to_string()));
            }
        };
        let Operation::Init {
            major,
            minor,
            max_readahead,
            flags,
        } = op
        else {
            // Nothing but INIT is valid first.
            channel.send(header.unique, libc::EIO, &[]);
            return Ok(());
        };
        if major < PROTO_MAJOR {
            channel.send(header.unique, libc::EPROTO, &[]);
            return Err(io::Error::other(format!(
                "kernel FUSE protocol {major}.{minor} is too old"
            )));
        }
        if major > PROTO_MAJOR {
            // The kernel retries INIT with our major version.
            let out = abi::FuseInitOut {
                major: PROTO_MAJOR,
                minor: PROTO_MINOR,
                ..Default::default()
            };
            channel.send(header.unique, 0, &[zerocopy::IntoBytes::as_bytes(&out)]);
            return Ok(());
        }
        let effective_minor = minor.min(PROTO_MINOR);
        let mut granted = flags & config.wanted_flags;
        if flags & abi::FUSE_INIT_EXT == 0 {
            granted &= 0xffff_ffff;
        }
        let max_pages = (config.max_write as usize).div_ceil(4096).min(256) as u16;
        let max_write = if granted & abi::FUSE_MAX_PAGES != 0 {
            config.max_write
        } else {
            config.max_write.min(128 * 1024)
        };
        let out = abi::FuseInitOut {
            major: PROTO_MAJOR,
            minor: effective_minor,
            max_readahead: max_readahead.min(config.max_readahead),
            flags: granted as u32,
            max_background: config.max_background,
            congestion_threshold: config.max_background * 3 / 4,
            max_write,
            time_gran: 1,
            max_pages,
            flags2: (granted >> 32) as u32,
            max_stack_depth: 1,
            ..Default::default()
        };
        channel.send(header.unique, 0, &[zerocopy::IntoBytes::as_bytes(&out)]);
        tracing::debug!(kernel_minor = minor, flags = granted, "FUSE_INIT done");
        let pages = if granted & abi::FUSE_MAX_PAGES != 0 {
            u32::from(max_pages)
        } else {
            FUSE_DEFAULT_MAX_PAGES
        };
        let info = InitInfo {
            kernel_minor: minor,
            minor: effective_minor,
            flags: granted,
            max_write,
            max_read: pages.saturating_mul(rustix::param::page_size() as u32),
        };
        self.fs.connected(self.notifier());
        self.fs.init(&info);
        // Only this thread (holding `negotiating`) sets it.
        let _ = self.info.set(info);
        Ok(())
    }

    /// One message after INIT: what a worker does with each request it reads.
    fn serve(&self, msg: &[u8], minor: u32) {
        let channel = &self.channel;
        let fs = &*self.fs;
        let (header, op) = match decode(msg, minor) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("undecodable request: {e}");
                if let Some(unique) = e.unique {
                    channel.send(unique, libc::EIO, &[]);
                }
                return;
            }
        };
        match op {
            Operation::Interrupt { unique } => {
                if !channel.interrupt(unique) {
                    // Not known yet (another worker has not registered it) or
                    // already answered: EAGAIN makes the kernel re-queue it.
                    // ENOSYS would disable interrupts for the whole mount.
                    std::thread::sleep(Duration::from_micros(50));
                    channel.write_message(&[zerocopy::IntoBytes::as_bytes(&abi::FuseOutHeader {
                        len: size_of::<abi::FuseOutHeader>() as u32,
                        error: -libc::EAGAIN,
                        unique: header.unique,
                    })]);
                }
            }
            Operation::Forget { .. } | Operation::BatchForget { .. } => {
                // No reply is ever sent for these.
                fs.forget(Request { header, op });
            }
            // The kernel's answer to a NOTIFY_RETRIEVE (which prjfs never
            // sends) takes no reply either.
            Operation::Unknown {
                opcode: abi::FUSE_NOTIFY_REPLY,
            } => {}
            Operation::Destroy => {
                channel.send(header.unique, 0, &[]);
            }
            op => {
                let reply = Reply::new(channel.clone(), header.unique);
                if interruptible_at_once(&op) {
                    reply.answer_interrupt_at_once();
                }
                let opcode = header.opcode;
                // A panic in the file system must not take a worker thread down:
                // the reply, dropped while unwinding, answers EIO.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    fs.dispatch(Request { header, op }, reply)
                }));
                if r.is_err() {
                    tracing::error!(
                        "panic while handling {} (opcode {opcode}); answered EIO",
                        abi::opcode_name(opcode).unwrap_or("an unknown request")
                    );
                }
            }
        }
    }

    /// A worker stopped; true for the last one, which then tells the file
    /// system the connection is gone.
    pub(crate) fn worker_exited(&self) -> bool {
        let last = self.channel.worker_exited();
        if last {
            self.fs.destroy();
        }
        last
    }
}

/// Requests an interrupt answers at once (see
/// [`Reply::answer_interrupt_at_once`]): their late real answer, refused by the
/// kernel, leaves nothing behind. Changes (writes, creates, renames, setattr)
/// are not among them: a client told `EINTR` must not find the change made.
fn interruptible_at_once(op: &Operation<'_>) -> bool {
    // A read-only open (no O_TRUNC) changes nothing; its handle is released
    // when its answer is refused.
    if let Operation::Open { flags, .. } = op {
        let flags = *flags as i32;
        return flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_TRUNC == 0;
    }
    matches!(
        op,
        Operation::Lookup { .. }
            | Operation::GetAttr { .. }
            | Operation::ReadLink
            | Operation::Read { .. }
            | Operation::StatFs
            | Operation::GetXattr { .. }
            | Operation::ListXattr { .. }
            | Operation::Access { .. }
    )
}

#[cfg(test)]
mod tests;
