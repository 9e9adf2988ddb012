//! Lookups: a name from disk or the placeholder store, else GetPlaceholderInfo
//! (which the first open of a placeholder placed by a listing asks too).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{is_projected_dir, present, Inner, RequestCtx, Responder, ROOT_ID};
use crate::command::{CallbackKind, CommandOutcome};
use crate::layer::Item;
use crate::names::validate_name;
use crate::provider::ProviderError;
use crate::types::{FileKind, OnDiskState};

impl Inner {
    pub(super) fn lookup(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        parent: u64,
        name: &OsStr,
        done: Responder<(u64, Item)>,
    ) {
        let parent_path = match self.path(parent) {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        if validate_name(name).is_err() {
            return done(Err(libc::ENOENT));
        }
        if parent == ROOT_ID && name == crate::layer::HIDDEN_DIR {
            return done(Err(libc::ENOENT));
        }
        let path = parent_path.join(name);
        match self.layer.lookup(&path) {
            Ok(Some(item)) => {
                if item.state.contains(OnDiskState::TOMBSTONE) {
                    return done(Err(libc::ENOENT));
                }
                let id = self.nodes.lookup(parent, name);
                return done(Ok((id, present(item))));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                return done(Err(e.errno()));
            }
        }
        // Not on disk: only a placeholder directory has virtual children.
        let parent_origin = match self.layer.lookup(&parent_path) {
            Ok(Some(p)) if p.kind == FileKind::Directory && is_projected_dir(&p, parent) => {
                p.origin.unwrap_or_else(|| parent_path.clone())
            }
            Ok(_) => return done(Err(libc::ENOENT)),
            Err(e) => return done(Err(e.errno())),
        };
        // The provider knows the item by its parent's original path.
        let provider_path = if parent == ROOT_ID {
            PathBuf::from(name)
        } else {
            parent_origin.join(name)
        };
        if let Err(e) = self.may_call_provider(ctx) {
            // The provider's own process sees only what is on disk.
            return done(Err(if e == libc::EIO { libc::ENOENT } else { e }));
        }
        if self.options.negative_path_cache
            && self.negative.lock().expect("negative lock").contains(&path)
        {
            return done(Err(libc::ENOENT));
        }
        let inner = self.clone();
        let name = name.to_os_string();
        self.get_placeholder_info(
            ctx,
            provider_path,
            path.clone(),
            move |outcome| {
                match outcome {
                CommandOutcome::Finished(Ok(()), _) => match inner.layer.lookup(&path) {
                    Ok(Some(item)) if !item.state.contains(OnDiskState::TOMBSTONE) => {
                        // The provider wrote the placeholder into the directory:
                        // a directory or symlink changes the directory on disk; a
                        // file is a record and changes nothing there.
                        if item.kind != FileKind::File {
                            inner.dir_changed(parent);
                        }
                        let id = inner.nodes.lookup(parent, &name);
                        done(Ok((id, present(item))))
                    }
                    Ok(_) => {
                        tracing::error!(
                            "provider reported success for get_placeholder_info of {} but wrote no placeholder there",
                            path.display()
                        );
                        done(Err(libc::EIO))
                    }
                    Err(e) => done(Err(e.errno())),
                },
                CommandOutcome::Finished(Err(ProviderError::NotFound), _) => {
                    if inner.options.negative_path_cache {
                        inner.negative.lock().expect("negative lock").insert(path);
                    }
                    done(Err(libc::ENOENT))
                }
                CommandOutcome::Finished(Err(e), _) => {
                    if e != ProviderError::Cancelled {
                        tracing::warn!("get_placeholder_info {}: {e}", path.display());
                    }
                    done(Err(e.errno()))
                }
                CommandOutcome::Cancelled => done(Err(libc::EINTR)),
            }},
        );
    }
    /// GetPlaceholderInfo for the item the provider knows as `provider_path`,
    /// whose placeholder belongs at `path` (a placeholder the provider writes at
    /// `provider_path` goes there while the command lives).
    fn get_placeholder_info(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        provider_path: PathBuf,
        path: PathBuf,
        continuation: impl FnOnce(CommandOutcome) + Send + 'static,
    ) {
        let moved = provider_path != path;
        *self
            .asking
            .lock()
            .expect("asking lock")
            .entry(provider_path.clone())
            .or_default() += 1;
        if moved {
            self.placeholder_targets
                .lock()
                .expect("targets lock")
                .insert(provider_path.clone(), path);
        }
        let data = self.callback_data(ctx, provider_path.clone());
        let inner = self.clone();
        self.invoke(
            CallbackKind::GetPlaceholderInfo,
            data,
            Some(&ctx.cancel),
            |p, cb| p.get_placeholder_info(cb),
            move |outcome| {
                {
                    let mut asking = inner.asking.lock().expect("asking lock");
                    if let Some(n) = asking.get_mut(&provider_path) {
                        *n -= 1;
                        if *n == 0 {
                            asking.remove(&provider_path);
                        }
                    }
                }
                if moved {
                    inner
                        .placeholder_targets
                        .lock()
                        .expect("targets lock")
                        .remove(&provider_path);
                }
                continuation(outcome)
            },
        );
    }

    /// GetPlaceholderInfo for an item that is already a placeholder without
    /// VersionInfo (it came from a listing): the provider's answer fills the
    /// version in. `done` gets `Ok` when the provider answered, whatever it wrote.
    pub(super) fn ask_placeholder_info(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        path: &Path,
        item: &Item,
        done: Responder<()>,
    ) {
        let provider_path = item.origin.clone().unwrap_or_else(|| path.to_path_buf());
        let path = path.to_path_buf();
        self.get_placeholder_info(
            ctx,
            provider_path,
            path.clone(),
            move |outcome| match outcome {
                CommandOutcome::Finished(Ok(()), _) => done(Ok(())),
                CommandOutcome::Finished(Err(ProviderError::NotFound), _) => {
                    done(Err(libc::ENOENT))
                }
                CommandOutcome::Finished(Err(e), _) => {
                    if e != ProviderError::Cancelled {
                        tracing::warn!("get_placeholder_info {}: {e}", path.display());
                    }
                    done(Err(e.errno()))
                }
                CommandOutcome::Cancelled => done(Err(libc::EINTR)),
            },
        );
    }
}
