//! The session: `FUSE_INIT` negotiation, the pool of worker threads that read
//! requests, interrupt routing, and shutdown when the mount goes away.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::abi;
use crate::reply::{ChannelInner, Reply};
use crate::request::{decode, Operation, RequestHeader};

/// The kernel protocol version this channel speaks (major 7).
pub const PROTO_MAJOR: u32 = 7;
/// The newest minor version this channel knows.
pub const PROTO_MINOR: u32 = 40;

/// Settings of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Worker threads reading requests (ProjFS PoolThreadCount).
    pub threads: usize,
    /// Largest write the kernel may send, in bytes (needs `FUSE_MAX_PAGES` above 128 KiB).
    pub max_write: u32,
    /// Readahead the kernel may do, in bytes.
    pub max_readahead: u32,
    /// INIT flags we would like (64-bit: bits above 31 travel in flags2). The reply
    /// carries `wanted & offered by the kernel`. With `FUSE_PASSTHROUGH` the reply
    /// also sets `max_stack_depth` 1 (backing files on a non-stacked file system).
    pub wanted_flags: u64,
    /// Background request limit.
    pub max_background: u16,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            threads: 4,
            max_write: 1 << 20,
            max_readahead: 1 << 20,
            wanted_flags: abi::FUSE_PARALLEL_DIROPS
                | abi::FUSE_DO_READDIRPLUS
                | abi::FUSE_MAX_PAGES
                | abi::FUSE_BIG_WRITES
                | abi::FUSE_CACHE_SYMLINKS
                | abi::FUSE_ATOMIC_O_TRUNC
                | abi::FUSE_INIT_EXT
                | abi::FUSE_PASSTHROUGH,
            max_background: 64,
        }
    }
}

/// What INIT settled on.
#[derive(Clone, Copy, Debug)]
pub struct InitInfo {
    /// The kernel's minor protocol version.
    pub kernel_minor: u32,
    /// The minor version in effect (the smaller of ours and the kernel's).
    pub minor: u32,
    /// Flags in effect (64-bit).
    pub flags: u64,
    /// Largest write the kernel will send.
    pub max_write: u32,
}

/// One decoded request, borrowed from the worker's buffer.
#[derive(Debug)]
pub struct Request<'a> {
    /// The header (unique id, node id, caller's uid/gid/pid).
    pub header: RequestHeader,
    /// The operation and its arguments.
    pub op: Operation<'a>,
}

/// A file system served over the channel.
pub trait Filesystem: Send + Sync + 'static {
    /// The connection's handle for notifications and backing files; called once,
    /// right before [`Filesystem::init`].
    fn connected(&self, _notifier: Notifier) {}

    /// INIT finished; called once before any other request.
    fn init(&self, _info: &InitInfo) {}

    /// Handle one request. `reply` may be answered now or later from any thread.
    fn dispatch(&self, req: Request<'_>, reply: Reply);

    /// FORGET and BATCH_FORGET: the kernel dropped references; no reply is sent.
    fn forget(&self, _req: Request<'_>) {}

    /// The connection ended (unmounted or aborted). Answer what is still pending.
    fn destroy(&self) {}
}

/// A running session.
pub struct Session {
    channel: Arc<ChannelInner>,
    workers: Vec<JoinHandle<()>>,
    mountpoint: PathBuf,
    info: InitInfo,
}

impl Session {
    /// Perform INIT on `fd` and start `config.threads` workers serving `fs`.
    pub fn start<F: Filesystem>(
        fd: OwnedFd,
        mountpoint: PathBuf,
        config: SessionConfig,
        fs: Arc<F>,
    ) -> io::Result<Session> {
        let channel = Arc::new(ChannelInner::new(fd));
        channel.set_workers(config.threads.max(1));
        let info = negotiate(&channel, &config)?;
        fs.connected(Notifier {
            channel: channel.clone(),
        });
        fs.init(&info);
        let bufsize = info.max_write as usize + 4096 + 4096;
        let threads = config.threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let channel = channel.clone();
            let fs = fs.clone();
            let minor = info.minor;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("prjfs-worker-{i}"))
                    .spawn(move || worker_loop(&channel, &*fs, bufsize, minor))?,
            );
        }
        Ok(Session {
            channel,
            workers,
            mountpoint,
            info,
        })
    }

    /// What INIT settled on.
    pub fn init_info(&self) -> InitInfo {
        self.info
    }

    /// Where the session is mounted.
    pub fn mountpoint(&self) -> &std::path::Path {
        &self.mountpoint
    }

    /// Requests read and not answered yet.
    pub fn inflight(&self) -> usize {
        self.channel.inflight_count()
    }

    /// A handle for sending kernel cache notifications.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            channel: self.channel.clone(),
        }
    }

    /// Wait until every worker has stopped (the mount went away).
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// The connection outside of replies: kernel cache notifications
/// (invalidations) and passthrough backing files.
///
/// Do not send a notification from inside a request that holds the locks the
/// kernel needs for it: the notification would wait for those locks, and the
/// request holding them for its answer (a deadlock).
#[derive(Clone)]
pub struct Notifier {
    channel: Arc<ChannelInner>,
}

impl Notifier {
    /// Write a complete notification message (built by [`crate::encode`]).
    pub fn send_raw(&self, message: &[u8]) {
        self.channel.write_message(&[message]);
    }

    /// [`Notifier::send_raw`], with the kernel's answer (`ENOENT`: the node or
    /// name is not cached, nothing to do).
    pub fn try_send_raw(&self, message: &[u8]) -> io::Result<()> {
        self.channel.write_message_checked(&[message])
    }

    /// `FUSE_DEV_IOC_BACKING_OPEN`: register the open file `fd` as a backing
    /// file and return its id, for `fuse_open_out.backing_id` with
    /// `FOPEN_PASSTHROUGH`. Fails with `EPERM` unless the connection negotiated
    /// `FUSE_PASSTHROUGH` and the caller has `CAP_SYS_ADMIN`; with `ELOOP` when
    /// the file lives on a stacked file system.
    ///
    /// The kernel keeps its own reference from each open that uses the id, so
    /// the daemon may close `fd` at once and the id once no open needs it.
    pub fn backing_open(&self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
        self.channel.backing_open(fd)
    }

    /// `FUSE_DEV_IOC_BACKING_CLOSE`: drop a backing id.
    pub fn backing_close(&self, id: u32) -> io::Result<()> {
        self.channel.backing_close(id)
    }
}

fn read_request(channel: &ChannelInner, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::read(&channel.fd, &mut *buf) {
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

fn negotiate(channel: &Arc<ChannelInner>, config: &SessionConfig) -> io::Result<InitInfo> {
    let mut buf = vec![0u8; config.max_write as usize + 8192];
    loop {
        let n = read_request(channel, &mut buf)?
            .ok_or_else(|| io::Error::other("the mount went away before FUSE_INIT"))?;
        let (header, op) = decode(&buf[..n], 0).map_err(|e| io::Error::other(e.to_string()))?;
        let Operation::Init {
            major,
            minor,
            max_readahead,
            flags,
        } = op
        else {
            // Nothing but INIT is valid first.
            channel.send(header.unique, libc::EIO, &[]);
            continue;
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
            continue;
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
        return Ok(InitInfo {
            kernel_minor: minor,
            minor: effective_minor,
            flags: granted,
            max_write,
        });
    }
}

fn worker_loop<F: Filesystem>(channel: &Arc<ChannelInner>, fs: &F, bufsize: usize, minor: u32) {
    let mut buf = vec![0u8; bufsize];
    loop {
        let n = match read_request(channel, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("reading from /dev/fuse failed: {e}");
                break;
            }
        };
        let (header, op) = match decode(&buf[..n], minor) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("undecodable request: {e}");
                if let Some(unique) = peek_unique(&buf[..n]) {
                    channel.send(unique, libc::EIO, &[]);
                }
                continue;
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
                        len: std::mem::size_of::<abi::FuseOutHeader>() as u32,
                        error: -libc::EAGAIN,
                        unique: header.unique,
                    })]);
                }
            }
            Operation::Forget { .. } | Operation::BatchForget { .. } => {
                // No reply is ever sent for these.
                fs.forget(Request { header, op });
            }
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
    // The last worker out tells the file system the connection is gone.
    if channel.worker_exited() {
        fs.destroy();
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

fn peek_unique(buf: &[u8]) -> Option<u64> {
    buf.get(8..16)
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}
