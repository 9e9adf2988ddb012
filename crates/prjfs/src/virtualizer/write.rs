//! Local changes: create, mkdir, symlink, mknod, link, unlink, rmdir,
//! setattr and user xattrs (rename in [`super::rename`]), with ProjFS's state transitions (placeholders
//! turn dirty or full, deletes of projected names leave tombstones).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::needs_data;
use super::{is_projected_dir, Errno, Inner, RequestCtx, Responder, ROOT_ID};
use crate::layer::{Item, SetAttr};
use crate::names::{invalid_name_errno, validate_name};
use crate::types::{FileKind, OnDiskState};

/// Who creates an item: the caller's ids and the mode after the kernel applied
/// the umask.
#[derive(Clone, Copy, Debug)]
pub struct Creator {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Creating names: the public face of [`Inner::create`] and its siblings
/// (each answers after NewFileCreated when a provider asked for it).
impl super::Virtualizer {
    /// Create and open a file: (node, item, handle).
    pub fn create(
        &self,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        who: Creator,
        done: Responder<(u64, Item, super::Opened)>,
    ) {
        self.inner.create(ctx, parent, name, mode, who, done)
    }

    /// Create a directory.
    pub fn mkdir(
        &self,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        who: Creator,
        done: Responder<(u64, Item)>,
    ) {
        let r = self.inner.mkdir(parent, name, mode, who);
        self.inner.created_entry(ctx, r, true, done)
    }

    /// Create a symlink.
    pub fn symlink(
        &self,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        target: &OsStr,
        who: Creator,
        done: Responder<(u64, Item)>,
    ) {
        let r = self.inner.symlink(parent, name, target, who);
        self.inner.created_entry(ctx, r, false, done)
    }

    /// Create a special file.
    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &self,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        who: Creator,
        done: Responder<(u64, Item)>,
    ) {
        let r = self.inner.mknod(parent, name, mode, rdev, who);
        self.inner.created_entry(ctx, r, false, done)
    }
}

impl Inner {
    /// The path of `name` under `parent`, refusing invalid names (a name longer
    /// than `NAME_MAX`: `ENAMETOOLONG`) and the layer's hidden directory.
    pub(super) fn child_path(
        &self,
        parent: u64,
        name: &OsStr,
    ) -> Result<(PathBuf, PathBuf), Errno> {
        validate_name(name).map_err(|_| invalid_name_errno(name))?;
        if parent == ROOT_ID && name == crate::layer::HIDDEN_DIR {
            return Err(libc::EPERM);
        }
        let parent_path = self.path(parent)?;
        let path = parent_path.join(name);
        Ok((parent_path, path))
    }

    /// Whether deleting (or renaming away) `path` in directory `dir` must leave
    /// a tombstone: `dir` lists the provider's items (the root, a placeholder
    /// directory), and the name is a projected one — a placeholder, or a full
    /// item the layer marked as standing at a projected name (see
    /// [`crate::layer::Layer::is_projected_name`]). A name created where the
    /// provider had nothing leaves nothing behind. When in doubt (an error),
    /// a tombstone: one too many hides nothing.
    pub(super) fn needs_tombstone(&self, dir: &Path, path: &Path) -> bool {
        let projected_dir = dir.as_os_str().is_empty()
            || match self.layer.lookup(dir) {
                Ok(Some(item)) => is_projected_dir(&item, u64::MAX),
                _ => false,
            };
        projected_dir && self.layer.is_projected_name(path).unwrap_or(true)
    }

    /// A directory with local creates or deletes becomes a dirty placeholder.
    pub(super) fn mark_dirty_dir(&self, dir: &Path) {
        if dir.as_os_str().is_empty() {
            return;
        }
        if let Ok(Some(item)) = self.layer.lookup(dir) {
            if item.state.contains(OnDiskState::PLACEHOLDER)
                && !item.state.contains(OnDiskState::DIRTY_PLACEHOLDER)
            {
                if let Err(e) = self.layer.mark_dirty(dir) {
                    tracing::error!("{}: marking dirty failed: {e}", dir.display());
                }
            }
        }
    }

    fn created(
        &self,
        parent: u64,
        parent_path: &Path,
        name: &OsStr,
        path: &Path,
    ) -> Result<(u64, Item), Errno> {
        self.mark_dirty_dir(parent_path);
        let item = self.item(path)?;
        Ok((self.nodes.lookup(parent, name), item))
    }

    /// Create and open a regular file; NewFileCreated follows when asked for.
    pub(super) fn create(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        who: Creator,
        done: Responder<(u64, Item, super::Opened)>,
    ) {
        let r = (|| {
            let (parent_path, path) = self.child_path(parent, name)?;
            let file = self
                .layer
                .create_file(&path, mode & 0o7777, who.uid, who.gid)
                .map_err(|e| e.errno())?;
            let (node, item) = self.created(parent, &parent_path, name, &path)?;
            let fh = self.register_writable(node, file);
            Ok((node, item, fh, path))
        })();
        let (node, item, fh, path) = match r {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        let opened = super::Opened {
            fh,
            placeholder: false,
            local: true,
            observe_writes: super::set_id::has_set_id(item.attr.mode),
        };
        if self.notify.is_none() {
            return done(Ok((node, item, opened)));
        }
        let inner = self.clone();
        self.notify_created(
            ctx,
            node,
            fh,
            &path.clone(),
            false,
            Box::new(move |_| {
                let mut opened = opened;
                opened.observe_writes |= inner.created_observes_writes(fh, node, &path);
                done(Ok((node, item, opened)))
            }),
        );
    }

    /// The answer of a mkdir, symlink or mknod, after NewFileCreated when
    /// asked for.
    pub(super) fn created_entry(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        r: Result<(u64, Item), Errno>,
        is_dir: bool,
        done: Responder<(u64, Item)>,
    ) {
        let (node, item) = match r {
            Ok(x) if self.notify.is_some() => x,
            r => return done(r),
        };
        let Ok(path) = self.path(node) else {
            return done(Ok((node, item)));
        };
        self.notify_created(
            ctx,
            node,
            0,
            &path,
            is_dir,
            Box::new(move |_| done(Ok((node, item)))),
        );
    }

    /// Create a directory (full: it has no projected children).
    pub(super) fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        who: Creator,
    ) -> Result<(u64, Item), Errno> {
        let (parent_path, path) = self.child_path(parent, name)?;
        self.layer
            .mkdir(&path, mode & 0o7777, who.uid, who.gid)
            .map_err(|e| e.errno())?;
        self.created(parent, &parent_path, name, &path)
    }

    /// Create a symlink.
    pub(super) fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &OsStr,
        who: Creator,
    ) -> Result<(u64, Item), Errno> {
        let (parent_path, path) = self.child_path(parent, name)?;
        self.layer
            .symlink(&path, target, who.uid, who.gid)
            .map_err(|e| e.errno())?;
        self.created(parent, &parent_path, name, &path)
    }

    /// Create a special file (FIFO, socket, device).
    pub(super) fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        who: Creator,
    ) -> Result<(u64, Item), Errno> {
        let (parent_path, path) = self.child_path(parent, name)?;
        if mode & libc::S_IFMT == libc::S_IFREG {
            let f = self
                .layer
                .create_file(&path, mode & 0o7777, who.uid, who.gid)
                .map_err(|e| e.errno())?;
            drop(f);
        } else {
            self.layer
                .mknod(&path, mode, rdev as u64, who.uid, who.gid)
                .map_err(|e| e.errno())?;
        }
        self.created(parent, &parent_path, name, &path)
    }

    /// A hard link. A placeholder file is hydrated and made full first: two names
    /// share one inode, so its content must be local.
    pub(super) fn link(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        new_parent: u64,
        new_name: &OsStr,
        done: Responder<(u64, Item)>,
    ) {
        if let Some(who) = self.notifying(ctx) {
            let paths = self.path(node).and_then(|src| {
                let item = self.item(&src)?;
                let (_, dst) = self.child_path(new_parent, new_name)?;
                Ok((src, item, dst))
            });
            if let Ok((src, item, dst)) = paths {
                let inner = self.clone();
                let ctx2 = ctx.clone();
                let new_name = new_name.to_os_string();
                let is_dir = item.kind == FileKind::Directory;
                return self.notify_pair(
                    ctx,
                    who,
                    (
                        crate::provider::NotificationKind::PreSetHardlink,
                        crate::provider::NotificationKind::HardlinkCreated,
                    ),
                    (Some(node), src, is_dir),
                    dst,
                    move |done| inner.link_now(&ctx2, node, new_parent, &new_name, done),
                    done,
                );
            }
        }
        self.link_now(ctx, node, new_parent, new_name, done)
    }

    fn link_now(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        new_parent: u64,
        new_name: &OsStr,
        done: Responder<(u64, Item)>,
    ) {
        let r = (|| {
            let src = self.path(node)?;
            let item = self.item(&src)?;
            if item.kind == FileKind::Directory {
                return Err(libc::EPERM);
            }
            let (parent_path, dst) = self.child_path(new_parent, new_name)?;
            Ok((src, item, parent_path, dst))
        })();
        let (src, item, parent_path, dst) = match r {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        let inner = self.clone();
        let new_name = new_name.to_os_string();
        let item2 = item.clone();
        let src2 = src.clone();
        let hydrated = move |r: Result<(), Errno>| {
            let r = r
                .and_then(|()| {
                    if item2.state.contains(OnDiskState::PLACEHOLDER) {
                        inner.make_full(&src, false)
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| inner.layer.link(&src, &dst).map_err(|e| e.errno()))
                .and_then(|()| {
                    inner.mark_dirty_dir(&parent_path);
                    let item = inner.item(&dst)?;
                    // One file, one kernel inode: the new name joins the node.
                    Ok((inner.nodes.link(node, new_parent, &new_name), item))
                });
            done(r)
        };
        let inner = self.clone();
        let ctx2 = ctx.clone();
        let item3 = item.clone();
        self.before_convert(
            ctx,
            Some(node),
            &src2.clone(),
            &item,
            Box::new(move |r| match r {
                Ok(()) => inner.ensure_hydrated(&ctx2, &src2, &item3, 0, Box::new(hydrated)),
                Err(e) => hydrated(Err(e)),
            }),
        );
    }

    /// Remove a non-directory.
    ///
    /// A file still open through handles that have no on-disk file yet keeps
    /// working like on a local file system: its content is fetched (if it is a
    /// placeholder never read) and opened for those handles before the name goes.
    pub(super) fn unlink(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        done: Responder<()>,
    ) {
        if let Some(who) = self.notifying(ctx) {
            let (inner, ctx2, name2) = (self.clone(), ctx.clone(), name.to_os_string());
            let now = move |done| inner.unlink_now(&ctx2, parent, &name2, done);
            return self.notify_delete(ctx, who, parent, name, now, done);
        }
        self.unlink_now(ctx, parent, name, done)
    }

    fn unlink_now(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        done: Responder<()>,
    ) {
        let (parent_path, path, item) = match self.child_path(parent, name).and_then(|(pp, p)| {
            let item = self.item(&p)?;
            Ok((pp, p, item))
        }) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        if item.kind == FileKind::Directory {
            return done(Err(libc::EISDIR));
        }
        let node = self.nodes.find(parent, name);
        let handles = node
            .map(|n| self.handles_needing_path(n))
            .unwrap_or_default();
        let inner = self.clone();
        let name = name.to_os_string();
        let item_path = path.clone();
        let fetch_first = !handles.is_empty();
        let kept_item = item.clone();
        let finish = move |r: Result<(), Errno>| {
            done(r.and_then(|()| {
                for h in &handles {
                    inner.keep_open(h, &path)?;
                }
                let keeper = inner.keeper_for(node, &path, &kept_item);
                let deleted = inner
                    .layer
                    .delete(&path, inner.needs_tombstone(&parent_path, &path))
                    .map_err(|e| e.errno());
                inner.commit_keeper(keeper, deleted.is_ok());
                deleted?;
                inner.nodes.detach(parent, &name);
                inner.mark_dirty_dir(&parent_path);
                Ok(())
            }))
        };
        if fetch_first {
            self.ensure_hydrated(ctx, &item_path, &item, 0, Box::new(finish));
        } else {
            finish(Ok(()));
        }
    }

    /// Remove a directory that shows no entries (a projected directory is asked
    /// for its listing: virtual children make it non-empty).
    pub(super) fn rmdir(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        done: Responder<()>,
    ) {
        if let Some(who) = self.notifying(ctx) {
            let (inner, ctx2, name2) = (self.clone(), ctx.clone(), name.to_os_string());
            let now = move |done| inner.rmdir_now(&ctx2, parent, &name2, done);
            return self.notify_delete(ctx, who, parent, name, now, done);
        }
        self.rmdir_now(ctx, parent, name, done)
    }

    fn rmdir_now(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        done: Responder<()>,
    ) {
        let (parent_path, path) = match self.child_path(parent, name) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        match self.item(&path) {
            Ok(item) if item.kind == FileKind::Directory => {}
            Ok(_) => return done(Err(libc::ENOTDIR)),
            Err(e) => return done(Err(e)),
        }
        let inner = self.clone();
        let name = name.to_os_string();
        self.visibly_empty(
            ctx,
            &path.clone(),
            Box::new(move |r| {
                done(r.and_then(|empty| {
                    if !empty {
                        return Err(libc::ENOTEMPTY);
                    }
                    inner
                        .layer
                        .delete(&path, inner.needs_tombstone(&parent_path, &path))
                        .map_err(|e| e.errno())?;
                    inner.nodes.detach(parent, &name);
                    inner.mark_dirty_dir(&parent_path);
                    Ok(())
                }))
            }),
        );
    }

    /// Change attributes. Truncating a placeholder to a non-zero size hydrates it
    /// first; to zero it does not fetch. Other changes make it dirty. A node
    /// whose last name is gone (unlinked or renamed over while open) is changed
    /// through its open file: `fh`'s (the kernel names it for `ftruncate`), else
    /// any of the node's.
    pub(super) fn setattr(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        node: u64,
        fh: Option<u64>,
        attr: SetAttr,
        done: Responder<Item>,
    ) {
        let (path, item) = match self.node_item(node) {
            Ok(x) => x,
            Err(e @ (libc::ESTALE | libc::ENOENT)) => {
                return done(self.setattr_open_file(node, fh, &attr).unwrap_or(Err(e)))
            }
            Err(e) => return done(Err(e)),
        };
        let inner = self.clone();
        let item_path = path.clone();
        let Some(size) = attr.size else {
            return done(
                self.layer
                    .set_attr(&path, &attr)
                    .map_err(|e| e.errno())
                    .and_then(|()| self.item(&path)),
            );
        };
        if item.kind != FileKind::File {
            return done(Err(libc::EISDIR));
        }
        let finish = move |r: Result<(), Errno>| {
            done(
                r.and_then(|()| {
                    if item_is_placeholder(&inner, &path) {
                        inner.make_full(&path, size == 0)
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| inner.layer.set_attr(&path, &attr).map_err(|e| e.errno()))
                .and_then(|()| inner.item(&path)),
            )
        };
        let finish: Responder<()> = match fh {
            Some(fh) => self.modifying(fh, Box::new(finish)),
            None => Box::new(finish),
        };
        let inner = self.clone();
        let ctx2 = ctx.clone();
        let item2 = item.clone();
        self.before_convert(
            ctx,
            Some(node),
            &item_path.clone(),
            &item,
            Box::new(move |r| match r {
                Ok(()) if needs_data(&item2) && size > 0 => {
                    inner.ensure_hydrated(&ctx2, &item_path, &item2, 0, finish)
                }
                r => finish(r),
            }),
        );
    }

    /// [`Inner::setattr`] of a node without a path, on an open file of it;
    /// `None` when it has none.
    fn setattr_open_file(
        &self,
        node: u64,
        fh: Option<u64>,
        attr: &SetAttr,
    ) -> Option<Result<Item, Errno>> {
        let file = fh
            .and_then(|fh| self.file_handle(fh))
            .filter(|h| h.node == node)
            .and_then(|h| h.file())
            .or_else(|| self.open_file_of_node(node))?;
        Some(
            self.layer
                .set_attr_of_open_file(&file, attr)
                .map_err(|e| e.errno())
                .and_then(|()| super::file::item_of_file(&file)),
        )
    }

    fn register_writable(&self, node: u64, file: std::fs::File) -> u64 {
        self.register_file_handle(node, true, Some(Arc::new(file)))
    }

    /// A user xattr of a node.
    pub(super) fn get_xattr(&self, node: u64, name: &OsStr) -> Result<Vec<u8>, Errno> {
        let path = self.path(node)?;
        self.layer
            .get_xattr(&path, name)
            .map_err(|e| e.errno())?
            .ok_or(libc::ENODATA)
    }

    /// The user xattr names of a node (never the layer's own).
    pub(super) fn list_xattr(&self, node: u64) -> Result<Vec<OsString>, Errno> {
        let path = self.path(node)?;
        self.layer.list_xattr(&path).map_err(|e| e.errno())
    }

    /// Set a user xattr (a placeholder becomes dirty).
    pub(super) fn set_xattr(
        &self,
        node: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        let path = self.path(node)?;
        self.layer
            .set_xattr(&path, name, value, flags)
            .map_err(|e| e.errno())
    }

    /// Remove a user xattr.
    pub(super) fn remove_xattr(&self, node: u64, name: &OsStr) -> Result<(), Errno> {
        let path = self.path(node)?;
        self.layer.remove_xattr(&path, name).map_err(|e| e.errno())
    }
}

fn item_is_placeholder(inner: &Inner, path: &Path) -> bool {
    matches!(inner.layer.lookup(path), Ok(Some(i)) if i.state.contains(OnDiskState::PLACEHOLDER))
}
