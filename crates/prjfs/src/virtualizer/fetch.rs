//! Fetches: at most one GetFileData per placeholder file at a time, shared by
//! every request that needs its content, with reads answered as soon as their
//! byte range has arrived.
//!
//! A fetch is started by the first request that needs the content of a
//! placeholder file (a read, or a change that keeps the old bytes) and is joined
//! by every later one until it ends. A read of a file over [`STREAM_MIN`] waits
//! for its range only: the first `cat` of a big file gets its first bytes while
//! the provider is still writing the rest, and the kernel's readahead reads are
//! answered as the content arrives, from the temp file that becomes the
//! hydrated file. Reads of smaller files, and requests that need the whole file
//! in place (a write, a hard link), wait for the end, so that for them a
//! returned read still means a hydrated file.
//!
//! Invariants:
//! * `Inner::fetching` holds a node's fetch exactly from its start until its
//!   command's continuation has put the file in place (or failed): a request that
//!   does not find a fetch there finds the item hydrated (or starts a new fetch).
//! * Every waiter is woken exactly once: when its range has arrived, when the
//!   fetch ends, or when its own request is interrupted.
//! * An interrupted waiter is answered at once and cancels the fetch's command
//!   (the provider hears CancelCommand); the other waiters then start over with a
//!   fetch of their own. Requests the kernel sends in the background (readahead)
//!   are never interrupted, so waiting for every waiter to give up could keep a
//!   signalled client waiting on a slow provider.
//!
//! With [`crate::RangedHydration`] on, a read of a big file makes a *ranged*
//! fetch instead ([`super::ranged`]): the same table entry, waiters and temp
//! file, but several GetFileData commands for chunks, and an entry that stays
//! while the file is partly present.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::file::needs_data;
use super::{Errno, Inner, RequestCtx};
use crate::command::{CallbackKind, CommandOutcome};
use crate::layer::{Hydration, Item};
use crate::provider::ProviderError;

/// How a waiter is woken.
pub(crate) enum Wake {
    /// Its range has arrived; read it from this file (the temp file being
    /// filled, the same inode as the hydrated file once in place).
    Covered(Arc<File>),
    /// The file is hydrated and in place.
    Done,
    /// The file is hydrated and in place, and this is it: the fetch's temp
    /// file, renamed into place by this fetch (the same inode).
    Placed(Arc<File>),
    /// The fetch failed with this errno.
    Failed(Errno),
    /// The fetch was cancelled for another request: start over.
    Retry,
    /// The waiter's own request was interrupted.
    Interrupted,
}

pub(super) type WakeFn = Box<dyn FnOnce(Wake) + Send>;

/// How a fetch ended.
#[derive(Clone, Copy, Debug)]
pub(super) enum End {
    Done,
    Failed(Errno),
    Retry,
}

pub(super) struct Waiter {
    pub(super) id: u64,
    /// `[start, end)` to wait for; `None`: the end of the fetch.
    pub(super) range: Option<(u64, u64)>,
    pub(super) wake: WakeFn,
}

#[derive(Default)]
pub(super) struct State {
    /// Arrived ranges: sorted, disjoint and non-adjacent.
    pub(super) ranges: Vec<(u64, u64)>,
    pub(super) waiters: Vec<Waiter>,
    pub(super) next_waiter: u64,
    pub(super) end: Option<End>,
    /// A ranged fetch's commands and readahead ([`super::ranged`]).
    pub(super) ranged: super::ranged::RangedState,
}

impl State {
    pub(super) fn covers(&self, start: u64, end: u64) -> bool {
        super::ranged::covers(&self.ranges, start, end)
    }
}

/// Files up to this size answer their reads at the end of the fetch only, so
/// that a read's return still means "hydrated" where streaming gains nothing.
pub(crate) const STREAM_MIN: u64 = 1 << 20;

/// One fetch of a placeholder's content.
pub(crate) struct Fetch {
    /// Reads are answered as their range arrives (files over [`STREAM_MIN`]).
    streams: bool,
    /// The command running GetFileData (0 until invoked); unused by a ranged
    /// fetch, whose commands are in its state.
    command: AtomicU64,
    pub(super) reader: Arc<File>,
    /// Set before the end is announced when this fetch's own temp file was
    /// put in place (not when another fetch hydrated the file first).
    placed: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    /// A ranged fetch: what its commands need. `None`: one GetFileData of
    /// the whole file.
    pub(super) ranged: Option<super::ranged::Partial>,
}

/// What starting a new fetch needs.
struct Start {
    node: u64,
    path: PathBuf,
    length: u64,
    data: crate::provider::CallbackData,
    fetch: Arc<Fetch>,
}

/// A fetch to wait in, with what starting it needs when it is new.
type Joined = (Arc<Fetch>, Option<Start>);

/// A hydration stream: where the provider's writes go, and who waits for them.
pub(crate) struct Stream {
    pub(crate) hydration: Arc<Hydration>,
    pub(crate) fetch: Arc<Fetch>,
}

impl Fetch {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `[start, end)` of the content has been written: wake the waiters it
    /// completes.
    pub(crate) fn arrived(&self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let ready: Vec<Waiter> = {
            let mut s = self.lock();
            if !self.streams {
                return;
            }
            crate::layer::insert_range(&mut s.ranges, start, end);
            let (ready, waiting) = std::mem::take(&mut s.waiters)
                .into_iter()
                .partition(|w| w.range.is_some_and(|(a, b)| s.covers(a, b)));
            s.waiters = waiting;
            ready
        };
        for w in ready {
            (w.wake)(Wake::Covered(self.reader.clone()));
        }
    }

    /// The fetch ended: wake every waiter.
    pub(super) fn finish(&self, end: End) {
        let waiters = {
            let mut s = self.lock();
            s.end = Some(end);
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            (w.wake)(self.wake_of(end));
        }
    }

    /// How the end `end` wakes a waiter: with the file in place when it is
    /// this fetch's (a read then needs no open of its own).
    fn wake_of(&self, end: End) -> Wake {
        match end {
            End::Done if self.placed.load(Ordering::SeqCst) => Wake::Placed(self.reader.clone()),
            end => wake_of(end),
        }
    }
}

pub(super) fn wake_of(end: End) -> Wake {
    match end {
        End::Done => Wake::Done,
        End::Failed(e) => Wake::Failed(e),
        End::Retry => Wake::Retry,
    }
}

impl Inner {
    /// Wait for the content of the placeholder file `item` at `path` (node
    /// `node`): for `[start, end)` of it with `range`, else until it is
    /// hydrated and in place. Joins the node's fetch or starts one.
    /// `wake` gets [`Wake::Done`] at once when nothing needs fetching.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn wait_for_content(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        path: &Path,
        item: &Item,
        fh: u64,
        range: Option<(u64, u64)>,
        wake: WakeFn,
    ) {
        let (fetch, start) = match self.fetch_of(ctx, node, path, item, fh, range) {
            Ok(Some(f)) => f,
            Ok(None) => return wake(Wake::Done),
            Err(e) => return wake(Wake::Failed(e)),
        };
        if fetch.ranged.is_some() {
            return self.wait_ranged(ctx, node, &fetch, fh, range, wake);
        }
        let id = {
            let mut s = fetch.lock();
            if let Some(end) = s.end {
                drop(s);
                return wake(fetch.wake_of(end));
            }
            if range.is_some_and(|(a, b)| s.covers(a, b)) {
                drop(s);
                return wake(Wake::Covered(fetch.reader.clone()));
            }
            let id = s.next_waiter;
            s.next_waiter += 1;
            s.waiters.push(Waiter { id, range, wake });
            id
        };
        let weak_fetch = Arc::downgrade(&fetch);
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
            let command = fetch.command.load(Ordering::SeqCst);
            if let (Some(inner), true) = (weak_inner.upgrade(), command != 0) {
                inner.cancel_command(command);
            }
        });
        // Started only now that the waiter is in place: a provider answering
        // inline writes (and may finish) before `invoke` returns.
        if let Some(start) = start {
            let command = self.start_fetch(start);
            if ctx.cancel.is_fired() {
                self.cancel_command(command);
            }
        }
    }

    /// The running fetch of `node`, or a new one with what starting it needs;
    /// `None` when the item needs nothing fetched (any more). A new fetch for
    /// a read (`range`) of a big file is ranged when the instance says so.
    fn fetch_of(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        path: &Path,
        item: &Item,
        fh: u64,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Joined>, Errno> {
        let mut fetching = self.fetching.lock().expect("fetching lock");
        if let Some(f) = fetching.get(&node) {
            // A partly present file outlives the requests that made it: it
            // serves only while the item is still a placeholder needing data
            // (an O_TRUNC open, say, made it full and local since).
            if f.ranged.is_some() && self.item(path).is_ok_and(|i| !needs_data(&i)) {
                fetching.remove(&node);
                return Ok(None);
            }
            return Ok(Some((f.clone(), None)));
        }
        // Under the lock: a fetch that ended since `item` was read has put the
        // file in place before leaving the table.
        let item = match self.item_to_hydrate(path) {
            Ok(i) => i,
            Err(_) => item.clone(),
        };
        if !needs_data(&item) {
            return Ok(None);
        }
        if item.attr.size == 0 {
            // Nothing to fetch: an empty placeholder hydrates without a callback.
            drop(fetching);
            return self.hydrate_empty(path).map(|()| None);
        }
        if let Err(e) = self.may_call_provider(ctx) {
            tracing::warn!(
                "{}: the provider's own process read a placeholder; not hydrating",
                path.display()
            );
            return Err(e);
        }
        let hydration = match self.layer.begin_hydration(path) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                tracing::error!("{}: cannot start hydration: {e}", path.display());
                return Err(e.errno());
            }
        };
        let reader = hydration.reader();
        // The provider finds content by the path the placeholder was created at.
        let origin = item.origin.clone().unwrap_or_else(|| path.to_path_buf());
        let ranged = self
            .options
            .ranged_hydration
            .filter(|r| range.is_some() && item.attr.size >= r.min_file_size.max(1))
            .map(|config| super::ranged::Partial {
                config,
                size: item.attr.size,
                hydration: hydration.clone(),
                origin: origin.clone(),
                version: item.version.clone(),
                last_use: std::sync::atomic::AtomicU64::new(0),
            });
        if ranged.is_some() {
            super::ranged::evict_partials(&mut fetching);
        }
        let fetch = Arc::new(Fetch {
            streams: ranged.is_some() || item.attr.size > STREAM_MIN,
            command: AtomicU64::new(0),
            reader,
            placed: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State::default()),
            ranged,
        });
        fetching.insert(node, fetch.clone());
        drop(fetching);
        if fetch.ranged.is_some() {
            // Its commands start with the requests that need chunks, each
            // with a stream of its own onto the temp file.
            return Ok(Some((fetch, None)));
        }
        let stream_id = hydration.stream_id();
        self.streams.lock().expect("streams lock").insert(
            stream_id,
            Stream {
                hydration,
                fetch: fetch.clone(),
            },
        );
        let mut data = self.callback_data(ctx, origin);
        data.file_id = fh;
        data.data_stream_id = stream_id;
        data.version = item.version.clone();
        let start = Start {
            node,
            path: path.to_path_buf(),
            length: item.attr.size,
            data,
            fetch: fetch.clone(),
        };
        Ok(Some((fetch, Some(start))))
    }

    /// Requests waiting in the fetches in progress.
    pub(super) fn content_waiters(&self) -> usize {
        let fetches: Vec<Arc<Fetch>> = self
            .fetching
            .lock()
            .expect("fetching lock")
            .values()
            .cloned()
            .collect();
        fetches.iter().map(|f| f.lock().waiters.len()).sum()
    }

    /// Invoke the GetFileData of a new fetch; returns its command.
    fn start_fetch(self: &Arc<Self>, start: Start) -> u64 {
        let Start {
            node,
            path,
            length,
            data,
            fetch,
        } = start;
        let stream_id = data.data_stream_id;
        let inner = self.clone();
        let ended = fetch.clone();
        // No cancel slot: the waiters' own slots cancel the command.
        let id = self.invoke(
            CallbackKind::GetFileData,
            data,
            None,
            move |p, cb| p.get_file_data(cb, 0, length),
            move |outcome| inner.end_fetch(node, stream_id, &path, length, &ended, outcome),
        );
        fetch.command.store(id, Ordering::SeqCst);
        id
    }

    /// The continuation of a fetch's GetFileData: put the file in place, leave
    /// the table, wake the waiters.
    fn end_fetch(
        &self,
        node: u64,
        stream_id: u64,
        path: &Path,
        length: u64,
        fetch: &Fetch,
        outcome: CommandOutcome,
    ) {
        let hydration = self
            .streams
            .lock()
            .expect("streams lock")
            .remove(&stream_id)
            .map(|s| s.hydration);
        let end = match outcome {
            CommandOutcome::Finished(Ok(()), _) => {
                match self.finish_hydration(hydration, path, length) {
                    Ok(placed) => {
                        fetch.placed.store(placed, Ordering::SeqCst);
                        End::Done
                    }
                    Err(e) => End::Failed(e),
                }
            }
            CommandOutcome::Finished(Err(e), _) => {
                if e != ProviderError::Cancelled {
                    tracing::warn!("get_file_data {}: {e}", path.display());
                }
                End::Failed(e.errno())
            }
            CommandOutcome::Cancelled => End::Retry,
        };
        if matches!(end, End::Done) {
            // The placeholder was replaced by its hydrated file: its directory
            // changed behind the kernel's back (the file shows the same).
            self.file_hydrated(node);
        }
        {
            let mut fetching = self.fetching.lock().expect("fetching lock");
            if fetching
                .get(&node)
                .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), fetch))
            {
                fetching.remove(&node);
            }
        }
        fetch.finish(end);
    }
}
