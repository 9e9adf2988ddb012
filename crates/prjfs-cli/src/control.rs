//! The control socket between `prjfs` commands and a mount's daemon: an abstract
//! Unix socket named after the root, one JSON request and one JSON answer per line.

use std::io::{BufRead, BufReader, Write};
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

/// Serve requests forever with `handler` (one thread per connection is not
/// needed: requests are short).
pub fn serve(listener: UnixListener, handler: impl Fn(ControlRequest) -> serde_json::Value) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&conn);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let answer = match serde_json::from_str::<ControlRequest>(&line) {
            Ok(req) => handler(req),
            Err(e) => serde_json::json!({ "error": format!("bad request: {e}") }),
        };
        let mut out = answer.to_string();
        out.push('\n');
        let _ = (&conn).write_all(out.as_bytes());
    }
}
