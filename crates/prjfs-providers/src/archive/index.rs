//! The index of an archive: its members (what a listing or a lookup needs, and
//! where each member's data is) and how to reach any byte of the archive's
//! uncompressed stream (resume points), as the index pass builds it; the mount
//! reads it laid out as a [`super::catalog::Catalog`].
//!
//! Invariants of a built [`Index`]: member paths are normalized (relative,
//! `/`-separated, no `.`/`..`/empty components, no trailing `/`); a path occurs
//! once (a later member of the same path replaced the earlier, as `tar -x`
//! would); every parent directory of a member is itself a member (directories
//! the archive does not list are added with mode 0755 and the archive's mtime);
//! a member whose data cannot be read whole has [`Data::Broken`] with the reason.

use std::collections::HashMap;

/// The archive formats, recognised by content ([`super::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An uncompressed tar.
    Tar,
    /// A gzip-compressed tar (`.tar.gz`, `.tgz`).
    TarGz,
    /// A zstd-compressed tar (`.tar.zst`).
    TarZst,
    /// A zip file.
    Zip,
}

impl Format {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::Zip => "zip",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Format::Tar => 1,
            Format::TarGz => 2,
            Format::TarZst => 3,
            Format::Zip => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Format::Tar,
            2 => Format::TarGz,
            3 => Format::TarZst,
            4 => Format::Zip,
            _ => return None,
        })
    }
}

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (also a hard link, which shares its target's data).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// Where a member's data is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// No data (directories, symlinks, empty files).
    None,
    /// At this offset of the tar stream (uncompressed).
    Stream(u64),
    /// A zip member: its compressed data at `offset` of the file, `csize` bytes,
    /// compressed with `method` (0 stored, 8 deflate, 93 zstd).
    Zip {
        /// Offset of the compressed data in the archive file.
        offset: u64,
        /// Compressed length.
        csize: u64,
        /// The zip compression method.
        method: u16,
    },
    /// The data cannot be read; reads fail with `EIO` and log this reason.
    Broken(String),
}

/// One member of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Normalized relative path (bytes; see the module invariants).
    pub path: Vec<u8>,
    /// File, directory or symlink.
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Content length (files), target length (symlinks), 0 (directories).
    pub size: u64,
    /// Where the content is.
    pub data: Data,
    /// Symlink target (empty for other kinds).
    pub target: Vec<u8>,
}

/// A gzip resume point: a deflate block boundary, as zran keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GzPoint {
    /// Offset in the uncompressed stream.
    pub out: u64,
    /// Offset in the compressed file of the first byte not fully consumed.
    pub inp: u64,
    /// Bits of the byte before `inp` that belong to the next block (0-7).
    pub bits: u8,
    /// Where the 32 KiB (or less, near the start) window is in the windows file.
    pub window_at: u64,
    /// Length of that window.
    pub window_len: u32,
}

/// A zstd resume point: the start of a block of the seekable cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZstdPoint {
    /// Offset in the uncompressed stream.
    pub out: u64,
    /// Offset of the frame in the cache file.
    pub inp: u64,
}

/// How bytes of the uncompressed stream are reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Tar or zip: the archive file itself is read at the offsets.
    Direct,
    /// Gzip: resume points; the windows are in the state directory's windows file.
    Gzip(Vec<GzPoint>),
    /// Zstd: blocks of the seekable cache in the state directory.
    Zstd(Vec<ZstdPoint>),
}

/// The archive's identity when the index was built: reused only while equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Length in bytes.
    pub size: u64,
    /// mtime in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// CRC-32 of its first 64 KiB (high half) and of its last 64 KiB (low half).
    pub head_tail: u64,
}

/// Everything the index pass learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// The archive's format.
    pub format: Format,
    /// The archive this was built from.
    pub fingerprint: Fingerprint,
    /// Members, normalized (see the module invariants once [`Index::finish`] ran).
    pub members: Vec<Member>,
    /// Resume points.
    pub access: Access,
    /// Bytes of the uncompressed stream that could be read (for zip: the file length).
    pub readable_end: u64,
    /// What stopped the pass early (truncation, corrupt data), if anything.
    pub damage: Option<String>,
}

/// Normalize an archive path: strip `/`, `./`, empty components; `None` when
/// it names the root or climbs out (`..`).
pub fn normalize(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return None,
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

impl Index {
    /// Establish the module invariants: last member of a path wins, missing
    /// parents are added, data past `readable_end` is marked broken.
    pub fn finish(&mut self, archive_mtime: i64) {
        let mut at: HashMap<Vec<u8>, usize> = HashMap::with_capacity(self.members.len());
        let mut kept: Vec<Member> = Vec::with_capacity(self.members.len());
        for member in self.members.drain(..) {
            match at.get(&member.path) {
                Some(&i) => kept[i] = member,
                None => {
                    at.insert(member.path.clone(), kept.len());
                    kept.push(member);
                }
            }
        }
        let mut i = 0;
        while i < kept.len() {
            let parent = parent_of(&kept[i].path).to_vec();
            if !parent.is_empty() && !at.contains_key(&parent) {
                at.insert(parent.clone(), kept.len());
                kept.push(Member {
                    path: parent,
                    kind: Kind::Dir,
                    mode: 0o755,
                    mtime: archive_mtime,
                    size: 0,
                    data: Data::None,
                    target: Vec::new(),
                });
            }
            i += 1;
        }
        let end = self.readable_end;
        let mut cut = 0;
        for m in &mut kept {
            let past = match m.data {
                Data::Stream(off) => off.saturating_add(m.size) > end,
                Data::Zip { offset, csize, .. } => offset.saturating_add(csize) > end,
                _ => false,
            };
            if past && m.kind == Kind::File {
                cut += 1;
                m.data = Data::Broken(format!(
                    "its data lies past byte {end}, where the archive is {}",
                    if self.damage.is_some() {
                        "damaged"
                    } else {
                        "truncated"
                    }
                ));
            }
        }
        if cut > 0 && self.damage.is_none() {
            self.damage = Some(format!(
                "the archive is truncated: it ends at byte {end}, inside the data of {cut} member(s)"
            ));
        }
        self.members = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_and_refuses_climbing() {
        assert_eq!(normalize(b"./a//b/"), Some(b"a/b".to_vec()));
        assert_eq!(normalize(b"/abs/x"), Some(b"abs/x".to_vec()));
        assert_eq!(normalize(b"a/../b"), None);
        assert_eq!(normalize(b"./"), None);
    }

    fn file(path: &str, off: u64, size: u64) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            kind: Kind::File,
            mode: 0o644,
            mtime: 5,
            size,
            data: Data::Stream(off),
            target: Vec::new(),
        }
    }

    #[test]
    fn finish_adds_parents_dedups_and_marks_data_past_the_end() {
        let mut index = Index {
            format: Format::Tar,
            fingerprint: Fingerprint {
                size: 0,
                mtime_ns: 0,
                head_tail: 0,
            },
            members: vec![
                file("d/e/f", 512, 10),
                file("d/e/f", 1536, 20),
                file("g", 4096, 100),
            ],
            access: Access::Direct,
            readable_end: 4000,
            damage: None,
        };
        index.finish(7);
        let paths: Vec<&[u8]> = index.members.iter().map(|m| m.path.as_slice()).collect();
        assert_eq!(paths, vec![&b"d/e/f"[..], b"g", b"d/e", b"d"]);
        assert_eq!(index.members[0].data, Data::Stream(1536));
        assert!(matches!(index.members[1].data, Data::Broken(_)));
        assert_eq!(index.members[3].mtime, 7);
    }
}
