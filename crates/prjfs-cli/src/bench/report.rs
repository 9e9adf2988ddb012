//! Rows of results, printed as one table and as JSON.

use std::time::Duration;

/// What a row's throughput counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// Megabytes (10^6 bytes) per second.
    MegaBytes,
    /// Operations (files, stats, entries, reads) per second.
    Ops,
}

/// One measured (or, for the async ideal, computed) line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Short key: cold, stat, seq, rand, small, list, async.
    pub workload: String,
    pub variant: String,
    /// The best run.
    pub seconds: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
    pub ops: u64,
    pub bytes: u64,
    pub unit: Unit,
    /// What this line is compared with, and the ratio of times (this / that):
    /// first against native, then against the peer (bindfs) or another baseline.
    pub ratios: Vec<(String, f64)>,
}

impl Row {
    pub fn new(workload: &str, variant: &str, runs: &[Duration], ops: u64, bytes: u64) -> Self {
        let runs: Vec<f64> = runs.iter().map(Duration::as_secs_f64).collect();
        let seconds = runs.iter().copied().fold(f64::INFINITY, f64::min);
        Self {
            workload: workload.into(),
            variant: variant.into(),
            seconds,
            runs,
            ops,
            bytes,
            unit: Unit::Ops,
            ratios: Vec::new(),
        }
    }

    pub fn mb(mut self) -> Self {
        self.unit = Unit::MegaBytes;
        self
    }

    /// Adds the ratio of this row's time to `base`'s, labelled `what`.
    pub fn vs(mut self, what: &str, base: &Row) -> Self {
        self.ratios.push((what.into(), self.seconds / base.seconds));
        self
    }

    /// Adds the ratio to `base` when there is one (a peer that did not run).
    pub fn vs_opt(self, what: &str, base: Option<&Row>) -> Self {
        match base {
            Some(b) => self.vs(what, b),
            None => self,
        }
    }

    pub fn throughput(&self) -> f64 {
        match self.unit {
            Unit::MegaBytes => self.bytes as f64 / 1e6 / self.seconds,
            Unit::Ops => self.ops as f64 / self.seconds,
        }
    }

    fn unit_name(&self) -> &'static str {
        match self.unit {
            Unit::MegaBytes => "MB/s",
            Unit::Ops => "ops/s",
        }
    }
}

/// A measured quantity that is not a time (e.g. the daemon's memory growth),
/// printed below the table.
#[derive(Clone, Debug)]
pub struct Note {
    /// Short key, e.g. `daemon_rss_per_path`.
    pub key: String,
    /// The line printed below the table.
    pub text: String,
    /// The same numbers for the JSON.
    pub value: serde_json::Value,
}

/// A workload's description, printed as a legend above the table.
#[derive(Clone, Debug)]
pub struct Section {
    pub workload: String,
    pub description: String,
    pub rows: Vec<Row>,
    pub notes: Vec<Note>,
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

pub fn table(sections: &[Section]) -> String {
    let mut out = String::new();
    for s in sections {
        out += &format!("{:<7} {}\n", format!("{}:", s.workload), s.description);
    }
    out += "\n";
    let width = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.variant.len()))
        .max()
        .unwrap_or(0)
        .max(28);
    out += &format!(
        "{:<7} {:<width$} {:>10} {:>16}   {}\n",
        "work", "variant", "time (s)", "throughput", "ratio"
    );
    for s in sections {
        for r in &s.rows {
            let ratio = r
                .ratios
                .iter()
                .map(|(what, x)| format!("{x:.2} ({what})"))
                .collect::<Vec<_>>()
                .join("  ");
            out += &format!(
                "{:<7} {:<width$} {:>10.4} {:>16}   {}\n",
                r.workload,
                r.variant,
                r.seconds,
                format!("{} {}", human(r.throughput()), r.unit_name()),
                ratio
            );
        }
    }
    if sections.iter().any(|s| !s.notes.is_empty()) {
        out += "\n";
    }
    for s in sections {
        for n in &s.notes {
            out += &format!("{:<7} {}\n", s.workload, n.text);
        }
    }
    out
}

pub fn json(sections: &[Section]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = sections
        .iter()
        .flat_map(|s| {
            s.rows.iter().map(|r| {
                serde_json::json!({
                    "workload": r.workload,
                    "description": s.description,
                    "variant": r.variant,
                    "seconds": r.seconds,
                    "runs": r.runs,
                    "ops": r.ops,
                    "bytes": r.bytes,
                    "throughput": {"value": r.throughput(), "unit": r.unit_name()},
                    // The first ratio (vs native) as before; all of them in `ratios`.
                    "ratio": r.ratios.first().map(|(w, x)| serde_json::json!({"vs": w, "value": x})),
                    "ratios": r
                        .ratios
                        .iter()
                        .map(|(w, x)| serde_json::json!({"vs": w, "value": x}))
                        .collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// The notes of every section, as JSON (`workload`, `key`, `text`, `value`).
pub fn notes_json(sections: &[Section]) -> serde_json::Value {
    let notes: Vec<serde_json::Value> = sections
        .iter()
        .flat_map(|s| {
            s.notes.iter().map(|n| {
                serde_json::json!({
                    "workload": s.workload,
                    "key": n.key,
                    "text": n.text,
                    "value": n.value,
                })
            })
        })
        .collect();
    serde_json::Value::Array(notes)
}
