//! `prjfs mount ARCHIVE ROOT`: where the archive's index lives
//! (`ROOT/.prjfs/archive`), and building it in `prjfs mount` itself, with a
//! progress bar on a terminal, before the daemon starts and reuses it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prjfs_providers::archive::{ArchiveError, ArchiveProvider, Progress};

/// The state directory of an archive projection in `root`, refusing a root
/// that is neither empty nor a prjfs root (nothing is written into it then).
pub fn state_dir(root: &Path) -> Result<PathBuf, String> {
    let hidden = root.join(prjfs::layer::HIDDEN_DIR);
    let non_empty = std::fs::read_dir(root)
        .map_err(|e| format!("root {}: {e}", root.display()))?
        .next()
        .is_some();
    if non_empty && !hidden.is_dir() {
        return Err(format!(
            "root {}: is not empty and not a prjfs root (it has no {} directory)",
            root.display(),
            prjfs::layer::HIDDEN_DIR
        ));
    }
    Ok(hidden.join("archive"))
}

/// Open `archive` for projecting into `root`, building or reusing its index.
pub fn open(
    archive: &Path,
    root: &Path,
    progress: Option<Progress>,
) -> Result<ArchiveProvider, String> {
    let dir = state_dir(root)?;
    let hidden = root.join(prjfs::layer::HIDDEN_DIR);
    let new_root = !hidden.exists();
    let opened = ArchiveProvider::open(archive, &dir, progress);
    if opened.is_err() && new_root {
        // A refused mount leaves an empty root as it found it.
        let _ = std::fs::remove_dir_all(&hidden);
    }
    opened.map_err(|e| match e {
        // A file SOURCE was either meant as an archive or mistaken for a directory.
        ArchiveError::NotAnArchive => {
            "not a directory, nor an archive (tar, tar.gz, tar.zst or zip, recognised by content)"
                .to_string()
        }
        e => e.to_string(),
    })
}

/// Build (or check) the index before the daemon starts: a progress bar with
/// bytes on a terminal, one summary line when an index was built.
pub fn prepare(archive: &Path, root: &Path) -> Result<(), String> {
    let mounted = prjfs::instance_mounts().unwrap_or_default();
    if mounted.iter().any(|m| m == root) {
        return Err(format!(
            "root {}: already a mounted prjfs root",
            root.display()
        ));
    }
    if ArchiveProvider::index_is_current(archive, &state_dir(root)?) {
        // The daemon loads (and fully checks) the stored index itself.
        return Ok(());
    }
    let started = Instant::now();
    let bar = crate::byte_bar("indexing {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})");
    let progress: Option<Progress> = bar.clone().map(|bar| {
        Box::new(move |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        }) as Progress
    });
    let provider =
        open(archive, root, progress).map_err(|e| format!("source {}: {e}", archive.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = provider.report();
    if !report.reused {
        eprintln!(
            "prjfs: indexed {} ({}): {} members in {:.2} s",
            archive.display(),
            report.format.name(),
            report.members,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Say what a damaged archive's index could not read, on every mount (the
/// daemon calls this once it has the provider; its early lines reach the
/// terminal of `prjfs mount`).
pub fn warn_damage(archive: &Path, provider: &ArchiveProvider) {
    if let Some(damage) = &provider.report().damage {
        eprintln!(
            "prjfs: warning: {}: {damage}; members not read whole give EIO",
            archive.display()
        );
    }
}

/// The archive provider decodes blocks of a few hundred KiB on many threads.
/// glibc raises its mmap threshold after the first such buffer is freed and
/// then keeps them in its arenas, which grew the daemon past 120 MB in `prjfs
/// bench archive`; a fixed threshold (which also stops the dynamic one)
/// returns them to the system at once. (The daemon caps the arenas at two for
/// every source.)
pub fn limit_malloc_caches() {
    // SAFETY: mallopt only changes allocator parameters; called before the
    // daemon's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
