//! Open files and the read path: hydration through GetFileData on first read, then
//! reads straight from the hydrated file on disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Errno, Inner, RequestCtx, Responder};
use crate::command::{CallbackKind, CommandOutcome};
use crate::layer::LayerError;
use crate::provider::ProviderError;
use crate::types::{FileKind, OnDiskState};

/// One open file.
pub(crate) struct FileHandle {
    node: u64,
    /// Invariant: once set, the file holds the item's complete content.
    data: Mutex<Option<Arc<File>>>,
}

impl Inner {
    pub(super) fn open(&self, node: u64, flags: i32) -> Result<u64, Errno> {
        let path = self.path(node)?;
        let item = self.item(&path)?;
        match item.kind {
            FileKind::Directory => return Err(libc::EISDIR),
            FileKind::Symlink => return Err(libc::ELOOP),
            FileKind::File => {}
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(libc::EROFS);
        }
        let fh = self.new_handle_id();
        self.files.lock().expect("files lock").insert(
            fh,
            Arc::new(FileHandle {
                node,
                data: Mutex::new(None),
            }),
        );
        Ok(fh)
    }

    pub(super) fn read(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        fh: u64,
        offset: u64,
        size: u32,
        done: Responder<Vec<u8>>,
    ) {
        let Some(handle) = self.files.lock().expect("files lock").get(&fh).cloned() else {
            return done(Err(libc::EBADF));
        };
        let file = handle.data.lock().expect("handle lock").clone();
        if let Some(file) = file {
            return done(read_at(&file, offset, size));
        }
        let path = match self.path(handle.node) {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let item = match self.item(&path) {
            Ok(i) => i,
            Err(e) => return done(Err(e)),
        };
        let local = !item.state.contains(OnDiskState::PLACEHOLDER)
            || item.state.contains(OnDiskState::HYDRATED_PLACEHOLDER)
            || item.state.contains(OnDiskState::FULL);
        if local || item.attr.size == 0 {
            if !local {
                // Nothing to fetch: an empty placeholder hydrates without a callback.
                if let Err(e) = self.hydrate_empty(&path) {
                    return done(Err(e));
                }
            }
            return done(
                self.open_local(&handle, &path)
                    .and_then(|f| read_at(&f, offset, size)),
            );
        }
        if let Err(e) = self.may_call_provider(ctx) {
            tracing::warn!(
                "{}: the provider's own process read a placeholder; not hydrating",
                path.display()
            );
            return done(Err(e));
        }
        let hydration = match self.layer.begin_hydration(&path) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                tracing::error!("{}: cannot start hydration: {e}", path.display());
                return done(Err(e.errno()));
            }
        };
        let stream_id = hydration.stream_id();
        self.streams
            .lock()
            .expect("streams lock")
            .insert(stream_id, hydration.clone());
        let mut data = self.callback_data(ctx, path.clone());
        data.file_id = fh;
        data.data_stream_id = stream_id;
        data.version = item.version.clone();
        let length = item.attr.size;
        let inner = self.clone();
        self.invoke(
            CallbackKind::GetFileData,
            data,
            Some(&ctx.cancel),
            move |p, cb| p.get_file_data(cb, 0, length),
            move |outcome| {
                let hydration = inner
                    .streams
                    .lock()
                    .expect("streams lock")
                    .remove(&stream_id);
                let result = match outcome {
                    CommandOutcome::Finished(Ok(()), _) => {
                        inner.finish_hydration(hydration, &path, length)
                    }
                    CommandOutcome::Finished(Err(e), _) => {
                        if e != ProviderError::Cancelled {
                            tracing::warn!("get_file_data {}: {e}", path.display());
                        }
                        Err(e.errno())
                    }
                    CommandOutcome::Cancelled => Err(libc::EINTR),
                };
                done(
                    result
                        .and_then(|()| inner.open_local(&handle, &path))
                        .and_then(|f| read_at(&f, offset, size)),
                );
            },
        );
    }

    fn finish_hydration(
        &self,
        hydration: Option<Arc<crate::layer::Hydration>>,
        path: &Path,
        length: u64,
    ) -> Result<(), Errno> {
        let Some(h) = hydration else {
            return Err(libc::EIO);
        };
        // Writers from the provider may still hold clones only through the
        // streams table, which no longer has it; wait out a racing write.
        let h = match Arc::try_unwrap(h) {
            Ok(h) => h,
            Err(_) => {
                tracing::error!("{}: hydration still in use at completion", path.display());
                return Err(libc::EIO);
            }
        };
        match self.layer.finish_hydration(h, path) {
            Ok(()) => Ok(()),
            Err(LayerError::IncompleteData { .. }) => {
                tracing::error!(
                    "provider reported success for get_file_data of {} but did not write all {length} bytes",
                    path.display()
                );
                Err(libc::EIO)
            }
            Err(e) => {
                // Another reader may have hydrated it first; that is success.
                match self.layer.state(path) {
                    Ok(s) if s.contains(OnDiskState::HYDRATED_PLACEHOLDER) => Ok(()),
                    _ => {
                        tracing::error!("{}: finishing hydration failed: {e}", path.display());
                        Err(e.errno())
                    }
                }
            }
        }
    }

    fn hydrate_empty(&self, path: &Path) -> Result<(), Errno> {
        let h = self.layer.begin_hydration(path).map_err(|e| e.errno())?;
        self.finish_hydration(Some(Arc::new(h)), path, 0)
    }

    fn open_local(&self, handle: &FileHandle, path: &Path) -> Result<Arc<File>, Errno> {
        let mut slot = handle.data.lock().expect("handle lock");
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(
            self.layer
                .open_file(path, rustix::fs::OFlags::RDONLY)
                .map_err(|e| e.errno())?,
        );
        *slot = Some(f.clone());
        Ok(f)
    }
}

fn read_at(file: &File, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; size as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}
