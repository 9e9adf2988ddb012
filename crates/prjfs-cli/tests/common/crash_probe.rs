//! Shared by the mounted crash tests (`crash.rs`, `crash_batch.rs`): reading
//! an item's state through the mount, killing the daemon by pid and waiting
//! until it is gone, and their environment knobs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The xattr that shows an item's state through the mount.
pub const STATE_XATTR: &str = "user.prjfs.state";

/// The state bits `p` shows through the mount (`user.prjfs.state`), not
/// following a symlink.
pub fn state_xattr(p: &Path) -> Result<u32, String> {
    let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
    let name = CString::new(STATE_XATTR).expect("no NUL");
    let mut buf = [0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(format!(
            "getxattr {STATE_XATTR} {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        ));
    }
    let text = String::from_utf8_lossy(&buf[..n as usize]).to_string();
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{STATE_XATTR} of {}: {text:?}", p.display()))
}

/// Whether a file in `state` holds its content on disk (reading it fetches
/// nothing): anything but a placeholder that is not hydrated.
pub fn is_local(state: u32) -> bool {
    state & 1 == 0 || state & (2 | 8) != 0
}

/// The name of the state `status` counts an item with these bits under.
pub fn category(state: u32) -> &'static str {
    if state & 16 != 0 {
        "tombstone"
    } else if state & 8 != 0 {
        "full"
    } else if state & 4 != 0 {
        "dirty"
    } else if state & 2 != 0 {
        "hydrated"
    } else {
        "placeholder"
    }
}

/// SIGKILL the daemon `pid`.
pub fn kill(pid: u32) {
    // SAFETY: kill(2) of the daemon pid `prjfs status --json` reported for our
    // own mount.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}

/// Wait until process `pid` has ended: gone, or a zombie whose other threads
/// are gone too. (The thread group leader turns zombie while other threads may
/// still be finishing, e.g. an fsync of the layer's file; only the last thread
/// closes the process's fds, among them /dev/fuse and the control socket.)
/// Returns how long the other threads outlived the leader.
pub fn wait_gone(pid: u32) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut zombie_at = None;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next().map(str::to_string))
            });
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        match state.as_deref() {
            None => return zombie_at.map_or(Duration::ZERO, |t: Instant| t.elapsed()),
            Some("Z") => {
                let at = *zombie_at.get_or_insert_with(Instant::now);
                if threads <= 1 {
                    return at.elapsed();
                }
            }
            Some(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "daemon {pid} still running 10 s after SIGKILL (state {state:?}, {threads} threads)"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A number from the environment variable `name`, else `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}
