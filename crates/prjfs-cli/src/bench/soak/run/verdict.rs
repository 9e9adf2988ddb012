//! The soak's report: one line per sample, the summary, the growth check and
//! the verdict (FAIL when any reason is found; see the parent modules).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ms, Controller, Row};
use crate::bench::soak::daemon::Metrics;

pub(super) fn row_header() -> String {
    format!(
        "{:>4} {:>7} {:>7} {:>2} {:>8} {:>5} {:>3} {:>17} {:>7} {:>8} {:>4} {:>4} {:>17} {:>5} \
         {:>6} {:>15} {:>12}\n",
        "tick",
        "wall_s",
        "load_s",
        "d",
        "ops",
        "eio",
        "bad",
        "sig/rel/late/early",
        "max_ms",
        "rss_KiB",
        "fds",
        "thr",
        "peak rss/fds/thr",
        "wait",
        "nodes",
        "cb inv/fail/can",
        "inj fail/pan/stall"
    )
}

pub(super) fn row_line(r: &Row) -> String {
    format!(
        "{:>4} {:>7.1} {:>7.1} {:>2} {:>8} {:>5} {:>3} {:>17} {:>7.1} {:>8} {:>4} {:>4} {:>17} \
         {:>5.1} {:>6} {:>15} {:>12}\n",
        r.tick,
        r.at_s,
        r.load_s,
        r.daemon,
        r.ops,
        r.eio,
        r.bad,
        format!("{}/{}/{}/{}", r.signalled, r.released, r.late, r.early),
        r.max_release_ms,
        r.settled.rss_kib,
        r.settled.fds,
        r.settled.threads,
        format!("{}/{}/{}", r.peak.rss_kib, r.peak.fds, r.peak.threads),
        r.settle_s,
        r.nodes,
        format!("{}/{}/{}", r.callbacks[0], r.callbacks[1], r.callbacks[2]),
        format!("{}/{}/{}", r.injected[0], r.injected[1], r.injected[2]),
    )
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn change(v: u64, base: u64) -> f64 {
    (v as f64 / base.max(1) as f64 - 1.0) * 100.0
}

impl Controller<'_> {
    /// The baseline sample, each growth over it beyond `inputs.growth` (as
    /// failures), and the highest value of each metric after it (None when
    /// there is no sample after it).
    fn growth(&self) -> (Option<Metrics>, Vec<String>, Option<Metrics>) {
        let tick = self.inputs.baseline_tick;
        let Some(b) = self.rows.iter().find(|r| r.tick == tick).map(|r| r.settled) else {
            return (None, Vec::new(), None);
        };
        let mut out = Vec::new();
        let mut worst: Option<Metrics> = None;
        for r in self.rows.iter().filter(|r| r.tick > tick) {
            worst = Some(worst.map_or(r.settled, |w| w.max(r.settled)));
            for (name, v, bv) in [
                ("RSS (KiB)", r.settled.rss_kib, b.rss_kib),
                ("fds", r.settled.fds, b.fds),
                ("threads", r.settled.threads, b.threads),
            ] {
                if v as f64 > bv as f64 * (1.0 + self.inputs.growth) {
                    out.push(format!(
                        "daemon {name} at tick {} is {v}, {:+.1}% over the baseline {bv} \
                         (tick {tick})",
                        r.tick,
                        change(v, bv)
                    ));
                }
            }
        }
        (Some(b), out, worst)
    }

    /// Every reason for a FAIL.
    pub(super) fn reasons(&self) -> Vec<String> {
        let mut reasons = self.growth().1;
        let c = self.cstats;
        let (late, stuck) = (get(&c.late), get(&c.stuck));
        if late + stuck > 0 {
            let msgs = c.messages.lock().unwrap_or_else(|e| e.into_inner());
            reasons.push(format!(
                "{late} signalled clients were gone later than 1 s, {stuck} never: {}",
                msgs.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
        let bad = get(&self.wstats.failures);
        if bad > 0 {
            let msgs = self
                .wstats
                .messages
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            reasons.push(format!("{bad} wrong answers to workers:"));
            reasons.extend(msgs.iter().take(20).map(|m| format!("  {m}")));
        }
        reasons.extend(self.failures.iter().cloned());
        reasons
    }

    fn growth_line(&self) -> String {
        let tick = self.inputs.baseline_tick;
        match self.growth() {
            (None, _, _) => "no baseline sample (the run ended before it)".into(),
            (Some(b), _, None) => format!(
                "baseline (tick {tick}): RSS {} KiB, {} fds, {} threads; no sample after it",
                b.rss_kib, b.fds, b.threads
            ),
            (Some(b), _, Some(w)) => format!(
                "baseline (tick {tick}): RSS {} KiB, {} fds, {} threads; highest later: RSS {} \
                 KiB ({:+.1}%), {} fds ({:+.1}%), {} threads ({:+.1}%)",
                b.rss_kib,
                b.fds,
                b.threads,
                w.rss_kib,
                change(w.rss_kib, b.rss_kib),
                w.fds,
                change(w.fds, b.fds),
                w.threads,
                change(w.threads, b.threads),
            ),
        }
    }

    /// The summary and verdict; true for PASS.
    pub(super) fn report(&self) -> (String, bool) {
        let w = self.wstats;
        let c = self.cstats;
        let mut lat = self.latencies.clone();
        lat.sort();
        let q =
            |f: f64| lat.get(((lat.len() as f64 * f) as usize).min(lat.len().saturating_sub(1)));
        let show = |d: Option<&Duration>| d.map_or("-".into(), |d| format!("{:.1} ms", ms(*d)));
        let reasons = self.reasons();
        let pass = reasons.is_empty();
        let mut t = String::from("\nsummary\n");
        t += &format!(
            "  time: {:.0} s of load in {:.0} s (pauses for samples and remounts: {:.0} s)\n",
            self.load().as_secs_f64(),
            self.elapsed().as_secs_f64(),
            self.paused.as_secs_f64()
        );
        t += &format!(
            "  operations: {} by {} workers, {} answered EIO ({:.2}%), {} wrong\n",
            get(&w.ops),
            self.inputs.workers,
            get(&w.faults),
            pct(get(&w.faults), get(&w.ops)),
            get(&w.failures)
        );
        t += &format!(
            "  clients: {} started, {} signalled while waiting on the mount (+{} otherwise), \
             {} gone within 1 s, {} later, {} never, {} ended before their signal\n",
            get(&c.spawned),
            get(&c.signalled),
            get(&c.signalled_other),
            get(&c.released),
            get(&c.late),
            get(&c.stuck),
            get(&c.ended_early)
        );
        t += &format!(
            "  release latency after the signal: median {}, p99 {}, max {} ({} clients)\n",
            show(q(0.5)),
            show(q(0.99)),
            show(lat.last()),
            lat.len()
        );
        t += &format!(
            "  daemon kills: {} cats were waiting, {} gone within 1 s\n",
            self.victims.0, self.victims.1
        );
        t += &format!(
            "  injected faults (all daemons): {} failed, {} panicked, {} slowed, {} stalled, \
             {} delays cancelled; {} panics in the daemon logs\n",
            self.injected[0],
            self.injected[1],
            self.injected[2],
            self.injected[3],
            self.injected[4],
            self.panics_logged
        );
        t += &format!(
            "  daemons: {} ({} remounts: {})\n",
            self.daemon,
            self.events.len(),
            self.events
                .iter()
                .map(|e| format!("{} at {:.0} s ({:.0} s of load)", e.kind, e.at_s, e.load_s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        t += &format!("  growth: {}\n", self.growth_line());
        t += &format!(
            "  model: the final walk compared {} items, {} differences\n",
            self.final_walk.0,
            self.final_walk.1.len()
        );
        for n in &self.notes {
            t += &format!("  note: {n}\n");
        }
        t += &format!("verdict: {}\n", if pass { "PASS" } else { "FAIL" });
        for r in &reasons {
            t += &format!("  - {r}\n");
        }
        (t, pass)
    }

    pub(super) fn json_report(&self, pass: bool) -> serde_json::Value {
        let (w, c) = (self.wstats, self.cstats);
        serde_json::json!({
            "seed": self.inputs.seed,
            "faults": self.inputs.spec,
            "mount_args": self.inputs.mount_args,
            "seconds": self.inputs.total.as_secs(),
            "wall_seconds": self.elapsed().as_secs_f64(),
            "tick_seconds": self.inputs.tick.as_secs(),
            "baseline_tick": self.inputs.baseline_tick,
            "rows": self.rows,
            "events": self.events,
            "operations": get(&w.ops),
            "eio": get(&w.faults),
            "clients": {
                "started": get(&c.spawned),
                "signalled": get(&c.signalled),
                "released": get(&c.released),
                "late": get(&c.late),
                "stuck": get(&c.stuck),
                "ended_early": get(&c.ended_early),
            },
            "daemon_kills": { "waiting": self.victims.0, "released": self.victims.1 },
            "injected": self.injected,
            "final_walk": { "compared": self.final_walk.0, "diffs": self.final_walk.1 },
            "notes": self.notes,
            "verdict": if pass { "PASS" } else { "FAIL" },
            "reasons": self.reasons(),
        })
    }
}
