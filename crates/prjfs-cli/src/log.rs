//! The daemon's log: one plain-text file per root, `ROOT/.prjfs/log/daemon.log`,
//! bounded in size by rotation, and created only when something is logged.
//!
//! The root is covered by the FUSE mount while the daemon runs, so the log is
//! reached through a directory fd on the root's hidden directory (see
//! [`prjfs::layer::Layer::hidden_dir`]), never by path. Until that fd exists (the
//! mount is being set up), a [`LogSink`] holds the lines in memory.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// Directory of the daemon's log in the root's hidden directory.
pub const LOG_DIR: &str = "log";
/// Name of the current log file in [`LOG_DIR`].
pub const LOG_FILE: &str = "daemon.log";
/// Size at which the log file is rotated.
pub const LOG_LIMIT: u64 = 4 << 20;
/// Rotated files kept (`daemon.log.1`, `daemon.log.2`).
pub const LOG_KEEP: usize = 2;
/// Bytes a [`LogSink`] holds in memory before it has a file; more is dropped
/// (and counted).
const PENDING_LIMIT: usize = 1 << 20;

/// A log file `DIR/NAME` below a base directory fd, rotated by size.
///
/// Invariants:
/// * Nothing is created before the first non-empty write; then `DIR` (0700) and
///   `NAME` (0600, appended to if it exists) are created.
/// * Files are reached only by `*at()` calls relative to `base`, never following
///   symlinks, so a mount over the base's path changes nothing.
/// * A write that would take a non-empty `NAME` beyond `limit` first renames
///   `NAME.i` to `NAME.i+1` (for `i` from `keep - 1` down to 1) and `NAME` to
///   `NAME.1`: `NAME.1` .. `NAME.keep` hold older content, newest first, and
///   nothing older survives. Writes are never split across files, so `NAME`
///   exceeds `limit` only by holding one write larger than `limit`.
pub struct RotatingLog {
    base: OwnedFd,
    dir_name: String,
    name: String,
    limit: u64,
    keep: usize,
    /// `DIR`, once created.
    dir: Option<OwnedFd>,
    /// `NAME`, once opened (closed on rotation).
    file: Option<File>,
    /// Bytes in `NAME`: its size when opened plus what was written since.
    size: u64,
}

impl RotatingLog {
    /// A log `dir_name/name` below `base`; nothing is created yet.
    pub fn new(base: OwnedFd, dir_name: &str, name: &str, limit: u64, keep: usize) -> Self {
        RotatingLog {
            base,
            dir_name: dir_name.to_string(),
            name: name.to_string(),
            limit,
            keep,
            dir: None,
            file: None,
            size: 0,
        }
    }

    /// Create `DIR` if needed and open `NAME` for appending.
    fn open(&mut self) -> io::Result<()> {
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if self.dir.is_none() {
            match rustix::fs::mkdirat(&self.base, &self.dir_name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let fd = rustix::fs::openat(&self.base, &self.dir_name, dir_flags, Mode::empty())?;
            self.dir = Some(fd);
        }
        let Some(dir) = self.dir.as_ref() else {
            return Err(io::Error::other("log directory not open"));
        };
        if self.file.is_none() {
            let flags = OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, &self.name, flags, Mode::from_raw_mode(0o600))?;
            self.size = rustix::fs::fstat(&fd)?.st_size as u64;
            self.file = Some(File::from(fd));
        }
        Ok(())
    }

    /// Move `NAME` to `NAME.1` (and older files one step on); the next
    /// [`RotatingLog::open`] starts a new `NAME`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        self.size = 0;
        let Some(dir) = self.dir.as_ref() else {
            return Ok(());
        };
        let dir = dir.as_fd();
        let ok_if_missing = |r: rustix::io::Result<()>| match r {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        };
        if self.keep == 0 {
            return ok_if_missing(rustix::fs::unlinkat(dir, &self.name, AtFlags::empty()));
        }
        for i in (1..self.keep).rev() {
            let from = format!("{}.{i}", self.name);
            let to = format!("{}.{}", self.name, i + 1);
            ok_if_missing(rustix::fs::renameat(dir, &from, dir, &to))?;
        }
        let to = format!("{}.1", self.name);
        ok_if_missing(rustix::fs::renameat(dir, &self.name, dir, &to))
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.open()?;
        if self.size > 0 && self.size.saturating_add(buf.len() as u64) > self.limit {
            self.rotate()?;
            self.open()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        let n = file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Writes go straight to the file; nothing is buffered here.
        Ok(())
    }
}

/// Where a sink's lines go.
enum Target {
    /// Held in memory (at most [`PENDING_LIMIT`] bytes; `dropped` counts the rest).
    Pending { held: Vec<u8>, dropped: usize },
    /// The root's log file.
    File(RotatingLog),
    /// Standard error.
    Stderr,
}

/// The daemon's tracing writer (`MakeWriter` through `Arc<LogSink>`): lines are
/// held in memory until [`LogSink::attach`] gives them a file, or
/// [`LogSink::release_to_stderr`] sends them to stderr.
///
/// Invariants: each `write_all` (one formatted event) reaches the target whole,
/// under one lock, so events from different threads never interleave; held lines
/// reach the new target before any later line.
pub struct LogSink {
    target: Mutex<Target>,
}

impl LogSink {
    /// A sink holding lines in memory.
    pub fn pending() -> Self {
        LogSink {
            target: Mutex::new(Target::Pending {
                held: Vec::new(),
                dropped: 0,
            }),
        }
    }

    /// Switch to `target`, passing it the lines held so far.
    fn switch(&self, target: Target) {
        let mut t = self.target.lock().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *t, target);
        if let Target::Pending { held, dropped } = old {
            if dropped > 0 {
                let note = format!("prjfs: {dropped} bytes of early log lines were dropped\n");
                let _ = write_to(&mut t, note.as_bytes());
            }
            let _ = write_to(&mut t, &held);
        }
    }

    /// From now on write to `log` (lines held so far first).
    pub fn attach(&self, log: RotatingLog) {
        self.switch(Target::File(log));
    }

    /// From now on write to stderr (lines held so far first).
    pub fn release_to_stderr(&self) {
        self.switch(Target::Stderr);
    }
}

fn write_to(target: &mut Target, buf: &[u8]) -> io::Result<()> {
    match target {
        Target::Pending { held, dropped } => {
            if held.len() + buf.len() <= PENDING_LIMIT {
                held.extend_from_slice(buf);
            } else {
                *dropped += buf.len();
            }
            Ok(())
        }
        Target::File(log) => log.write_all(buf),
        Target::Stderr => io::stderr().write_all(buf),
    }
}

impl Write for &LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut t = self.target.lock().unwrap_or_else(PoisonError::into_inner);
        write_to(&mut t, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &std::path::Path) -> OwnedFd {
        File::open(dir).expect("open dir").into()
    }

    fn read(dir: &std::path::Path, name: &str) -> Option<String> {
        std::fs::read_to_string(dir.join("log").join(name)).ok()
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("log"))
            .map(|r| {
                r.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn nothing_is_created_before_the_first_write() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut log = RotatingLog::new(base(tmp.path()), "log", "d.log", 100, 2);
        log.write_all(b"").expect("empty write");
        log.flush().expect("flush");
        assert!(!tmp.path().join("log").exists());
        log.write_all(b"one\n").expect("write");
        assert_eq!(files(tmp.path()), ["d.log"]);
        assert_eq!(read(tmp.path(), "d.log").as_deref(), Some("one\n"));
    }

    #[test]
    fn rotates_at_the_limit_and_keeps_two_old_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut log = RotatingLog::new(base(tmp.path()), "log", "d.log", 100, 2);
        // 10-byte lines: ten fit exactly in one file.
        let line = |i: usize| format!("line {i:04}\n");
        for i in 0..10 {
            log.write_all(line(i).as_bytes()).expect("write");
        }
        assert_eq!(files(tmp.path()), ["d.log"], "exactly at the limit");
        log.write_all(line(10).as_bytes()).expect("write");
        assert_eq!(files(tmp.path()), ["d.log", "d.log.1"]);
        for i in 11..45 {
            log.write_all(line(i).as_bytes()).expect("write");
        }
        assert_eq!(files(tmp.path()), ["d.log", "d.log.1", "d.log.2"]);
        let want = |r: std::ops::Range<usize>| r.map(line).collect::<String>();
        assert_eq!(read(tmp.path(), "d.log").unwrap(), want(40..45));
        assert_eq!(read(tmp.path(), "d.log.1").unwrap(), want(30..40));
        assert_eq!(read(tmp.path(), "d.log.2").unwrap(), want(20..30));
        // A write bigger than the limit is not split.
        let big = "x".repeat(150);
        log.write_all(big.as_bytes()).expect("write");
        assert_eq!(read(tmp.path(), "d.log").unwrap(), big);
        assert_eq!(read(tmp.path(), "d.log.1").unwrap(), want(40..45));
        assert_eq!(files(tmp.path()).len(), 3);
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let mut log = RotatingLog::new(base(tmp.path()), "log", "d.log", 100, 1);
            log.write_all(&[b'a'; 95]).expect("write");
        }
        let mut log = RotatingLog::new(base(tmp.path()), "log", "d.log", 100, 1);
        log.write_all(b"bbbb\n").expect("write");
        assert_eq!(read(tmp.path(), "d.log").unwrap().len(), 100);
        log.write_all(b"c\n").expect("write");
        assert_eq!(read(tmp.path(), "d.log").unwrap(), "c\n");
        assert_eq!(read(tmp.path(), "d.log.1").unwrap().len(), 100);
        assert_eq!(files(tmp.path()), ["d.log", "d.log.1"]);
    }

    #[test]
    fn sink_holds_lines_until_attached() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = std::sync::Arc::new(LogSink::pending());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let line = format!("thread {t} line {i:03}\n");
                        (&*sink).write_all(line.as_bytes()).expect("write");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer thread");
        }
        assert!(!tmp.path().join("log").exists());
        sink.attach(RotatingLog::new(
            base(tmp.path()),
            "log",
            "d.log",
            1 << 20,
            2,
        ));
        (&*sink).write_all(b"after\n").expect("write");
        let text = read(tmp.path(), "d.log").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 201);
        assert_eq!(lines[200], "after");
        assert!(lines[..200].iter().all(|l| l.starts_with("thread ")));
    }

    #[test]
    fn attaching_an_empty_sink_creates_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = LogSink::pending();
        sink.attach(RotatingLog::new(base(tmp.path()), "log", "d.log", 100, 2));
        assert!(!tmp.path().join("log").exists());
    }
}
