//! The daemon's own walk for `prjfs hydrate`: the files under the paths
//! asked for, found through the virtualizer as a client's listings and
//! lookups would find them (the provider's enumeration merged with what is
//! local), but with no kernel round trip and no kernel inode per entry.
//!
//! Invariants: every node this walk looks up (the directories it enters and
//! the components of the paths it starts from) is forgotten again before the
//! walk returns, so the node table is left as it was found; every directory
//! handle it opens is released. Its callbacks (enumerations, the
//! GetPlaceholderInfo of a directory's first lookup) count as one job of the
//! hydrate, like the client's walk they replace.

use std::path::Path;
use std::sync::mpsc;

use prjfs::types::FileKind;
use prjfs::virtualizer::{Errno, RequestCtx, Responder, Virtualizer, ROOT_ID};

/// Entries asked for per READDIR-like call.
const LIST_MAX: usize = 4096;

/// Wait for the answer of an asynchronous virtualizer call; `None` when the
/// call dropped its responder without answering.
pub(super) fn answer<T: Send + 'static>(
    call: impl FnOnce(Responder<T>),
) -> Option<Result<T, Errno>> {
    let (tx, rx) = mpsc::sync_channel(1);
    call(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().ok()
}

/// [`answer`], with no answer taken for `EIO`.
fn wait<T: Send + 'static>(call: impl FnOnce(Responder<T>)) -> Result<T, Errno> {
    answer(call).unwrap_or(Err(libc::EIO))
}

fn describe(errno: Errno) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// What a walk hands on: a directory's regular files at once, with their
/// sizes; `false` to stop the walk.
pub(super) type Visit<'a> = dyn FnMut(Vec<(String, u64)>) -> bool + 'a;

/// Walks under one root for one client.
pub(super) struct Walk<'a> {
    pub virt: &'a Virtualizer,
    pub ctx: &'a RequestCtx,
    /// `path: error` of every path that could not be walked.
    pub errors: Vec<String>,
}

impl Walk<'_> {
    /// Hand every regular file under `rel` (relative to the root; `""` is
    /// the root; the file itself if it is one) to `visit`, directory by
    /// directory, without following symlinks. `false` once `visit` said stop.
    pub fn walk(&mut self, rel: &str, visit: &mut Visit<'_>) -> bool {
        let mut looked_up = Vec::new();
        let go = self.walk_from(rel, &mut looked_up, visit);
        for node in looked_up {
            self.virt.forget(node, 1);
        }
        go
    }

    fn walk_from(&mut self, rel: &str, looked_up: &mut Vec<u64>, visit: &mut Visit<'_>) -> bool {
        let mut node = ROOT_ID;
        let mut file = None;
        for name in Path::new(rel).iter() {
            if file.is_some() {
                self.errors
                    .push(format!("{rel}: {}", describe(libc::ENOTDIR)));
                return true;
            }
            match wait(|d| self.virt.lookup(self.ctx, node, name, d)) {
                Ok((child, item)) => {
                    looked_up.push(child);
                    node = child;
                    match item.kind {
                        FileKind::Directory => {}
                        FileKind::File if item.attr.mode & libc::S_IFMT == libc::S_IFREG => {
                            file = Some(item.attr.size)
                        }
                        // A symlink or special file: nothing to hydrate.
                        _ => return true,
                    }
                }
                Err(e) => {
                    self.errors.push(format!("{rel}: {}", describe(e)));
                    return true;
                }
            }
        }
        match file {
            Some(size) => visit(vec![(rel.to_string(), size)]),
            None => self.walk_dir(node, rel, visit),
        }
    }

    /// The directory `node` at `rel`: its files first, then its
    /// subdirectories in the listing's order.
    fn walk_dir(&mut self, node: u64, rel: &str, visit: &mut Visit<'_>) -> bool {
        let join = |name: &std::ffi::OsStr| {
            let name = name.to_string_lossy();
            if rel.is_empty() {
                name.into_owned()
            } else {
                format!("{rel}/{name}")
            }
        };
        let fh = match wait(|d| self.virt.opendir(self.ctx, node, d)) {
            Ok(fh) => fh,
            Err(e) => {
                self.errors.push(format!("{rel}: {}", describe(e)));
                return true;
            }
        };
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        let mut offset = 0;
        let listed = loop {
            match wait(|d| self.virt.readdir(self.ctx, fh, offset, LIST_MAX, d)) {
                Ok(slice) if slice.is_empty() => break Ok(()),
                Ok(slice) => {
                    for item in slice.iter() {
                        offset = item.next_offset;
                        if &*item.name == "." || &*item.name == ".." {
                            continue;
                        }
                        match item.kind {
                            FileKind::Directory => dirs.push(item.name.clone()),
                            FileKind::File => {
                                let regular = item
                                    .entry
                                    .is_none_or(|a| a.mode & libc::S_IFMT == libc::S_IFREG);
                                if regular {
                                    let size = item.entry.map_or(0, |a| a.size);
                                    files.push((join(&item.name), size));
                                }
                            }
                            FileKind::Symlink => {}
                        }
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.virt.releasedir(fh);
        if let Err(e) = listed {
            self.errors.push(format!("{rel}: {}", describe(e)));
            return true;
        }
        if !files.is_empty() && !visit(files) {
            return false;
        }
        for name in dirs {
            let sub = join(&name);
            match wait(|d| self.virt.lookup(self.ctx, node, &name, d)) {
                Ok((child, item)) => {
                    let go = item.kind != FileKind::Directory || self.walk_dir(child, &sub, visit);
                    self.virt.forget(child, 1);
                    if !go {
                        return false;
                    }
                }
                // Gone since the listing: nothing to hydrate there.
                Err(libc::ENOENT) => {}
                Err(e) => self.errors.push(format!("{sub}: {}", describe(e))),
            }
        }
        true
    }
}
