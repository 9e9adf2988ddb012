//! The notifier thread: the invalidations of kernel caches for what the
//! virtualizer changed on its own, sent from a thread that holds no request.

use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prjfs_fuse::encode::{inval_entry_notification, inval_inode_notification};
use prjfs_fuse::Notifier;

/// How long directory invalidations are held back to be sent once: while
/// lookups create placeholders in a directory one after the other, each would
/// otherwise cost a GETATTR at the next path walk through it.
const DIR_INVAL_DELAY: Duration = Duration::from_millis(20);

/// What the notifier thread sends to the kernel.
pub(super) enum Notice {
    /// Drop the cached attributes of a node now.
    Attr(u64),
    /// Drop the cached attributes of a directory, soon ([`DIR_INVAL_DELAY`]).
    DirAttr(u64),
    /// Forget a name, and its directory's attributes and listing, now.
    Entry(u64, OsString),
    /// Drop a directory's attributes and cached listing now.
    Listing(u64),
    /// Acknowledge once everything before it was sent.
    Flush(mpsc::Sender<()>),
    /// The connection ended.
    Stop,
}

/// The notifier thread: sends invalidations from a thread that holds no request
/// (the kernel may need locks that a request in progress holds), coalescing
/// what piled up meanwhile. Names and listings a provider changed go first,
/// in order, then attributes; a flush is answered after both.
///
/// `pending` holds the directories sent as [`Notice::DirAttr`] and not yet
/// invalidated: the sender sends a directory only when it is not there (a walk
/// that hydrates a directory's files wakes this thread once per directory and
/// window, not once per file). A directory leaves it right before its
/// invalidation is sent, so a change after that point is sent again.
pub(super) fn notifier_loop(notifier: Notifier, rx: Receiver<Notice>, pending: PendingDirs) {
    use std::sync::mpsc::RecvTimeoutError;
    let send = |node: u64| {
        // ENOENT: the kernel has no inode for it cached; nothing to drop.
        let _ = notifier.try_send_raw(&inval_inode_notification(node, -1, 0));
    };
    // Offset 0, length 0: the attributes and every cached page (for a
    // directory, its cached listing).
    let send_listing = |node: u64| {
        let _ = notifier.try_send_raw(&inval_inode_notification(node, 0, 0));
    };
    let mut now = HashSet::new();
    let mut dirs = HashSet::new();
    let mut names: Vec<(u64, OsString)> = Vec::new();
    let mut listings = HashSet::new();
    let mut flushes = Vec::new();
    let mut due: Option<Instant> = None;
    loop {
        let first = match due {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut stop = matches!(first, Err(RecvTimeoutError::Disconnected));
        for notice in first.into_iter().chain(rx.try_iter()) {
            match notice {
                Notice::Attr(node) => {
                    now.insert(node);
                }
                Notice::DirAttr(node) => {
                    dirs.insert(node);
                }
                Notice::Entry(parent, name) => {
                    listings.insert(parent);
                    names.push((parent, name));
                }
                Notice::Listing(node) => {
                    listings.insert(node);
                }
                Notice::Flush(ack) => flushes.push(ack),
                Notice::Stop => stop = true,
            }
        }
        for (parent, name) in names.drain(..) {
            // ENOENT: the kernel holds no such name; nothing to forget.
            let _ = notifier.try_send_raw(&inval_entry_notification(parent, &name));
        }
        for node in listings.drain() {
            if dirs.remove(&node) {
                unpend(&pending, node);
            }
            send_listing(node);
        }
        now.drain().for_each(send);
        for ack in flushes.drain(..) {
            let _ = ack.send(());
        }
        if stop || due.is_some_and(|t| t <= Instant::now()) {
            dirs.drain().for_each(|node| {
                unpend(&pending, node);
                send(node);
            });
            due = None;
        } else if due.is_none() && !dirs.is_empty() {
            due = Some(Instant::now() + DIR_INVAL_DELAY);
        }
        if stop {
            break;
        }
    }
}

/// Directories with a [`Notice::DirAttr`] sent and not yet invalidated.
pub(super) type PendingDirs = Arc<Mutex<HashSet<u64>>>;

fn unpend(pending: &PendingDirs, node: u64) {
    pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&node);
}
