//! The per-item metadata record stored in one xattr, and the root marker: both
//! versioned, length-checked and CRC-32 protected.
//!
//! Item record, version 2 (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `PJFS` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | kind: 1 file, 2 directory, 3 symlink |
//! | 6 | 1 | flags: bit 0 *listed* (the placeholder came from a listing; its VersionInfo is not known yet); other bits 0 |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 4 | state bits ([`crate::OnDiskState`]) |
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
//! `None`) and never written. The root marker keeps its own version byte (1).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::types::{FileKind, OnDiskState, VersionInfo, VERSION_ID_MAX};

const MAGIC: &[u8; 4] = b"PJFS";
const ROOT_MAGIC: &[u8; 4] = b"PJRT";
/// The item record format this code writes.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The previous item record format, still read (it has no origin).
const FORMAT_V1: u8 = 1;
/// Version byte of the root marker (unchanged since version 1).
const ROOT_FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 44;
/// Longest origin path a record holds. Ext4 keeps all of an inode's xattrs in one
/// block, so the record stays well below 4 KiB to leave room for user xattrs.
pub(crate) const MAX_ORIGIN_LEN: usize = 3072;
/// Upper bound of an encoded item record.
pub(crate) const MAX_RECORD_LEN: usize =
    HEADER_LEN + 2 + 2 * VERSION_ID_MAX + 3 + MAX_ORIGIN_LEN + 4;
/// Every state bit ProjFS defines.
const KNOWN_STATE_BITS: u32 = 0x1f;

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
    /// written; `None` for tombstones and records of format version 1.
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

impl Record {
    /// Encode. Panics only on a programming error (ids too long or an invalid
    /// state); callers validate user input first.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.version.provider_id.len() <= VERSION_ID_MAX);
        assert!(self.version.content_id.len() <= VERSION_ID_MAX);
        assert!(self
            .origin
            .as_ref()
            .is_none_or(|o| o.as_os_str().len() <= MAX_ORIGIN_LEN));
        debug_assert!(check_state(self.state.0).is_ok());
        let mut out = Vec::with_capacity(MAX_RECORD_LEN);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(kind_code(self.kind));
        out.extend_from_slice(&[u8::from(self.listed), 0]);
        out.extend_from_slice(&self.state.0.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        for (secs, nsecs) in [self.mtime, self.atime] {
            out.extend_from_slice(&secs.to_le_bytes());
            out.extend_from_slice(&nsecs.to_le_bytes());
        }
        for id in [&self.version.provider_id, &self.version.content_id] {
            // Fits: checked against VERSION_ID_MAX (128) above.
            out.push(id.len() as u8);
            out.extend_from_slice(id);
        }
        match &self.origin {
            None => out.push(0),
            Some(origin) => {
                let bytes = origin.as_os_str().as_bytes();
                out.push(1);
                // Fits: checked against MAX_ORIGIN_LEN above.
                out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode and check; the error says which check failed.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err("bad magic".into());
        }
        if bytes.len() < 5 {
            return Err("truncated before the format version".into());
        }
        let format = bytes[4];
        if format != FORMAT_VERSION && format != FORMAT_V1 {
            return Err(format!("unsupported format version {format}"));
        }
        if bytes.len() < HEADER_LEN + 2 + 4 {
            return Err(format!("truncated: {} bytes", bytes.len()));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(tail.try_into().expect("4-byte tail"));
        if crc32(body) != stored {
            return Err("checksum mismatch".into());
        }
        let mut r = Reader { buf: body, pos: 5 };
        let kind = match r.u8()? {
            1 => FileKind::File,
            2 => FileKind::Directory,
            3 => FileKind::Symlink,
            k => return Err(format!("unknown kind {k}")),
        };
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
        if r.pos != body.len() {
            return Err(format!("{} trailing bytes", body.len() - r.pos));
        }
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
                let bytes = self.take(len)?;
                if bytes.contains(&0) || bytes.first() == Some(&b'/') {
                    return Err("origin is not a relative path".into());
                }
                Ok(Some(Path::new(OsStr::from_bytes(bytes)).to_path_buf()))
            }
            f => Err(format!("bad origin flag {f}")),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?.to_vec();
        String::from_utf8(bytes).map_err(|_| "string is not UTF-8".to_string())
    }
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
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            state: OnDiskState::PLACEHOLDER | OnDiskState::HYDRATED_PLACEHOLDER,
            kind: FileKind::File,
            size: 123_456_789_012,
            mtime: (1_700_000_000, 999_999_999),
            atime: (-5, 1),
            version: VersionInfo {
                provider_id: vec![7; VERSION_ID_MAX],
                content_id: b"abc".to_vec(),
            },
            origin: Some(PathBuf::from("dir/ø/file")),
            listed: false,
        }
    }

    /// A record as format version 1 wrote it (no origin fields).
    fn encode_v1(r: &Record) -> Vec<u8> {
        let mut bytes = Record {
            origin: None,
            ..r.clone()
        }
        .encode();
        bytes.truncate(bytes.len() - 4 - 1);
        bytes[4] = FORMAT_V1;
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip() {
        for kind in [FileKind::File, FileKind::Directory, FileKind::Symlink] {
            let r = Record { kind, ..sample() };
            let bytes = r.encode();
            assert!(bytes.len() <= MAX_RECORD_LEN);
            assert_eq!(Record::decode(&bytes).expect("valid record"), r);
        }
        let empty = Record {
            version: VersionInfo::default(),
            state: OnDiskState::TOMBSTONE,
            origin: None,
            ..sample()
        };
        assert_eq!(Record::decode(&empty.encode()).expect("valid"), empty);
        let long = Record {
            origin: Some(PathBuf::from("a".repeat(MAX_ORIGIN_LEN))),
            version: VersionInfo {
                provider_id: vec![1; VERSION_ID_MAX],
                content_id: vec![2; VERSION_ID_MAX],
            },
            ..sample()
        };
        let bytes = long.encode();
        assert_eq!(bytes.len(), MAX_RECORD_LEN);
        assert_eq!(Record::decode(&bytes).expect("valid"), long);
    }

    #[test]
    fn version_1_records_still_decode_without_origin() {
        let r = sample();
        let v1 = encode_v1(&r);
        let decoded = Record::decode(&v1).expect("version 1 is read");
        assert_eq!(decoded.origin, None);
        assert_eq!(
            decoded,
            Record {
                origin: None,
                ..r.clone()
            }
        );
        // Written back, it becomes version 2.
        assert_eq!(decoded.encode()[4], FORMAT_VERSION);
        for len in 0..v1.len() {
            assert!(Record::decode(&v1[..len]).is_err(), "v1 prefix of {len}");
        }
    }

    #[test]
    fn corrupt_records_are_rejected() {
        let good = sample().encode();

        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(Record::decode(&bad_magic).unwrap_err(), "bad magic");

        let mut bad_version = good.clone();
        bad_version[4] = 3;
        assert!(Record::decode(&bad_version)
            .unwrap_err()
            .contains("unsupported format version 3"));

        let mut bad_sum = good.clone();
        bad_sum[20] ^= 1;
        assert_eq!(Record::decode(&bad_sum).unwrap_err(), "checksum mismatch");

        for len in 0..good.len() {
            assert!(
                Record::decode(&good[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        assert!(Record::decode(&[]).is_err());
    }

    #[test]
    fn bad_fields_with_valid_checksum_are_rejected() {
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - 4);
            let crc = crc32(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let good = sample().encode();
        let mut kind = good.clone();
        kind[5] = 9;
        assert!(Record::decode(&reseal(kind)).unwrap_err().contains("kind"));
        let mut state = good.clone();
        state[8..12].copy_from_slice(&(8u32 | 16).to_le_bytes());
        assert!(Record::decode(&reseal(state)).unwrap_err().contains("Full"));
        let mut zero = good.clone();
        zero[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(Record::decode(&reseal(zero)).is_err());
        let mut nsecs = good.clone();
        nsecs[28..32].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        assert!(Record::decode(&reseal(nsecs))
            .unwrap_err()
            .contains("nanoseconds"));
        let mut long_id = good.clone();
        long_id[44] = 129;
        assert!(Record::decode(&reseal(long_id)).is_err());
        // The origin flag sits right after the two ids.
        let flag_at = HEADER_LEN + 2 + VERSION_ID_MAX + 3;
        let mut flag = good.clone();
        flag[flag_at] = 2;
        assert!(Record::decode(&reseal(flag))
            .unwrap_err()
            .contains("origin flag"));
        let mut absolute = good.clone();
        absolute[flag_at + 3] = b'/';
        assert!(Record::decode(&reseal(absolute))
            .unwrap_err()
            .contains("relative"));
    }

    #[test]
    fn root_marker_round_trip_and_corruption() {
        let bytes = encode_root_marker("/src/ø", "dir");
        assert_eq!(
            decode_root_marker(&bytes).expect("valid"),
            ("/src/ø".to_string(), "dir".to_string())
        );
        let mut bad = bytes.clone();
        bad[7] ^= 1;
        assert!(decode_root_marker(&bad).is_err());
        assert!(decode_root_marker(&bytes[..bytes.len() - 1]).is_err());
    }
}
