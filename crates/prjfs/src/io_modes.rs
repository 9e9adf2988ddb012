//! The kernel's io mode of each open node (passthrough with one backing id, or
//! caching), and the open answers that keep it consistent.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use prjfs_fuse::{abi, Notifier};

use crate::fuse_fs::OpenStats;
use crate::virtualizer::{Opened, Virtualizer};

/// The kernel's io mode of each node with open files, as far as our answers set
/// it (fs/fuse/iomode.c): an inode is either in caching mode (opens answered
/// without `FOPEN_PASSTHROUGH`, served by the daemon) or in passthrough mode
/// (opens answered with `FOPEN_PASSTHROUGH`, all with the same backing file),
/// never both: a passthrough open of an inode in caching mode fails with
/// `ETXTBSY`, a caching open of one in passthrough mode with `EINVAL`, another
/// backing file with `EBUSY`, and the client sees `EIO`. So a node with caching
/// opens gets caching opens until they are released, and a node with
/// passthrough opens gets passthrough opens with the same backing id.
///
/// Counts are raised before the answer is written and lowered at RELEASE,
/// which the kernel sends after it left the mode, so they never fall below the
/// kernel's.
pub(crate) struct IoModes {
    /// Passthrough asked for (StartOptions::passthrough).
    pub(crate) wanted: bool,
    /// Negotiated, and not refused by `FUSE_DEV_IOC_BACKING_OPEN` with `EPERM`.
    pub(crate) enabled: AtomicBool,
    pub(crate) channel: OnceLock<Notifier>,
    pub(crate) state: Mutex<IoState>,
}

#[derive(Default)]
pub(crate) struct IoState {
    pub(crate) stats: OpenStats,
    nodes: HashMap<u64, NodeIo>,
    /// Open handle → (node, answered with passthrough).
    handles: HashMap<u64, (u64, bool)>,
}

impl IoState {
    /// Count `fh` as a passthrough handle of `node` with backing `id`.
    fn passthrough(&mut self, node: u64, fh: u64, id: u32) -> abi::FuseOpenOut {
        self.stats.passthrough += 1;
        self.handles.insert(fh, (node, true));
        abi::FuseOpenOut {
            fh,
            open_flags: abi::FOPEN_PASSTHROUGH,
            backing_id: id as i32,
        }
    }

    /// Count the handle as a caching-mode handle of `node`.
    fn caching(&mut self, node: u64, opened: &Opened) -> abi::FuseOpenOut {
        self.nodes.entry(node).or_default().cached += 1;
        self.stats.daemon += 1;
        self.handles.insert(opened.fh, (node, false));
        // The kernel may keep its page cache across opens only for projected
        // content, which changes only through this node. A full file may also
        // change through another name (a hard link is another kernel inode with
        // its own cache).
        abi::FuseOpenOut {
            fh: opened.fh,
            open_flags: if opened.placeholder {
                abi::FOPEN_KEEP_CACHE
            } else {
                0
            },
            backing_id: 0,
        }
    }
}

#[derive(Default)]
struct NodeIo {
    /// Handles answered in caching mode.
    cached: u32,
    /// The backing id shared by the node's passthrough handles, and how many.
    backing: Option<(u32, u32)>,
}

impl IoModes {
    /// Nothing open yet; passthrough `wanted` (enabled once INIT grants it).
    pub(crate) fn new(wanted: bool) -> Self {
        Self {
            wanted,
            enabled: AtomicBool::new(false),
            channel: OnceLock::new(),
            state: Mutex::new(IoState::default()),
        }
    }

    /// The `fuse_open_out` for a handle just opened on `node`, with the handle
    /// counted in its node's mode.
    pub(crate) fn open_out(
        &self,
        node: u64,
        opened: &Opened,
        virt: &Virtualizer,
    ) -> abi::FuseOpenOut {
        {
            let mut guard = self.state.lock().expect("io lock");
            let st = &mut *guard;
            let entry = st.nodes.entry(node).or_default();
            if let Some((id, users)) = entry.backing.as_mut() {
                *users += 1;
                let id = *id;
                return st.passthrough(node, opened.fh, id);
            }
            let try_passthrough = entry.cached == 0
                && opened.local
                && !opened.observe_writes
                && self.enabled.load(Ordering::Relaxed);
            if !try_passthrough {
                return st.caching(node, opened);
            }
        }
        // The file is opened and registered without the lock (I/O); another open
        // of the node may decide meanwhile, and then its mode wins.
        let mut refused = false;
        let registered = match virt.local_file(opened.fh) {
            Ok(f) => {
                let id = self.backing_open(&f);
                refused = id.is_none();
                id
            }
            Err(e) => {
                tracing::debug!("no local file for handle {}: errno {e}", opened.fh);
                None
            }
        };
        let mut guard = self.state.lock().expect("io lock");
        let st = &mut *guard;
        if refused {
            st.stats.refused += 1;
        }
        let entry = st.nodes.entry(node).or_default();
        let unused = match (entry.backing.as_mut(), registered) {
            (Some((id, users)), mine) => {
                *users += 1;
                let id = *id;
                self.backing_close_quiet(mine);
                return st.passthrough(node, opened.fh, id);
            }
            (None, Some(id)) if entry.cached == 0 => {
                entry.backing = Some((id, 1));
                return st.passthrough(node, opened.fh, id);
            }
            (None, mine) => mine,
        };
        self.backing_close_quiet(unused);
        st.caching(node, opened)
    }

    fn backing_close_quiet(&self, id: Option<u32>) {
        if let (Some(id), Some(channel)) = (id, self.channel.get()) {
            if let Err(e) = channel.backing_close(id) {
                tracing::debug!("FUSE_DEV_IOC_BACKING_CLOSE {id}: {e}");
            }
        }
    }

    /// Register `file` as a backing file; `None` (a caching open) when the
    /// kernel refuses.
    fn backing_open(&self, file: &std::fs::File) -> Option<u32> {
        let channel = self.channel.get()?;
        match channel.backing_open(file.as_fd()) {
            Ok(id) => Some(id),
            Err(e) => {
                match e.raw_os_error() {
                    // Not privileged (CAP_SYS_ADMIN), the connection has no
                    // passthrough after all, or the layer is on a stacked file
                    // system (ELOOP): the same for every file.
                    Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::ELOOP) => {
                        if self.enabled.swap(false, Ordering::Relaxed) {
                            tracing::warn!(
                                "FUSE passthrough refused ({e}); reads and writes go through the daemon"
                            );
                        }
                    }
                    _ => tracing::debug!("FUSE_DEV_IOC_BACKING_OPEN failed: {e}; no passthrough"),
                }
                None
            }
        }
    }

    /// A handle was released (or its open answer never reached the kernel).
    pub(crate) fn released(&self, fh: u64) {
        let mut st = self.state.lock().expect("io lock");
        let Some((node, passthrough)) = st.handles.remove(&fh) else {
            return;
        };
        let Some(entry) = st.nodes.get_mut(&node) else {
            return;
        };
        if passthrough {
            if let Some((id, users)) = entry.backing.as_mut() {
                *users -= 1;
                if *users == 0 {
                    // Closed under the lock: no open can pick the id up meanwhile.
                    if let Some(channel) = self.channel.get() {
                        if let Err(e) = channel.backing_close(*id) {
                            tracing::debug!("FUSE_DEV_IOC_BACKING_CLOSE {id}: {e}");
                        }
                    }
                    entry.backing = None;
                }
            }
        } else {
            entry.cached = entry.cached.saturating_sub(1);
        }
        if entry.cached == 0 && entry.backing.is_none() {
            st.nodes.remove(&node);
        }
    }
}
