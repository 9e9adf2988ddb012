//! Counting the results of provider-driven changes, as git `switch` and the
//! s3 `refresh` report them: applied, or kept as the user changed them (a
//! conflict, listed once per path).

use std::path::{Path, PathBuf};

use prjfs::InstanceError;

/// Count `result` of an update or delete at `path`: applied, a conflict
/// (refused because of a local change, or failed: logged with `what`), or
/// nothing for a directory kept because of conflicts below it (reported
/// themselves).
pub(crate) fn note(
    what: &str,
    path: &Path,
    result: Result<(), InstanceError>,
    applied: &mut usize,
    conflicts: &mut Vec<PathBuf>,
) {
    match result {
        Ok(()) => *applied += 1,
        Err(InstanceError::UpdateFailed(_)) => {
            if !conflicts.iter().any(|c| c == path) {
                conflicts.push(path.to_path_buf());
            }
        }
        Err(InstanceError::DirectoryNotEmpty(_)) => {}
        Err(e) => {
            tracing::warn!("{what}: {}: {e}", path.display());
            conflicts.push(path.to_path_buf());
        }
    }
}
