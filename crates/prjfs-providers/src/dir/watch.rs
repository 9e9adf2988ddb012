//! A live mirror: follow changes in the source directory through the
//! provider-driven calls of the instance (`prjfs mount --watch`).
//!
//! inotify (through the `notify` crate) reports created, modified, removed and
//! renamed source paths; a thread gathers them for [`SETTLE`], then applies each
//! changed path once:
//! * still in the source: [`InstanceHandle::update_file_if_needed`] with its
//!   new placeholder info (a virtual item needs nothing but the kernel
//!   forgetting the name and the listing of its directory, which the call
//!   does; a directory that still exists keeps its local content, its
//!   listing merges the source's at the next `ls`);
//! * gone from the source: [`InstanceHandle::delete_file`] of everything
//!   placed below it, depth first, then of the path itself.
//!
//! No flag is ever passed: an item the user changed in the root (dirty, full,
//! a tombstone, read-only) is never overwritten; the instance refuses, logs
//! and counts it (`prjfs status`: updates refused), and the watcher goes on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use prjfs::{Collation, FileKind, InstanceError, InstanceHandle, ProviderError, UpdateFlags};

use super::store;

/// How long the watcher waits for more events after one arrived, so that a
/// file being written is applied once, not once per write.
pub const SETTLE: Duration = Duration::from_millis(50);

/// What the watcher did.
#[derive(Debug, Default)]
pub struct WatchCounters {
    /// Source paths applied (each path once per batch).
    pub paths: AtomicU64,
    /// Calls the instance refused because of local changes.
    pub refused: AtomicU64,
    /// Calls that failed otherwise (logged).
    pub failed: AtomicU64,
}

/// A running watcher; stops when dropped.
pub struct SourceWatcher {
    watcher: Option<RecommendedWatcher>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<WatchCounters>,
}

impl SourceWatcher {
    /// Watch `source` (recursively) and apply its changes to the projection
    /// behind `instance`, whose provider projects `source` under `collation`.
    pub fn start(
        source: &Path,
        collation: Collation,
        instance: InstanceHandle,
    ) -> std::io::Result<SourceWatcher> {
        let source = source.canonicalize()?;
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).map_err(io_err)?;
        watcher
            .watch(&source, RecursiveMode::Recursive)
            .map_err(io_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(WatchCounters::default());
        let applier = Applier {
            source,
            collation,
            instance,
            counters: counters.clone(),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("prjfs-watch".into())
            .spawn(move || applier.run(rx, &stop2))?;
        Ok(SourceWatcher {
            watcher: Some(watcher),
            stop,
            thread: Some(thread),
            counters,
        })
    }

    /// What the watcher did so far.
    pub fn counters(&self) -> &WatchCounters {
        &self.counters
    }
}

impl Drop for SourceWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Dropping the watcher closes the event channel, which ends the thread.
        self.watcher.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn io_err(e: notify::Error) -> std::io::Error {
    match e.kind {
        notify::ErrorKind::Io(e) => e,
        _ => std::io::Error::other(e.to_string()),
    }
}

struct Applier {
    source: PathBuf,
    collation: Collation,
    instance: InstanceHandle,
    counters: Arc<WatchCounters>,
}

impl Applier {
    fn run(&self, rx: Receiver<notify::Result<notify::Event>>, stop: &AtomicBool) {
        loop {
            let first = match rx.recv() {
                Ok(ev) => ev,
                Err(_) => return,
            };
            let mut changed = BTreeSet::new();
            self.collect(first, &mut changed);
            loop {
                match rx.recv_timeout(SETTLE) {
                    Ok(ev) => self.collect(ev, &mut changed),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            for rel in changed {
                if !self.apply(&rel) {
                    return;
                }
            }
        }
    }

    /// Add the source paths an event names (relative to the source).
    fn collect(&self, ev: notify::Result<notify::Event>, changed: &mut BTreeSet<PathBuf>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("watching {}: {e}", self.source.display());
                return;
            }
        };
        let relevant = match ev.kind {
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) | EventKind::Other => false,
            EventKind::Any => true,
        };
        if !relevant {
            return;
        }
        for p in ev.paths {
            if let Ok(rel) = p.strip_prefix(&self.source) {
                if !rel.as_os_str().is_empty() {
                    changed.insert(rel.to_path_buf());
                }
            }
        }
    }

    /// Apply one changed path; `false` once the instance has stopped.
    fn apply(&self, rel: &Path) -> bool {
        self.counters.paths.fetch_add(1, Ordering::Relaxed);
        let result = match store::placeholder_info(&self.source, rel, self.collation) {
            Ok((info, _)) if info.basic.kind == FileKind::Directory => {
                // A directory placed as one stays (a client may be in it):
                // its listing merges the source's, and the changes of its
                // children come as their own events. Anything else at the
                // name (a file that became a directory, or nothing placed)
                // is updated.
                match self.placed_kind(rel) {
                    Ok(Some(FileKind::Directory)) => Ok(()),
                    Ok(_) => self
                        .instance
                        .update_file_if_needed(rel, &info, UpdateFlags::NONE),
                    Err(e) => Err(e),
                }
            }
            Ok((info, _)) => self
                .instance
                .update_file_if_needed(rel, &info, UpdateFlags::NONE),
            Err(ProviderError::NotFound) => self.delete_tree(rel),
            Err(e) => {
                tracing::debug!("watch: {}: {e}", rel.display());
                return true;
            }
        };
        self.note(rel, result)
    }

    /// The kind of what is placed at `rel`, if anything (tombstones included).
    fn placed_kind(&self, rel: &Path) -> Result<Option<FileKind>, InstanceError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Some(name) = rel.file_name() else {
            return Ok(None);
        };
        Ok(self
            .instance
            .placed_children(parent)?
            .into_iter()
            .find(|c| c.name == name && !c.state.contains(prjfs::OnDiskState::TOMBSTONE))
            .map(|c| c.kind))
    }

    /// Delete what is placed below `rel`, depth first, then `rel`.
    fn delete_tree(&self, rel: &Path) -> Result<(), InstanceError> {
        for (path, _) in self.instance.placed_below(rel)? {
            let r = self.instance.delete_file(&path, UpdateFlags::NONE);
            if !self.note(&path, r) {
                return Err(InstanceError::Stopped);
            }
        }
        self.instance.delete_file(rel, UpdateFlags::NONE)
    }

    /// Count and log a call's result; `false` once the instance has stopped.
    fn note(&self, rel: &Path, result: Result<(), InstanceError>) -> bool {
        match result {
            Ok(()) => true,
            Err(InstanceError::Stopped) => false,
            Err(InstanceError::UpdateFailed(causes)) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "watch: {} changed in the source, kept as changed in the root ({causes})",
                    rel.display()
                );
                true
            }
            // A directory holding items the user kept (its delete is refused
            // with them).
            Err(InstanceError::DirectoryNotEmpty(_)) => true,
            Err(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("watch: {}: {e}", rel.display());
                true
            }
        }
    }
}
