//! Moving a mounted git projection to another commit (ProjFS's view change,
//! as VFS for Git does it): compute the paths that differ between the two
//! trees, make the provider answer from the new commit, then update or delete
//! every local item under those paths, depth first, through the instance's
//! provider-driven calls, without any flag.
//!
//! Invariants:
//! * Items the user changed (dirty, full, tombstones, read-only) are never
//!   touched: the instance refuses, and the path is reported as a conflict.
//! * Everything else follows the new commit: unchanged placeholders stay (their
//!   ContentId is the same), changed ones are replaced or removed, names only
//!   in the new commit show at the next lookup or listing (the instance drops
//!   the kernel's cached listings of the directories it changed).
//! * Directories placed as directories in both commits stay where they are (a
//!   client may be in one); their listings follow the view.

use std::path::{Path, PathBuf};

use prjfs::{InstanceError, InstanceHandle, UpdateFlags};

use super::tree::{self, Change};
use super::{GitError, GitProvider, View};

/// What a switch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwitchReport {
    /// Paths that differ between the two commits.
    pub changed: usize,
    /// Local items replaced or removed.
    pub applied: usize,
    /// Paths kept as the user changed them (one per refused item).
    pub conflicts: Vec<PathBuf>,
}

impl GitProvider {
    /// Move the projection behind `instance` from the current commit to
    /// `rev`'s. The provider answers from the new commit from the moment the
    /// local items begin to change.
    pub fn switch(
        &self,
        instance: &InstanceHandle,
        rev: &str,
    ) -> Result<(View, SwitchReport), GitError> {
        let repo = self.repo();
        let to = self.resolve(rev)?;
        let from = self.view();
        let changes = tree::diff(&self.inner.trees, &repo, from.tree, to.tree)?;
        self.set_view(to.clone());
        let mut report = SwitchReport {
            changed: changes.len(),
            ..Default::default()
        };
        for change in &changes {
            self.apply(instance, change, &mut report);
        }
        Ok((to, report))
    }

    fn apply(&self, instance: &InstanceHandle, change: &Change, report: &mut SwitchReport) {
        let path = &change.path;
        let was_dir = change.old.as_ref().is_some_and(|e| e.kind.is_dir());
        let is_dir = change.new.as_ref().is_some_and(|e| e.kind.is_dir());
        // What the old commit had below a directory goes first, depth first.
        if was_dir && !is_dir {
            self.delete_below(instance, path, report);
        }
        let result = match &change.new {
            None => instance.delete_file(path, UpdateFlags::NONE),
            Some(_) if is_dir && was_dir => Ok(()),
            Some(_) => match self.placeholder_info(path) {
                Ok(info) => instance.update_file_if_needed(path, &info, UpdateFlags::NONE),
                Err(e) => Err(InstanceError::InvalidRequest(format!("{e}"))),
            },
        };
        let result = match result {
            // A directory the old commit had, holding items the user kept
            // (reported as conflicts themselves): it stays.
            Err(InstanceError::DirectoryNotEmpty(_)) if change.new.is_none() => {
                self.delete_below(instance, path, report);
                instance.delete_file(path, UpdateFlags::NONE)
            }
            r => r,
        };
        note(path, result, report);
    }

    /// Delete what is placed below the directory `dir`, depth first (a
    /// tombstone there is the user's change: its refusal is a conflict).
    fn delete_below(&self, instance: &InstanceHandle, dir: &Path, report: &mut SwitchReport) {
        match instance.placed_below(dir) {
            Ok(placed) => {
                for (path, _) in placed {
                    let r = instance.delete_file(&path, UpdateFlags::NONE);
                    note(&path, r, report);
                }
            }
            Err(e) => tracing::warn!("switch: listing {}: {e}", dir.display()),
        }
    }
}

fn note(path: &Path, result: Result<(), InstanceError>, report: &mut SwitchReport) {
    crate::applied::note(
        "switch",
        path,
        result,
        &mut report.applied,
        &mut report.conflicts,
    );
}
