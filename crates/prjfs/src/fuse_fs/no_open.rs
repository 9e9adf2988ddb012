//! No-open mode (`StartOptions::no_open`): OPEN is answered `ENOSYS`, after
//! which the kernel opens and closes files without the daemon and sends their
//! READ, WRITE, FSYNC and FALLOCATE with handle 0; each is served here through
//! a handle opened for that request (or the one kept for a file whose last
//! name went).

use prjfs_fuse::request::Operation;
use prjfs_fuse::{abi, Reply, Request};
use std::sync::atomic::Ordering;

use super::{empty_reply, FuseFs};
use crate::virtualizer::{Opened, RequestCtx};

/// The requests [`FuseFs::dispatch_no_open`] serves in no-open mode.
pub(super) fn served_here(op: &Operation<'_>) -> bool {
    matches!(
        op,
        Operation::Open { .. }
            | Operation::Read { fh: 0, .. }
            | Operation::Write { fh: 0, .. }
            | Operation::Fsync { fh: 0, .. }
            | Operation::Fallocate { fh: 0, .. }
    )
}

impl FuseFs {
    /// Serve a request [`served_here`] accepts.
    pub(super) fn dispatch_no_open(&self, req: Request<'_>, reply: Reply) {
        let node = req.header.nodeid;
        match req.op {
            // The kernel opens without the daemon from now on (no RELEASE
            // either); this open too succeeds, with handle 0.
            Operation::Read {
                fh: 0,
                offset,
                size,
                ..
            } => {
                let ctx = Self::ctx(&req, &reply);
                let size = size.min(self.max_read.load(Ordering::Relaxed));
                let virt = self.virt.clone();
                let ctx2 = ctx.clone();
                self.implicit(
                    &ctx,
                    node,
                    libc::O_RDONLY,
                    reply,
                    move |fh, reply, close| {
                        virt.read(
                            &ctx2,
                            fh,
                            offset,
                            size,
                            Box::new(move |r: Result<Vec<u8>, i32>| {
                                close();
                                match r {
                                    Ok(data) => reply.bytes(&data),
                                    Err(e) => reply.error(e),
                                }
                            }),
                        )
                    },
                );
            }
            Operation::Fsync { fh: 0, datasync } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                self.implicit(
                    &ctx,
                    node,
                    libc::O_RDONLY,
                    reply,
                    move |fh, reply, close| {
                        let r = virt.fsync(fh, datasync);
                        close();
                        empty_reply(reply, r);
                    },
                );
            }
            Operation::Write {
                fh: 0,
                offset,
                data,
                write_flags,
                ..
            } => {
                let drop_set_id = write_flags & abi::FUSE_WRITE_KILL_SUIDGID != 0;
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let ctx2 = ctx.clone();
                // The data outlives this call only as a copy: the write starts
                // after the open, which may wait for the provider.
                let data = data.to_vec();
                self.implicit(
                    &ctx,
                    node,
                    libc::O_WRONLY,
                    reply,
                    move |fh, reply, close| {
                        virt.write(
                            &ctx2,
                            fh,
                            offset,
                            &data,
                            drop_set_id,
                            Box::new(move |r: Result<u32, i32>| {
                                close();
                                match r {
                                    Ok(n) => reply.value(&abi::FuseWriteOut {
                                        size: n,
                                        padding: 0,
                                    }),
                                    Err(e) => reply.error(e),
                                }
                            }),
                        )
                    },
                );
            }
            Operation::Fallocate {
                fh: 0,
                offset,
                length,
                mode,
            } => {
                let ctx = Self::ctx(&req, &reply);
                let virt = self.virt.clone();
                let ctx2 = ctx.clone();
                self.implicit(
                    &ctx,
                    node,
                    libc::O_WRONLY,
                    reply,
                    move |fh, reply, close| {
                        virt.fallocate(
                            &ctx2,
                            fh,
                            offset,
                            length,
                            mode,
                            Box::new(move |r| {
                                close();
                                empty_reply(reply, r)
                            }),
                        )
                    },
                );
            }
            _ => reply.error(libc::ENOSYS),
        }
    }

    /// In no-open mode the kernel sends READ, WRITE, FSYNC and FALLOCATE of a
    /// file with handle 0 (no OPEN gave it one): open a handle on `node` with
    /// `flags` for this request (`ENOSYS`-free path of an OPEN: the VersionInfo
    /// asked, a placeholder opened for write made full), run `op` with it, and
    /// discard it when `op` answers (no RELEASE will come, and no close
    /// notification is raised: the mode has none). A node whose last name went
    /// is served through the handle kept for it (`Virtualizer::kept_handle`).
    fn implicit(
        &self,
        ctx: &RequestCtx,
        node: u64,
        flags: i32,
        reply: Reply,
        op: impl FnOnce(u64, Reply, Box<dyn FnOnce() + Send>) + Send + 'static,
    ) {
        if let Some(fh) = self.virt.kept_handle(node) {
            // A file whose last name went: its content lives on in the handle
            // kept for it until the kernel forgets the node.
            return op(fh, reply, Box::new(|| {}));
        }
        let virt = self.virt.clone();
        self.virt.open(
            ctx,
            node,
            flags,
            Box::new(move |r: Result<Opened, i32>| match r {
                Ok(opened) => {
                    let fh = opened.fh;
                    op(fh, reply, Box::new(move || virt.discard(fh)));
                }
                Err(e) => reply.error(e),
            }),
        );
    }
}
