//! Refresh: list again what is placed, make the new listings the view, and
//! apply what changed through the instance's provider-driven calls (no flag),
//! depth first.
//!
//! Invariants:
//! * Only directories that hold placed items are listed again (one LIST each,
//!   paged); a directory never placed needs nothing, its next listing is new.
//! * Items the user changed are never touched: dirty, full and read-only items
//!   and tombstones are refused by the instance and reported as conflicts; a
//!   full item the store does not have (a local creation) is left alone
//!   without a report.
//! * A name whose entry is the same in the old and the new listing is not
//!   touched; after a remount (no old listing) every placed item goes
//!   through the instance, which compares ContentIds.
//! * A placeholder whose ETag is unchanged stays as it is (hydrated or not);
//!   a changed one becomes a placeholder of the new version; one whose object
//!   is gone is removed. Names that appear or vanish without having been
//!   placed still go through the instance, so that the kernel drops the
//!   directory's cached listing.
//! * The new listing of a directory is the view before its items change, so a
//!   lookup racing the refresh sees the new view.

use std::path::{Path, PathBuf};

use prjfs::{FileKind, InstanceError, InstanceHandle, OnDiskState, UpdateFlags};

use super::listing::Entry;
use super::S3Provider;

/// What a refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Directories listed again.
    pub listed: usize,
    /// Local items replaced or removed, and names shown or hidden.
    pub applied: usize,
    /// Paths kept as the user changed them (one per refused item).
    pub conflicts: Vec<PathBuf>,
    /// Directories that could not be listed (logged).
    pub failed: Vec<PathBuf>,
}

impl S3Provider {
    /// Refresh the directory `rel` and every placed directory below it (a
    /// file: its directory, not below). Must not run on the provider's own
    /// runtime threads: it blocks on them ([`S3Provider::refresh_blocking`]).
    pub async fn refresh(&self, instance: &InstanceHandle, rel: &Path) -> RefreshReport {
        let mut report = RefreshReport::default();
        let mut todo = match self.entry(rel).await {
            Ok(Entry::File { .. }) => vec![(rel.parent().unwrap_or(Path::new("")).into(), false)],
            _ => vec![(rel.to_path_buf(), true)],
        };
        while let Some((dir, recursive)) = todo.pop() {
            for sub in self.refresh_dir(instance, &dir, &mut report).await {
                if recursive {
                    todo.push((sub, true));
                }
            }
        }
        report
    }

    /// [`S3Provider::refresh`] from a thread outside any runtime.
    pub fn refresh_blocking(&self, instance: &InstanceHandle, rel: &Path) -> RefreshReport {
        self.inner
            .runtime
            .as_ref()
            .expect("the provider's runtime lives as long as it")
            .block_on(self.refresh(instance, rel))
    }

    /// Refresh the items of one directory; returns its placed subdirectories
    /// that are still directories.
    async fn refresh_dir(
        &self,
        instance: &InstanceHandle,
        rel: &Path,
        report: &mut RefreshReport,
    ) -> Vec<PathBuf> {
        let placed = match instance.placed_children(rel) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("s3 refresh: {}: {e}", rel.display());
                return Vec::new();
            }
        };
        let new = match self.list_now(rel).await {
            Ok(d) => d,
            Err(_) => {
                report.failed.push(rel.to_path_buf());
                return Vec::new();
            }
        };
        report.listed += 1;
        let old = self.inner.listings.get(rel);
        let new = self.inner.listings.put(rel, new, true);
        let mut subdirs = Vec::new();
        for item in &placed {
            let path = rel.join(&item.name);
            if item.state.contains(OnDiskState::TOMBSTONE) {
                continue;
            }
            let was_dir = item.kind == FileKind::Directory;
            let result = match new.get(&item.name) {
                None if item.state.contains(OnDiskState::FULL) && !was_dir => continue,
                None => {
                    if was_dir {
                        self.inner.listings.forget_below(&path);
                        delete_below(instance, &path, report);
                    }
                    instance.delete_file(&path, UpdateFlags::NONE)
                }
                Some(Entry::Dir) if was_dir => {
                    subdirs.push(path);
                    continue;
                }
                // Unchanged since the listing its placeholder came from.
                Some(entry) if old.as_ref().and_then(|o| o.get(&item.name)) == Some(entry) => {
                    continue
                }
                Some(entry) => {
                    if was_dir {
                        self.inner.listings.forget_below(&path);
                        delete_below(instance, &path, report);
                    }
                    instance.update_file_if_needed(&path, &self.info(entry), UpdateFlags::NONE)
                }
            };
            note(&path, result, report);
        }
        // Names never placed: only the kernel's cached listing needs to learn.
        if let Some(old) = old {
            let placed_names: std::collections::HashSet<_> =
                placed.iter().map(|p| p.name.as_os_str()).collect();
            for (name, entry) in new.iter() {
                if !placed_names.contains(name.as_os_str()) && old.get(name) != Some(entry) {
                    let path = rel.join(name);
                    let r =
                        instance.update_file_if_needed(&path, &self.info(entry), UpdateFlags::NONE);
                    note(&path, r, report);
                }
            }
            for name in old.keys() {
                if !placed_names.contains(name.as_os_str()) && !new.contains_key(name) {
                    let path = rel.join(name);
                    note(
                        &path,
                        instance.delete_file(&path, UpdateFlags::NONE),
                        report,
                    );
                }
            }
        }
        subdirs
    }
}

/// Delete what is placed below the directory `dir`, depth first; tombstones
/// stay (the user deleted what the bucket no longer has either).
fn delete_below(instance: &InstanceHandle, dir: &Path, report: &mut RefreshReport) {
    match instance.placed_below(dir) {
        Ok(placed) => {
            for (path, item) in placed {
                if !item.state.contains(OnDiskState::TOMBSTONE) {
                    let r = instance.delete_file(&path, UpdateFlags::NONE);
                    note(&path, r, report);
                }
            }
        }
        Err(e) => tracing::warn!("s3 refresh: listing {}: {e}", dir.display()),
    }
}

fn note(path: &Path, result: Result<(), InstanceError>, report: &mut RefreshReport) {
    crate::applied::note(
        "s3 refresh",
        path,
        result,
        &mut report.applied,
        &mut report.conflicts,
    );
}
