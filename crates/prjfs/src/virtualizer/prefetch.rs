//! Hydration asked for by path, with no client open or read: what `prjfs
//! hydrate` asks the daemon for, so that prefetching a tree costs the
//! provider's callbacks and the layer's writes but no kernel round trip per
//! file.
//!
//! A prefetch is a reader in all but the kernel: a placeholder whose record
//! has no VersionInfo (it came from a listing) raises GetPlaceholderInfo
//! first, as its first open would, then GetFileData through the same shared
//! fetch as reads (a client reading the file meanwhile joins it, and the
//! other way round), and the file is placed whole or not at all. No file is
//! opened, so no FileOpened or FileHandleClosed* notification is raised.

use std::path::Path;
use std::sync::Arc;

use super::file::needs_data;
use super::{check_rel_path, Inner, RequestCtx, Responder};
use crate::layer::Item;
use crate::types::{FileKind, OnDiskState};

/// What [`Inner::prefetch`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetched {
    /// The placeholder was hydrated now; its size in bytes.
    Hydrated(u64),
    /// Its content was local already (hydrated, dirty or full), or it is
    /// empty (nothing to fetch; it stays as it was);
    /// its size in bytes.
    Local(u64),
    /// Not a regular file (a directory, a symlink, a special file): nothing
    /// to hydrate.
    NotAFile,
}

impl Inner {
    /// Hydrate the file at `path` (relative to the root) unless its content is
    /// local already; see the module documentation.
    pub(super) fn prefetch(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        path: &Path,
        done: Responder<Prefetched>,
    ) {
        if check_rel_path(path).is_err() || path.as_os_str().is_empty() {
            return done(Err(libc::EINVAL));
        }
        let item = match self.item_to_hydrate(path) {
            Ok(item) => item,
            Err(e) => return done(Err(e)),
        };
        if item.kind != FileKind::File || item.attr.mode & libc::S_IFMT != libc::S_IFREG {
            return done(Ok(Prefetched::NotAFile));
        }
        // An empty placeholder has nothing to fetch: a read of it never
        // reaches the provider either.
        if !needs_data(&item) || item.attr.size == 0 {
            return done(Ok(Prefetched::Local(item.attr.size)));
        }
        if item.state.contains(OnDiskState::PLACEHOLDER) && item.version.is_none() {
            let inner = self.clone();
            let ctx2 = ctx.clone();
            let path2 = path.to_path_buf();
            // The fetch reads the item again (with its VersionInfo now).
            return self.ask_placeholder_info(
                ctx,
                path,
                &item.clone(),
                Box::new(move |r| match r {
                    Ok(()) => inner.hydrate_item(&ctx2, &path2, item, done),
                    Err(e) => done(Err(e)),
                }),
            );
        }
        self.hydrate_item(ctx, path, item, done)
    }

    fn hydrate_item(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        path: &Path,
        item: Item,
        done: Responder<Prefetched>,
    ) {
        let size = item.attr.size;
        if !needs_data(&item) {
            return done(Ok(Prefetched::Local(size)));
        }
        self.ensure_hydrated(
            ctx,
            path,
            &item,
            0,
            Box::new(move |r| done(r.map(|()| Prefetched::Hydrated(size)))),
        );
    }
}
