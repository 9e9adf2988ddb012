//! Directory handles: enumeration sessions with the provider (Start / Get / End),
//! merged with what is on disk.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{
    is_own_thread, is_projected_dir, present, synthetic_ino_at, Errno, Inner, RequestCtx, Responder,
};
use crate::command::{CallbackKind, CommandOutcome};
use crate::enumeration::{check_order, merge_listing, DirEntryBuffer, LocalItem, Merged};
use crate::layer::Attr;
use crate::names::compare_with;
use crate::provider::{EnumerationId, Extended, ProviderError};
use crate::types::{DirEntry, FileBasicInfo, FileKind, OnDiskState, VersionInfo};

/// A merged listing and, for its projected files and the projected
/// directories that came with a version, their index and basic info.
type Listed = (Vec<DirItem>, Vec<(usize, ListedFile)>);

/// A projected file or directory of a listing: its metadata and, when the
/// provider gave it, its version.
type ListedFile = (FileBasicInfo, Option<Box<crate::types::VersionInfo>>);

/// Largest enumeration buffer the library offers after InsufficientBuffer.
const MAX_BUFFER: usize = 4 << 20;

/// One entry of a listing as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirItem {
    /// Name; shared with the record a listing makes of a projected file and
    /// with the node the kernel gets for it (one allocation for the three).
    pub name: Arc<OsStr>,
    /// Kind.
    pub kind: FileKind,
    /// Inode number to report (on-disk items: the real one; virtual: synthetic).
    pub ino: u64,
    /// Offset of the entry after this one.
    pub next_offset: u64,
    /// What a lookup of the name would answer, for READDIRPLUS: items on disk
    /// and placeholder files from this listing. `None` for `.`, `..`, and
    /// projected directories and symlinks (their first lookup asks the
    /// provider and places them on disk).
    pub entry: Option<Attr>,
}

#[derive(Default)]
struct Listing {
    /// The merged listing of the current scan, `.` and `..` first.
    items: Option<Arc<Vec<DirItem>>>,
    /// Whether this handle has served entries from the current scan (an offset-0
    /// read after that is a rewinddir: a restart scan).
    served: bool,
    /// Whether the provider has seen a Get in this session.
    provider_scanned: bool,
}

/// One open directory.
pub(crate) struct DirHandle {
    path: PathBuf,
    /// The path the provider knows this directory by (its placeholder's origin).
    provider_path: PathBuf,
    /// Set when StartDirectoryEnumeration succeeded: End must follow.
    enum_id: OnceLock<EnumerationId>,
    /// A projected directory whose session starts at its first READDIR
    /// (`VirtualizerOptions::lazy_enumeration`), with the VersionInfo Start
    /// carries.
    deferred: Option<Option<VersionInfo>>,
    /// End was sent (or is on its way).
    ended: AtomicBool,
    listing: Mutex<Listing>,
}

impl Inner {
    pub(super) fn opendir(self: &Arc<Self>, ctx: &RequestCtx, node: u64, done: Responder<u64>) {
        let (path, item) = match self.node_item(node) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        if item.kind != FileKind::Directory {
            return done(Err(libc::ENOTDIR));
        }
        let projected = is_projected_dir(&item, node)
            && !self.stopped.load(Ordering::SeqCst)
            && !is_own_thread(ctx.pid);
        let provider_path = item.origin.clone().unwrap_or_else(|| path.clone());
        if !projected {
            let fh = self.register_dir(path, provider_path, None, None);
            return done(Ok(fh));
        }
        if self.options.lazy_enumeration {
            // A listing the kernel keeps in its cache needs no session at all.
            let fh = self.register_dir(path, provider_path, None, Some(item.version));
            return done(Ok(fh));
        }
        let inner = self.clone();
        let pp = provider_path.clone();
        self.start_session(
            ctx,
            pp,
            item.version.clone(),
            Box::new(move |r| match r {
                Ok(id) => {
                    let fh = inner.register_dir(path, provider_path, Some(id), None);
                    done(Ok(fh))
                }
                Err(e) => done(Err(started_errno(&path, e))),
            }),
        );
    }

    /// StartDirectoryEnumeration for `provider_path` in a new session: `then`
    /// gets its id, or the provider's error (`None`: the client gave up).
    fn start_session(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        provider_path: PathBuf,
        version: Option<VersionInfo>,
        then: Box<dyn FnOnce(Result<EnumerationId, Option<ProviderError>>) + Send>,
    ) {
        let id = EnumerationId(self.next_enum_id.fetch_add(1, Ordering::Relaxed));
        let mut data = self.callback_data(ctx, provider_path);
        data.version = version;
        self.invoke(
            CallbackKind::StartEnumeration,
            data,
            Some(&ctx.cancel),
            move |p, cb| p.start_directory_enumeration(cb, id),
            move |outcome| match outcome {
                CommandOutcome::Finished(Ok(()), _) => then(Ok(id)),
                CommandOutcome::Finished(Err(e), _) => then(Err(Some(e))),
                CommandOutcome::Cancelled => then(Err(None)),
            },
        );
    }

    fn register_dir(
        &self,
        path: PathBuf,
        provider_path: PathBuf,
        enum_id: Option<EnumerationId>,
        deferred: Option<Option<VersionInfo>>,
    ) -> u64 {
        let fh = self.new_handle_id();
        let started = OnceLock::new();
        if let Some(id) = enum_id {
            let _ = started.set(id);
        }
        self.dirs.lock().expect("dirs lock").insert(
            fh,
            Arc::new(DirHandle {
                path,
                provider_path,
                enum_id: started,
                deferred,
                ended: AtomicBool::new(false),
                listing: Mutex::new(Listing::default()),
            }),
        );
        fh
    }

    /// End the handle's session, once, if it was started.
    pub(super) fn end_enumeration(self: &Arc<Self>, dir: &DirHandle) {
        let Some(&id) = dir.enum_id.get() else {
            return;
        };
        if dir.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        self.end_session(dir.provider_path.clone(), id);
    }

    /// Start the deferred session of `dir` (handle `fh`), then `then`.
    fn start_deferred(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        dir: Arc<DirHandle>,
        version: Option<VersionInfo>,
        then: Responder<()>,
    ) {
        let inner = self.clone();
        let pp = dir.provider_path.clone();
        self.start_session(
            ctx,
            pp,
            version,
            Box::new(move |r| match r {
                Ok(id) => {
                    let _ = dir.enum_id.set(id);
                    // Released meanwhile: releasedir found no session to end.
                    if !inner.dirs.lock().expect("dirs lock").contains_key(&fh) {
                        inner.end_enumeration(&dir);
                    }
                    then(Ok(()))
                }
                Err(e) => then(Err(started_errno(&dir.path, e))),
            }),
        );
    }

    fn end_session(self: &Arc<Self>, path: PathBuf, id: EnumerationId) {
        let data = self.callback_data(&RequestCtx::default(), path.clone());
        self.invoke(
            CallbackKind::EndEnumeration,
            data,
            None,
            move |p, cb| p.end_directory_enumeration(cb, id),
            move |outcome| {
                if let CommandOutcome::Finished(Err(e), _) = outcome {
                    tracing::warn!("end_directory_enumeration {}: {e}", path.display());
                }
            },
        );
    }

    pub(super) fn readdir(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        max: usize,
        done: Responder<DirSlice>,
    ) {
        let Some(dir) = self.dirs.lock().expect("dirs lock").get(&fh).cloned() else {
            return done(Err(libc::EBADF));
        };
        if let (None, Some(version)) = (dir.enum_id.get(), &dir.deferred) {
            let inner = self.clone();
            let ctx2 = ctx.clone();
            return self.start_deferred(
                ctx,
                fh,
                dir.clone(),
                version.clone(),
                Box::new(move |r| match r {
                    Ok(()) => inner.readdir(&ctx2, fh, offset, max, done),
                    Err(e) => done(Err(e)),
                }),
            );
        }
        let (current, restart) = {
            let mut l = dir.listing.lock().expect("listing lock");
            let rewind = offset == 0 && l.served;
            if rewind {
                l.items = None;
                l.served = false;
            }
            (l.items.clone(), l.provider_scanned)
        };
        if let Some(items) = current {
            return done(Ok(serve(&dir, &items, offset, max)));
        }
        let inner = self.clone();
        let dir2 = dir.clone();
        let finish = move |projected: Result<Vec<DirEntry>, Errno>| {
            let items = projected.and_then(|p| {
                let (mut items, listed) = inner.merge(&dir2.path, &dir2.provider_path, p)?;
                inner.place_listed(&dir2.path, &dir2.provider_path, &mut items, listed);
                Ok(items)
            });
            match items {
                Ok(items) => {
                    let items = Arc::new(items);
                    dir2.listing.lock().expect("listing lock").items = Some(items.clone());
                    done(Ok(serve(&dir2, &items, offset, max)))
                }
                Err(e) => done(Err(e)),
            }
        };
        match dir.enum_id.get().copied() {
            None => finish(Ok(Vec::new())),
            Some(id) => {
                dir.listing.lock().expect("listing lock").provider_scanned = true;
                self.fetch_projected(
                    ctx.clone(),
                    dir.provider_path.clone(),
                    id,
                    restart,
                    self.options.enumeration_buffer_bytes,
                    Vec::new(),
                    Box::new(finish),
                );
            }
        }
    }

    /// Chain GetDirectoryEnumeration calls until one adds nothing (the end of a listing).
    #[allow(clippy::too_many_arguments)]
    fn fetch_projected(
        self: &Arc<Self>,
        ctx: RequestCtx,
        dir: PathBuf,
        id: EnumerationId,
        restart: bool,
        capacity: usize,
        mut acc: Vec<DirEntry>,
        done: Responder<Vec<DirEntry>>,
    ) {
        let buffer = DirEntryBuffer::new(capacity);
        let mut data = self.callback_data(&ctx, dir.clone());
        data.flags.restart_scan = restart;
        let inner = self.clone();
        let buf2 = buffer.clone();
        let slot = ctx.cancel.clone();
        self.invoke(
            CallbackKind::GetEnumeration,
            data,
            Some(&slot),
            move |p, cb| p.get_directory_enumeration(cb, id, None, &buf2),
            move |outcome| {
                let path = dir.clone();
                match outcome {
                    CommandOutcome::Finished(Ok(()), ext) => {
                        if let Some(Extended::Enumeration(b)) = &ext {
                            if !b.same_buffer(&buffer) {
                                tracing::error!(
                                    "{}: provider completed an enumeration with a different buffer",
                                    path.display()
                                );
                                return done(Err(libc::EIO));
                            }
                        }
                        if let Some(msg) = buffer.take_rejected() {
                            tracing::error!(
                                "{}: provider returned an invalid directory entry: {msg}",
                                path.display()
                            );
                            return done(Err(libc::EIO));
                        }
                        let entries = buffer.take_entries();
                        if entries.is_empty() {
                            return done(Ok(acc));
                        }
                        let previous = acc.last().map(|e| e.name.clone());
                        if let Err(msg) =
                            check_order(previous.as_deref(), &entries, inner.options.collation)
                        {
                            tracing::error!(
                                "{}: provider returned directory entries out of order: {msg}",
                                path.display()
                            );
                            return done(Err(libc::EIO));
                        }
                        acc.extend(entries);
                        inner.fetch_projected(ctx, dir, id, false, capacity, acc, done);
                    }
                    CommandOutcome::Finished(Err(ProviderError::InsufficientBuffer), _)
                        if capacity < MAX_BUFFER =>
                    {
                        inner.fetch_projected(ctx, dir, id, restart, capacity * 2, acc, done);
                    }
                    CommandOutcome::Finished(Err(e), _) => {
                        tracing::error!("get_directory_enumeration {}: {e}", path.display());
                        done(Err(e.errno()))
                    }
                    CommandOutcome::Cancelled => done(Err(libc::EINTR)),
                }
            },
        );
    }

    /// Whether the directory at `path` shows no entry to clients: nothing but
    /// tombstones on disk and, for a projected directory, no projected name that
    /// a tombstone does not hide (a full enumeration session: Start, Gets, End).
    pub(super) fn visibly_empty(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        path: &Path,
        done: Responder<bool>,
    ) {
        match self.layer.is_dir_empty_on_disk(path) {
            Ok(true) => {}
            Ok(false) => return done(Ok(false)),
            Err(e) => return done(Err(e.errno())),
        }
        let item = match self.item(path) {
            Ok(i) => i,
            Err(e) => return done(Err(e)),
        };
        // A directory reached as a node other than the root is projected only
        // when it is a placeholder; the root is never removed.
        if !is_projected_dir(&item, u64::MAX) || is_own_thread(ctx.pid) {
            return done(Ok(true));
        }
        if let Err(e) = self.may_call_provider(ctx) {
            return done(Err(e));
        }
        let provider_path = item.origin.clone().unwrap_or_else(|| path.to_path_buf());
        let inner = self.clone();
        let ctx2 = ctx.clone();
        let path = path.to_path_buf();
        self.start_session(
            ctx,
            provider_path.clone(),
            item.version.clone(),
            Box::new(move |r| match r {
                Ok(id) => {
                    let inner2 = inner.clone();
                    let pp = provider_path.clone();
                    let pp2 = provider_path.clone();
                    let capacity = inner.options.enumeration_buffer_bytes;
                    inner.fetch_projected(
                        ctx2,
                        provider_path,
                        id,
                        false,
                        capacity,
                        Vec::new(),
                        Box::new(move |r: Result<Vec<DirEntry>, Errno>| {
                            inner2.end_session(pp, id);
                            done(r.and_then(|projected| {
                                inner2
                                    .merge(&path, &pp2, projected)
                                    .map(|(items, _)| items.len() <= 2)
                            }))
                        }),
                    );
                }
                Err(Some(ProviderError::NotFound)) => done(Ok(true)),
                Err(Some(e)) => done(Err(e.errno())),
                Err(None) => done(Err(libc::EINTR)),
            }),
        );
    }

    /// Merge on-disk items with projected ones, in collation order.
    fn merge(
        &self,
        path: &Path,
        provider_path: &Path,
        projected: Vec<DirEntry>,
    ) -> Result<Listed, Errno> {
        let collation = self.options.collation;
        let mut local: Vec<(OsString, LocalItem<crate::layer::Item>)> = self
            .layer
            .list_dir(path)
            .map_err(|e| {
                tracing::error!("{}: listing on disk failed: {e}", path.display());
                e.errno()
            })?
            .into_iter()
            .map(|(name, item)| {
                if item.state.contains(OnDiskState::TOMBSTONE) {
                    (name, LocalItem::Tombstone)
                } else {
                    (name, LocalItem::Present(item))
                }
            })
            .collect();
        local.sort_by(|a, b| compare_with(&a.0, &b.0, collation));
        let dir_ino = self
            .layer
            .lookup(path)
            .ok()
            .flatten()
            .map_or(1, |i| i.attr.ino);
        let mut listed = Vec::new();
        let mut items = vec![
            DirItem {
                name: Arc::from(OsStr::new(".")),
                kind: FileKind::Directory,
                ino: dir_ino,
                next_offset: 1,
                entry: None,
            },
            DirItem {
                name: Arc::from(OsStr::new("..")),
                kind: FileKind::Directory,
                ino: 1,
                next_offset: 2,
                entry: None,
            },
        ];
        for m in merge_listing(local, projected, collation) {
            let (name, kind, ino, entry, basic) = match m {
                Merged::Local(name, item) => {
                    let item = present(item);
                    (name, item.kind, item.attr.ino, Some(item.attr), None)
                }
                Merged::Projected(e) => {
                    let ino = synthetic_ino_at(provider_path, &e.name);
                    (e.name, e.basic.kind, ino, None, Some((e.basic, e.version)))
                }
            };
            let next_offset = items.len() as u64 + 1;
            items.push(DirItem {
                name: Arc::from(name),
                kind,
                ino,
                next_offset,
                entry,
            });
            if let Some(basic) = basic.filter(|(b, v)| {
                b.kind == FileKind::File || (b.kind == FileKind::Directory && v.is_some())
            }) {
                listed.push((items.len() - 1, basic));
            }
        }
        Ok((items, listed))
    }

    /// Record the projected files of a listing as placeholders (in ProjFS a
    /// listing creates none; here it does, so that READDIRPLUS can hand the
    /// kernel their attributes and `stat` needs no round trip) and fill in
    /// their entries. Their VersionInfo is the listing's when the provider
    /// gave one, else unknown until the first open asks. The projected
    /// directories that came with a version are placed on disk as their
    /// first lookup would place them, without asking GetPlaceholderInfo: the
    /// kernel then needs no LOOKUP to enter them.
    fn place_listed(
        &self,
        path: &Path,
        provider_path: &Path,
        items: &mut [DirItem],
        mut listed: Vec<(usize, ListedFile)>,
    ) {
        let mut placed_dirs = false;
        listed.retain_mut(|(i, (basic, version))| {
            if basic.kind != FileKind::Directory {
                return true;
            }
            if let Some(version) = version.take() {
                placed_dirs |=
                    self.place_listed_dir(path, provider_path, &mut items[*i], basic, *version);
            }
            false
        });
        if placed_dirs {
            // The directory on disk changed (its times, its link count).
            if let Some(node) = self.nodes.find_path(path) {
                self.dir_changed(node);
            }
        }
        if listed.is_empty() {
            return;
        }
        let (idx, entries): (Vec<usize>, Vec<crate::layer::ListedEntry>) = listed
            .into_iter()
            .map(|(i, (b, v))| (i, (items[i].name.clone(), b, v)))
            .unzip();
        match self.layer.put_listed(path, provider_path, entries) {
            Ok(placed) => {
                // The listing's inode number is the one `present` gives the
                // placeholder: derived from the same provider path.
                for (i, attr) in idx.into_iter().zip(placed) {
                    let ino = items[i].ino;
                    items[i].entry = attr.map(|a| Attr { ino, ..a });
                }
            }
            Err(e) => tracing::warn!("{}: recording a listing failed: {e}", path.display()),
        }
    }
}

impl Inner {
    /// Place the projected directory `item` of the listing of `path` (the
    /// provider's `provider_path`) on disk with `basic` and `version`, and
    /// fill in its entry from what is then at its name (a local item made
    /// there meanwhile wins). Returns whether it placed the directory. On
    /// failure the entry stays empty: the first lookup asks the provider.
    fn place_listed_dir(
        &self,
        path: &Path,
        provider_path: &Path,
        item: &mut DirItem,
        basic: &FileBasicInfo,
        version: VersionInfo,
    ) -> bool {
        let rel = path.join(&*item.name);
        let info = crate::types::PlaceholderInfo {
            basic: basic.clone(),
            version,
            symlink_target: None,
        };
        let placed = match self.layer.write_placeholder_with_origin(
            &rel,
            &info,
            &provider_path.join(&*item.name),
        ) {
            Ok(placed) => placed,
            Err(e) => {
                tracing::warn!("{}: placing a listed directory failed: {e}", rel.display());
                return false;
            }
        };
        match self.layer.lookup(&rel) {
            Ok(Some(found)) if !found.state.contains(OnDiskState::TOMBSTONE) => {
                let found = present(found);
                item.ino = found.attr.ino;
                item.entry = Some(found.attr);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: {e}", rel.display()),
        }
        placed
    }
}

/// The errno for a failed StartDirectoryEnumeration of `path` (logged), or
/// `EINTR` when the client gave up.
fn started_errno(path: &Path, e: Option<ProviderError>) -> Errno {
    match e {
        Some(e) => {
            tracing::warn!("start_directory_enumeration {}: {e}", path.display());
            e.errno()
        }
        None => libc::EINTR,
    }
}

fn serve(dir: &DirHandle, items: &Arc<Vec<DirItem>>, offset: u64, max: usize) -> DirSlice {
    dir.listing.lock().expect("listing lock").served = true;
    // The adapter stops packing when its buffer is full and the kernel asks
    // again from there; `max` is how many could fit at best.
    let start = (offset as usize).min(items.len());
    let end = (start + max.max(1)).min(items.len());
    DirSlice {
        items: items.clone(),
        start,
        end,
    }
}

/// A run of a directory's listing, shared with the handle, not copied.
pub struct DirSlice {
    items: Arc<Vec<DirItem>>,
    start: usize,
    end: usize,
}

impl std::ops::Deref for DirSlice {
    type Target = [DirItem];
    fn deref(&self) -> &[DirItem] {
        &self.items[self.start..self.end]
    }
}
