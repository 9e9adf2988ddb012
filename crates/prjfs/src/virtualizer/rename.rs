//! Rename, also over an existing target, with `RENAME_NOREPLACE` and
//! `RENAME_EXCHANGE`, and its ProjFS transitions: the item keeps its record
//! (a renamed placeholder still hydrates from its original path and
//! version), and a projected name it leaves gets a tombstone.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;

use super::{Errno, Inner, RequestCtx, Responder};
use crate::layer::RenameFlags;
use crate::types::FileKind;

/// `renameat2` flags the kernel passes through.
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

impl Inner {
    /// Rename (also over an existing target, `RENAME_NOREPLACE`,
    /// `RENAME_EXCHANGE`). The item keeps its record, so a renamed placeholder
    /// still hydrates from its original path and version.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rename(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
        done: Responder<()>,
    ) {
        if let Some(who) = self.notifying(ctx) {
            let paths = self.child_path(parent, name).and_then(|(_, from)| {
                let item = self.item(&from)?;
                let (_, to) = self.child_path(new_parent, new_name)?;
                Ok((from, item, to))
            });
            if let Ok((from, item, to)) = paths {
                let node = self.nodes.find(parent, name);
                let (inner, ctx2) = (self.clone(), ctx.clone());
                let (name2, new_name2) = (name.to_os_string(), new_name.to_os_string());
                let now = move |done| {
                    inner.rename_now(&ctx2, parent, &name2, new_parent, &new_name2, flags, done)
                };
                return self.notify_pair(
                    ctx,
                    who,
                    (
                        crate::provider::NotificationKind::PreRename,
                        crate::provider::NotificationKind::FileRenamed,
                    ),
                    (node, from, item.kind == FileKind::Directory),
                    to,
                    now,
                    done,
                );
            }
        }
        self.rename_now(ctx, parent, name, new_parent, new_name, flags, done)
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_now(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
        done: Responder<()>,
    ) {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return done(Err(libc::EINVAL));
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        let prep = (|| {
            let (from_dir, from) = self.child_path(parent, name)?;
            let (to_dir, to) = self.child_path(new_parent, new_name)?;
            let src = self.item(&from)?;
            let dst = match self.item(&to) {
                Ok(i) => Some(i),
                Err(libc::ENOENT) => None,
                Err(e) => return Err(e),
            };
            if exchange && dst.is_none() {
                return Err(libc::ENOENT);
            }
            if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
                return Err(libc::EEXIST);
            }
            if to.starts_with(&from) && to != from {
                return Err(libc::EINVAL);
            }
            Ok((from_dir, from, to_dir, to, src, dst))
        })();
        let (from_dir, from, to_dir, to, src, dst) = match prep {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        if from == to {
            return done(Ok(()));
        }
        let inner = self.clone();
        let name: OsString = name.to_os_string();
        let new_name: OsString = new_name.to_os_string();
        let new_name_for_handles = new_name.clone();
        let target = to.clone();
        // The file a rename replaces loses its name as by an unlink.
        let replaced = match &dst {
            Some(d) if !exchange && d.kind == FileKind::File => self
                .nodes
                .find(new_parent, &new_name)
                .map(|n| (n, d.clone())),
            _ => None,
        };
        let apply = move |r: Result<bool, Errno>| {
            done(r.and_then(|target_empty| {
                if !target_empty {
                    return Err(libc::ENOTEMPTY);
                }
                let tombstone = !exchange && inner.needs_tombstone(&from_dir, &from);
                let keeper = replaced
                    .as_ref()
                    .and_then(|(n, d)| inner.keeper_for(Some(*n), &to, d));
                let renamed = inner
                    .layer
                    .rename(
                        &from,
                        &to,
                        RenameFlags {
                            noreplace: flags & RENAME_NOREPLACE != 0,
                            exchange,
                        },
                        tombstone,
                    )
                    .map_err(|e| e.errno());
                inner.commit_keeper(keeper, renamed.is_ok());
                renamed?;
                inner
                    .nodes
                    .rename(parent, &name, new_parent, &new_name, exchange);
                inner.mark_dirty_dir(&from_dir);
                inner.mark_dirty_dir(&to_dir);
                Ok(())
            }))
        };
        // Open handles of a file the rename replaces keep working without its
        // name, as after an unlink: those without an on-disk file get one (a
        // placeholder never read is fetched first) before the name goes.
        let replaced_handles = match &dst {
            Some(d) if !exchange && d.kind != FileKind::Directory => self
                .nodes
                .find(new_parent, &new_name_for_handles)
                .map(|n| self.handles_needing_path(n))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        match dst {
            Some(d) if !replaced_handles.is_empty() && src.kind != FileKind::Directory => {
                let inner = self.clone();
                let to = target.clone();
                self.ensure_hydrated(
                    ctx,
                    &target,
                    &d,
                    0,
                    Box::new(move |r| {
                        apply(r.and_then(|()| {
                            for h in &replaced_handles {
                                inner.keep_open(h, &to)?;
                            }
                            Ok(true)
                        }))
                    }),
                );
            }
            Some(d) if !exchange && d.kind == FileKind::Directory => {
                if src.kind != FileKind::Directory {
                    return apply(Err(libc::EISDIR));
                }
                // Replacing a directory needs it empty, virtual children included.
                self.visibly_empty(ctx, &target, Box::new(apply));
            }
            Some(d)
                if !exchange
                    && src.kind == FileKind::Directory
                    && d.kind != FileKind::Directory =>
            {
                apply(Err(libc::ENOTDIR))
            }
            _ => apply(Ok(true)),
        }
    }
}
