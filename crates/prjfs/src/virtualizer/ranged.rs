//! Ranged hydration: a big placeholder file fetched in chunks as clients read
//! it, answered from the partly present temp file, and put in place as a
//! hydrated file once every chunk is present ([`crate::RangedHydration`]).
//!
//! A ranged fetch is a [`Fetch`] with a [`Partial`]: the same entry of
//! `Inner::fetching` (one per node), waiters and temp file as a whole-file
//! fetch, but any number of GetFileData commands, each for a run of whole
//! chunks, all writing on the one stream of the temp file. It is made by the
//! first read of a file of at least `min_file_size` and stays while the file
//! is partly present: until every chunk is present and the file is in place,
//! the item stops needing data (it was made full, or replaced), or the kernel
//! forgets the node. Present chunks live in memory only: after a crash or an
//! unmount the temp file is removed and the file is a plain placeholder again.
//!
//! Invariants (beside those of [`super::fetch`]):
//! * A chunk is *present* when every byte of it has been written (the
//!   arrived ranges cover it). A read waits for every chunk it touches, so no
//!   read sees bytes of a chunk that has not fully arrived.
//! * Every chunk a waiter needs is present or in flight: a request puts the
//!   commands for its missing chunks in flight before it waits, and a
//!   command that ends without delivering its range wakes every waiter that
//!   needs a chunk of it (failed, or cancelled: start over).
//! * At most one command is in flight for a chunk: concurrent readers of a
//!   chunk share it.
//! * The file goes in place only once no command is in flight and every chunk
//!   is present, by [`crate::layer::Layer::finish_shared_hydration`], which
//!   refuses writes from then on: the hydrated file is the chunks as they
//!   arrived, one version when the provider serves each range from the
//!   placeholder's ContentId (an object store's `If-Match`).
//! * An interrupted waiter is answered at once and cancels the in-flight
//!   commands that no other waiter needs (readahead included); the provider
//!   hears CancelCommand, the chunks already present stay.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::fetch::{wake_of, End, Fetch, Stream, Waiter, Wake, WakeFn};
use super::{Inner, RequestCtx};
use crate::command::{CallbackKind, CommandOutcome};
use crate::layer::Hydration;
use crate::provider::ProviderError;
use crate::types::{RangedHydration, VersionInfo};

/// What the commands of a ranged fetch need; fixed for its life.
pub(crate) struct Partial {
    pub(super) config: RangedHydration,
    /// The placeholder's size.
    pub(super) size: u64,
    /// The temp file, shared with the `streams` entries of the commands in
    /// flight.
    pub(super) hydration: Arc<Hydration>,
    /// Where the provider finds the content, and which version.
    pub(super) origin: PathBuf,
    pub(super) version: Option<VersionInfo>,
    /// When a request last used it ([`USE_CLOCK`]).
    pub(super) last_use: AtomicU64,
}

/// Orders the uses of partly present files, for evicting the least recently
/// used.
pub(super) static USE_CLOCK: AtomicU64 = AtomicU64::new(0);

/// Partly present files kept at most, beyond those in use (a request waits
/// in it or a command fills it): each holds two descriptors and the space of
/// its chunks. Making another one drops the least recently used idle one.
pub(super) const MAX_PARTIAL_FILES: usize = 256;

/// Of `partials` (node, idle, last use), the idle ones to drop so that one
/// more fits within `max`, least recently used first.
fn eviction(partials: &[(u64, bool, u64)], max: usize) -> Vec<u64> {
    let excess = (partials.len() + 1).saturating_sub(max);
    let mut idle: Vec<&(u64, bool, u64)> = partials.iter().filter(|p| p.1).collect();
    idle.sort_by_key(|p| p.2);
    idle.into_iter().take(excess).map(|p| p.0).collect()
}

/// Make room for one more partly present file in `fetching` (the table,
/// locked by the caller).
pub(super) fn evict_partials(fetching: &mut HashMap<u64, Arc<Fetch>>) {
    let partials: Vec<(u64, bool, u64)> = fetching
        .iter()
        .filter_map(|(node, f)| {
            let p = f.ranged.as_ref()?;
            let s = f.lock();
            let idle = s.waiters.is_empty() && s.ranged.inflight.is_empty() && !s.ranged.finishing;
            Some((*node, idle, p.last_use.load(Ordering::Relaxed)))
        })
        .collect();
    if partials.len() < MAX_PARTIAL_FILES {
        return;
    }
    for node in eviction(&partials, MAX_PARTIAL_FILES) {
        fetching.remove(&node);
    }
}

/// A command in flight, for `[start, end)` (whole chunks; the last may end at
/// the file's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    key: u64,
    /// 0 until invoked.
    command: u64,
    start: u64,
    end: u64,
}

/// The mutable side of a ranged fetch, under the fetch's lock.
#[derive(Default)]
pub(super) struct RangedState {
    inflight: Vec<InFlight>,
    next_key: u64,
    readahead: Readahead,
    /// The file is being put in place.
    finishing: bool,
}

/// Sequential-read detection: a read that starts inside or right at the end
/// of the previous one continues a streak; the readahead window grows with
/// the streak's length beyond `readahead_after`, so a lone read (the
/// kernel's READs of one `read(2)`, and its own readahead after them) fetches
/// nothing ahead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Readahead {
    last_start: u64,
    last_end: u64,
    /// Bytes read by the current streak.
    streak: u64,
}

impl Readahead {
    /// Record the read `[start, end)`; the window to fetch beyond it.
    fn read(&mut self, start: u64, end: u64, config: &RangedHydration) -> u64 {
        let sequential = start >= self.last_start && start <= self.last_end;
        self.streak = if sequential {
            self.streak + end.saturating_sub(self.last_end.max(start))
        } else {
            end - start
        };
        self.last_start = start;
        self.last_end = end;
        (2 * self.streak.saturating_sub(config.readahead_after)).min(config.max_readahead)
    }
}

/// What one request needs and which commands it starts.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// The chunks to wait for (`None`: the whole file, in place).
    pub(super) need: Option<(u64, u64)>,
    /// Runs of chunks to fetch now, each one command.
    pub(super) fetch: Vec<(u64, u64)>,
}

fn align_down(x: u64, chunk: u64) -> u64 {
    x - x % chunk
}

fn align_up(x: u64, chunk: u64) -> u64 {
    x.div_ceil(chunk).saturating_mul(chunk)
}

/// Whether one of `ranges` (sorted, disjoint) holds all of `[start, end)`.
pub(super) fn covers(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    if start >= end {
        return true;
    }
    let i = ranges.partition_point(|&(_, e)| e <= start);
    ranges.get(i).is_some_and(|&(s, e)| s <= start && end <= e)
}

/// Runs of chunks in `[start, end)` (chunk-aligned; `end` may be the size)
/// that are neither present nor in flight.
fn missing(
    start: u64,
    end: u64,
    size: u64,
    chunk: u64,
    present: &[(u64, u64)],
    inflight: &[InFlight],
) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut at = start;
    while at < end {
        let stop = (at + chunk).min(size);
        let wanted =
            !covers(present, at, stop) && !inflight.iter().any(|f| f.start <= at && at < f.end);
        if wanted {
            match runs.last_mut() {
                Some(run) if run.1 == at => run.1 = stop,
                _ => runs.push((at, stop)),
            }
        }
        at = stop;
    }
    runs
}

/// What a request for `read` (`None`: the whole file) needs and fetches,
/// given the present ranges and the commands in flight; updates the
/// readahead. Readahead is fetched only once at least half a window (and a
/// chunk) of it is missing, so that a sequential reader's commands are few
/// and big; the chunks the request needs are always fetched at once.
pub(super) fn plan(
    state: &mut RangedState,
    present: &[(u64, u64)],
    read: Option<(u64, u64)>,
    config: &RangedHydration,
    size: u64,
) -> Plan {
    let chunk = config.chunk_size;
    let Some((start, end)) = read else {
        let fetch = missing(0, size, size, chunk, present, &state.inflight);
        return Plan { need: None, fetch };
    };
    if start >= end {
        return Plan {
            need: Some((start, start)),
            fetch: Vec::new(),
        };
    }
    let need = (align_down(start, chunk), align_up(end, chunk).min(size));
    let window = state.readahead.read(start, end, config);
    let target = align_up(need.1.saturating_add(window), chunk).min(size);
    let needed = missing(need.0, need.1, size, chunk, present, &state.inflight);
    let ahead = missing(need.1, target, size, chunk, present, &state.inflight);
    let ahead_bytes: u64 = ahead.iter().map(|(a, b)| b - a).sum();
    let mut fetch = needed;
    if ahead_bytes >= chunk.max(window / 2) {
        for (a, b) in ahead {
            match fetch.last_mut() {
                Some(run) if run.1 == a => run.1 = b,
                _ => fetch.push((a, b)),
            }
        }
    }
    Plan {
        need: Some(need),
        fetch,
    }
}

/// Whether the waiter wanting `range` (`None`: all of `[0, size)`) needs a
/// byte of `[start, end)` that has not arrived.
fn needs_part(
    range: Option<(u64, u64)>,
    size: u64,
    start: u64,
    end: u64,
    present: &[(u64, u64)],
) -> bool {
    let (a, b) = range.unwrap_or((0, size));
    let (a, b) = (a.max(start), b.min(end));
    a < b && !covers(present, a, b)
}

impl Inner {
    /// Wait in the ranged fetch `fetch` of `node` for `range` of the file
    /// (`None`: until it is hydrated and in place), starting the commands
    /// for the chunks missing and the readahead.
    pub(super) fn wait_ranged(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        fetch: &Arc<Fetch>,
        fh: u64,
        range: Option<(u64, u64)>,
        wake: WakeFn,
    ) {
        let partial = fetch.ranged.as_ref().expect("a ranged fetch");
        partial
            .last_use
            .store(USE_CLOCK.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        let may_fetch = self.may_call_provider(ctx).is_ok();
        // `Ok(id)`: waiting as waiter `id`; `Err(wake)`: to answer now.
        let (waiting, starts) = {
            let mut s = fetch.lock();
            if let Some(end) = s.end {
                drop(s);
                return wake(wake_of(end));
            }
            let state = &mut *s;
            let plan = plan(
                &mut state.ranged,
                &state.ranges,
                range,
                &partial.config,
                partial.size,
            );
            let covered = plan.need.is_some_and(|(a, b)| s.covers(a, b));
            if !plan.fetch.is_empty() {
                tracing::debug!(
                    "{}: read {range:?} needs {:?} ({}), fetches {:?}",
                    partial.origin.display(),
                    plan.need,
                    if covered { "present" } else { "waits" },
                    plan.fetch
                );
            }
            if !covered && !may_fetch {
                drop(s);
                return wake(Wake::Failed(libc::EIO));
            }
            let mut starts = Vec::new();
            if may_fetch {
                for (start, end) in plan.fetch {
                    let key = s.ranged.next_key;
                    s.ranged.next_key += 1;
                    s.ranged.inflight.push(InFlight {
                        key,
                        command: 0,
                        start,
                        end,
                    });
                    starts.push((key, start, end));
                }
            }
            if covered {
                (Err(wake), starts)
            } else {
                let id = s.next_waiter;
                s.next_waiter += 1;
                s.waiters.push(Waiter {
                    id,
                    range: plan.need,
                    wake,
                });
                (Ok(id), starts)
            }
        };
        let id = match waiting {
            Ok(id) => id,
            Err(wake) => {
                // Present chunks are answered before any readahead starts.
                wake(Wake::Covered(fetch.reader.clone()));
                for (key, start, end) in starts {
                    self.start_chunk(ctx, node, fetch, fh, key, start, end);
                }
                return;
            }
        };
        let weak_fetch = Arc::downgrade(fetch);
        let weak_inner: Weak<Inner> = Arc::downgrade(self);
        ctx.cancel.arm(move || {
            let Some(fetch) = weak_fetch.upgrade() else {
                return;
            };
            let waiter = {
                let mut s = fetch.lock();
                let i = s.waiters.iter().position(|w| w.id == id);
                i.map(|i| s.waiters.swap_remove(i))
            };
            let Some(waiter) = waiter else {
                return; // already woken
            };
            (waiter.wake)(Wake::Interrupted);
            if let Some(inner) = weak_inner.upgrade() {
                inner.cancel_unneeded(&fetch);
            }
        });
        // Started only now that the waiter is in place: a provider answering
        // inline writes (and may finish) before `invoke` returns.
        for (key, start, end) in starts {
            self.start_chunk(ctx, node, fetch, fh, key, start, end);
        }
        if ctx.cancel.is_fired() {
            self.cancel_unneeded(fetch);
        }
    }

    /// Invoke GetFileData for `[start, end)` of the ranged fetch `fetch`, the
    /// command `key` of its in-flight list.
    #[allow(clippy::too_many_arguments)]
    fn start_chunk(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        fetch: &Arc<Fetch>,
        fh: u64,
        key: u64,
        start: u64,
        end: u64,
    ) {
        let partial = fetch.ranged.as_ref().expect("a ranged fetch");
        // A stream per command, gone when the command ends: a provider still
        // writing for a cancelled command is refused (`UnknownStream`), as
        // after a whole-file fetch.
        let stream_id = self.layer.new_stream_id();
        self.streams.lock().expect("streams lock").insert(
            stream_id,
            Stream {
                hydration: partial.hydration.clone(),
                fetch: fetch.clone(),
            },
        );
        let mut data = self.callback_data(ctx, partial.origin.clone());
        data.file_id = fh;
        data.data_stream_id = stream_id;
        data.version = partial.version.clone();
        let inner = self.clone();
        let ended = fetch.clone();
        // No cancel slot: the waiters' own slots cancel the commands.
        let id = self.invoke(
            CallbackKind::GetFileData,
            data,
            None,
            move |p, cb| p.get_file_data(cb, start, end - start),
            move |outcome| {
                inner
                    .streams
                    .lock()
                    .expect("streams lock")
                    .remove(&stream_id);
                inner.end_chunk(node, &ended, key, start, end, outcome)
            },
        );
        let mut s = fetch.lock();
        if let Some(f) = s.ranged.inflight.iter_mut().find(|f| f.key == key) {
            f.command = id;
        }
    }

    /// Cancel the in-flight commands of `fetch` that no waiter needs.
    fn cancel_unneeded(&self, fetch: &Fetch) {
        let size = fetch.ranged.as_ref().map_or(0, |p| p.size);
        let commands: Vec<u64> = {
            let s = fetch.lock();
            s.ranged
                .inflight
                .iter()
                .filter(|f| f.command != 0)
                .filter(|f| {
                    !s.waiters
                        .iter()
                        .any(|w| needs_part(w.range, size, f.start, f.end, &s.ranges))
                })
                .map(|f| f.command)
                .collect()
        };
        for c in commands {
            self.cancel_command(c);
        }
    }

    /// The continuation of one command of a ranged fetch: wake the waiters it
    /// failed, and put the file in place when it was the last one missing.
    fn end_chunk(
        &self,
        node: u64,
        fetch: &Arc<Fetch>,
        key: u64,
        start: u64,
        end: u64,
        outcome: CommandOutcome,
    ) {
        let partial = fetch.ranged.as_ref().expect("a ranged fetch");
        let path = || partial.origin.display().to_string();
        let failure = match outcome {
            CommandOutcome::Finished(Ok(()), _) => None,
            CommandOutcome::Finished(Err(e), _) => {
                if e != ProviderError::Cancelled {
                    tracing::warn!("get_file_data {} {start}..{end}: {e}", path());
                }
                Some(End::Failed(e.errno()))
            }
            CommandOutcome::Cancelled => Some(End::Retry),
        };
        let (woken, finish, idle) = {
            let mut s = fetch.lock();
            s.ranged.inflight.retain(|f| f.key != key);
            let failure = failure.or_else(|| {
                (!s.covers(start, end)).then(|| {
                    tracing::error!(
                        "provider reported success for get_file_data of {} {start}..{end} but did not write all of it",
                        path()
                    );
                    End::Failed(libc::EIO)
                })
            });
            let mut woken = Vec::new();
            if let Some(failure) = failure {
                let (failed, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut s.waiters)
                    .into_iter()
                    .partition(|w| needs_part(w.range, partial.size, start, end, &s.ranges));
                s.waiters = waiting;
                woken = failed.into_iter().map(|w| (w, failure)).collect();
            }
            let idle = s.ranged.inflight.is_empty() && s.waiters.is_empty();
            let finish = s.end.is_none()
                && !s.ranged.finishing
                && s.ranged.inflight.is_empty()
                && s.covers(0, partial.size);
            if finish {
                s.ranged.finishing = true;
            }
            (woken, finish, idle)
        };
        for (w, failure) in woken {
            (w.wake)(wake_of(failure));
        }
        if finish {
            self.finish_partial(node, fetch);
        } else if idle && self.nodes.path(node).is_none() {
            // Forgotten while this command ran.
            self.forget_partial(node);
        }
    }

    /// Every chunk of `fetch` is present and no command is in flight: put the
    /// file in place (where the node is now), leave the table, wake everyone.
    fn finish_partial(&self, node: u64, fetch: &Arc<Fetch>) {
        let partial = fetch.ranged.as_ref().expect("a ranged fetch");
        let end = match self.path(node) {
            Ok(path) => {
                let r = self
                    .layer
                    .finish_shared_hydration(&partial.hydration, &path);
                match self.hydration_result(r, &path, partial.size) {
                    Ok(()) => End::Done,
                    Err(e) => End::Failed(e),
                }
            }
            Err(e) => End::Failed(e),
        };
        if matches!(end, End::Done) {
            self.file_hydrated(node);
        }
        self.leave_fetching(node, fetch);
        fetch.finish(end);
    }

    /// Remove `fetch` from the table if it is still the entry of `node`.
    pub(super) fn leave_fetching(&self, node: u64, fetch: &Fetch) {
        let mut fetching = self.fetching.lock().expect("fetching lock");
        if fetching
            .get(&node)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), fetch))
        {
            fetching.remove(&node);
        }
    }

    /// The kernel forgot `node`: a partly present file of it that nobody
    /// waits for and no command fills is dropped (its temp file removed).
    pub(super) fn forget_partial(&self, node: u64) {
        let mut fetching = self.fetching.lock().expect("fetching lock");
        let idle = fetching.get(&node).is_some_and(|f| {
            f.ranged.is_some() && {
                let s = f.lock();
                s.waiters.is_empty() && s.ranged.inflight.is_empty() && !s.ranged.finishing
            }
        });
        if idle {
            // Its commands' streams are gone with them: this drops the
            // last holder of the temp file, which unlinks it.
            fetching.remove(&node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn config() -> RangedHydration {
        RangedHydration {
            chunk_size: MIB,
            min_file_size: 8 * MIB,
            readahead_after: MIB,
            max_readahead: 8 * MIB,
        }
    }

    fn put(state: &mut RangedState, runs: &[(u64, u64)]) {
        for &(start, end) in runs {
            let key = state.next_key;
            state.next_key += 1;
            state.inflight.push(InFlight {
                key,
                command: key + 1,
                start,
                end,
            });
        }
    }

    #[test]
    fn a_lone_read_fetches_only_the_chunks_it_touches() {
        let mut st = RangedState::default();
        let size = 200 * MIB;
        let p = plan(&mut st, &[], Some((100 * MIB, 101 * MIB)), &config(), size);
        assert_eq!(p.need, Some((100 * MIB, 101 * MIB)));
        assert_eq!(p.fetch, [(100 * MIB, 101 * MIB)]);
        // Unaligned, across a boundary: both chunks, whole.
        let mut st = RangedState::default();
        let p = plan(
            &mut st,
            &[],
            Some((5 * MIB - 10, 5 * MIB + 10)),
            &config(),
            size,
        );
        assert_eq!(p.need, Some((4 * MIB, 6 * MIB)));
        assert_eq!(p.fetch, [(4 * MIB, 6 * MIB)]);
    }

    #[test]
    fn the_last_chunk_ends_at_the_size_and_empty_reads_need_nothing() {
        let mut st = RangedState::default();
        let size = 10 * MIB + 5;
        let p = plan(
            &mut st,
            &[],
            Some((10 * MIB + 1, 10 * MIB + 3)),
            &config(),
            size,
        );
        assert_eq!(p.need, Some((10 * MIB, size)));
        assert_eq!(p.fetch, [(10 * MIB, size)]);
        let p = plan(&mut st, &[], Some((size, size)), &config(), size);
        assert_eq!(p.fetch, []);
        assert!(covers(&[], size, size));
    }

    #[test]
    fn present_and_in_flight_chunks_are_not_fetched_again() {
        let mut st = RangedState::default();
        let size = 5 * MIB;
        put(&mut st, &[(3 * MIB, 4 * MIB)]);
        // Chunk 1 present, chunk 2 half arrived (fetched again, whole).
        let present = [(MIB, 2 * MIB + MIB / 2)];
        let p = plan(&mut st, &present, Some((MIB, 5 * MIB)), &config(), size);
        assert_eq!(p.need, Some((MIB, 5 * MIB)));
        assert_eq!(p.fetch, [(2 * MIB, 3 * MIB), (4 * MIB, 5 * MIB)]);
        // Everything there or coming: nothing to start.
        put(&mut st, &p.fetch);
        let mut st2 = RangedState {
            inflight: st.inflight.clone(),
            ..Default::default()
        };
        let p = plan(&mut st2, &present, Some((MIB, 5 * MIB)), &config(), size);
        assert_eq!(p.fetch, []);
    }

    #[test]
    fn the_whole_file_fetches_every_missing_run() {
        let mut st = RangedState::default();
        let size = 10 * MIB;
        put(&mut st, &[(4 * MIB, 5 * MIB)]);
        let present = [(0, 2 * MIB), (8 * MIB, 9 * MIB)];
        let p = plan(&mut st, &present, None, &config(), size);
        assert_eq!(p.need, None);
        assert_eq!(
            p.fetch,
            [(2 * MIB, 4 * MIB), (5 * MIB, 8 * MIB), (9 * MIB, 10 * MIB)]
        );
    }

    #[test]
    fn sequential_reads_grow_a_readahead_window_up_to_its_bound() {
        let mut st = RangedState::default();
        let size = 200 * MIB;
        let step = 128 << 10;
        let mut fetched: Vec<(u64, u64)> = Vec::new();
        let mut at = 0;
        while at < 40 * MIB {
            let present: Vec<(u64, u64)> = match fetched.last() {
                Some(&(_, e)) => vec![(0, e)],
                None => vec![],
            };
            let p = plan(&mut st, &present, Some((at, at + step)), &config(), size);
            // Fetched runs follow each other with no gap and no overlap.
            for &(a, b) in &p.fetch {
                assert_eq!(a, fetched.last().map_or(0, |r| r.1), "{fetched:?} then {a}");
                assert!(b - a <= config().max_readahead + MIB, "a run of {}", b - a);
                fetched.push((a, b));
            }
            // Everything fetched has arrived by the next read (as if the
            // provider were instant); the window is never exceeded.
            st.inflight.clear();
            let end = fetched.last().unwrap().1;
            assert!(end <= align_up(at + step, MIB) + config().max_readahead + MIB);
            at += step;
        }
        // By the end, the reads ran ahead by more than half the window.
        let end = fetched.last().unwrap().1;
        assert!(end >= at + config().max_readahead / 2, "{end} at {at}");
        // The first chunk's reads fetched nothing ahead.
        assert_eq!(fetched[0], (0, MIB));
    }

    #[test]
    fn a_read_elsewhere_ends_the_streak() {
        let mut st = RangedState::default();
        let size = 200 * MIB;
        let c = config();
        for i in 0..16 {
            plan(&mut st, &[], Some((i * MIB, (i + 1) * MIB)), &c, size);
            st.inflight.clear();
        }
        assert!(st.readahead.streak >= 16 * MIB);
        let p = plan(&mut st, &[], Some((150 * MIB, 150 * MIB + 4096)), &c, size);
        assert_eq!(p.fetch, [(150 * MIB, 151 * MIB)]);
        assert_eq!(st.readahead.streak, 4096);
    }

    #[test]
    fn a_lone_read_and_the_kernels_readahead_fetch_nothing_more() {
        // What the kernel sends for `dd bs=1M skip=100 count=1`: eight READs
        // of 128 KiB, then one of its own readahead.
        let c = RangedHydration::default();
        let mut st = RangedState::default();
        let mut present: Vec<(u64, u64)> = Vec::new();
        let mut fetched = 0;
        let step = 128 << 10;
        for i in 0..9 {
            let at = 100 * MIB + i * step;
            let p = plan(&mut st, &present, Some((at, at + step)), &c, 200 * MIB);
            for (a, b) in p.fetch {
                fetched += b - a;
                crate::layer::insert_range(&mut present, a, b);
            }
        }
        assert_eq!(fetched, MIB + c.chunk_size);
    }

    #[test]
    fn waiters_are_failed_only_for_chunks_they_miss() {
        let present = [(0, 2 * MIB)];
        assert!(needs_part(
            Some((MIB, 3 * MIB)),
            10 * MIB,
            2 * MIB,
            3 * MIB,
            &present
        ));
        assert!(!needs_part(
            Some((0, 2 * MIB)),
            10 * MIB,
            0,
            3 * MIB,
            &present
        ));
        assert!(!needs_part(
            Some((5 * MIB, 6 * MIB)),
            10 * MIB,
            2 * MIB,
            3 * MIB,
            &present
        ));
        assert!(needs_part(None, 10 * MIB, 2 * MIB, 3 * MIB, &present));
        assert!(!needs_part(None, 10 * MIB, 0, MIB, &present));
    }

    #[test]
    fn eviction_drops_the_least_recently_used_idle_partials() {
        let p = [(1, true, 30), (2, false, 5), (3, true, 10), (4, true, 20)];
        assert_eq!(eviction(&p, 10), Vec::<u64>::new());
        assert_eq!(eviction(&p, 4), [3]);
        assert_eq!(eviction(&p, 3), [3, 4]);
        // Busy ones are never dropped, even past the bound.
        assert_eq!(eviction(&p, 1), [3, 4, 1]);
    }

    #[test]
    fn covers_finds_the_range_holding_a_span() {
        let r = [(0, 10), (20, 30), (40, 50)];
        assert!(covers(&r, 20, 30));
        assert!(covers(&r, 21, 29));
        assert!(!covers(&r, 10, 20));
        assert!(!covers(&r, 25, 45));
        assert!(covers(&r, 45, 45));
        assert!(!covers(&r, 50, 51));
    }
}
