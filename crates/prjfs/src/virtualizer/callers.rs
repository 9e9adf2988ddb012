//! What `/proc` says about the threads that sent requests lately, kept for a
//! moment: a client touching many files asks the same questions of the same
//! thread for each (GetPlaceholderInfo at the first open, then GetFileData).
//!
//! Invariant: an answer is at most [`FRESH`] old. A thread id is not
//! reused that fast (ids are handed out in order up to `pid_max`), so "is this
//! thread ours" cannot go stale; a name can, by an `exec` within that moment.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) const FRESH: Duration = Duration::from_millis(50);
const KEPT: usize = 16;

#[derive(Clone)]
pub(super) struct Caller {
    pub(super) own: bool,
    pub(super) name: Option<Arc<str>>,
}

static RECENT: Mutex<Vec<(u32, Instant, Caller)>> = Mutex::new(Vec::new());

pub(super) fn lookup(pid: u32) -> Caller {
    let now = Instant::now();
    {
        let recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = recent
            .iter()
            .find(|(p, at, _)| *p == pid && now.duration_since(*at) < FRESH)
        {
            return c.clone();
        }
    }
    let caller = Caller {
        own: std::path::Path::new(&format!("/proc/self/task/{pid}")).exists(),
        name: std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| Arc::from(s.trim_end())),
    };
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    recent.retain(|(p, at, _)| *p != pid && now.duration_since(*at) < FRESH);
    if recent.len() >= KEPT {
        recent.remove(0);
    }
    recent.push((pid, now, caller.clone()));
    caller
}
