//! A test-only hook that stops the placeholder log's writer in the middle of a
//! batch, so that a crash test can kill the daemon exactly there
//! (`crates/prjfs-cli/tests/crash_batch.rs`).
//!
//! It is off unless the environment variable [`HOLD_ENV`] names a FIFO when
//! the log is opened; only tests set it. When on, every batch write first
//! tries to open the FIFO for writing without blocking. With no reader (the
//! open fails, `ENXIO`) the batch is written as always. While a test holds the
//! FIFO open for reading, the batch write instead writes the batch only up to
//! the middle of its last entry (a torn tail, as a write cut short by a kill
//! leaves), writes one byte saying why the batch was being written, and then
//! waits forever with the store's lock held: lookups and listings that need
//! the store wait too, until the test kills the process.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The variable that enables the hook: the path of a FIFO.
pub(crate) const HOLD_ENV: &str = "PRJFS_TEST_HOLD_BATCH";

/// Why a batch is written; the byte the hook reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// The flusher's tick (`t`).
    Tick,
    /// 256 KiB pending (`f`).
    Full,
    /// A record's removal, written at once (`r`).
    Remove,
    /// A directory's records moved, written at once (`m`).
    Move,
    /// An explicit sync, a stop or the store's drop (`s`).
    Sync,
}

impl Why {
    fn byte(self) -> u8 {
        match self {
            Why::Tick => b't',
            Why::Full => b'f',
            Why::Remove => b'r',
            Why::Move => b'm',
            Why::Sync => b's',
        }
    }
}

/// The FIFO, when the hook is enabled.
pub(crate) fn from_env() -> Option<PathBuf> {
    std::env::var_os(HOLD_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// With a reader on `fifo`: write `pending` to `log` up to the middle of the
/// entry starting at `last_entry`, report `why`, and never return. Without
/// one, return at once.
pub(crate) fn hold_if_armed(
    fifo: &Path,
    log: &mut File,
    pending: &[u8],
    last_entry: usize,
    why: Why,
) {
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(fifo, flags, Mode::empty()) else {
        return;
    };
    // Every entry is at least 9 bytes (length, one body byte, CRC), so the
    // cut is strictly inside the last one.
    let cut = last_entry + (pending.len() - last_entry) / 2;
    let _ = log.write_all(&pending[..cut]);
    let _ = File::from(fd).write_all(&[why.byte()]);
    loop {
        std::thread::park();
    }
}
