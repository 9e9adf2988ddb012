//! Starting, serving and stopping a virtualization instance: check the root, open
//! the layer, mount, run the kernel channel's worker threads; wait for the end of
//! the mount or a stop signal; stop.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use prjfs_fuse::mount::{Mount, MountOptions};
use prjfs_fuse::session::{Session, SessionConfig};

use crate::fuse_fs::{FuseFs, OpenStats};
use crate::layer::{Layer, RootMarker};
use crate::provider::{InstanceHandle, Provider};
use crate::signals::SignalPipe;
use crate::types::Collation;
use crate::virtualizer::{Virtualizer, VirtualizerOptions, VirtualizerStats};

pub use crate::signals::block_stop_signals;

/// The mount type of every prjfs mount (`fuse.prjfs`).
pub const FS_TYPE: &str = "fuse.prjfs";

/// Start options (ProjFS `PRJ_STARTVIRTUALIZING_OPTIONS`).
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// PoolThreadCount: threads receiving requests. 0 = 2 × concurrent.
    pub pool_threads: usize,
    /// ConcurrentThreadCount: callbacks running at once. 0 = logical CPUs.
    pub concurrent_threads: usize,
    /// Cache not-found answers of GetPlaceholderInfo.
    pub negative_path_cache: bool,
    /// Name collation.
    pub collation: Collation,
    /// Which projection the root belongs to. `None` (the default): any root
    /// an earlier instance used is accepted, whoever marked it, so a provider
    /// restarts on its own root with default options. `Some`: a root marked
    /// for another projection is refused, and a root without a marker is
    /// accepted (and marked) only while it holds nothing yet.
    pub marker: Option<RootMarker>,
    /// FUSE passthrough: opens of hydrated and full files are answered with a
    /// backing file, so their reads and writes go from the kernel straight to
    /// the on-disk file instead of through the daemon. Falls back to serving them
    /// where the kernel or the privileges (CAP_SYS_ADMIN) do not allow it.
    /// Default on.
    pub passthrough: bool,
    /// Let the kernel keep a directory's listing across `opendir`s
    /// (`FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE`): a directory listed once is listed
    /// again without a request, until a change through the mount drops the
    /// cache. The provider then hears no enumeration for those listings (and
    /// no RestartScan for a rewind), and names it adds to the store later do not
    /// show in them. Default off (every listing is an enumeration session, as in
    /// ProjFS); `prjfs mount` turns it on.
    pub cache_listings: bool,
    /// Notification mappings (ProjFS's `NotificationMappings`): which kinds
    /// [`crate::Provider::notification`] hears for which subtree, the deepest
    /// mapping containing a path winning (see [`crate::notifications`]).
    /// `None` (the default): the provider hears no notification, and the
    /// client path pays nothing for them. `Some(vec![])`: the default mask
    /// ([`crate::notifications::DEFAULT_MASK`]) everywhere.
    pub notification_mappings: Option<Vec<crate::notifications::NotificationMapping>>,
    /// Demand-driven hydration of big files (see [`crate::RangedHydration`]):
    /// for a provider that serves byte ranges cheaply, reads of a file of at
    /// least `min_file_size` fetch the chunks they touch (and a readahead
    /// window) instead of the whole file. `None` (the default): every
    /// hydration is of the whole file.
    pub ranged_hydration: Option<crate::types::RangedHydration>,
    /// FUSE no-open: opens and closes of files never reach the daemon (its
    /// first OPEN is answered `ENOSYS`, after which the kernel sends none for
    /// the connection), so an open costs no round trip and the kernel keeps a
    /// file's pages across opens. READ, WRITE and the rest then carry no
    /// handle; each is served through a handle the daemon opens for that one
    /// request (GetPlaceholderInfo and hydration happen as for an open). What
    /// it costs: no passthrough (hydrated and full files are read through the
    /// page cache; a miss is a READ to the daemon), a placeholder becomes full
    /// at its first write instead of at its open for write, no open or close
    /// notifications (so it is refused together with `notification_mappings`),
    /// and a file opened without `O_CREAT` and then unlinked can no longer be
    /// read or written through that descriptor. Default off.
    pub no_open: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            pool_threads: 0,
            concurrent_threads: 0,
            negative_path_cache: false,
            collation: Collation::default(),
            marker: None,
            passthrough: true,
            cache_listings: false,
            notification_mappings: None,
            ranged_hydration: None,
            no_open: false,
        }
    }
}

impl StartOptions {
    /// The thread counts in effect: (pool, concurrent).
    pub fn effective_threads(&self) -> (usize, usize) {
        let concurrent = if self.concurrent_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.concurrent_threads
        };
        let pool = if self.pool_threads == 0 {
            2 * concurrent
        } else {
            self.pool_threads
        };
        (pool, concurrent)
    }
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The root is missing, not a directory, already mounted, or not one this
    /// instance may use; `reason` says what to do.
    #[error("{path}: {reason}")]
    BadRoot {
        /// The root.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The layer could not be opened.
    #[error("{0}")]
    Layer(#[from] crate::layer::LayerError),
    /// The options contradict each other; the text says how.
    #[error("{0}")]
    BadOptions(String),
    /// Mounting failed.
    #[error("mounting {path} failed: {source}")]
    Mount {
        /// The root.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why [`VirtualizationInstance::run_until_signal`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// This signal (SIGINT, SIGTERM or SIGHUP) arrived; the instance stopped.
    Signal(i32),
    /// The mount went away otherwise (`umount`, [`VirtualizationInstance::stop`]
    /// from another thread).
    Unmounted,
}

/// Where the instance's worker threads are.
///
/// Invariant: `Running` until the first `wait` or `stop` takes the session;
/// `Joining` while that caller joins the workers; `Ended` once they ended and
/// the virtualizer stopped (then `ended` is notified). Only the taker moves it
/// on from `Joining`.
enum Serving {
    Running(Session),
    Joining,
    Ended,
}

/// A running virtualization instance. Dropping it stops it (see
/// [`VirtualizationInstance::stop`]).
///
/// # Threads
///
/// The instance is `Send + Sync`; share it by reference (scoped threads) or in
/// an `Arc`. Requests are served by its own threads from [`start`] on; the
/// calling thread is free.
///
/// * [`wait`] blocks until the mount goes away: an unmount from outside
///   (`umount`, `fusermount3 -u`, [`unmount`](crate::unmount)), or [`stop`]
///   from another thread. Any number of threads may wait; all return once the
///   worker threads ended and every pending command was answered.
/// * [`stop`] may be called from any thread, also while others wait: it
///   cancels every live command (their clients get `EINTR`, the provider hears
///   `cancel_command`), unmounts (lazily when the root is busy), waits for the
///   worker threads, and returns; waiting threads return too. Stopping again,
///   or after the mount went away, does nothing and returns `Ok`.
/// * [`run_until_signal`] is `wait` that also stops on SIGINT, SIGTERM or
///   SIGHUP; one thread of a process at a time.
/// * Never call `wait`, `stop` or drop the instance from inside a provider
///   callback or from `cancel_command`: they wait for the threads that run
///   callbacks, one of which would be the caller. A provider that wants to
///   stop hands the request to another thread.
///
/// [`start`]: VirtualizationInstance::start
/// [`wait`]: VirtualizationInstance::wait
/// [`stop`]: VirtualizationInstance::stop
/// [`run_until_signal`]: VirtualizationInstance::run_until_signal
pub struct VirtualizationInstance {
    virt: Virtualizer,
    fs: Arc<FuseFs>,
    serving: Mutex<Serving>,
    ended: Condvar,
    root: PathBuf,
    threads: (usize, usize),
}

impl VirtualizationInstance {
    /// Project `provider` into `root` and serve it until stopped or unmounted;
    /// returns once the mount is ready.
    ///
    /// `root` must be an existing directory that is empty, or a root an earlier
    /// instance used (it holds the hidden `.prjfs` directory): placeholders,
    /// hydrated files and local changes found there are served again (see
    /// [`StartOptions::marker`] for which earlier roots are accepted). A
    /// mount a dead instance left there (`ENOTCONN`) is removed first.
    pub fn start(
        root: &Path,
        provider: Arc<dyn Provider>,
        options: StartOptions,
    ) -> Result<Self, StartError> {
        let bad = |reason: String| StartError::BadRoot {
            path: root.to_path_buf(),
            reason,
        };
        if options.no_open && options.notification_mappings.is_some() {
            return Err(StartError::BadOptions(
                "no-open cannot be combined with notifications: the daemon sees no \
                 opens or closes to raise them for"
                    .into(),
            ));
        }
        // statfs reaches the daemon (a stat of the root may come from the
        // kernel's attribute cache): ENOTCONN means a dead daemon left its mount.
        if let Err(rustix::io::Errno::NOTCONN) = rustix::fs::statfs(root) {
            let msg = format!(
                "prjfs: {}: removing a stale mount left by a dead daemon",
                root.display()
            );
            tracing::warn!("{msg}");
            eprintln!("{msg}");
            prjfs_fuse::mount::unmount(root, true)
                .map_err(|e| bad(format!("cannot remove stale mount: {e}")))?;
        }
        let meta = std::fs::metadata(root).map_err(|e| bad(e.to_string()))?;
        if !meta.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let root = root.canonicalize().map_err(|e| bad(e.to_string()))?;
        if prjfs_fuse::mount::is_mounted(&root, FS_TYPE).unwrap_or(false) {
            return Err(bad("already a mounted prjfs root".into()));
        }
        // Refuse a foreign non-empty directory before the layer writes anything
        // into it (its hidden directory marks roots we made).
        let has_layer = root.join(crate::layer::HIDDEN_DIR).is_dir();
        let non_empty = std::fs::read_dir(&root)
            .map_err(|e| bad(e.to_string()))?
            .next()
            .is_some();
        if non_empty && !has_layer {
            return Err(bad(format!(
                "is not empty and not a prjfs root (it has no {} directory); \
                 start on an empty directory, or on a root a prjfs instance used before",
                crate::layer::HIDDEN_DIR
            )));
        }
        let layer = Layer::open(&root)?;
        match (layer.root_marker()?, &options.marker) {
            (Some(found), Some(want)) if found != *want => {
                return Err(bad(format!(
                    "is the root of another projection (source {}, provider {}); \
                     start on an empty directory, or with the StartOptions::marker that root was made with",
                    found.source, found.provider
                )))
            }
            (None, Some(_)) if !layer.is_empty_root()? => {
                return Err(bad(
                    "is a prjfs root started without a marker, so it may belong to another \
                     projection; start on an empty directory, or with StartOptions::marker unset"
                        .into(),
                ))
            }
            (None, Some(want)) => layer.set_root_marker(want)?,
            // Without a marker asked for, any prjfs root is this provider's.
            (_, None) | (Some(_), Some(_)) => {}
        }
        // Once per root: full items written before they carried marks keep
        // their tombstones on delete.
        layer.upgrade_marks()?;
        let (pool, concurrent) = options.effective_threads();
        let virt = Virtualizer::new(
            layer,
            provider,
            VirtualizerOptions {
                concurrent_threads: concurrent,
                negative_path_cache: options.negative_path_cache,
                collation: options.collation,
                // With more request threads than slots, the threads running a
                // callback inline still leave one to serve local requests.
                inline_callbacks: pool > concurrent,
                lazy_enumeration: options.cache_listings,
                notification_mappings: options.notification_mappings.clone(),
                ranged_hydration: options.ranged_hydration.map(|r| r.normalized()),
                keep_unnamed_files: options.no_open,
                ..Default::default()
            },
        );
        let mount =
            Mount::new(&root, &MountOptions::default()).map_err(|source| StartError::Mount {
                path: root.clone(),
                source,
            })?;
        let (fd, mountpoint) = mount.into_parts();
        let mut config = SessionConfig {
            threads: pool,
            ..Default::default()
        };
        let passthrough = options.passthrough && !options.no_open;
        if !passthrough {
            config.wanted_flags &= !prjfs_fuse::abi::FUSE_PASSTHROUGH;
        }
        if options.no_open {
            // Without OPEN, an O_TRUNC must reach the daemon as a SETATTR of
            // the size (with ATOMIC_O_TRUNC the kernel leaves it to the OPEN
            // it no longer sends).
            config.wanted_flags &= !prjfs_fuse::abi::FUSE_ATOMIC_O_TRUNC;
        }
        let fs = Arc::new(
            FuseFs::with_passthrough(virt.clone(), passthrough)
                .with_listing_cache(options.cache_listings)
                .with_no_open(options.no_open),
        );
        let session = match Session::start(fd, mountpoint, config, fs.clone()) {
            Ok(s) => s,
            Err(source) => {
                let _ = prjfs_fuse::mount::unmount(&root, true);
                return Err(StartError::Mount { path: root, source });
            }
        };
        Ok(Self {
            virt,
            fs,
            serving: Mutex::new(Serving::Running(session)),
            ended: Condvar::new(),
            root,
            threads: (pool, concurrent),
        })
    }

    /// The handle providers answer through.
    pub fn handle(&self) -> InstanceHandle {
        self.virt.handle()
    }

    /// The virtualizer (state queries, counters; for the prjfs command).
    #[doc(hidden)]
    pub fn virtualizer(&self) -> &Virtualizer {
        &self.virt
    }

    /// The (canonical) root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// (PoolThreadCount, ConcurrentThreadCount) in effect.
    pub fn threads(&self) -> (usize, usize) {
        self.threads
    }

    /// Counters.
    pub fn stats(&self) -> VirtualizerStats {
        self.virt.stats()
    }

    /// Whether opens of hydrated and full files use FUSE passthrough: asked for,
    /// granted by the kernel, and not refused (`EPERM`) so far.
    pub fn passthrough(&self) -> bool {
        self.fs.passthrough_active()
    }

    /// Whether the instance runs in no-open mode (`StartOptions::no_open`).
    pub fn no_open(&self) -> bool {
        self.fs.no_open()
    }

    /// How file opens were answered (passthrough or through the daemon).
    pub fn open_stats(&self) -> OpenStats {
        self.fs.open_stats()
    }

    /// Block until the mount goes away (an unmount from outside, or
    /// [`VirtualizationInstance::stop`] from another thread), then answer what
    /// is still pending. See "Threads" above.
    pub fn wait(&self) {
        match self.take_session() {
            Some(session) => self.join(session),
            None => self.wait_ended(),
        }
    }

    /// Cancel what is pending, unmount (lazily if the root is busy) and wait
    /// for the worker threads. Callable from any thread, also while others
    /// [`wait`](VirtualizationInstance::wait); a second call, or one after the
    /// mount went away, returns `Ok`. See "Threads" above.
    pub fn stop(&self) -> std::io::Result<()> {
        let session = self.take_session();
        if session.is_none() && matches!(*self.serving(), Serving::Ended) {
            return Ok(());
        }
        // Answer what is pending first so unmount is not busy because of us.
        self.virt.stop();
        let unmounted = self.unmount_root();
        match session {
            Some(session) => self.join(session),
            None => self.wait_ended(),
        }
        unmounted
    }

    /// Serve until SIGINT, SIGTERM or SIGHUP arrives (then stop, and return
    /// the signal) or the mount goes away otherwise.
    ///
    /// While it runs, those three signals are handled by prjfs in the whole
    /// process (a handler that only wakes this thread; whichever thread the
    /// kernel picks) and unblocked in the calling thread; afterwards the
    /// previous handlers and this thread's signal mask are restored. A signal
    /// that arrives before the call takes its default action (the process
    /// ends, the mount is left for the next start to remove) unless the
    /// signals were blocked beforehand with [`block_stop_signals`], as the
    /// prjfs daemon does before it starts: a signal held back that way is taken
    /// here at once. Only one thread of a process may run this at a time
    /// (`ErrorKind::ResourceBusy` otherwise). Errors: setting up the signal
    /// handling, or the unmount of [`VirtualizationInstance::stop`].
    pub fn run_until_signal(&self) -> std::io::Result<StopReason> {
        let signals = SignalPipe::install()?;
        let (ended_read, ended_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        std::thread::scope(|scope| {
            let waiter = std::thread::Builder::new()
                .name("prjfs-wait".into())
                .spawn_scoped(scope, move || {
                    self.wait();
                    // Closing the write end wakes the poll below (POLLHUP).
                    drop(ended_write);
                })?;
            let reason = loop {
                if let Some(sig) = signals.take() {
                    break StopReason::Signal(sig);
                }
                let mut fds = [
                    poll_fd(signals.read_fd().as_raw_fd()),
                    poll_fd(ended_read.as_fd().as_raw_fd()),
                ];
                // SAFETY: `fds` is a valid array of two pollfd for the call's
                // duration; both fds stay open until this function returns.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    // Cannot watch for signals any more: serve until the
                    // mount goes away (the join below).
                    tracing::error!("{}: waiting for signals failed: {e}", self.root.display());
                    break StopReason::Unmounted;
                }
                if fds[1].revents != 0 {
                    break StopReason::Unmounted;
                }
            };
            let mut result = Ok(reason);
            if let StopReason::Signal(sig) = reason {
                tracing::warn!("signal {sig}: unmounting {}", self.root.display());
                if let Err(e) = self.stop() {
                    tracing::error!("{}: unmount on signal failed: {e}", self.root.display());
                    result = Err(e);
                }
            }
            if waiter.join().is_err() {
                tracing::error!("{}: the waiting thread panicked", self.root.display());
            }
            result
        })
    }

    fn serving(&self) -> MutexGuard<'_, Serving> {
        // Every update is one assignment: a poisoned lock holds a whole state.
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take the session to join, if nobody has (moves Running to Joining).
    fn take_session(&self) -> Option<Session> {
        let mut serving = self.serving();
        match std::mem::replace(&mut *serving, Serving::Joining) {
            Serving::Running(session) => Some(session),
            other => {
                *serving = other;
                None
            }
        }
    }

    /// Join the workers of the session this thread took, stop, tell waiters.
    fn join(&self, session: Session) {
        session.join();
        self.virt.stop();
        *self.serving() = Serving::Ended;
        self.ended.notify_all();
    }

    /// Wait until the thread that took the session has joined it.
    fn wait_ended(&self) {
        let serving = self.serving();
        let _ended = self
            .ended
            .wait_while(serving, |s| !matches!(s, Serving::Ended))
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Unmount the root, lazily if it is busy; a root no longer mounted is
    /// fine (another thread or an outside `umount` was first).
    fn unmount_root(&self) -> std::io::Result<()> {
        prjfs_fuse::mount::unmount(&self.root, false)
            .or_else(|_| prjfs_fuse::mount::unmount(&self.root, true))
            .or_else(|e| {
                if prjfs_fuse::mount::is_mounted(&self.root, FS_TYPE).unwrap_or(true) {
                    Err(e)
                } else {
                    Ok(())
                }
            })
    }
}

/// A `pollfd` waiting for input on `fd`.
fn poll_fd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

impl Drop for VirtualizationInstance {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("{}: unmount failed: {e}", self.root.display());
        }
    }
}

/// Mountpoints of every prjfs mount visible to this process.
pub fn instance_mounts() -> std::io::Result<Vec<PathBuf>> {
    Ok(prjfs_fuse::mount::mounts_of_type(FS_TYPE)?
        .into_iter()
        .map(|m| m.mountpoint)
        .collect())
}

/// Unmount a prjfs root (its daemon then stops). Fails with `EBUSY` while in use.
pub fn unmount(root: &Path) -> std::io::Result<()> {
    prjfs_fuse::mount::unmount(root, false)
}
