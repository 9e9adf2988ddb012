//! The index file: an [`Index`] as bytes, and the archive [`Fingerprint`] that
//! says whether a stored index still describes the archive.
//!
//! Format 1, little-endian: magic `PJAX`, format version (u32), fingerprint
//! (size u64, mtime i128 ns, head/tail hash u64), archive format (u8),
//! readable end (u64), damage (string), members (u32 count, each: path
//! string, kind u8, mode u32, mtime i64, size u64, data tag u8 and fields,
//! target string), access tag (u8) and points (u32 count, fields), and a
//! trailing FNV-1a 64 of everything before it. Strings are u32 length + bytes.
//! A file that fails any check is not an index: the caller rebuilds.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use super::index::{Access, Data, Fingerprint, Format, GzPoint, Index, Kind, Member, ZstdPoint};

const MAGIC: &[u8; 4] = b"PJAX";
const VERSION: u32 = 1;
/// How much of the head and of the tail of the archive the fingerprint hashes.
const HEAD_TAIL: u64 = 64 * 1024;

/// FNV-1a, 64 bits: small, stable across builds (the index outlives binaries).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The fingerprint of an open archive: size, mtime, hash of head and tail.
pub fn fingerprint(file: &File) -> io::Result<Fingerprint> {
    let meta = file.metadata()?;
    let size = meta.len();
    let mut buf = vec![0u8; HEAD_TAIL.min(size) as usize];
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut buf)?;
    let mut hash = fnv1a(FNV_START, &buf);
    let tail_at = size.saturating_sub(HEAD_TAIL);
    f.seek(SeekFrom::Start(tail_at))?;
    buf.resize((size - tail_at) as usize, 0);
    f.read_exact(&mut buf)?;
    hash = fnv1a(hash, &buf);
    f.seek(SeekFrom::Start(0))?;
    Ok(Fingerprint {
        size,
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        head_tail: hash,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
}

/// The index as the bytes of an index file.
pub fn encode(index: &Index) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + index.members.len() * 64));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    let fp = index.fingerprint;
    w.u64(fp.size);
    w.0.extend_from_slice(&fp.mtime_ns.to_le_bytes());
    w.u64(fp.head_tail);
    w.u8(index.format.code());
    w.u64(index.readable_end);
    w.bytes(index.damage.as_deref().unwrap_or("").as_bytes());
    w.u32(index.members.len() as u32);
    for m in &index.members {
        w.bytes(&m.path);
        w.u8(match m.kind {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
        });
        w.u32(m.mode);
        w.i64(m.mtime);
        w.u64(m.size);
        match &m.data {
            Data::None => w.u8(0),
            Data::Stream(off) => {
                w.u8(1);
                w.u64(*off);
            }
            Data::Zip {
                offset,
                csize,
                method,
            } => {
                w.u8(2);
                w.u64(*offset);
                w.u64(*csize);
                w.u32(u32::from(*method));
            }
            Data::Broken(why) => {
                w.u8(3);
                w.bytes(why.as_bytes());
            }
        }
        w.bytes(&m.target);
    }
    match &index.access {
        Access::Direct => w.u8(0),
        Access::Gzip(points) => {
            w.u8(1);
            w.u32(points.len() as u32);
            for p in points {
                w.u64(p.out);
                w.u64(p.inp);
                w.u8(p.bits);
                w.u64(p.window_at);
                w.u32(p.window_len);
            }
        }
        Access::Zstd(points) => {
            w.u8(2);
            w.u32(points.len() as u32);
            for p in points {
                w.u64(p.out);
                w.u64(p.inp);
            }
        }
    }
    let sum = fnv1a(FNV_START, &w.0);
    w.u64(sum);
    w.0
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        self.take(n).map(<[u8]>::to_vec)
    }
    /// A count of items at least `min_size` bytes each that fit in what is left.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min_size) <= self.0.len()).then_some(n)
    }
}

/// The fingerprint an index file starts with, read from the first bytes of
/// the file only (nothing else is checked; [`decode`] checks the whole).
pub fn stored_fingerprint(head: &[u8]) -> Option<Fingerprint> {
    let mut r = Reader(head);
    if r.take(4)? != MAGIC || r.u32()? != VERSION {
        return None;
    }
    let size = r.u64()?;
    let mtime_ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
    let head_tail = r.u64()?;
    Some(Fingerprint {
        size,
        mtime_ns,
        head_tail,
    })
}

/// Bytes of an index file that hold its fingerprint.
pub const FINGERPRINT_END: usize = 4 + 4 + 8 + 16 + 8;

/// Parse an index file; `None` if it is not a valid index of this version.
pub fn decode(bytes: &[u8]) -> Option<Index> {
    if bytes.len() < 12 {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if fnv1a(FNV_START, body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body);
    if r.take(4)? != MAGIC || r.u32()? != VERSION {
        return None;
    }
    let size = r.u64()?;
    let mtime_ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
    let head_tail = r.u64()?;
    let format = Format::from_code(r.u8()?)?;
    let readable_end = r.u64()?;
    let damage = String::from_utf8(r.bytes()?).ok()?;
    let n = r.count(29)?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let path = r.bytes()?;
        let kind = match r.u8()? {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            _ => return None,
        };
        let mode = r.u32()?;
        let mtime = r.i64()?;
        let size = r.u64()?;
        let data = match r.u8()? {
            0 => Data::None,
            1 => Data::Stream(r.u64()?),
            2 => Data::Zip {
                offset: r.u64()?,
                csize: r.u64()?,
                method: u16::try_from(r.u32()?).ok()?,
            },
            3 => Data::Broken(String::from_utf8(r.bytes()?).ok()?),
            _ => return None,
        };
        let target = r.bytes()?;
        members.push(Member {
            path,
            kind,
            mode,
            mtime,
            size,
            data,
            target,
        });
    }
    let access = match r.u8()? {
        0 => Access::Direct,
        1 => {
            let n = r.count(29)?;
            let mut points = Vec::with_capacity(n);
            for _ in 0..n {
                points.push(GzPoint {
                    out: r.u64()?,
                    inp: r.u64()?,
                    bits: r.u8()?,
                    window_at: r.u64()?,
                    window_len: r.u32()?,
                });
            }
            Access::Gzip(points)
        }
        2 => {
            let n = r.count(16)?;
            let mut points = Vec::with_capacity(n);
            for _ in 0..n {
                points.push(ZstdPoint {
                    out: r.u64()?,
                    inp: r.u64()?,
                });
            }
            Access::Zstd(points)
        }
        _ => return None,
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(Index {
        format,
        fingerprint: Fingerprint {
            size,
            mtime_ns,
            head_tail,
        },
        members,
        access,
        readable_end,
        damage: (!damage.is_empty()).then_some(damage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_survives_encoding_and_a_flipped_byte_does_not() {
        let index = Index {
            format: Format::TarGz,
            fingerprint: Fingerprint {
                size: 99,
                mtime_ns: -5,
                head_tail: 7,
            },
            members: vec![
                Member {
                    path: b"a/b".to_vec(),
                    kind: Kind::File,
                    mode: 0o755,
                    mtime: 1_700_000_000,
                    size: 12,
                    data: Data::Stream(512),
                    target: Vec::new(),
                },
                Member {
                    path: b"l".to_vec(),
                    kind: Kind::Symlink,
                    mode: 0o777,
                    mtime: 0,
                    size: 3,
                    data: Data::Broken("x".into()),
                    target: b"a/b".to_vec(),
                },
            ],
            access: Access::Gzip(vec![GzPoint {
                out: 0,
                inp: 10,
                bits: 3,
                window_at: 0,
                window_len: 0,
            }]),
            readable_end: 2048,
            damage: Some("truncated".into()),
        };
        let bytes = encode(&index);
        assert_eq!(decode(&bytes), Some(index));
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(decode(&bad), None, "flipped byte {i}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 3]), None);
    }
}
