//! The machine a run was measured on: kernel, CPU, cores, memory, and the file
//! system holding the scratch trees.

use std::path::Path;

pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub dir: String,
    pub dir_fs: String,
    pub dir_device: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages when the run started: other
    /// work on the machine shows in the numbers.
    pub load: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` for a space).
pub(super) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            out.push((d(1) * 64 + d(2) * 8 + d(3)) as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file system type and device of the mount holding `dir`.
fn fs_of(dir: &Path) -> (String, String) {
    let mut best: Option<(usize, String, String)> = None;
    for line in read("/proc/self/mountinfo").lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mp) = left.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("?").to_string();
        let device = r.next().map(unescape).unwrap_or_default();
        if dir.starts_with(&mp) && best.as_ref().is_none_or(|(len, _, _)| mp.len() >= *len) {
            best = Some((mp.len(), fstype, device));
        }
    }
    best.map(|(_, t, d)| (t, d))
        .unwrap_or_else(|| ("?".into(), "?".into()))
}

impl Machine {
    pub fn describe(dir: &Path) -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map(|kb| kb / (1024.0 * 1024.0))
            .unwrap_or(0.0);
        let (dir_fs, dir_device) = fs_of(dir);
        Self {
            kernel: format!(
                "{} {}",
                read("/proc/sys/kernel/ostype").trim(),
                read("/proc/sys/kernel/osrelease").trim()
            ),
            cpu,
            cores,
            memory_gib,
            dir: dir.display().to_string(),
            dir_fs,
            dir_device,
            load: read("/proc/loadavg")
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    pub fn text(&self) -> String {
        format!(
            "kernel: {}\ncpu:    {} x {}\nmemory: {:.1} GiB\ndir:    {} ({} on {})\n\
             load:   {} (1, 5, 15 min averages at start)\n",
            self.kernel,
            self.cores,
            self.cpu,
            self.memory_gib,
            self.dir,
            self.dir_fs,
            self.dir_device,
            self.load
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kernel": self.kernel,
            "cpu": self.cpu,
            "cores": self.cores,
            "memory_gib": (self.memory_gib * 10.0).round() / 10.0,
            "dir": self.dir,
            "dir_fs": self.dir_fs,
            "dir_device": self.dir_device,
            "load_at_start": self.load,
        })
    }
}
