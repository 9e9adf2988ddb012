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
    /// What this line is compared with, and the ratio of times (this / that).
    pub ratio: Option<(String, f64)>,
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
            ratio: None,
        }
    }

    pub fn mb(mut self) -> Self {
        self.unit = Unit::MegaBytes;
        self
    }

    /// Sets the ratio of this row's time to `base`'s, labelled `what`.
    pub fn vs(mut self, what: &str, base: &Row) -> Self {
        self.ratio = Some((what.into(), self.seconds / base.seconds));
        self
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

/// A workload's description, printed as a legend above the table.
#[derive(Clone, Debug)]
pub struct Section {
    pub workload: String,
    pub description: String,
    pub rows: Vec<Row>,
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
    out += &format!(
        "{:<7} {:<28} {:>10} {:>16}   {}\n",
        "work", "variant", "time (s)", "throughput", "ratio"
    );
    for s in sections {
        for r in &s.rows {
            let ratio = r
                .ratio
                .as_ref()
                .map(|(what, x)| format!("{x:.2} ({what})"))
                .unwrap_or_default();
            out += &format!(
                "{:<7} {:<28} {:>10.4} {:>16}   {}\n",
                r.workload,
                r.variant,
                r.seconds,
                format!("{} {}", human(r.throughput()), r.unit_name()),
                ratio
            );
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
                    "ratio": r.ratio.as_ref().map(|(w, x)| serde_json::json!({"vs": w, "value": x})),
                })
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}
