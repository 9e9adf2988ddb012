//! The control socket between `prjfs` commands and a mount's daemon: an abstract
//! Unix socket named after the root, one JSON request and one JSON answer per line.
//! A long request ([`ControlRequest::is_long`]: `hydrate`) gets a thread of its
//! own and may send progress lines (objects with a `progress` key) before its
//! answer; the client stops it by shutting down its side of the connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Counters and state counts.
    Status,
    /// The on-disk state of one path relative to the root.
    State {
        /// Relative path.
        path: String,
    },
    /// Move a git projection to another revision.
    Switch {
        /// The revision.
        rev: String,
    },
    /// List an s3:// projection again and apply what changed.
    Refresh {
        /// Relative path of the directory (empty: the root).
        path: String,
    },
    /// Hydrate these files (paths relative to the root), `jobs` at a time,
    /// in the daemon; answers progress lines, then a summary. The client
    /// sends nothing after the request; it hangs up to stop the hydration.
    Hydrate {
        /// Relative paths of regular files; with `walk`, of files or
        /// directories (`""`: the root).
        paths: Vec<String>,
        /// Files hydrated at once.
        jobs: u32,
        /// The daemon walks `paths` itself and hydrates every regular file
        /// under them; progress lines and the answer count the files found
        /// (`walked`, `walked_bytes`).
        #[serde(default)]
        walk: bool,
    },
}

/// The answer's error when a user other than the one who mounted a root (or
/// root) asks its daemon to hydrate; `prjfs hydrate` then reads through the
/// mount, with that user's permissions.
pub const HYDRATE_REFUSED: &str =
    "only the user who mounted the root may ask its daemon to hydrate";

impl ControlRequest {
    /// Whether the request may take long: it is served on a thread of its
    /// own, so that `status` and the rest answer meanwhile.
    pub fn is_long(&self) -> bool {
        matches!(self, ControlRequest::Hydrate { .. })
    }
}

/// One client's connection, as a request handler sees it.
pub struct Conn {
    stream: UnixStream,
    /// Reads what follows the request line (buffered since that line).
    reader: std::sync::Mutex<BufReader<UnixStream>>,
}

impl Conn {
    /// The client's process id, user and group (`SO_PEERCRED`).
    pub fn peer(&self) -> std::io::Result<rustix::net::UCred> {
        rustix::net::sockopt::socket_peercred(&self.stream).map_err(std::io::Error::from)
    }

    /// Send one line (a progress report) before the answer.
    pub fn send(&self, v: &serde_json::Value) -> std::io::Result<()> {
        let mut out = v.to_string();
        out.push('\n');
        (&self.stream).write_all(out.as_bytes())
    }

    /// Hand each line the client sends after its request to `line` until it
    /// shuts down its side of the connection (or it goes away, or
    /// [`Conn::close_read`] ends it from here).
    pub fn read_lines(&self, mut line: impl FnMut(&str)) {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        loop {
            text.clear();
            match reader.read_line(&mut text) {
                Ok(0) => return,
                Ok(_) => line(text.trim_end()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Shut down the reading side here (ends [`Conn::read_lines`]);
    /// answers can still be sent.
    pub fn close_read(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
    }

    /// Shut the connection down both ways (ends [`Conn::read_lines`]).
    pub fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn answer(&self, v: &serde_json::Value) {
        let _ = self.send(v);
    }
}

/// The abstract socket name of a root (`\0prjfs-ctl:<root>`, shortened by hash when
/// long).
fn address(root: &Path) -> std::io::Result<SocketAddr> {
    let text = root.to_string_lossy();
    let name = if text.len() <= 90 {
        format!("prjfs-ctl:{text}")
    } else {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        format!("prjfs-ctl:#{:016x}", h.finish())
    };
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// Listen for commands about `root`.
pub fn listen(root: &Path) -> std::io::Result<UnixListener> {
    UnixListener::bind_addr(&address(root)?)
}

/// Send one request to the daemon of `root` and read its answer.
pub fn call(root: &Path, req: &ControlRequest) -> std::io::Result<serde_json::Value> {
    call_within(root, req, Duration::from_secs(30))
}

/// [`call`], waiting up to `timeout` for the answer.
pub fn call_within(
    root: &Path,
    req: &ControlRequest,
    timeout: Duration,
) -> std::io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect_addr(&address(root)?)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(std::io::Error::other)?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(std::io::Error::other(err.to_string()));
    }
    Ok(v)
}

/// Whether a daemon answers for `root`.
pub fn is_alive(root: &Path) -> bool {
    address(root)
        .and_then(|a| UnixStream::connect_addr(&a))
        .is_ok()
}

/// Serve requests forever with `handler`: short ones one after the other on
/// this thread, long ones ([`ControlRequest::is_long`]) each on a thread of
/// its own.
pub fn serve(
    listener: UnixListener,
    handler: impl Fn(ControlRequest, &Conn) -> serde_json::Value + Send + Sync + 'static,
) {
    let handler = std::sync::Arc::new(handler);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Ok(read_side) = stream.try_clone() else {
            continue;
        };
        // A request line can be long (hydrate's paths): read it whole. What
        // the buffer holds beyond it stays for `Conn::read_lines`.
        let mut reader = BufReader::new(read_side);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let conn = Conn {
            stream,
            reader: std::sync::Mutex::new(reader),
        };
        let req = match serde_json::from_str::<ControlRequest>(&line) {
            Ok(req) => req,
            Err(e) => {
                conn.answer(&serde_json::json!({ "error": format!("bad request: {e}") }));
                continue;
            }
        };
        if req.is_long() {
            let handler = handler.clone();
            let spawned = std::thread::Builder::new()
                .name("prjfs-control-long".into())
                .spawn(move || {
                    let _ = conn.stream.set_read_timeout(None);
                    let answer = handler(req, &conn);
                    conn.answer(&answer);
                    conn.close();
                });
            if let Err(e) = spawned {
                tracing::error!("control: cannot start a thread: {e}");
            }
        } else {
            let answer = handler(req, &conn);
            conn.answer(&answer);
        }
    }
}

/// What writes the rest of a long request (whole lines), on a thread of its own.
pub type Feed = Box<dyn FnOnce(&mut dyn Write) + Send>;

/// Send a long request to the daemon of `root`, and what `feed` writes after
/// it (whole lines): `on_progress` sees every progress line (and `null` at
/// least every 100 ms) and says whether to go on; when it says no, the request is
/// stopped (this side of the connection shut down) and the daemon's final
/// answer is still awaited, for up to `stop_wait`. Returns that answer.
pub fn call_long(
    root: &Path,
    req: &ControlRequest,
    feed: Option<Feed>,
    mut on_progress: impl FnMut(&serde_json::Value) -> bool,
    stop_wait: Duration,
) -> std::io::Result<serde_json::Value> {
    let stream = UnixStream::connect_addr(&address(root)?)?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    // The rest of the request (lines `feed` writes) goes from a thread of its
    // own while the answer's lines are read here; it ends at the latest when
    // a stop shuts the connection's writing side (its writes then fail).
    let feeder = match feed {
        Some(feed) => {
            let mut out = stream.try_clone()?;
            Some(
                std::thread::Builder::new()
                    .name("prjfs-feed".into())
                    .spawn(move || feed(&mut out))?,
            )
        }
        None => None,
    };
    let answer = read_answer(&stream, &mut on_progress, stop_wait);
    if answer.is_err() {
        // Unblock a feeder still writing to a daemon that no longer reads.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    answer
}

/// [`call_long`]'s reading side: progress lines to `on_progress`, until the
/// answer.
fn read_answer(
    stream: &UnixStream,
    on_progress: &mut impl FnMut(&serde_json::Value) -> bool,
    stop_wait: Duration,
) -> std::io::Result<serde_json::Value> {
    // Short timeouts: `on_progress` is asked again at least this often, so a
    // stop (Ctrl-C) is seen even while the daemon is silent.
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stopped_at: Option<std::time::Instant> = None;
    loop {
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let text: Vec<u8> = pending.drain(..=nl).collect();
            let v: serde_json::Value =
                serde_json::from_slice(&text).map_err(std::io::Error::other)?;
            if v.get("progress").is_none() {
                if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                    return Err(std::io::Error::other(err.to_string()));
                }
                return Ok(v);
            }
            if stopped_at.is_none() && !on_progress(&v) {
                stopped_at = Some(std::time::Instant::now());
                stream.shutdown(std::net::Shutdown::Write)?;
            }
        }
        match { stream }.read(&mut buf) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection without an answer",
                ))
            }
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                match stopped_at {
                    None => {
                        if !on_progress(&serde_json::Value::Null) {
                            stopped_at = Some(std::time::Instant::now());
                            stream.shutdown(std::net::Shutdown::Write)?;
                        }
                    }
                    Some(t) if t.elapsed() > stop_wait => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the daemon did not confirm the stop",
                        ))
                    }
                    Some(_) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}
