//! The session: reading `/dev/fuse` until `FUSE_INIT` is settled, then the pool
//! of worker threads that read requests, and shutdown when the mount goes away.
//! What is done with each message read is [`crate::server::Server`]'s.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::abi;
use crate::reply::{ChannelInner, Reply};
use crate::request::{Operation, RequestHeader};
use crate::server::Server;
use crate::transport::DevFuse;

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
                | abi::FUSE_HANDLE_KILLPRIV_V2
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
    /// Largest read the kernel will ask for: `max_pages` pages with
    /// `FUSE_MAX_PAGES`, else the kernel's default of 32. A larger READ comes
    /// from no kernel.
    pub max_read: u32,
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
        let dev = Arc::new(DevFuse::new(fd));
        let threads = config.threads.max(1);
        let mut buf = vec![0u8; config.max_write as usize + 8192];
        let server = Arc::new(Server::new(dev.clone(), config, fs));
        // INIT comes first; the file system hears `connected` and `init` before
        // any worker reads a request.
        let info = loop {
            if let Some(info) = server.init_info() {
                break info;
            }
            let n = dev
                .read(&mut buf)?
                .ok_or_else(|| io::Error::other("the mount went away before FUSE_INIT"))?;
            server.handle(&buf[..n])?;
        };
        drop(buf);
        let bufsize = info.max_write as usize + 4096 + 4096;
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let dev = dev.clone();
            let server = server.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("prjfs-worker-{i}"))
                    .spawn(move || worker_loop(&dev, &server, bufsize))?,
            );
        }
        Ok(Session {
            channel: server.channel.clone(),
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
    pub(crate) channel: Arc<ChannelInner>,
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

fn worker_loop<F: Filesystem>(dev: &DevFuse, server: &Server<F>, bufsize: usize) {
    let mut buf = vec![0u8; bufsize];
    loop {
        let n = match dev.read(&mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("reading from /dev/fuse failed: {e}");
                break;
            }
        };
        // After INIT, `handle` cannot fail.
        let _ = server.handle(&buf[..n]);
    }
    // The last worker out tells the file system the connection is gone.
    server.worker_exited();
}
