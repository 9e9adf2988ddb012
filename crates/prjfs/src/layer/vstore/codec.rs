//! The log's entries: how a record, a removal and a tree move are written
//! (`len u32 | body | crc32(body) u32`) and read back.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::VRec;
use crate::layer::meta::crc32;
use crate::types::VersionInfo;

pub(super) const OP_PUT: u8 = 1;
pub(super) const OP_DEL: u8 = 2;
pub(super) const OP_MOVE_TREE: u8 = 3;

pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Paths are below PATH_MAX and ids below 256 bytes: u16 lengths suffice.
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

pub(super) fn encode_put(path: &Path, r: &VRec) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + path.as_os_str().len());
    put_body(&mut b, &[path.as_os_str().as_bytes()], r);
    b
}

/// Append the framed PUT entry of the record `r` at `dir`/`name` to `out`, as
/// `frame(out, &encode_put(&dir.join(name), r))` would, without the two
/// allocations (a listing writes one per projected file).
pub(super) fn frame_put_at(out: &mut Vec<u8>, dir: &Path, name: &OsStr, r: &VRec) {
    let dir = dir.as_os_str().as_bytes();
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if dir.is_empty() || dir.ends_with(b"/") {
        put_body(out, &[dir, name.as_bytes()], r);
    } else {
        put_body(out, &[dir, b"/", name.as_bytes()], r);
    }
    let len = out.len() - start - 4;
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32(&out[start + 4..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The body of a PUT entry: the path (the concatenation of `path`'s parts)
/// and the record.
pub(super) fn put_body(b: &mut Vec<u8>, path: &[&[u8]], r: &VRec) {
    b.push(OP_PUT);
    let len: usize = path.iter().map(|p| p.len()).sum();
    // Paths are below PATH_MAX: a u16 length suffices.
    b.extend_from_slice(&(len as u16).to_le_bytes());
    for p in path {
        b.extend_from_slice(p);
    }
    b.extend_from_slice(&r.size.to_le_bytes());
    for (s, ns) in [r.mtime, r.atime] {
        b.extend_from_slice(&s.to_le_bytes());
        b.extend_from_slice(&ns.to_le_bytes());
    }
    b.extend_from_slice(&r.perm.to_le_bytes());
    b.extend_from_slice(&r.uid.to_le_bytes());
    b.extend_from_slice(&r.gid.to_le_bytes());
    let flags = u8::from(r.version.is_some()) | (u8::from(r.origin.is_some()) << 1);
    b.push(flags);
    if let Some(v) = &r.version {
        put_bytes(b, &v.provider_id);
        put_bytes(b, &v.content_id);
    }
    if let Some(o) = &r.origin {
        put_bytes(b, o.as_os_str().as_bytes());
    }
}

pub(super) fn encode_paths(op: u8, paths: &[&Path]) -> Vec<u8> {
    let mut b = vec![op];
    for p in paths {
        put_bytes(&mut b, p.as_os_str().as_bytes());
    }
    b
}

pub(super) fn frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32(body).to_le_bytes());
}

/// Bounds-checked reader of one entry body.
pub(super) struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_le_bytes(self.arr()?) as usize;
        self.take(n)
    }
    fn path(&mut self) -> Option<PathBuf> {
        Some(PathBuf::from(OsStr::from_bytes(self.bytes()?)))
    }
    fn time(&mut self) -> Option<(i64, u32)> {
        Some((
            i64::from_le_bytes(self.arr()?),
            u32::from_le_bytes(self.arr()?),
        ))
    }
}

/// One decoded log entry.
pub(super) enum Entry {
    Put(PathBuf, VRec),
    Del(PathBuf),
    MoveTree(PathBuf, PathBuf),
}

pub(super) fn decode(body: &[u8]) -> Option<Entry> {
    let mut r = Rd(body);
    let op = r.arr::<1>()?[0];
    let e = match op {
        OP_PUT => {
            let path = r.path()?;
            let size = u64::from_le_bytes(r.arr()?);
            let mtime = r.time()?;
            let atime = r.time()?;
            let perm = u16::from_le_bytes(r.arr()?);
            let uid = u32::from_le_bytes(r.arr()?);
            let gid = u32::from_le_bytes(r.arr()?);
            let flags = r.arr::<1>()?[0];
            let version = if flags & 1 != 0 {
                Some(Box::new(VersionInfo {
                    provider_id: r.bytes()?.to_vec(),
                    content_id: r.bytes()?.to_vec(),
                }))
            } else {
                None
            };
            let origin = if flags & 2 != 0 {
                Some(Box::new(r.path()?))
            } else {
                None
            };
            Entry::Put(
                path,
                VRec {
                    size,
                    mtime,
                    atime,
                    perm,
                    uid,
                    gid,
                    version,
                    origin,
                    serial: 0,
                },
            )
        }
        OP_DEL => Entry::Del(r.path()?),
        OP_MOVE_TREE => Entry::MoveTree(r.path()?, r.path()?),
        _ => return None,
    };
    r.0.is_empty().then_some(e)
}
