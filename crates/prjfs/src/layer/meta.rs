//! The per-item metadata record stored in one xattr, and the root marker: both
//! versioned, length-checked and CRC-32 protected.
//!
//! Item record, version 3 (what this code writes). Integers marked *v* are
//! LEB128 varints (7 bits a byte, low first); *zz* marks a signed one in
//! zigzag form (0, −1, 1, −2, … → 0, 1, 2, 3, …).
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `PJ` |
//! | 1 | format version (3) |
//! | 1 | flags: bits 0–1 kind (1 file, 2 directory, 3 symlink); bit 2 *listed* (the placeholder came from a listing; its VersionInfo is not known yet); bits 3–4 origin: 0 none, 1 *the item's own path*, 2 stored below; bit 5 atime equals mtime; bits 6–7 zero |
//! | 1 | state bits ([`crate::OnDiskState`]) |
//! | v | size |
//! | zz v | mtime seconds (i64) |
//! | v | mtime nanoseconds (< 10⁹) |
//! | zz v | atime − mtime in nanoseconds (i128); absent when flag bit 5 is set |
//! | 1+n | provider_id: a byte 0–128 is its length n, then n bytes; 129 + i names entry i of [`KNOWN_PROVIDER_IDS`] (no bytes follow) |
//! | 1+m | content_id (length byte, m ≤ 128) |
//! | v+k | origin path relative to the root, only when flag bits 3–4 are 2 (length k ≤ [`MAX_ORIGIN_LEN`]) |
//! | 4 | CRC-32 (IEEE, little-endian) of every byte before it |
//!
//! *Origin 1* means the placeholder's origin is the path the item is at now;
//! the decoder is told that path. It is written only by a writer that knows
//! where the item ends up ([`Record::encode_at`]), and every operation that
//! moves an item with such a record (a rename, with everything below a
//! renamed directory, and a hard link) first rewrites it with the origin
//! stored ([`Record::encode`]), which means the same at that instant; see
//! `Layer::pin_origins`. The point of the format: a hydrated 4 KiB file of the
//! dir provider has a record of about 40 bytes, which ext4 keeps inside a
//! 256-byte inode (60 bytes of value for this name), where 102 bytes made it
//! allocate a 4 KiB xattr block per file.
//!
//! Version 2 (still read, never written; all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `PJFS` |
//! | 4 | 1 | format version (2) |
//! | 5 | 1 | kind: 1 file, 2 directory, 3 symlink |
//! | 6 | 1 | flags: bit 0 *listed*; other bits 0 |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 4 | state bits |
//! | 12 | 8 | size |
//! | 20 | 8+4 | mtime (secs i64, nsecs u32) |
//! | 32 | 8+4 | atime (secs i64, nsecs u32) |
//! | 44 | 1+n | provider_id (length byte, n ≤ 128) |
//! | .. | 1+m | content_id (length byte, m ≤ 128) |
//! | .. | 1 | origin present: 0 no, 1 yes |
//! | .. | 2+k | origin path relative to the root (length u16, k ≤ [`MAX_ORIGIN_LEN`]) |
//! | .. | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! Version 1 is version 2 without the two origin fields; it is still read (origin
//! `None`) and never written. A record of version 1 or 2 is rewritten as
//! version 3 only when it is written anyway. The root marker keeps its own
//! version byte (1).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::types::{FileKind, OnDiskState, VersionInfo, VERSION_ID_MAX};

/// Magic of format versions 1 and 2.
const MAGIC_V2: &[u8; 4] = b"PJFS";
/// Magic of format version 3 (the first two bytes of [`MAGIC_V2`]; the byte
/// after it, 3, is not the `F` of version 2).
const MAGIC: &[u8; 2] = b"PJ";
const ROOT_MAGIC: &[u8; 4] = b"PJRT";
/// The item record format this code writes.
pub(crate) const FORMAT_VERSION: u8 = 3;
/// The previous item record formats, still read.
pub(crate) const FORMAT_V2: u8 = 2;
pub(crate) const FORMAT_V1: u8 = 1;
/// Version byte of the root marker (unchanged since version 1).
const ROOT_FORMAT_VERSION: u8 = 1;
/// Fixed part of a version 1 or 2 record.
const HEADER_LEN_V2: usize = 44;
/// Provider ids a version 3 record names by one byte (129 + index). Part of
/// the format: entries are only ever appended. Those of the workspace's
/// providers (`dir`, `git`, `archive`, `s3`).
pub(crate) const KNOWN_PROVIDER_IDS: [&[u8]; 4] = [b"prjfs-dir", b"git", b"prjfs-archive", b"s3"];
const KNOWN_ID_BASE: u8 = VERSION_ID_MAX as u8 + 1;
/// Longest origin path a record holds. Ext4 keeps all of an inode's xattrs in one
/// block, so the record stays well below 4 KiB to leave room for user xattrs.
pub(crate) const MAX_ORIGIN_LEN: usize = 3072;
/// Upper bound of an encoded version 2 record.
const MAX_RECORD_LEN_V2: usize = HEADER_LEN_V2 + 2 + 2 * VERSION_ID_MAX + 3 + MAX_ORIGIN_LEN + 4;
/// Upper bound of an encoded version 3 record: magic, version, flags, state,
/// size (10), mtime (10 + 5), atime delta (19), ids, origin (length 2), CRC.
const MAX_RECORD_LEN_V3: usize =
    5 + 10 + 15 + 19 + 2 * (1 + VERSION_ID_MAX) + 2 + MAX_ORIGIN_LEN + 4;
/// Upper bound of a record of any version this code reads.
pub(crate) const MAX_RECORD_LEN: usize = if MAX_RECORD_LEN_V2 > MAX_RECORD_LEN_V3 {
    MAX_RECORD_LEN_V2
} else {
    MAX_RECORD_LEN_V3
};
/// Largest record value ext4 keeps inside a default (256-byte) inode under
/// the name `trusted.prjfs.meta` or `user.prjfs.meta`: found by experiment
/// (`setfattr` of N bytes on a 4 KiB file of a fresh `mkfs.ext4` image: 60
/// bytes leave `st_blocks` at 8, 61 make it 16).
#[cfg(test)]
const EXT4_INODE_BUDGET: usize = 60;
/// Every state bit ProjFS defines.
const KNOWN_STATE_BITS: u32 = 0x1f;

const FLAG_KIND: u8 = 0b11;
const FLAG_LISTED: u8 = 1 << 2;
const ORIGIN_SHIFT: u8 = 3;
const ORIGIN_NONE: u8 = 0;
const ORIGIN_HERE: u8 = 1;
const ORIGIN_STORED: u8 = 2;
const FLAG_ATIME_IS_MTIME: u8 = 1 << 5;
const FLAGS_KNOWN: u8 = FLAG_KIND | FLAG_LISTED | (0b11 << ORIGIN_SHIFT) | FLAG_ATIME_IS_MTIME;
const NANOS: i128 = 1_000_000_000;

/// The decoded metadata record of one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// State bits; never 0, never Full together with Tombstone.
    pub state: OnDiskState,
    /// What the item is in the store.
    pub kind: FileKind,
    /// Projected size (files: content length; symlinks: target length).
    pub size: u64,
    /// Projected modification time.
    pub mtime: (i64, u32),
    /// Projected access time.
    pub atime: (i64, u32),
    /// The store's version of the item.
    pub version: VersionInfo,
    /// The path (relative to the root) the item had when its placeholder was
    /// written; `None` for tombstones, marks and records of format version 1.
    /// Always the full path here, also when the encoded record leaves it out
    /// (origin 1: the item's own path).
    pub origin: Option<PathBuf>,
    /// The placeholder came from a listing: `version` is empty until
    /// GetPlaceholderInfo fills it.
    pub listed: bool,
}

fn kind_code(kind: FileKind) -> u8 {
    match kind {
        FileKind::File => 1,
        FileKind::Directory => 2,
        FileKind::Symlink => 3,
    }
}

fn kind_of(code: u8) -> Result<FileKind, String> {
    match code {
        1 => Ok(FileKind::File),
        2 => Ok(FileKind::Directory),
        3 => Ok(FileKind::Symlink),
        k => Err(format!("unknown kind {k}")),
    }
}

/// Checks shared by encode (programming errors) and decode (corruption).
fn check_state(state: u32) -> Result<(), String> {
    if state == 0 {
        return Err("state is 0 (virtual items have no record)".into());
    }
    if state & !KNOWN_STATE_BITS != 0 {
        return Err(format!("unknown state bits {state:#x}"));
    }
    let full_and_tomb = OnDiskState::FULL.0 | OnDiskState::TOMBSTONE.0;
    if state & full_and_tomb == full_and_tomb {
        return Err("state combines Full and Tombstone".into());
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

fn total_nanos((secs, nsecs): (i64, u32)) -> i128 {
    i128::from(secs) * NANOS + i128::from(nsecs)
}

/// Whether the encoded record `bytes` (already decoded without error) leaves
/// its origin out because it is the item's own path: such a record must be
/// rewritten with [`Record::encode`] before its item moves.
pub(crate) fn origin_is_implicit(bytes: &[u8]) -> bool {
    bytes.len() > 3
        && bytes[..2] == *MAGIC
        && bytes[2] == FORMAT_VERSION
        && (bytes[3] >> ORIGIN_SHIFT) & 0b11 == ORIGIN_HERE
}

impl Record {
    /// Encode with the origin stored (when there is one): valid wherever the
    /// item is. Panics only on a programming error (ids too long or an
    /// invalid state); callers validate user input first.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(None)
    }

    /// Encode for an item that is (or is about to be renamed) at `at`: an
    /// origin equal to `at` is left out.
    pub fn encode_at(&self, at: &Path) -> Vec<u8> {
        self.encode_with(Some(at))
    }

    fn encode_with(&self, at: Option<&Path>) -> Vec<u8> {
        assert!(self.version.provider_id.len() <= VERSION_ID_MAX);
        assert!(self.version.content_id.len() <= VERSION_ID_MAX);
        assert!(self
            .origin
            .as_ref()
            .is_none_or(|o| o.as_os_str().len() <= MAX_ORIGIN_LEN));
        debug_assert!(check_state(self.state.0).is_ok());
        let origin_mode = match (&self.origin, at) {
            (None, _) => ORIGIN_NONE,
            (Some(o), Some(at)) if o.as_os_str().as_bytes() == at.as_os_str().as_bytes() => {
                ORIGIN_HERE
            }
            (Some(_), _) => ORIGIN_STORED,
        };
        let atime_delta = total_nanos(self.atime) - total_nanos(self.mtime);
        let mut flags = kind_code(self.kind) | (origin_mode << ORIGIN_SHIFT);
        if self.listed {
            flags |= FLAG_LISTED;
        }
        if atime_delta == 0 {
            flags |= FLAG_ATIME_IS_MTIME;
        }
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(flags);
        // Fits: check_state allows 5 bits only.
        out.push(self.state.0 as u8);
        put_varint(&mut out, u128::from(self.size));
        put_varint(&mut out, zigzag(i128::from(self.mtime.0)));
        put_varint(&mut out, u128::from(self.mtime.1));
        if atime_delta != 0 {
            put_varint(&mut out, zigzag(atime_delta));
        }
        let provider_id = &self.version.provider_id;
        match KNOWN_PROVIDER_IDS.iter().position(|k| *k == provider_id) {
            // Fits: the table has fewer than 127 entries.
            Some(i) => out.push(KNOWN_ID_BASE + i as u8),
            None => {
                // Fits: checked against VERSION_ID_MAX (128) above.
                out.push(provider_id.len() as u8);
                out.extend_from_slice(provider_id);
            }
        }
        out.push(self.version.content_id.len() as u8);
        out.extend_from_slice(&self.version.content_id);
        if origin_mode == ORIGIN_STORED {
            let bytes = self.origin.as_ref().expect("stored").as_os_str().as_bytes();
            put_varint(&mut out, bytes.len() as u128);
            out.extend_from_slice(bytes);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode and check the record of the item at `at` (the path an origin
    /// left out stands for); the error says which check failed.
    pub fn decode(bytes: &[u8], at: &Path) -> Result<Record, String> {
        if bytes.len() < 2 || bytes[..2] != *MAGIC {
            return Err("bad magic".into());
        }
        if bytes.len() < 3 {
            return Err("truncated before the format version".into());
        }
        if bytes[2] == FORMAT_VERSION {
            return Self::decode_v3(bytes, at);
        }
        if bytes.len() < 4 || bytes[..4] != *MAGIC_V2 {
            return Err(format!("unsupported format version {}", bytes[2]));
        }
        if bytes.len() < 5 {
            return Err("truncated before the format version".into());
        }
        let format = bytes[4];
        if format != FORMAT_V2 && format != FORMAT_V1 {
            return Err(format!("unsupported format version {format}"));
        }
        if bytes.len() < HEADER_LEN_V2 + 2 + 4 {
            return Err(format!("truncated: {} bytes", bytes.len()));
        }
        let body = check_crc(bytes)?;
        let mut r = Reader { buf: body, pos: 5 };
        let kind = kind_of(r.u8()?)?;
        let listed = match r.take(2)? {
            [0, 0] => false,
            [1, 0] => true,
            _ => return Err("unknown flags or reserved bytes not zero".into()),
        };
        let state = r.u32()?;
        check_state(state)?;
        let size = r.u64()?;
        let mtime = r.time()?;
        let atime = r.time()?;
        let provider_id = r.id()?;
        let content_id = r.id()?;
        let origin = if format == FORMAT_V1 {
            None
        } else {
            r.origin()?
        };
        r.end()?;
        Ok(Record {
            state: OnDiskState(state),
            kind,
            size,
            mtime,
            atime,
            version: VersionInfo {
                provider_id,
                content_id,
            },
            origin,
            listed,
        })
    }

    fn decode_v3(bytes: &[u8], at: &Path) -> Result<Record, String> {
        // Magic, version, flags, state, three one-byte varints, two id bytes.
        if bytes.len() < 10 + 4 {
            return Err(format!("truncated: {} bytes", bytes.len()));
        }
        let body = check_crc(bytes)?;
        let mut r = Reader { buf: body, pos: 3 };
        let flags = r.u8()?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(format!("unknown flags {flags:#x}"));
        }
        let kind = kind_of(flags & FLAG_KIND)?;
        let state = u32::from(r.u8()?);
        check_state(state)?;
        let size = u64::try_from(r.varint()?).map_err(|_| "size out of range".to_string())?;
        let secs = i64::try_from(unzigzag(r.varint()?))
            .map_err(|_| "mtime seconds out of range".to_string())?;
        let nsecs = u32::try_from(r.varint()?).unwrap_or(u32::MAX);
        if nsecs >= 1_000_000_000 {
            return Err(format!("nanoseconds out of range: {nsecs}"));
        }
        let mtime = (secs, nsecs);
        let atime = if flags & FLAG_ATIME_IS_MTIME != 0 {
            mtime
        } else {
            let delta = unzigzag(r.varint()?);
            if delta == 0 {
                return Err("atime delta 0 without its flag".into());
            }
            let total = total_nanos(mtime)
                .checked_add(delta)
                .ok_or_else(|| "atime out of range".to_string())?;
            let secs = i64::try_from(total.div_euclid(NANOS))
                .map_err(|_| "atime out of range".to_string())?;
            (secs, total.rem_euclid(NANOS) as u32)
        };
        let provider_id = match r.u8()? {
            b if b >= KNOWN_ID_BASE => KNOWN_PROVIDER_IDS
                .get(usize::from(b - KNOWN_ID_BASE))
                .ok_or_else(|| format!("unknown provider id number {}", b - KNOWN_ID_BASE))?
                .to_vec(),
            len => r.take(usize::from(len))?.to_vec(),
        };
        let content_id = r.id()?;
        let origin = match (flags >> ORIGIN_SHIFT) & 0b11 {
            ORIGIN_NONE => None,
            ORIGIN_HERE => Some(at.to_path_buf()),
            ORIGIN_STORED => {
                let len = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
                if len > MAX_ORIGIN_LEN {
                    return Err(format!("origin of {len} bytes (max {MAX_ORIGIN_LEN})"));
                }
                Some(origin_path(r.take(len)?)?)
            }
            m => return Err(format!("bad origin mode {m}")),
        };
        r.end()?;
        Ok(Record {
            state: OnDiskState(state),
            kind,
            size,
            mtime,
            atime,
            version: VersionInfo {
                provider_id,
                content_id,
            },
            origin,
            listed: flags & FLAG_LISTED != 0,
        })
    }
}

/// The body of `bytes` (all but the last four) if its CRC-32 matches them.
fn check_crc(bytes: &[u8]) -> Result<&[u8], String> {
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(tail.try_into().expect("4-byte tail"));
    if crc32(body) != stored {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

fn origin_path(bytes: &[u8]) -> Result<PathBuf, String> {
    if bytes.contains(&0) || bytes.first() == Some(&b'/') {
        return Err("origin is not a relative path".into());
    }
    Ok(Path::new(OsStr::from_bytes(bytes)).to_path_buf())
}

/// Bounds-checked little-endian reader over a record body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn time(&mut self) -> Result<(i64, u32), String> {
        let secs = self.u64()? as i64;
        let nsecs = self.u32()?;
        if nsecs >= 1_000_000_000 {
            return Err(format!("nanoseconds out of range: {nsecs}"));
        }
        Ok((secs, nsecs))
    }
    fn id(&mut self) -> Result<Vec<u8>, String> {
        let len = usize::from(self.u8()?);
        if len > VERSION_ID_MAX {
            return Err(format!("version id of {len} bytes (max {VERSION_ID_MAX})"));
        }
        Ok(self.take(len)?.to_vec())
    }
    fn origin(&mut self) -> Result<Option<PathBuf>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let len = usize::from(u16::from_le_bytes(
                    self.take(2)?.try_into().expect("2 bytes"),
                ));
                if len > MAX_ORIGIN_LEN {
                    return Err(format!("origin of {len} bytes (max {MAX_ORIGIN_LEN})"));
                }
                origin_path(self.take(len)?).map(Some)
            }
            f => Err(format!("bad origin flag {f}")),
        }
    }
    /// A LEB128 varint of at most 19 bytes (128 bits); a last byte of 0
    /// after others (a longer form than needed) is refused.
    fn varint(&mut self) -> Result<u128, String> {
        let mut v = 0u128;
        for i in 0..19 {
            let b = self.u8()?;
            let bits = u128::from(b & 0x7f);
            if i == 18 && bits > 0b11 {
                return Err("varint out of range".into());
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err("varint longer than needed".into());
                }
                return Ok(v);
            }
        }
        Err("varint out of range".into())
    }
    fn end(&self) -> Result<(), String> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(format!("{n} trailing bytes")),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?.to_vec();
        String::from_utf8(bytes).map_err(|_| "string is not UTF-8".to_string())
    }
}

#[cfg(test)]
/// A record as format version 2 wrote it (version 1: without the origin
/// fields), for tests of old roots.
pub(crate) fn encode_v2(r: &Record, format: u8) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC_V2);
    out.push(format);
    out.push(kind_code(r.kind));
    out.extend_from_slice(&[u8::from(r.listed), 0]);
    out.extend_from_slice(&r.state.0.to_le_bytes());
    out.extend_from_slice(&r.size.to_le_bytes());
    for (secs, nsecs) in [r.mtime, r.atime] {
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&nsecs.to_le_bytes());
    }
    for id in [&r.version.provider_id, &r.version.content_id] {
        out.push(id.len() as u8);
        out.extend_from_slice(id);
    }
    if format == FORMAT_V2 {
        match &r.origin {
            None => out.push(0),
            Some(o) => {
                let b = o.as_os_str().as_bytes();
                out.push(1);
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Encode the root marker: `PJRT`, version byte, two u32-length-prefixed UTF-8
/// strings (source, provider), CRC-32.
pub(crate) fn encode_root_marker(source: &str, provider: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + source.len() + provider.len());
    out.extend_from_slice(ROOT_MAGIC);
    out.push(ROOT_FORMAT_VERSION);
    for s in [source, provider] {
        let len = u32::try_from(s.len()).expect("root marker strings are short");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decode the root marker into (source, provider).
pub(crate) fn decode_root_marker(bytes: &[u8]) -> Result<(String, String), String> {
    if bytes.len() < 4 || &bytes[..4] != ROOT_MAGIC {
        return Err("bad root marker magic".into());
    }
    if bytes.len() < 5 + 8 + 4 {
        return Err(format!("truncated root marker: {} bytes", bytes.len()));
    }
    if bytes[4] != ROOT_FORMAT_VERSION {
        return Err(format!("unsupported root marker version {}", bytes[4]));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    if crc32(body) != u32::from_le_bytes(tail.try_into().expect("4-byte tail")) {
        return Err("root marker checksum mismatch".into());
    }
    let mut r = Reader { buf: body, pos: 5 };
    let source = r.string()?;
    let provider = r.string()?;
    if r.pos != body.len() {
        return Err("trailing bytes in root marker".into());
    }
    Ok((source, provider))
}

/// CRC-32 (IEEE 802.3, reflected, as in zlib).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
