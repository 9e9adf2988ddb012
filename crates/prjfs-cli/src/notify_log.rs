//! `prjfs mount --notify-log FILE`: one JSON object per notification the dir
//! provider hears, appended to FILE as it arrives:
//! `{"kind", "path", "destination", "pid", "process", "time"}`.
//!
//! `kind` is the snake_case name (`file_opened`, …); `path` is relative to the
//! root (for a rename or link, its source); `destination` the new path of a
//! rename or link, empty for other kinds; `pid` and `process` the client (for
//! close kinds, the process that opened the handle; 0 and "" when unknown);
//! `time` when the provider heard it, RFC 3339 in UTC with microseconds.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prjfs::{CallbackData, Notification};

/// The open log; each line is written with one `write` under a lock, so
/// lines never interleave.
pub struct NotifyLog {
    file: Mutex<File>,
}

impl NotifyLog {
    /// Open `path` for appending (created if missing).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Append the line of one notification.
    pub fn record(&self, cb: &CallbackData, n: &Notification) {
        let mut line = line(cb, n, SystemTime::now()).to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!("--notify-log: {e}");
        }
    }
}

fn line(cb: &CallbackData, n: &Notification, at: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "kind": n.kind.name(),
        "path": cb.path.to_string_lossy(),
        "destination": n
            .destination
            .as_deref()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default(),
        "pid": cb.triggering_pid,
        "process": cb.triggering_process_name.clone().unwrap_or_default(),
        "time": rfc3339(at),
    })
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (days to a civil date: Howard Hinnant's
/// algorithm).
fn rfc3339(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_123_456);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.123456Z");
    }
}
