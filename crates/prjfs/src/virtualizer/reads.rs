//! Reading an open file's bytes for a READ the daemon answers, with the
//! short answers that the kernel would take for the end of the file logged
//! (a rare short read was once seen in the crash test; these say whether the
//! daemon gave it).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::Errno;

/// [`read_at`] of content that should hold `want` bytes there (the item's
/// size when the read began): fewer is a short read, which the kernel takes
/// for the end of the file, so it is logged with where the bytes came from
/// (`how`) and the file's size (a rare short read was once seen in the crash
/// test). Nothing else changes: the answer is what the file holds.
pub(super) fn checked_read(
    file: &File,
    offset: u64,
    size: u32,
    want: u64,
    path: &Path,
    how: &str,
) -> Result<Vec<u8>, Errno> {
    let r = read_at(file, offset, size);
    if let Ok(data) = &r {
        if (data.len() as u64) < want {
            let on_disk = rustix::fs::fstat(file).map(|st| st.st_size);
            tracing::warn!(
                "{}: short read at {offset}: {} of {want} bytes from the file {how} (its size now: {on_disk:?}); a truncation since the read began explains it, nothing else does",
                path.display(),
                data.len()
            );
        }
    }
    r
}

/// [`read_at`] of an open file: an answer shorter than asked that ends
/// before the file does (by `fstat`, asked only then) is logged, as
/// [`checked_read`] logs one of a placeholder's content.
pub(super) fn read_in_place(
    file: &File,
    offset: u64,
    size: u32,
    node: u64,
) -> Result<Vec<u8>, Errno> {
    let r = read_at(file, offset, size);
    if let Ok(data) = &r {
        let end = offset + data.len() as u64;
        if data.len() < size as usize {
            if let Ok(st) = rustix::fs::fstat(file) {
                if (st.st_size as u64) > end {
                    tracing::warn!(
                        "node {node}: short read at {offset}: {} of {size} bytes from an open file of {} bytes",
                        data.len(),
                        st.st_size
                    );
                }
            }
        }
    }
    r
}

fn read_at(file: &File, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; size as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}
