//! Notifications raised by file operations (spec §7; the table of which
//! operation raises which kind is in [`crate::notifications`]): the masks of
//! paths and open items, who opened each handle, and the commands that carry
//! notifications to the provider.
//!
//! Present only when the instance was started with mappings
//! (`Inner::notify` is `None` otherwise): every hook then costs one branch.
//!
//! Invariants:
//! * A handle is watched (it has a [`HandleWatch`]) only when it was opened by
//!   another process than the instance's, while notifications were on; only
//!   watched handles raise close notifications, exactly one each.
//! * An item has an [`ItemWatch`] while it has watched handles, a conversion
//!   to full waits for its pre-notification, or its delete waits for the
//!   last close; its new mask lives and dies with that entry.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{is_own_thread, process_name, Errno, Inner, RequestCtx, Responder};
use crate::cancel::CancelSlot;
use crate::command::{CallbackKind, CommandOutcome};
use crate::layer::Item;
use crate::notifications::{
    selects, Mappings, Notification, NotificationMapping, CLOSE_KINDS, SUPPRESS_NOTIFICATIONS,
};
use crate::provider::{Extended, NotificationKind, Outcome};
use crate::types::{FileKind, OnDiskState};

/// The notification state of one instance.
pub(crate) struct Notify {
    mappings: Mappings,
    counts: [AtomicU64; 12],
    watch: Mutex<Watch>,
}

#[derive(Default)]
struct Watch {
    handles: HashMap<u64, HandleWatch>,
    items: HashMap<u64, ItemWatch>,
}

/// One watched open handle.
struct HandleWatch {
    node: u64,
    opener: Who,
    /// Content changed through this handle (a write, fallocate, truncation).
    modified: bool,
    /// Size and mtime of its file when opened for writing, for a handle whose
    /// writes the daemon does not see (passthrough): compared at close.
    baseline: Option<(u64, (i64, i64))>,
}

/// One item with watched handles (or a pending conversion or delete).
#[derive(Default)]
struct ItemWatch {
    open: u32,
    /// Set by a reply; replaces the mapping's mask.
    mask: Option<u32>,
    /// Deleted while open: the path it had; the last close raises
    /// FileHandleClosedFileDeleted.
    deleted: Option<PathBuf>,
    is_dir: bool,
    /// Written through any of its handles.
    modified: bool,
    convert: Convert,
}

/// FilePreConvertToFull of one item: sent once even when writes race.
#[derive(Default)]
enum Convert {
    #[default]
    None,
    /// Asked; these wait for the answer.
    Asking(Vec<Responder<()>>),
    /// Accepted: later conversions of this item do not ask again while it
    /// has watched handles.
    Accepted,
}

/// Who a notification is about: the client of a request, or a handle's opener.
#[derive(Clone, Debug)]
pub(super) struct Who {
    pid: u32,
    process: Option<String>,
}

impl Notify {
    pub(crate) fn new(mappings: &[NotificationMapping]) -> Self {
        Self {
            mappings: Mappings::new(mappings),
            counts: Default::default(),
            watch: Mutex::new(Watch::default()),
        }
    }

    /// Notifications raised so far, by kind.
    pub(crate) fn counts(&self) -> Vec<(NotificationKind, u64)> {
        NotificationKind::ALL
            .iter()
            .map(|k| (*k, self.counts[k.index()].load(Ordering::Relaxed)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().expect("notify lock")
    }

    /// The mask for `path`, item `node`: the item's own while it has one.
    fn mask(&self, node: Option<u64>, path: &Path) -> u32 {
        node.and_then(|n| self.lock().items.get(&n).and_then(|i| i.mask))
            .unwrap_or_else(|| self.mappings.mask_of(path))
    }
}

/// Size and mtime of an open file.
fn stamp(file: &File) -> Option<(u64, (i64, i64))> {
    let st = rustix::fs::fstat(file).ok()?;
    Some((
        st.st_size as u64,
        (st.st_mtime as i64, st.st_mtime_nsec as i64),
    ))
}

impl Inner {
    /// The client of `ctx` when its operations raise notifications: they are
    /// on, the instance runs, and the client is not the instance's process.
    pub(super) fn notifying(&self, ctx: &RequestCtx) -> Option<Who> {
        self.notify.as_ref()?;
        if self.stopped.load(Ordering::SeqCst) || is_own_thread(ctx.pid) {
            return None;
        }
        Some(Who {
            pid: ctx.pid,
            process: if ctx.pid != 0 {
                process_name(ctx.pid)
            } else {
                None
            },
        })
    }

    /// Raise `n` about `path` (item `node`, handle `fh`, 0 for none) if the
    /// mask selects it. `done` gets `Ok` when it was accepted or not raised,
    /// `EPERM` when a vetoable kind was refused, `EINTR` when a vetoable kind
    /// was cancelled (a non-vetoable one reports `Ok`: its operation is done).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn raise(
        self: &Arc<Self>,
        who: &Who,
        node: Option<u64>,
        fh: u64,
        path: &Path,
        n: Notification,
        cancel: Option<&CancelSlot>,
        done: Responder<()>,
    ) {
        let Some(nt) = self.notify.as_ref() else {
            return done(Ok(()));
        };
        let mask = nt.mask(node, path);
        self.raise_masked(mask, who, node, fh, path, n, cancel, done)
    }

    /// [`Inner::raise`] with the mask already known.
    #[allow(clippy::too_many_arguments)]
    fn raise_masked(
        self: &Arc<Self>,
        mask: u32,
        who: &Who,
        node: Option<u64>,
        fh: u64,
        path: &Path,
        n: Notification,
        cancel: Option<&CancelSlot>,
        done: Responder<()>,
    ) {
        let Some(nt) = self.notify.as_ref() else {
            return done(Ok(()));
        };
        let kind = n.kind;
        if !selects(mask, kind) || self.stopped.load(Ordering::SeqCst) {
            return done(Ok(()));
        }
        nt.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        let mut data = self.callback_data(&RequestCtx::default(), path.to_path_buf());
        data.triggering_pid = who.pid;
        data.triggering_process_name = who.process.clone();
        data.file_id = fh;
        let inner = self.clone();
        self.invoke(
            CallbackKind::Notification,
            data,
            cancel,
            move |p, cb| {
                let r = p.notification(cb, &n);
                // A mask set on a `Done` answer travels as a pended one's would.
                match (r, n.new_mask()) {
                    (Ok(Outcome::Done), mask) if mask != 0 && kind.may_set_mask() => {
                        cb.instance.complete_command(
                            cb.command_id,
                            Ok(()),
                            Some(Extended::NotificationMask(mask)),
                        );
                        Ok(Outcome::Pending)
                    }
                    (r, _) => r,
                }
            },
            move |outcome| match outcome {
                CommandOutcome::Finished(Ok(()), ext) => {
                    if let (Some(node), Some(Extended::NotificationMask(mask))) = (node, ext) {
                        if mask != 0 && kind.may_set_mask() {
                            inner.set_item_mask(node, mask);
                        }
                    }
                    done(Ok(()))
                }
                CommandOutcome::Finished(Err(e), _) if kind.is_vetoable() => {
                    tracing::debug!("{} vetoed: {e}", kind.name());
                    done(Err(libc::EPERM))
                }
                CommandOutcome::Finished(Err(e), _) => {
                    tracing::debug!("{} answered {e}", kind.name());
                    done(Ok(()))
                }
                CommandOutcome::Cancelled if kind.is_vetoable() => done(Err(libc::EINTR)),
                CommandOutcome::Cancelled => done(Ok(())),
            },
        );
    }

    fn set_item_mask(&self, node: u64, mask: u32) {
        if let Some(nt) = &self.notify {
            if let Some(item) = nt.lock().items.get_mut(&node) {
                item.mask = Some(mask);
            }
        }
    }

    /// Wrap the answer of an open of `node` at `path` so that the handle is
    /// watched and FileOpened (FileOverwritten with `O_TRUNC`) is raised
    /// before the client gets it; a veto or a cancellation drops the handle.
    pub(super) fn notify_open(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        who: Who,
        node: u64,
        path: PathBuf,
        truncate: bool,
        done: Responder<super::Opened>,
    ) -> Responder<super::Opened> {
        let inner = self.clone();
        let cancel = ctx.cancel.clone();
        Box::new(move |r: Result<super::Opened, Errno>| {
            let opened = match r {
                Ok(o) => o,
                Err(e) => return done(Err(e)),
            };
            let kind = if truncate {
                NotificationKind::FileOverwritten
            } else {
                NotificationKind::FileOpened
            };
            inner.watch_handle(&who, node, opened.fh, truncate, false);
            let fh = opened.fh;
            let inner2 = inner.clone();
            inner.raise(
                &who,
                Some(node),
                fh,
                &path.clone(),
                Notification::new(kind, false),
                Some(&cancel),
                Box::new(move |r| match r {
                    Ok(()) => {
                        let mut opened = opened;
                        opened.observe_writes |= inner2.observes_writes(fh, node, &path);
                        done(Ok(opened))
                    }
                    Err(e) => {
                        inner2.discard(fh);
                        done(Err(e))
                    }
                }),
            );
        })
    }

    /// Whether writes through handle `fh` must reach the daemon (no
    /// passthrough): it was opened for writing and its item's mask has a
    /// close kind, which must tell modified from not.
    ///
    /// Such a handle's writes are counted as they come, so its open-time
    /// baseline is dropped: a `futimens` (as `touch` does) must not look
    /// like a change of content.
    fn observes_writes(&self, fh: u64, node: u64, path: &Path) -> bool {
        let Some(nt) = &self.notify else { return false };
        let writable = self.file_handle(fh).is_some_and(|h| h.writable);
        let mask = nt.mask(Some(node), path);
        let observe = writable && mask & SUPPRESS_NOTIFICATIONS == 0 && mask & CLOSE_KINDS != 0;
        if observe {
            if let Some(h) = nt.lock().handles.get_mut(&fh) {
                h.baseline = None;
            }
        }
        observe
    }

    /// Start watching handle `fh` of `node`, opened by `who`.
    fn watch_handle(&self, who: &Who, node: u64, fh: u64, modified: bool, is_dir: bool) {
        let Some(nt) = &self.notify else { return };
        let baseline = self
            .file_handle(fh)
            .filter(|h| h.writable)
            .and_then(|h| h.file())
            .and_then(|f| stamp(&f));
        let mut w = nt.lock();
        w.handles.insert(
            fh,
            HandleWatch {
                node,
                opener: who.clone(),
                modified,
                baseline,
            },
        );
        let item = w.items.entry(node).or_default();
        item.open += 1;
        item.is_dir = is_dir;
    }

    /// Content changed through handle `fh`.
    pub(super) fn note_modified(&self, fh: u64) {
        if let Some(nt) = &self.notify {
            if let Some(h) = nt.lock().handles.get_mut(&fh) {
                h.modified = true;
            }
        }
    }

    /// Forget handle `fh` without a notification (a vetoed open, or one whose
    /// answer never reached the kernel).
    pub(super) fn discard(&self, fh: u64) {
        self.files.lock().expect("files lock").remove(&fh);
        let Some(nt) = &self.notify else { return };
        let mut w = nt.lock();
        if let Some(h) = w.handles.remove(&fh) {
            release_item(&mut w, h.node);
        }
    }

    /// Handle `fh` was released: raise its close notification.
    pub(super) fn notify_release(self: &Arc<Self>, fh: u64, file: Option<Arc<File>>) {
        let Some(nt) = &self.notify else { return };
        let (h, kind, path, is_dir, modified_any, mask) = {
            let mut w = nt.lock();
            let Some(h) = w.handles.remove(&fh) else {
                return;
            };
            let modified = h.modified
                || (h.baseline.is_some() && file.as_deref().and_then(stamp) != h.baseline);
            let Some(item) = w.items.get_mut(&h.node) else {
                return;
            };
            item.modified |= modified;
            let last = item.open <= 1;
            let (kind, path) = match (&item.deleted, last) {
                (Some(p), true) => (NotificationKind::FileHandleClosedFileDeleted, p.clone()),
                _ => match self.nodes.path(h.node).or_else(|| item.deleted.clone()) {
                    Some(p) if modified => (NotificationKind::FileHandleClosedFileModified, p),
                    Some(p) => (NotificationKind::FileHandleClosedNoModification, p),
                    None => {
                        release_item(&mut w, h.node);
                        return;
                    }
                },
            };
            // The item's mask (a reply's, while it has handles) applies to
            // this close; the entry goes now, before anything else can open
            // the item again, so a later open starts from the mapping.
            let mask = item.mask.unwrap_or_else(|| nt.mappings.mask_of(&path));
            let (is_dir, modified_any) = (item.is_dir, item.modified);
            release_item(&mut w, h.node);
            (h, kind, path, is_dir, modified_any, mask)
        };
        let n = Notification::new(kind, is_dir).with_file_modified(
            kind == NotificationKind::FileHandleClosedFileDeleted && modified_any,
        );
        self.raise_masked(mask, &h.opener, None, fh, &path, n, None, Box::new(|_| {}));
    }

    /// Before the placeholder file `item` at `path` becomes full:
    /// FilePreConvertToFull, once per item while its handles are open (racing
    /// conversions wait for the one answer). `done` gets `EPERM` on a veto.
    pub(super) fn before_convert(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: Option<u64>,
        path: &Path,
        item: &Item,
        done: Responder<()>,
    ) {
        if item.kind != FileKind::File
            || !item.state.contains(OnDiskState::PLACEHOLDER)
            || item.state.contains(OnDiskState::FULL)
        {
            return done(Ok(()));
        }
        let (Some(nt), Some(who)) = (&self.notify, self.notifying(ctx)) else {
            return done(Ok(()));
        };
        let Some(node) = node.or_else(|| self.nodes.find_path(path)) else {
            return self.raise(
                &who,
                None,
                0,
                path,
                Notification::new(NotificationKind::FilePreConvertToFull, false),
                Some(&ctx.cancel),
                done,
            );
        };
        {
            let mut w = nt.lock();
            let entry = w.items.entry(node).or_default();
            match &mut entry.convert {
                Convert::Accepted => {
                    drop(w);
                    return done(Ok(()));
                }
                Convert::Asking(waiters) => {
                    waiters.push(done);
                    return;
                }
                c @ Convert::None => *c = Convert::Asking(vec![done]),
            }
        }
        let inner = self.clone();
        self.raise(
            &who,
            Some(node),
            0,
            path,
            Notification::new(NotificationKind::FilePreConvertToFull, false),
            Some(&ctx.cancel),
            Box::new(move |r| {
                let waiters = {
                    let mut w = nt_lock(&inner);
                    let entry = w.items.entry(node).or_default();
                    let c = std::mem::replace(
                        &mut entry.convert,
                        if r.is_ok() {
                            Convert::Accepted
                        } else {
                            Convert::None
                        },
                    );
                    if entry.open == 0 && entry.deleted.is_none() {
                        w.items.remove(&node);
                    }
                    match c {
                        Convert::Asking(waiters) => waiters,
                        _ => Vec::new(),
                    }
                };
                for waiter in waiters {
                    waiter(r);
                }
            }),
        );
    }

    /// Wrap the answer of a change through handle `fh` so that success marks
    /// the handle modified.
    pub(super) fn modifying<T: Send + 'static>(
        self: &Arc<Self>,
        fh: u64,
        done: Responder<T>,
    ) -> Responder<T> {
        if self.notify.is_none() {
            return done;
        }
        let inner = self.clone();
        Box::new(move |r: Result<T, Errno>| {
            if r.is_ok() {
                inner.note_modified(fh);
            }
            done(r)
        })
    }

    /// NewFileCreated for `node` at `path`, then `done`. `fh`: the handle a
    /// create opened (watched from here on), 0 for none.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn notify_created(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        fh: u64,
        path: &Path,
        is_dir: bool,
        done: Responder<()>,
    ) {
        let Some(who) = self.notifying(ctx) else {
            return done(Ok(()));
        };
        if fh != 0 {
            self.watch_handle(&who, node, fh, false, false);
        }
        self.raise(
            &who,
            Some(node),
            fh,
            path,
            Notification::new(NotificationKind::NewFileCreated, is_dir),
            Some(&ctx.cancel),
            done,
        );
    }

    /// Whether a created handle must be served by the daemon ([`Inner::observes_writes`]).
    pub(super) fn created_observes_writes(&self, fh: u64, node: u64, path: &Path) -> bool {
        self.notify.is_some() && self.observes_writes(fh, node, path)
    }

    /// `unlink`/`rmdir` of `name` in `parent` with notifications: PreDelete
    /// (a veto is `EPERM`), the delete (`now`), then FileHandleClosedFileDeleted
    /// at once when the item has no watched handle, else at its last close.
    pub(super) fn notify_delete(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        who: Who,
        parent: u64,
        name: &OsStr,
        now: impl FnOnce(Responder<()>) + Send + 'static,
        done: Responder<()>,
    ) {
        let Ok(path) = self.path(parent).map(|p| p.join(name)) else {
            return now(done);
        };
        let Ok(item) = self.item(&path) else {
            return now(done);
        };
        let is_dir = item.kind == FileKind::Directory;
        let node = self.nodes.find(parent, name);
        let inner = self.clone();
        let ctx2 = ctx.clone();
        self.raise(
            &who.clone(),
            node,
            0,
            &path.clone(),
            Notification::new(NotificationKind::PreDelete, is_dir),
            Some(&ctx.cancel),
            Box::new(move |r| {
                if let Err(e) = r {
                    return done(Err(e));
                }
                now(Box::new(move |r| {
                    if r.is_err() {
                        return done(r);
                    }
                    if inner.defer_deleted(node, &path) {
                        return done(Ok(()));
                    }
                    inner.raise(
                        &who,
                        None,
                        0,
                        &path,
                        Notification::new(NotificationKind::FileHandleClosedFileDeleted, is_dir),
                        Some(&ctx2.cancel),
                        Box::new(move |_| done(Ok(()))),
                    );
                }))
            }),
        );
    }

    /// Mark `node` deleted at `path` when it has watched handles (its last
    /// close raises the deleted kind); false when it has none.
    fn defer_deleted(&self, node: Option<u64>, path: &Path) -> bool {
        let (Some(nt), Some(node)) = (&self.notify, node) else {
            return false;
        };
        let mut w = nt.lock();
        match w.items.get_mut(&node) {
            Some(item) if item.open > 0 => {
                item.deleted = Some(path.to_path_buf());
                true
            }
            _ => false,
        }
    }

    /// A rename or link with notifications: `pre` (a veto is `EPERM`), the
    /// operation (`now`), then `post`, both with the destination.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn notify_pair<T: Send + 'static>(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        who: Who,
        (pre, post): (NotificationKind, NotificationKind),
        from: (Option<u64>, PathBuf, bool),
        to: PathBuf,
        now: impl FnOnce(Responder<T>) + Send + 'static,
        done: Responder<T>,
    ) {
        let (node, path, is_dir) = from;
        let inner = self.clone();
        let ctx2 = ctx.clone();
        let to2 = to.clone();
        self.raise(
            &who.clone(),
            node,
            0,
            &path.clone(),
            Notification::new(pre, is_dir).with_destination(to.clone()),
            Some(&ctx.cancel),
            Box::new(move |r| {
                if let Err(e) = r {
                    return done(Err(e));
                }
                now(Box::new(move |r: Result<T, Errno>| {
                    let value = match r {
                        Ok(v) => v,
                        Err(e) => return done(Err(e)),
                    };
                    inner.raise(
                        &who,
                        node,
                        0,
                        &path,
                        Notification::new(post, is_dir).with_destination(to2),
                        Some(&ctx2.cancel),
                        Box::new(move |_| done(Ok(value))),
                    );
                }))
            }),
        );
    }
}

fn nt_lock(inner: &Inner) -> std::sync::MutexGuard<'_, Watch> {
    inner.notify.as_ref().expect("notifications are on").lock()
}

/// One watched handle of `node` is gone; the item's entry goes with the last.
fn release_item(w: &mut Watch, node: u64) {
    if let Some(item) = w.items.get_mut(&node) {
        item.open = item.open.saturating_sub(1);
        if item.open == 0 && !matches!(item.convert, Convert::Asking(_)) {
            w.items.remove(&node);
        }
    }
}
