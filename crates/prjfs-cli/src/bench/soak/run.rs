//! The soak's controller: prepares the root, runs the clients, pauses them for
//! each sample and each remount, checks the model, and reports (see the
//! parent module for the design).
//!
//! Invariants: the controller changes the mount (remount, kill) and reads the
//! whole model only while every client is parked at the gate; counter deltas
//! are per daemon (a remount resets them); every failure found is kept in
//! `failures` and makes the verdict FAIL.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clients::{self, ClientStats, Killer, RELEASE_LIMIT};
use super::daemon::{self, Metrics, RootGuard};
use super::model::{self, Depth, Model};
use super::workers::{Gate, Worker, WorkerStats};
use super::{Inputs, Layout};
use crate::bench::fixture::{check, progress, Rng};
use verdict::{row_header, row_line};

mod verdict;

/// Growth over the baseline that fails the run.
/// How long the clients may take to park at the gate.
const PAUSE_LIMIT: Duration = Duration::from_secs(60);
/// How long the daemon may take to have nothing pending once they are parked.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// A worker operation running this long is reported as stuck.
const OP_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `prjfs unmount`, then mount again.
    Unmount,
    /// `kill -9` of the daemon with clients waiting, then mount again.
    Kill,
    /// The daemon died by itself: mount again.
    Crash,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unmount => "unmount",
            Kind::Kill => "kill -9",
            Kind::Crash => "crash",
        }
    }
}

/// One settled sample.
#[derive(Clone, Debug, serde::Serialize)]
struct Row {
    tick: u64,
    /// Wall time and load time since the clients started.
    at_s: f64,
    load_s: f64,
    daemon: usize,
    pid: u32,
    ops: u64,
    eio: u64,
    bad: u64,
    signalled: u64,
    released: u64,
    late: u64,
    early: u64,
    max_release_ms: f64,
    settled: Metrics,
    peak: Metrics,
    settle_s: f64,
    /// Nodes the kernel holds (`prjfs status`), at the sample.
    nodes: u64,
    /// Callbacks invoked, failed, cancelled since the last sample (this daemon).
    callbacks: [u64; 3],
    /// Injected failures, panics, stalls since the last sample (this daemon).
    injected: [u64; 3],
}

#[derive(Clone, Debug, serde::Serialize)]
struct Event {
    at_s: f64,
    load_s: f64,
    kind: &'static str,
    old_pid: u32,
    new_pid: u32,
    /// Per client waiting when the daemon was killed: ms until it was gone.
    victims_ms: Vec<Option<f64>>,
    took_s: f64,
    compared: usize,
    diffs: Vec<String>,
    panics_logged: usize,
}

/// The cumulative counters of the clients.
#[derive(Clone, Copy, Default)]
struct Totals([u64; 7]);

impl Totals {
    fn now(w: &WorkerStats, c: &ClientStats) -> Self {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Totals([
            g(&w.ops),
            g(&w.faults),
            g(&w.failures),
            g(&c.signalled) + g(&c.signalled_other),
            g(&c.released),
            g(&c.late) + g(&c.stuck),
            g(&c.ended_early),
        ])
    }

    fn minus(self, o: Totals) -> [u64; 7] {
        let mut d = [0; 7];
        for (i, v) in d.iter_mut().enumerate() {
            *v = self.0[i].saturating_sub(o.0[i]);
        }
        d
    }
}

struct Controller<'a> {
    inputs: &'a Inputs,
    source: &'a Path,
    root: &'a Path,
    json: bool,
    gate: &'a Gate,
    wstats: &'a WorkerStats,
    cstats: &'a ClientStats,
    models: &'a [Arc<Mutex<Model>>],
    /// Everything but the workers' trees (the root's own entries included).
    fixed: Model,
    placed_cold: Vec<PathBuf>,
    pid: u32,
    daemon: usize,
    t0: Instant,
    /// Time the clients spent paused, and since when they are paused now.
    paused: Duration,
    paused_since: Option<Instant>,
    prev: Totals,
    /// This daemon's callback counters (invoked, failed, cancelled) and
    /// injected faults (five) at the last look.
    prev_cb: [u64; 3],
    prev_inj: [u64; 5],
    /// Injected faults over all daemons.
    injected: [u64; 5],
    panics_logged: usize,
    /// Panic lines in the root's daemon log at the last look (the log is kept
    /// across mounts).
    panics_seen: usize,
    peak: Metrics,
    rows: Vec<Row>,
    events: Vec<Event>,
    latencies: Vec<Duration>,
    victims: (u64, u64),
    failures: Vec<String>,
    /// Things worth knowing that are not failures.
    notes: Vec<String>,
    final_walk: (usize, Vec<String>),
    rng: Rng,
}

/// Runs the soak and prints its report; Err when the verdict is FAIL.
pub fn soak(
    inputs: &Inputs,
    layout: &Layout,
    source: &Path,
    root: &Path,
    header: &str,
    json: bool,
) -> Result<(), String> {
    let _guard = RootGuard {
        root: root.to_path_buf(),
    };
    emit(json, header);
    progress("soak: preparing cold/ (listed, two files in three opened) without faults");
    let placed_cold = prepare(layout, source, root)?;

    let mut fixed = Model::from_source(source, Path::new("")).map_err(|e| e.to_string())?;
    let mut models = Vec::new();
    for w in 0..inputs.workers {
        let home = Layout::home(w);
        let mut m = Model::default();
        let keys: Vec<PathBuf> = fixed.subtree(&home).map(|(k, _)| k.clone()).collect();
        for k in keys {
            let node = fixed.nodes.remove(&k).expect("listed");
            m.nodes.insert(k, node);
        }
        models.push(Arc::new(Mutex::new(m)));
    }
    let pid = daemon::mount(&inputs.mount_args, source, root)?;
    warm_up(root, &placed_cold)?;
    let gate = Gate::new();
    let wstats = WorkerStats::new(inputs.workers);
    let cstats = ClientStats::default();
    let mut c = Controller {
        inputs,
        source,
        root,
        json,
        gate: &gate,
        wstats: &wstats,
        cstats: &cstats,
        models: &models,
        fixed,
        placed_cold,
        pid,
        daemon: 1,
        t0: Instant::now(),
        paused: Duration::ZERO,
        paused_since: None,
        prev: Totals::default(),
        prev_cb: [0; 3],
        prev_inj: [0; 5],
        injected: [0; 5],
        panics_logged: 0,
        panics_seen: 0,
        peak: Metrics::default(),
        rows: Vec::new(),
        events: Vec::new(),
        latencies: Vec::new(),
        victims: (0, 0),
        failures: Vec::new(),
        notes: Vec::new(),
        final_walk: (0, Vec::new()),
        rng: Rng::new(inputs.seed ^ 0xc0417),
    };
    emit(json, &format!("daemon 1: pid {pid}\n{}", row_header()));
    let shared = Arc::new(layout.shared_files());
    let cold_files = Arc::new(layout.cold_file_list());
    let cold_dirs = Arc::new(layout.cold_dir_list());
    let result = std::thread::scope(|s| {
        for (i, m) in models.iter().enumerate() {
            let w = Worker {
                index: i,
                root: root.to_path_buf(),
                source: source.to_path_buf(),
                home: Layout::home(i),
                model: m.clone(),
                shared: shared.clone(),
                seed: inputs.seed.wrapping_add(1 + i as u64),
            };
            let (gate, wstats) = (&gate, &wstats);
            s.spawn(move || w.run(gate, wstats));
        }
        for k in 0..inputs.killers {
            let killer = Killer {
                index: k,
                root: root.to_path_buf(),
                cold_files: cold_files.clone(),
                cold_dirs: cold_dirs.clone(),
                stall: inputs.stall,
                seed: inputs.seed.wrapping_add(1000 + k as u64),
            };
            let (gate, cstats) = (&gate, &cstats);
            s.spawn(move || killer.run(gate, cstats));
        }
        let r = c.run();
        gate.stop();
        r
    });
    match result {
        Ok(()) => c.finish(),
        Err(e) => c.failures.push(format!("the run stopped: {e}")),
    }
    check()?;
    let (text, pass) = c.report();
    emit(json, &text);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&c.json_report(pass)).expect("json")
        );
    }
    if pass {
        Ok(())
    } else {
        Err("soak: FAIL".into())
    }
}

fn emit(json: bool, s: &str) {
    use std::io::Write;
    if json {
        eprint!("{s}");
    } else {
        let mut o = std::io::stdout().lock();
        let _ = write!(o, "{s}");
        let _ = o.flush();
    }
}

/// Mount without faults, list `cold/` and open two files in three (which
/// places them with their VersionInfo, so that a `cat` of one waits in
/// GetFileData), unmount. Returns the opened files.
fn prepare(layout: &Layout, source: &Path, root: &Path) -> Result<Vec<PathBuf>, String> {
    daemon::mount(&["--sync".to_string()], source, root)?;
    let result = (|| {
        for d in layout.cold_dir_list() {
            std::fs::read_dir(root.join(&d))
                .and_then(|rd| rd.collect::<std::io::Result<Vec<_>>>())
                .map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let placed: Vec<PathBuf> = layout
            .cold_file_list()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 2)
            .map(|(_, f)| f)
            .collect();
        for f in &placed {
            std::fs::File::open(root.join(f)).map_err(|e| format!("{}: {e}", f.display()))?;
        }
        Ok(placed)
    })();
    daemon::unmount(root)?;
    result
}

/// After each mount: look up every opened `cold/` file (records on disk: no
/// callback, no stall), so that the kernel holds a node for each from the
/// start. The killers reach them at random, a few hundred a minute; without
/// this the daemon's node table would still be growing towards the size of
/// that working set (and step when its hash table doubles) well after the
/// baseline, which is growth of a bounded table, not a leak.
fn warm_up(root: &Path, placed: &[PathBuf]) -> Result<(), String> {
    for f in placed {
        model::retry(|| std::fs::symlink_metadata(root.join(f)))
            .map_err(|e| format!("warm-up {}: {e}", f.display()))?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Controller<'_> {
    fn emit(&self, s: &str) {
        emit(self.json, s);
    }

    fn fail(&mut self, msg: String) {
        progress(&format!("soak: FAILURE: {msg}"));
        self.failures.push(msg);
    }

    /// Wall time since the clients started.
    fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Load time: wall time the clients were not paused.
    fn load(&self) -> Duration {
        let now = self.paused_since.map_or(Duration::ZERO, |s| s.elapsed());
        self.elapsed().saturating_sub(self.paused + now)
    }

    fn resume(&mut self) {
        if let Some(s) = self.paused_since.take() {
            self.paused += s.elapsed();
        }
        self.gate.resume();
    }

    fn participants(&self) -> usize {
        self.inputs.workers + self.inputs.killers
    }

    fn run(&mut self) -> Result<(), String> {
        let total_ms = self.inputs.total.as_millis() as u64;
        let mut plan: VecDeque<(Duration, Kind)> = [
            (2, Kind::Unmount),
            (3, Kind::Kill),
            (4, Kind::Unmount),
            (5, Kind::Kill),
        ]
        .into_iter()
        .filter(|_| self.inputs.remounts)
        .map(|(k, kind)| (Duration::from_millis(total_ms * k / 6), kind))
        .collect();
        let mut next_tick = 1;
        while next_tick <= self.inputs.ticks {
            let tick_at = self.inputs.tick * next_tick as u32;
            let due = plan.front().map_or(tick_at, |e| e.0.min(tick_at));
            self.wait_until(due)?;
            self.pause()?;
            if self.load() >= tick_at {
                self.sample(next_tick)?;
                next_tick += 1;
            }
            while let Some(&(at, kind)) = plan.front() {
                if at > self.load() {
                    break;
                }
                plan.pop_front();
                self.remount(kind)?;
            }
            if next_tick <= self.inputs.ticks {
                self.resume();
            }
        }
        // Paused since the last sample; nothing is left to take but in case.
        self.pause()?;
        self.latencies.extend(self.cstats.take_latencies());
        Ok(())
    }

    /// Let the clients run until `due` (load time), watching the daemon.
    fn wait_until(&mut self, due: Duration) -> Result<(), String> {
        let mut reported_stuck = false;
        loop {
            check()?;
            let now = self.load();
            if now >= due {
                return Ok(());
            }
            std::thread::sleep((due - now).min(Duration::from_secs(1)));
            if !daemon::alive(self.pid) {
                self.fail(format!(
                    "daemon {} (pid {}) died at {:.1} s without being killed",
                    self.daemon,
                    self.pid,
                    self.elapsed().as_secs_f64()
                ));
                self.pause()?;
                self.remount(Kind::Crash)?;
                self.resume();
                continue;
            }
            if let Ok(m) = daemon::metrics(self.pid) {
                self.peak = self.peak.max(m);
            }
            let stuck = self.wstats.stuck(OP_LIMIT);
            if !stuck.is_empty() && !reported_stuck {
                reported_stuck = true;
                self.fail(format!("operations stuck: {}", stuck.join("; ")));
            }
        }
    }

    /// Park every client; if they do not park, kill the daemon so that their
    /// requests end, and give up.
    fn pause(&mut self) -> Result<(), String> {
        if self.paused_since.is_none() {
            self.paused_since = Some(Instant::now());
        }
        if let Err(e) = self.gate.pause(self.participants(), PAUSE_LIMIT) {
            let stuck = self.wstats.stuck(Duration::ZERO);
            self.fail(format!("{e} (in flight: {})", stuck.join("; ")));
            let _ = daemon::kill9(self.pid);
            return Err("clients hung".into());
        }
        Ok(())
    }

    /// Fold this daemon's counters since the last look into the totals; the
    /// callback and injected deltas, and the nodes the kernel holds.
    fn absorb_status(&mut self) -> Result<([u64; 3], [u64; 5], u64), String> {
        let st = daemon::status(self.root)?;
        let nodes = st["nodes"].as_u64().unwrap_or(0);
        let cb = daemon::callbacks(&st);
        let inj = daemon::faults(&st);
        let mut dcb = [0; 3];
        for (i, d) in dcb.iter_mut().enumerate() {
            *d = cb[i].saturating_sub(self.prev_cb[i]);
            self.prev_cb[i] = cb[i];
        }
        let mut dinj = [0; 5];
        for (i, d) in dinj.iter_mut().enumerate() {
            *d = inj[i].saturating_sub(self.prev_inj[i]);
            self.prev_inj[i] = inj[i];
            self.injected[i] += *d;
        }
        Ok((dcb, dinj, nodes))
    }

    fn sample(&mut self, tick: u64) -> Result<(), String> {
        let (settled, took) =
            match daemon::settle(self.root, self.pid, self.inputs.settle, IDLE_LIMIT) {
                Ok(x) => x,
                Err(e) => {
                    self.fail(format!("tick {tick}: {e}"));
                    (daemon::metrics(self.pid)?, IDLE_LIMIT)
                }
            };
        let (cb, inj, nodes) = self.absorb_status()?;
        let now = Totals::now(self.wstats, self.cstats);
        let d = now.minus(self.prev);
        self.prev = now;
        let lat = self.cstats.take_latencies();
        let max = lat.iter().max().copied().unwrap_or_default();
        self.latencies.extend(lat);
        let row = Row {
            tick,
            at_s: self.elapsed().as_secs_f64(),
            load_s: self.load().as_secs_f64(),
            daemon: self.daemon,
            pid: self.pid,
            ops: d[0],
            eio: d[1],
            bad: d[2],
            signalled: d[3],
            released: d[4],
            late: d[5],
            early: d[6],
            max_release_ms: ms(max),
            settled,
            peak: self.peak.max(settled),
            settle_s: took.as_secs_f64(),
            nodes,
            callbacks: cb,
            injected: [inj[0], inj[1], inj[3]],
        };
        self.peak = Metrics::default();
        self.emit(&row_line(&row));
        self.rows.push(row);
        Ok(())
    }

    /// The whole model: the fixed part and every worker's.
    fn full_model(&self) -> Model {
        let mut m = self.fixed.clone();
        for w in self.models {
            m.merge(&w.lock().unwrap_or_else(|e| e.into_inner()));
        }
        m
    }

    /// Names of the root, then the workers' trees and `shared/` (not `cold/`,
    /// whose every callback stalls), with the contents already local.
    fn verify_after_remount(&self) -> (usize, Vec<String>) {
        let full = self.full_model();
        let mut tops: Vec<PathBuf> = (0..self.inputs.workers).map(Layout::home).collect();
        tops.push("shared".into());
        let (mut diffs, compared) = model::diff(
            self.root,
            self.source,
            &full,
            &tops,
            Depth::LocalContent,
            20,
        );
        let names = model::retry(|| {
            std::fs::read_dir(self.root)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<std::collections::BTreeSet<_>>>()
        });
        match names {
            Ok(n) if n == full.children(Path::new("")) => {}
            Ok(n) => diffs.push(format!("root listing {n:?}")),
            Err(e) => diffs.push(format!("root listing: {e}")),
        }
        (compared, diffs)
    }

    /// Two `cat`s waiting on stalled GetFileData, then SIGKILL of the daemon;
    /// how long each took to be gone (None: not waiting, or never gone).
    fn kill_with_victims(&mut self) -> Result<Vec<Option<f64>>, String> {
        let mut kids = Vec::new();
        for _ in 0..2 {
            let f = &self.placed_cold[self.rng.next() as usize % self.placed_cold.len()];
            match clients::spawn_cat(&self.root.join(f)) {
                Ok(c) => kids.push(c),
                Err(e) => self.fail(format!("cannot start cat: {e}")),
            }
        }
        let limit = self.inputs.stall + Duration::from_secs(2);
        let waiting: Vec<bool> = kids
            .iter_mut()
            .map(|c| clients::wait_pending(c, limit))
            .collect();
        let at = Instant::now();
        daemon::kill9(self.pid)?;
        let mut out = Vec::new();
        for (kid, waited) in kids.iter_mut().zip(waiting) {
            let gone = clients::wait_gone(kid, at, Duration::from_secs(10)).map(|(_, d)| d);
            if !waited {
                out.push(None);
                continue;
            }
            self.victims.0 += 1;
            match gone {
                Some(d) if d <= RELEASE_LIMIT => self.victims.1 += 1,
                Some(d) => self.fail(format!(
                    "a cat waiting when the daemon was killed was gone only after {:.3} s",
                    d.as_secs_f64()
                )),
                None => self.fail("a cat waiting when the daemon was killed never ended".into()),
            }
            out.push(gone.map(ms));
        }
        Ok(out)
    }

    fn remount(&mut self, kind: Kind) -> Result<(), String> {
        let start = Instant::now();
        let at_s = self.elapsed().as_secs_f64();
        let load_s = self.load().as_secs_f64();
        progress(&format!(
            "soak: {} at {at_s:.0} s ({load_s:.0} s of load)",
            kind.name()
        ));
        let mut victims = Vec::new();
        if kind != Kind::Crash {
            self.absorb_status()?;
        }
        // The log is kept across mounts; this daemon's panics are its growth.
        let total = daemon::logged_panics(self.root);
        let panics = total.saturating_sub(self.panics_seen);
        self.panics_seen = self.panics_seen.max(total);
        self.panics_logged += panics;
        match kind {
            Kind::Unmount => {
                self.unmount(&format!("unmount at {at_s:.0} s"));
            }
            Kind::Kill => victims = self.kill_with_victims()?,
            Kind::Crash => {}
        }
        let old_pid = self.pid;
        self.pid = daemon::mount(&self.inputs.mount_args, self.source, self.root)?;
        warm_up(self.root, &self.placed_cold)?;
        self.daemon += 1;
        self.prev_cb = [0; 3];
        self.prev_inj = [0; 5];
        let (compared, diffs) = self.verify_after_remount();
        for d in &diffs {
            self.fail(format!("after the {} at {at_s:.0} s: {d}", kind.name()));
        }
        let ev = Event {
            at_s,
            load_s,
            kind: kind.name(),
            old_pid,
            new_pid: self.pid,
            victims_ms: victims,
            took_s: start.elapsed().as_secs_f64(),
            compared,
            diffs,
            panics_logged: panics,
        };
        self.emit(&format!(
            "---- {:.1} s ({:.1} s of load): {} of daemon {} (pid {old_pid}, {panics} panics in its log){}; \
             daemon {} (pid {}) mounted; {} items compared with the model, {} differences; \
             took {:.1} s\n{}",
            ev.at_s,
            ev.load_s,
            ev.kind,
            self.daemon - 1,
            if ev.victims_ms.is_empty() {
                String::new()
            } else {
                format!(
                    "; waiting cats gone after {}",
                    ev.victims_ms
                        .iter()
                        .map(|v| v.map_or("-".into(), |v| format!("{v:.1} ms")))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            self.daemon,
            self.pid,
            ev.compared,
            ev.diffs.len(),
            ev.took_s,
            row_header()
        ));
        self.events.push(ev);
        Ok(())
    }

    /// With the clients stopped: a clean unmount, a mount without faults, and
    /// the whole root compared with the model, every file read.
    fn finish(&mut self) {
        progress("soak: final unmount and walk of the whole root without faults");
        if let Err(e) = self.absorb_status() {
            self.fail(format!("final status: {e}"));
        }
        let total = daemon::logged_panics(self.root);
        self.panics_logged += total.saturating_sub(self.panics_seen);
        self.panics_seen = self.panics_seen.max(total);
        if !self.unmount("final unmount") {
            return;
        }
        if let Err(e) = daemon::mount(&["--sync".to_string()], self.source, self.root) {
            self.fail(format!("final mount: {e}"));
            return;
        }
        let full = self.full_model();
        let (diffs, compared) = model::diff(
            self.root,
            self.source,
            &full,
            &[PathBuf::new()],
            Depth::Full,
            50,
        );
        if full.nodes.len() != compared {
            self.fail(format!(
                "the final walk compared {compared} items, the model has {}",
                full.nodes.len()
            ));
        }
        for d in &diffs {
            self.fail(format!("at the end: {d}"));
        }
        self.final_walk = (compared, diffs);
        self.unmount("unmount after the final walk");
    }

    /// `prjfs unmount`, retried for up to 5 s while the root is busy. Busy
    /// because of other programs only (something on the machine may walk the
    /// temp dir) is a note; busy with nobody holding it, held by the soak
    /// itself, or never freed, is a failure (then the mount is detached and
    /// the daemon killed). False when the root could not be unmounted cleanly.
    fn unmount(&mut self, when: &str) -> bool {
        let start = Instant::now();
        let mut holders: Option<Vec<String>> = None;
        loop {
            match daemon::unmount(self.root) {
                Ok(()) => break,
                Err(e) if e.contains("busy") && start.elapsed() < Duration::from_secs(5) => {
                    if holders.is_none() {
                        holders = Some(daemon::holders(self.root));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    self.fail(format!("{when}: {e}; held by {holders:?}"));
                    let _ = rustix::mount::unmount(self.root, rustix::mount::UnmountFlags::DETACH);
                    let _ = daemon::kill9(self.pid);
                    return false;
                }
            }
        }
        if let Some(h) = holders {
            let busy = format!("{when}: busy for {:.0} ms", ms(start.elapsed()));
            let me = format!("{} ", std::process::id());
            if h.is_empty() || h.iter().any(|l| l.starts_with(&me)) {
                self.fail(format!("{busy}, held by {h:?}"));
            } else {
                self.notes
                    .push(format!("{busy}, held by other programs: {h:?}"));
            }
        }
        true
    }
}
