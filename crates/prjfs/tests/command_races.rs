//! Race tests for the command table: a command's callback return, the
//! provider's `complete_command` and the client's interrupt race on different
//! threads; exactly one of them ends the command, and the counters add up.
//!
//! Every scenario runs many seeded iterations; each thread of an iteration waits at
//! a barrier, then spins or yields a random while before acting, so the orderings
//! differ from one iteration to the next. A failure names its scenario and seed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use prjfs::cancel::CancelSlot;
use prjfs::command::{CallbackKind, CommandOutcome, CommandStats, CommandTable};
use prjfs::testing::CallbackDataBuilder;
use prjfs::{
    CallbackData, CommandId, Completion, Extended, InstanceApi, InstanceError, InstanceHandle,
    PlaceholderInfo, ProviderError,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ITERATIONS: u64 = 2_000;

/// An instance that refuses everything: the table only carries the handle around.
struct NoInstance;

impl InstanceApi for NoInstance {
    fn write_placeholder_info(
        &self,
        _path: &std::path::Path,
        _info: &PlaceholderInfo,
    ) -> Result<(), InstanceError> {
        Err(InstanceError::Stopped)
    }

    fn write_file_data(
        &self,
        _stream_id: u64,
        _offset: u64,
        _data: &[u8],
    ) -> Result<(), InstanceError> {
        Err(InstanceError::Stopped)
    }

    fn complete_command(
        &self,
        _id: CommandId,
        _result: Result<(), ProviderError>,
        _extended: Option<Extended>,
    ) -> Completion {
        Completion::Ignored
    }

    fn clear_negative_path_cache(&self) -> usize {
        0
    }
}

fn data(id: CommandId, instance: &InstanceHandle) -> CallbackData {
    CallbackDataBuilder::new(instance.clone())
        .command_id(id)
        .path(PathBuf::from(format!("dir/file{id}")))
        .file_id(0)
        .data_stream_id(0)
        .build()
}

/// How a continuation saw its command end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Ok,
    Err,
    Cancelled,
}

/// What continuations of one command observed (a continuation running twice shows
/// up as two entries).
type Log = Arc<Mutex<Vec<Seen>>>;

fn recording(log: &Log) -> Box<dyn FnOnce(CommandOutcome) + Send> {
    let log = log.clone();
    Box::new(move |outcome| {
        let seen = match outcome {
            CommandOutcome::Finished(Ok(()), _) => Seen::Ok,
            CommandOutcome::Finished(Err(_), _) => Seen::Err,
            CommandOutcome::Cancelled => Seen::Cancelled,
        };
        log.lock().expect("log lock").push(seen);
    })
}

fn result_of(ok: bool) -> Result<(), ProviderError> {
    if ok {
        Ok(())
    } else {
        Err(ProviderError::Other("provider failure".into()))
    }
}

/// A random short pause: nothing, a yield, or a spin of up to a few microseconds.
fn jitter(rng: &mut StdRng) {
    match rng.random_range(0..4) {
        0 => {}
        1 => std::thread::yield_now(),
        _ => {
            for _ in 0..rng.random_range(0..400) {
                std::hint::spin_loop();
            }
        }
    }
}

fn rng(seed: u64, thread: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ thread)
}

fn finished(s: &CommandStats) -> u64 {
    s.completed + s.failed + s.cancelled
}

fn kind_total(s: &CommandStats) -> u64 {
    s.by_kind.iter().map(|(_, n)| n).sum()
}

/// Samples the table's counters while a scenario runs: finished commands only
/// grow, never exceed what was inserted, and `pending` stays within the commands
/// that can be live.
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Monitor {
    fn start(table: &Arc<CommandTable>, inserted: &Arc<AtomicU64>, max_live: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s, ins) = (table.clone(), stop.clone(), inserted.clone());
        let thread = std::thread::spawn(move || {
            let mut last = 0;
            let mut samples = 0;
            // At least one sample, also when the scenario ends before this
            // thread first runs (a loaded machine): stop is read after it.
            loop {
                let stopping = s.load(Ordering::SeqCst);
                let st = t.stats();
                let done = finished(&st);
                // Read after the stats: a command is counted as inserted first.
                let ins = ins.load(Ordering::SeqCst);
                assert!(done >= last, "finished count went down: {last} -> {done}");
                assert!(done <= ins, "{done} finished but only {ins} inserted");
                assert!(
                    st.pending <= max_live,
                    "pending {} exceeds the {max_live} commands that can be live",
                    st.pending
                );
                // (`invoked` and `by_kind` are separate counters: a snapshot taken
                // mid-start may disagree; they are compared once all is quiet.)
                last = done;
                samples += 1;
                if stopping {
                    break;
                }
                std::thread::yield_now();
            }
            samples
        });
        Monitor {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let samples = self
            .thread
            .take()
            .expect("monitor runs")
            .join()
            .expect("the counters stayed consistent while sampled");
        assert!(samples > 0);
    }
}

/// The library's three ways to end a command race: the callback thread starts the
/// command and returns Done, an error, or Pending; a provider thread completes it
/// (with a result of its own) once it was invoked; the client's interrupt fires the
/// request's cancel slot. Sometimes a stray cancel of an unknown id joins in.
#[test]
fn callback_return_vs_complete_vs_interrupt() {
    let table = Arc::new(CommandTable::new());
    let instance = InstanceHandle::new(Arc::new(NoInstance));
    let inserted = Arc::new(AtomicU64::new(0));
    let monitor = Monitor::start(&table, &inserted, 1);
    let (mut ok, mut err, mut cancelled, mut invoked) = (0u64, 0u64, 0u64, 0u64);

    for seed in 0..ITERATIONS {
        let mut main_rng = rng(seed, 99);
        let kind = CallbackKind::ALL[main_rng.random_range(0..CallbackKind::ALL.len())];
        let id = table.allocate_id();
        let log: Log = Arc::default();
        inserted.fetch_add(1, Ordering::SeqCst);
        table.insert(kind, data(id, &instance), recording(&log));
        // As the virtualizer does: the request's cancel slot cancels this command.
        let slot = CancelSlot::new();
        let cancel_result: Arc<Mutex<Option<Option<CallbackData>>>> = Arc::default();
        {
            let (t, r) = (table.clone(), cancel_result.clone());
            slot.arm(move || *r.lock().expect("cancel result lock") = Some(t.cancel(id)));
        }
        // 0: not started yet, 1: start returned the command, 2: start returned None.
        let phase = AtomicU8::new(0);
        let stray = main_rng.random_bool(0.25);
        let barrier = Barrier::new(if stray { 4 } else { 3 });

        let (callback, completer) = std::thread::scope(|s| {
            let callback = s.spawn(|| {
                let mut r = rng(seed, 1);
                barrier.wait();
                jitter(&mut r);
                let started = table.start(id);
                if let Some((k, d)) = &started {
                    assert_eq!(*k, kind, "seed {seed}");
                    assert_eq!(d.command_id, id, "seed {seed}");
                }
                phase.store(if started.is_some() { 1 } else { 2 }, Ordering::SeqCst);
                if started.is_none() {
                    return (false, None, None);
                }
                jitter(&mut r);
                match r.random_range(0..3) {
                    0 => (
                        true,
                        Some(true),
                        Some(table.finish(id, result_of(true), None)),
                    ),
                    1 => (
                        true,
                        Some(false),
                        Some(table.finish(id, result_of(false), None)),
                    ),
                    _ => {
                        table.mark_pending(id);
                        (true, None, None)
                    }
                }
            });
            let completer = s.spawn(|| {
                let mut r = rng(seed, 2);
                barrier.wait();
                // A provider completes only a command it was given; after a cancel
                // before start it completes a stray id, which must be ignored.
                while phase.load(Ordering::SeqCst) == 0 {
                    std::hint::spin_loop();
                }
                jitter(&mut r);
                let ok = r.random_bool(0.5);
                (ok, table.finish(id, result_of(ok), None))
            });
            let interrupter = s.spawn(|| {
                let mut r = rng(seed, 3);
                barrier.wait();
                jitter(&mut r);
                slot.fire();
            });
            if stray {
                s.spawn(|| {
                    let mut r = rng(seed, 4);
                    barrier.wait();
                    jitter(&mut r);
                    assert!(table.cancel(id + 1_000_000).is_none());
                    assert!(table.cancel(0).is_none());
                });
            }
            interrupter.join().expect("interrupter thread");
            (
                callback.join().expect("callback thread"),
                completer.join().expect("completer thread"),
            )
        });
        let (started, returned_ok, returned) = callback;
        let (completer_ok, completed) = completer;
        let cancel = cancel_result
            .lock()
            .expect("cancel result lock")
            .take()
            .expect("the fired slot ran its hook");

        let seen = log.lock().expect("log lock").clone();
        assert_eq!(seen.len(), 1, "seed {seed}: continuation ran {seen:?}");
        let winners = [returned, Some(completed)]
            .iter()
            .filter(|c| **c == Some(Completion::Completed))
            .count();
        match seen[0] {
            Seen::Cancelled => {
                cancelled += 1;
                assert_eq!(winners, 0, "seed {seed}: cancelled, yet a finish won");
                // CancelCommand goes to the provider exactly when it was invoked.
                assert_eq!(cancel.is_some(), started, "seed {seed}");
                if let Some(d) = &cancel {
                    assert_eq!(d.command_id, id, "seed {seed}");
                }
            }
            outcome => {
                assert_eq!(winners, 1, "seed {seed}: {outcome:?} needs one winner");
                assert!(started, "seed {seed}: finished without being started");
                assert!(
                    cancel.is_none(),
                    "seed {seed}: cancel of a finished command"
                );
                let expected_ok = if returned == Some(Completion::Completed) {
                    returned_ok.expect("a returning callback chose a result")
                } else {
                    completer_ok
                };
                assert_eq!(outcome == Seen::Ok, expected_ok, "seed {seed}");
                if outcome == Seen::Ok {
                    ok += 1;
                } else {
                    err += 1;
                }
            }
        }
        if started {
            invoked += 1;
        }
        // Late stragglers change nothing.
        let before = table.stats();
        table.mark_pending(id);
        assert_eq!(table.finish(id, Ok(()), None), Completion::Ignored);
        assert!(table.cancel(id).is_none());
        slot.fire();
        assert_eq!(table.stats(), before, "seed {seed}");
        assert_eq!(log.lock().expect("log lock").len(), 1, "seed {seed}");
        assert!(table.live_ids().is_empty(), "seed {seed}");
    }
    monitor.finish();

    let st = table.stats();
    assert_eq!(st.pending, 0);
    assert_eq!(st.completed, ok);
    assert_eq!(st.failed, err);
    assert_eq!(st.cancelled, cancelled);
    assert_eq!(finished(&st), ITERATIONS);
    assert_eq!(st.invoked, invoked);
    assert_eq!(kind_total(&st), invoked);
    // The orderings varied: each way of ending happened.
    assert!(ok > 0 && err > 0 && cancelled > 0, "{st:?}");
}

/// A cancel that wins against the callback thread's `start` keeps the provider from
/// ever hearing of the command; one that loses reports the invoked command so the
/// provider hears CancelCommand.
#[test]
fn cancel_vs_start() {
    let table = Arc::new(CommandTable::new());
    let instance = InstanceHandle::new(Arc::new(NoInstance));
    let (mut before_start, mut after_start) = (0u64, 0u64);
    for seed in 0..ITERATIONS {
        let id = table.allocate_id();
        let log: Log = Arc::default();
        table.insert(
            CallbackKind::GetFileData,
            data(id, &instance),
            recording(&log),
        );
        let barrier = Barrier::new(2);
        let (started, cancel) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let mut r = rng(seed, 1);
                barrier.wait();
                jitter(&mut r);
                table.start(id).is_some()
            });
            let c = s.spawn(|| {
                let mut r = rng(seed, 2);
                barrier.wait();
                jitter(&mut r);
                table.cancel(id)
            });
            (a.join().expect("start"), c.join().expect("cancel"))
        });
        assert_eq!(cancel.is_some(), started, "seed {seed}");
        assert_eq!(
            *log.lock().expect("log lock"),
            [Seen::Cancelled],
            "seed {seed}"
        );
        if started {
            after_start += 1;
            // The callback still returns later; that finds nothing.
            table.mark_pending(id);
            assert_eq!(table.finish(id, Ok(()), None), Completion::Ignored);
        } else {
            before_start += 1;
            assert!(table.start(id).is_none(), "seed {seed}");
        }
    }
    let st = table.stats();
    assert_eq!(st.cancelled, ITERATIONS);
    assert_eq!(st.invoked, after_start);
    assert_eq!(st.completed + st.failed + st.pending, 0);
    assert!(table.live_ids().is_empty());
    assert!(
        before_start > 0 && after_start > 0,
        "{before_start} {after_start}"
    );
}

/// The plain sequences the contract names, without races.
#[test]
fn sequential_rules() {
    let table = CommandTable::new();
    let instance = InstanceHandle::new(Arc::new(NoInstance));

    // Cancel before start: start returns None, the provider is never invoked.
    let id = table.allocate_id();
    let log: Log = Arc::default();
    table.insert(
        CallbackKind::GetPlaceholderInfo,
        data(id, &instance),
        recording(&log),
    );
    assert!(
        table.cancel(id).is_none(),
        "a queued command was not invoked"
    );
    assert!(table.start(id).is_none());
    assert_eq!(*log.lock().unwrap(), [Seen::Cancelled]);
    let st = table.stats();
    assert_eq!((st.invoked, st.cancelled, st.pending), (0, 1, 0));

    // Pending, cancelled, then completed: Ignored, no counter changes.
    let id = table.allocate_id();
    let log: Log = Arc::default();
    table.insert(
        CallbackKind::GetFileData,
        data(id, &instance),
        recording(&log),
    );
    assert_eq!(
        table.start(id).map(|(k, _)| k),
        Some(CallbackKind::GetFileData)
    );
    table.mark_pending(id);
    assert_eq!(table.stats().pending, 1);
    let d = table.cancel(id).expect("an invoked command is reported");
    assert_eq!(d.command_id, id);
    let before = table.stats();
    assert_eq!(before.pending, 0);
    assert_eq!(table.finish(id, Ok(()), None), Completion::Ignored);
    assert_eq!(
        table.finish(id, Err(ProviderError::NotFound), None),
        Completion::Ignored
    );
    assert!(table.cancel(id).is_none());
    table.mark_pending(id);
    assert_eq!(table.stats(), before);
    assert_eq!(*log.lock().unwrap(), [Seen::Cancelled]);

    // Finished, then marked pending (the callback returned Pending after the
    // provider completed from another thread): harmless.
    let id = table.allocate_id();
    let log: Log = Arc::default();
    table.insert(
        CallbackKind::GetEnumeration,
        data(id, &instance),
        recording(&log),
    );
    table.start(id).expect("queued command starts");
    assert_eq!(table.finish(id, Ok(()), None), Completion::Completed);
    table.mark_pending(id);
    assert_eq!(table.stats().pending, 0);
    assert!(table.live_ids().is_empty());
    assert_eq!(table.finish(id, Ok(()), None), Completion::Ignored);
    assert_eq!(*log.lock().unwrap(), [Seen::Ok]);

    // Unknown ids: never allocated, zero, far out.
    let before = table.stats();
    for unknown in [0, id + 1, u64::MAX] {
        assert!(table.cancel(unknown).is_none());
        assert!(table.start(unknown).is_none());
        table.mark_pending(unknown);
        assert_eq!(table.finish(unknown, Ok(()), None), Completion::Ignored);
    }
    assert_eq!(table.stats(), before);
    let st = table.stats();
    assert_eq!((st.completed, st.failed, st.cancelled), (1, 0, 2));
}

/// Many live commands on one table: callback threads start and return, provider
/// threads complete pended commands, interrupt threads cancel random ids (live,
/// finished, and never allocated). Every continuation runs exactly once.
#[test]
fn many_commands_on_one_table() {
    const COMMANDS: usize = 4_000;
    const CALLBACK_THREADS: usize = 4;
    const COMPLETERS: usize = 2;
    const INTERRUPTERS: usize = 2;

    for seed in 0..4u64 {
        let table = Arc::new(CommandTable::new());
        let instance = InstanceHandle::new(Arc::new(NoInstance));
        let inserted = Arc::new(AtomicU64::new(0));
        let monitor = Monitor::start(&table, &inserted, COMMANDS as u64);
        let runs: Arc<Vec<AtomicU8>> = Arc::new((0..=COMMANDS).map(|_| AtomicU8::new(0)).collect());
        let outcomes: Arc<Vec<AtomicU8>> =
            Arc::new((0..=COMMANDS).map(|_| AtomicU8::new(0)).collect());
        let queue: Mutex<Vec<CommandId>> = Mutex::new(Vec::new());
        let pended: Mutex<Vec<CommandId>> = Mutex::new(Vec::new());
        let producing = AtomicBool::new(true);
        let callbacks_running = AtomicUsize::new(CALLBACK_THREADS);
        let invoked = AtomicU64::new(0);
        let provider_cancels = AtomicU64::new(0);

        std::thread::scope(|s| {
            // The request side: insert commands and queue them for a callback slot.
            s.spawn(|| {
                let mut r = rng(seed, 0);
                for _ in 0..COMMANDS {
                    let id = table.allocate_id();
                    let (runs, outcomes) = (runs.clone(), outcomes.clone());
                    inserted.fetch_add(1, Ordering::SeqCst);
                    table.insert(
                        CallbackKind::ALL[r.random_range(0..CallbackKind::ALL.len())],
                        data(id, &instance),
                        Box::new(move |o| {
                            runs[id as usize].fetch_add(1, Ordering::SeqCst);
                            let code = match o {
                                CommandOutcome::Finished(Ok(()), _) => 1,
                                CommandOutcome::Finished(Err(_), _) => 2,
                                CommandOutcome::Cancelled => 3,
                            };
                            outcomes[id as usize].store(code, Ordering::SeqCst);
                        }),
                    );
                    queue.lock().unwrap().push(id);
                    jitter(&mut r);
                }
                producing.store(false, Ordering::SeqCst);
            });
            for t in 0..CALLBACK_THREADS {
                let (table, queue, pended, invoked) = (&table, &queue, &pended, &invoked);
                let (producing, callbacks_running) = (&producing, &callbacks_running);
                s.spawn(move || {
                    let mut r = rng(seed, 10 + t as u64);
                    loop {
                        let next = queue.lock().unwrap().pop();
                        let Some(id) = next else {
                            if !producing.load(Ordering::SeqCst) && queue.lock().unwrap().is_empty()
                            {
                                break;
                            }
                            std::thread::yield_now();
                            continue;
                        };
                        let Some((_, d)) = table.start(id) else {
                            continue;
                        };
                        assert_eq!(d.command_id, id);
                        invoked.fetch_add(1, Ordering::SeqCst);
                        jitter(&mut r);
                        match r.random_range(0..3) {
                            0 => {
                                table.finish(id, Ok(()), None);
                            }
                            1 => {
                                table.finish(id, Err(ProviderError::Io(libc::EIO)), None);
                            }
                            _ => {
                                // Hand the id over first, as a provider does: the
                                // completion may beat mark_pending.
                                pended.lock().unwrap().push(id);
                                jitter(&mut r);
                                table.mark_pending(id);
                            }
                        }
                    }
                    callbacks_running.fetch_sub(1, Ordering::SeqCst);
                });
            }
            for t in 0..COMPLETERS {
                let (table, pended, callbacks_running) = (&table, &pended, &callbacks_running);
                s.spawn(move || {
                    let mut r = rng(seed, 20 + t as u64);
                    loop {
                        // Read before popping: once no callback thread runs, an
                        // empty list stays empty.
                        let done = callbacks_running.load(Ordering::SeqCst) == 0;
                        let next = pended.lock().unwrap().pop();
                        match next {
                            Some(id) => {
                                jitter(&mut r);
                                let ok = r.random_bool(0.5);
                                table.finish(id, result_of(ok), None);
                            }
                            None if done => break,
                            None => std::thread::yield_now(),
                        }
                    }
                });
            }
            for t in 0..INTERRUPTERS {
                let (table, producing, provider_cancels) = (&table, &producing, &provider_cancels);
                s.spawn(move || {
                    let mut r = rng(seed, 30 + t as u64);
                    while producing.load(Ordering::SeqCst) {
                        let id = r.random_range(0..(COMMANDS as u64 + 50));
                        if let Some(d) = table.cancel(id) {
                            assert_eq!(d.command_id, id);
                            provider_cancels.fetch_add(1, Ordering::SeqCst);
                        }
                        jitter(&mut r);
                    }
                });
            }
        });
        monitor.finish();

        assert!(table.live_ids().is_empty(), "seed {seed}");
        let mut by_outcome = [0u64; 4];
        for id in 1..=COMMANDS {
            assert_eq!(
                runs[id].load(Ordering::SeqCst),
                1,
                "seed {seed}: continuation of {id}"
            );
            by_outcome[outcomes[id].load(Ordering::SeqCst) as usize] += 1;
        }
        let st = table.stats();
        assert_eq!(st.pending, 0, "seed {seed}");
        assert_eq!(st.completed, by_outcome[1], "seed {seed}");
        assert_eq!(st.failed, by_outcome[2], "seed {seed}");
        assert_eq!(st.cancelled, by_outcome[3], "seed {seed}");
        assert_eq!(finished(&st), COMMANDS as u64, "seed {seed}");
        assert_eq!(st.invoked, invoked.load(Ordering::SeqCst), "seed {seed}");
        assert!(provider_cancels.load(Ordering::SeqCst) <= st.cancelled);
    }
}

/// A continuation runs on the thread that ended the command and may use the table
/// (the enumeration chain queues its next Get from there): no lock may be held.
#[test]
fn continuation_may_use_the_table() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let table = Arc::new(CommandTable::new());
        let instance = InstanceHandle::new(Arc::new(NoInstance));
        let chained = Arc::new(AtomicU64::new(0));
        for seed in 0..ITERATIONS {
            let id = table.allocate_id();
            let (t, i, c) = (table.clone(), instance.clone(), chained.clone());
            table.insert(
                CallbackKind::GetEnumeration,
                data(id, &instance),
                Box::new(move |_| {
                    let _ = t.stats();
                    let next = t.allocate_id();
                    t.insert(
                        CallbackKind::GetEnumeration,
                        data(next, &i),
                        Box::new(move |_| {
                            c.fetch_add(1, Ordering::SeqCst);
                        }),
                    );
                    // End the chained command from here, too.
                    assert!(t.cancel(next).is_none(), "queued: not invoked");
                }),
            );
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut r = rng(seed, 1);
                    barrier.wait();
                    jitter(&mut r);
                    if table.start(id).is_some() {
                        table.finish(id, Ok(()), None);
                    }
                });
                s.spawn(|| {
                    let mut r = rng(seed, 2);
                    barrier.wait();
                    jitter(&mut r);
                    table.cancel(id);
                });
            });
        }
        assert_eq!(chained.load(Ordering::SeqCst), ITERATIONS);
        assert!(table.live_ids().is_empty());
        assert_eq!(finished(&table.stats()), 2 * ITERATIONS);
        tx.send(()).expect("report");
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a continuation using the table deadlocked (or the scenario failed)");
}

/// The request's cancel slot: an interrupt racing the arming (the virtualizer arms
/// it after queueing the command) runs the hook exactly once; so do two interrupts.
#[test]
fn cancel_slot_arm_vs_fire() {
    for seed in 0..ITERATIONS {
        let slot = CancelSlot::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Barrier::new(3);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut r = rng(seed, 1);
                barrier.wait();
                jitter(&mut r);
                let runs = runs.clone();
                slot.arm(move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                });
            });
            for t in 0..2 {
                let (slot, barrier) = (&slot, &barrier);
                s.spawn(move || {
                    let mut r = rng(seed, 2 + t);
                    barrier.wait();
                    jitter(&mut r);
                    slot.fire();
                });
            }
        });
        assert!(slot.is_fired());
        assert_eq!(runs.load(Ordering::SeqCst), 1, "seed {seed}");
    }
}

/// "Not found" is a normal answer (a lookup of a name the store does not have):
/// it counts as completed, not failed.
#[test]
fn not_found_counts_as_completed() {
    let table = CommandTable::new();
    let instance = InstanceHandle::new(Arc::new(NoInstance));
    let id = table.allocate_id();
    table.insert(
        CallbackKind::GetPlaceholderInfo,
        data(id, &instance),
        Box::new(|_| {}),
    );
    assert!(table.start(id).is_some());
    assert_eq!(
        table.finish(id, Err(ProviderError::NotFound), None),
        Completion::Completed
    );
    let st = table.stats();
    assert_eq!((st.completed, st.failed), (1, 0));
}
