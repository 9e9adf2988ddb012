//! The index file: a [`Catalog`] as bytes, and the archive [`Fingerprint`]
//! that says whether a stored index still describes the archive.
//!
//! Format 3, little-endian: magic `PJAX`, format version (u32), fingerprint
//! (size u64, mtime i128 ns, head/tail hash u64), archive format (u8),
//! readable end (u64), damage (string), the top level's entry count (u32),
//! the entries (u32 count, each: name start and end u32, parent u32, children
//! start and end u32, kind u8, mode u32, mtime i64, size u64, data tag u8 and
//! fields, target start and end u32), the names and targets (string), access
//! tag (u8) and points (u32 count, fields), and a trailing CRC-32 of
//! everything before it. Strings are u32 length + bytes. The catalog is stored
//! as the mount uses it, so loading builds nothing (10k members: well under a
//! millisecond). A file that fails any check is not an index: the caller
//! rebuilds. (Format 1 stored the members in archive order; the tree was built
//! at every load. Format 2 is format 3 whose `.tar.zst` points named zstd
//! frames of `cache.zst`; format 3's name LZ4 blocks of `cache.lz4`.)

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;

use super::catalog::{Catalog, Entry};
use super::index::{Access, Data, Fingerprint, Format, GzPoint, Kind, ZstdPoint};

const MAGIC: &[u8; 4] = b"PJAX";
const VERSION: u32 = 3;
/// How much of the head and of the tail of the archive the fingerprint hashes.
const HEAD_TAIL: u64 = 64 * 1024;

/// The fingerprint of an open archive: size, mtime, hash of head and tail
/// (CRC-32 each: a fingerprint is taken at every mount, by `prjfs mount` and
/// by its daemon, and FNV-1a over the 128 KiB took 0.2 ms each time).
pub fn fingerprint(file: &File) -> io::Result<Fingerprint> {
    let meta = file.metadata()?;
    let size = meta.len();
    let mut buf = vec![0u8; HEAD_TAIL.min(size) as usize];
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut buf)?;
    let head = crc32fast::hash(&buf);
    let tail_at = size.saturating_sub(HEAD_TAIL);
    f.seek(SeekFrom::Start(tail_at))?;
    buf.resize((size - tail_at) as usize, 0);
    f.read_exact(&mut buf)?;
    let hash = u64::from(head) << 32 | u64::from(crc32fast::hash(&buf));
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
    fn range(&mut self, r: &Range<u32>) {
        self.u32(r.start);
        self.u32(r.end);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
}

/// The catalog as the bytes of an index file.
pub fn encode(c: &Catalog) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        64 + c.entries.len() * 56 + c.strings.len(),
    ));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    let fp = c.fingerprint;
    w.u64(fp.size);
    w.0.extend_from_slice(&fp.mtime_ns.to_le_bytes());
    w.u64(fp.head_tail);
    w.u8(c.format.code());
    w.u64(c.readable_end);
    w.bytes(c.damage.as_deref().unwrap_or("").as_bytes());
    w.u32(c.root_count);
    w.u32(c.entries.len() as u32);
    for e in &c.entries {
        w.range(&e.name);
        w.u32(e.parent);
        w.range(&e.children);
        w.u8(match e.kind {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
        });
        w.u32(e.mode);
        w.i64(e.mtime);
        w.u64(e.size);
        match &e.data {
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
        w.range(&e.target);
    }
    w.bytes(&c.strings);
    match &c.access {
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
    let sum = crc32fast::hash(&w.0);
    w.u32(sum);
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
    fn range(&mut self) -> Option<Range<u32>> {
        Some(self.u32()?..self.u32()?)
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
pub fn decode(bytes: &[u8]) -> Option<Catalog> {
    if bytes.len() < 12 {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(sum.try_into().ok()?) {
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
    let root_count = r.u32()?;
    let n = r.count(50)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.range()?;
        let parent = r.u32()?;
        let children = r.range()?;
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
        let target = r.range()?;
        entries.push(Entry {
            name,
            parent,
            children,
            kind,
            mode,
            mtime,
            size,
            data,
            target,
        });
    }
    let strings = r.bytes()?;
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
    let catalog = Catalog {
        format,
        fingerprint: Fingerprint {
            size,
            mtime_ns,
            head_tail,
        },
        access,
        readable_end,
        damage: (!damage.is_empty()).then_some(damage),
        entries,
        root_count,
        strings,
    };
    catalog.is_well_formed().then_some(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::{Index, Member};

    #[test]
    fn an_index_survives_encoding_and_a_flipped_byte_does_not() {
        let mut index = Index {
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
        index.finish(0);
        let catalog = Catalog::from_index(index);
        assert_eq!(catalog.len(), 3);
        let bytes = encode(&catalog);
        assert_eq!(decode(&bytes), Some(catalog));
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(decode(&bad), None, "flipped byte {i}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 3]), None);
    }
}
