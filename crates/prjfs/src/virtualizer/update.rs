//! Provider-driven changes on a live root (ProjFS's UpdateFileIfNeeded,
//! DeleteFile, MarkDirectoryAsPlaceholder, a proactive WritePlaceholderInfo),
//! and what the kernel must forget for clients to see them.
//!
//! Invariants:
//! * The layer changes first ([`crate::layer::update`]); then a name the
//!   kernel holds is detached from its node, so the next lookup makes a new
//!   node (a new kernel inode: no cached pages or attributes, no passthrough
//!   backing file of the old content, a new type if it changed). Handles open
//!   on the old node keep what they had open, as after a rename over it.
//! * The kernel is told from the notifier thread, never from the calling one
//!   (the kernel may need a directory lock that a request waiting for this
//!   provider holds). A call from outside the library's own threads then
//!   waits (at most [`FLUSH_WAIT`]) until the notifier has told the kernel, so
//!   a client's next `stat`, `open` or `ls` sees the new view.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Changed, Inner};
use crate::layer::UpdateOutcome;
use crate::provider::InstanceError;
use crate::types::{PlaceholderInfo, UpdateFlags, VersionInfo};

/// How long a provider-driven change waits for the kernel to be told.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Counts for `prjfs status`.
#[derive(Default)]
pub(crate) struct UpdateCounters {
    applied: AtomicU64,
    refused: AtomicU64,
}

impl UpdateCounters {
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn layer_err(e: crate::layer::LayerError) -> InstanceError {
    match e {
        crate::layer::LayerError::NotEmpty { path } => InstanceError::DirectoryNotEmpty(path),
        crate::layer::LayerError::InvalidArgument(reason)
        | crate::layer::LayerError::InvalidState { reason, .. } => {
            InstanceError::InvalidRequest(reason)
        }
        e => InstanceError::Io(std::io::Error::from_raw_os_error(e.errno())),
    }
}

impl Inner {
    fn check_running(&self) -> Result<(), InstanceError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(InstanceError::Stopped);
        }
        Ok(())
    }

    /// UpdateFileIfNeeded of `rel` (relative to the root).
    pub(crate) fn update_file(
        &self,
        rel: &Path,
        info: &PlaceholderInfo,
        flags: UpdateFlags,
    ) -> Result<(), InstanceError> {
        self.check_running()?;
        let outcome = self
            .layer
            .update_item(rel, info, flags)
            .map_err(layer_err)?;
        self.after_change(rel, outcome)
    }

    /// DeleteFile of `rel`.
    pub(crate) fn delete_file(&self, rel: &Path, flags: UpdateFlags) -> Result<(), InstanceError> {
        self.check_running()?;
        let outcome = self.layer.delete_item(rel, flags).map_err(layer_err)?;
        self.after_change(rel, outcome)
    }

    /// MarkDirectoryAsPlaceholder of the directory `rel` inside the root.
    pub(crate) fn mark_directory(
        &self,
        rel: &Path,
        version: &VersionInfo,
    ) -> Result<(), InstanceError> {
        self.check_running()?;
        self.layer
            .mark_dir_placeholder(rel, version)
            .map_err(layer_err)?;
        // Its listings change: they now merge the provider's enumeration.
        if let Some(node) = self.nodes.find_path(rel) {
            self.tell_kernel(Changed::Listing(node));
            self.flush_kernel();
        }
        Ok(())
    }

    /// A placeholder was written at `rel`: when no GetPlaceholderInfo for it is
    /// in progress (written proactively), the kernel's listing of its parent
    /// and the negative path cache must learn of it.
    pub(crate) fn placeholder_written(&self, rel: &Path) {
        if self.asking.lock().expect("asking lock").contains_key(rel) {
            return;
        }
        self.negative.lock().expect("negative lock").remove(rel);
        let parent = rel.parent().unwrap_or(Path::new(""));
        if let Some(node) = self.nodes.find_path(parent) {
            self.tell_kernel(Changed::Listing(node));
            self.flush_kernel();
        }
    }

    /// After the layer applied (or refused) a change at `rel`: count it, and
    /// make the kernel forget the name and its directory's listing.
    fn after_change(&self, rel: &Path, outcome: UpdateOutcome) -> Result<(), InstanceError> {
        match outcome {
            UpdateOutcome::Refused(causes) => {
                self.updates.refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "provider change of {} refused: local state {causes}",
                    rel.display()
                );
                return Err(InstanceError::UpdateFailed(causes));
            }
            UpdateOutcome::Unchanged => return Ok(()),
            UpdateOutcome::Replaced | UpdateOutcome::Removed => {
                self.updates.applied.fetch_add(1, Ordering::Relaxed);
            }
            UpdateOutcome::Virtual => {}
        }
        // A name the provider now has may have been answered "not found".
        self.negative.lock().expect("negative lock").remove(rel);
        let parent_path = rel.parent().unwrap_or(Path::new(""));
        let (Some(parent), Some(name)) = (self.nodes.find_path(parent_path), rel.file_name())
        else {
            // The kernel holds nothing of the directory: nothing to forget.
            return Ok(());
        };
        if self.nodes.find(parent, name).is_some() {
            self.nodes.detach(parent, name);
        }
        self.tell_kernel(Changed::Entry {
            parent,
            name: name.to_os_string(),
        });
        self.flush_kernel();
        Ok(())
    }

    fn tell_kernel(&self, change: Changed) {
        if let Some(f) = self.changed.get() {
            f(change);
        }
    }

    /// Wait until the notifier thread has told the kernel everything queued
    /// so far, unless this is one of the library's own threads (a request
    /// or callback thread may be what the kernel waits for).
    fn flush_kernel(&self) {
        let Some(f) = self.changed.get() else {
            return;
        };
        let own = std::thread::current().name().is_some_and(|n| {
            n.starts_with("prjfs-worker") || n.starts_with("prjfs-callback") || n == "prjfs-notify"
        });
        if own {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        f(Changed::Flush(tx));
        if rx.recv_timeout(FLUSH_WAIT).is_err() {
            tracing::debug!("the kernel was not told of a provider change within {FLUSH_WAIT:?}");
        }
    }
}
