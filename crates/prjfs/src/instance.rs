//! Starting and stopping a virtualization instance: check the root, open the layer,
//! mount, run the kernel channel's worker threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prjfs_fuse::mount::{Mount, MountOptions};
use prjfs_fuse::session::{Session, SessionConfig};

use crate::fuse_fs::{FuseFs, OpenStats};
use crate::layer::{Layer, RootMarker};
use crate::provider::{InstanceHandle, Provider};
use crate::types::Collation;
use crate::virtualizer::{Virtualizer, VirtualizerOptions, VirtualizerStats};

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
    /// What the root must be a projection of. A root already marked for another
    /// source is refused; an unmarked root must be empty.
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
    /// The root is missing or not a directory.
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
    /// Mounting failed.
    #[error("mounting {path} failed: {source}")]
    Mount {
        /// The root.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running virtualization instance. Dropping it unmounts.
pub struct VirtualizationInstance {
    virt: Virtualizer,
    fs: Arc<FuseFs>,
    session: std::sync::Mutex<Option<Session>>,
    root: PathBuf,
    threads: (usize, usize),
}

impl VirtualizationInstance {
    /// Project `provider` into `root` and serve it until stopped or unmounted.
    pub fn start(
        root: &Path,
        provider: Arc<dyn Provider>,
        options: StartOptions,
    ) -> Result<Self, StartError> {
        let bad = |reason: String| StartError::BadRoot {
            path: root.to_path_buf(),
            reason,
        };
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
            return Err(bad(
                "is not empty and not a prjfs root; use an empty directory".into(),
            ));
        }
        let layer = Layer::open(&root)?;
        match (layer.root_marker()?, &options.marker) {
            (Some(found), Some(want)) if found != *want => {
                return Err(bad(format!(
                    "is the root of another projection (source {}, provider {}); use an empty directory",
                    found.source, found.provider
                )))
            }
            (None, _) if !layer.is_empty_root()? => {
                return Err(bad("is not empty and not a prjfs root; use an empty directory".into()))
            }
            (None, Some(want)) => layer.set_root_marker(want)?,
            _ => {}
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
        if !options.passthrough {
            config.wanted_flags &= !prjfs_fuse::abi::FUSE_PASSTHROUGH;
        }
        let fs = Arc::new(
            FuseFs::with_passthrough(virt.clone(), options.passthrough)
                .with_listing_cache(options.cache_listings),
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
            session: std::sync::Mutex::new(Some(session)),
            root,
            threads: (pool, concurrent),
        })
    }

    /// The handle providers answer through.
    pub fn handle(&self) -> InstanceHandle {
        self.virt.handle()
    }

    /// The virtualizer (state queries, counters).
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

    /// How file opens were answered (passthrough or through the daemon).
    pub fn open_stats(&self) -> OpenStats {
        self.fs.open_stats()
    }

    /// Block until the mount goes away (`prjfs unmount`, `umount`, `fusermount3 -u`).
    pub fn wait(&self) {
        let session = self.session.lock().expect("session lock").take();
        if let Some(s) = session {
            s.join();
        }
        self.virt.stop();
    }

    /// Unmount and wait for the workers. Pending commands are cancelled.
    pub fn stop(&self) -> std::io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> std::io::Result<()> {
        let Some(session) = self.session.lock().expect("session lock").take() else {
            return Ok(());
        };
        // Answer what is pending first so unmount is not busy because of us.
        self.virt.stop();
        let r = prjfs_fuse::mount::unmount(&self.root, false)
            .or_else(|_| prjfs_fuse::mount::unmount(&self.root, true));
        session.join();
        r
    }
}

impl Drop for VirtualizationInstance {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
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
