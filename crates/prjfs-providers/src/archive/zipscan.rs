//! Zip: the members from the central directory (the `zip` crate), and reading
//! one member's data (stored: copied from the file; deflate: `flate2`; zstd:
//! `zstd`). A zip whose central directory is gone (truncated) is read from its
//! local headers instead, as far as they go.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::index::{Data, Kind, Member};
use super::ArchiveError;

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;

/// Reads `len` bytes of a file from `pos` with `pread`.
pub struct Range<'a> {
    file: &'a File,
    pos: u64,
    left: u64,
}

impl<'a> Range<'a> {
    /// `[pos, pos + len)` of `file`.
    pub fn new(file: &'a File, pos: u64, len: u64) -> Self {
        Self {
            file,
            pos,
            left: len,
        }
    }
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the zip member's data ends early",
            ));
        }
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A reader of a member's uncompressed content.
pub fn member_reader<'a>(
    file: &'a File,
    offset: u64,
    csize: u64,
    method: u16,
) -> io::Result<Box<dyn Read + 'a>> {
    let raw = Range::new(file, offset, csize);
    Ok(match method {
        0 => Box::new(raw),
        8 => Box::new(flate2::read::DeflateDecoder::new(io::BufReader::new(raw))),
        93 => Box::new(zstd::stream::read::Decoder::new(raw)?),
        m => {
            return Err(io::Error::other(format!(
                "zip compression method {m} is not supported (stored, deflate and zstd are)"
            )))
        }
    })
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The members of a zip file; a zip whose central directory cannot be read
/// falls back to its local headers, with that reason as the damage.
pub fn scan_zip(file: &File) -> Result<(Vec<Member>, Option<String>), ArchiveError> {
    let mut zip = match zip::ZipArchive::new(file.try_clone()?) {
        Ok(z) => z,
        Err(e) => {
            let why = format!(
                "the zip central directory is unreadable ({e}); members read from local headers"
            );
            let members = scan_local_headers(file)?;
            if members.is_empty() {
                return Err(ArchiveError::Unreadable(why));
            }
            return Ok((members, Some(why)));
        }
    };
    let mut members = Vec::with_capacity(zip.len());
    let mut symlinks = Vec::new();
    for i in 0..zip.len() {
        let entry = match zip.by_index_raw(i) {
            Ok(e) => e,
            Err(e) => return Ok((members, Some(format!("zip member {i} is unreadable: {e}")))),
        };
        let Some(path) = super::index::normalize(entry.name_raw()) else {
            continue;
        };
        let unix = entry.unix_mode();
        let kind = match unix.map(|m| m & S_IFMT) {
            Some(S_IFLNK) => Kind::Symlink,
            Some(S_IFDIR) => Kind::Dir,
            _ if entry.is_dir() => Kind::Dir,
            _ => Kind::File,
        };
        let mode = unix.map(|m| m & 0o7777).unwrap_or(match kind {
            Kind::Dir => 0o755,
            _ => 0o644,
        });
        let mut mtime = entry
            .last_modified()
            .map(|t| {
                days_from_civil(
                    i64::from(t.year()),
                    i64::from(t.month()),
                    i64::from(t.day()),
                ) * 86_400
                    + i64::from(t.hour()) * 3600
                    + i64::from(t.minute()) * 60
                    + i64::from(t.second())
            })
            .unwrap_or(0);
        for field in entry.extra_data_fields() {
            if let zip::extra_fields::ExtraField::ExtendedTimestamp(ts) = field {
                if let Some(t) = ts.mod_time() {
                    mtime = i64::from(t);
                }
            }
        }
        let mut method = [0u8; 2];
        file.read_exact_at(&mut method, entry.header_start() + 8)?;
        let data = Data::Zip {
            offset: entry.data_start(),
            csize: entry.compressed_size(),
            method: u16::from_le_bytes(method),
        };
        let size = entry.size();
        if kind == Kind::Symlink {
            symlinks.push(members.len());
        }
        members.push(Member {
            path,
            kind,
            mode,
            mtime,
            size: if kind == Kind::Dir { 0 } else { size },
            data: if kind == Kind::Dir || size == 0 {
                Data::None
            } else {
                data
            },
            target: Vec::new(),
        });
    }
    // A zip symlink's target is its content.
    for i in symlinks {
        let m = &mut members[i];
        if let Data::Zip {
            offset,
            csize,
            method,
        } = m.data
        {
            let mut target = Vec::new();
            member_reader(file, offset, csize, method)?
                .take(4096)
                .read_to_end(&mut target)?;
            m.size = target.len() as u64;
            m.target = target;
            m.data = Data::None;
        }
    }
    Ok((members, None))
}

/// Members from the local headers, for a zip without a readable central
/// directory: no modes (0644 files, 0755 directories) nor symlinks, and a
/// member written with a data descriptor ends the scan (its size is unknown).
fn scan_local_headers(file: &File) -> io::Result<Vec<Member>> {
    let len = file.metadata()?.len();
    let mut members = Vec::new();
    let mut pos = 0u64;
    let mut head = [0u8; 30];
    while pos + 30 <= len {
        file.read_exact_at(&mut head, pos)?;
        if &head[..4] != b"PK\x03\x04" {
            break;
        }
        let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let flags = u16_at(6);
        let method = u16_at(8);
        let csize = u64::from(u32_at(18));
        let size = u64::from(u32_at(22));
        let name_len = u64::from(u16_at(26));
        let extra_len = u64::from(u16_at(28));
        if pos + 30 + name_len > len {
            break;
        }
        let mut name = vec![0u8; name_len as usize];
        file.read_exact_at(&mut name, pos + 30)?;
        let data_at = pos + 30 + name_len + extra_len;
        if flags & 8 != 0 && csize == 0 {
            break;
        }
        if let Some(path) = super::index::normalize(&name) {
            let dir = name.ends_with(b"/");
            members.push(Member {
                path,
                kind: if dir { Kind::Dir } else { Kind::File },
                mode: if dir { 0o755 } else { 0o644 },
                mtime: 0,
                size: if dir { 0 } else { size },
                data: if dir || size == 0 {
                    Data::None
                } else {
                    Data::Zip {
                        offset: data_at,
                        csize,
                        method,
                    }
                },
                target: Vec::new(),
            });
        }
        pos = data_at + csize;
    }
    Ok(members)
}
