//! The index pass: recognise the format by content, then read the archive once
//! and list its members (for compressed tars while [`super::gzip`] or
//! [`super::zst`] record resume points).
//!
//! A tar that stops early (truncated, corrupt) keeps the members read before
//! the damage; [`Index::finish`] then marks those whose data is not whole.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::gzip::GzIndexer;
use super::index::{Access, Data, Fingerprint, Format, Index, Kind, Member};
use super::zst::ZstdIndexer;
use super::ArchiveError;

/// Recognise the format from the first bytes: gzip and zstd magic (the content
/// must then be a tar: checked by the pass), zip's local or end header, or a
/// tar header (`ustar` at 257, or a valid header checksum for old tars).
pub fn detect(file: &File) -> Result<Format, ArchiveError> {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Io(e)),
        }
    }
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Format::TarGz);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Format::TarZst);
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Format::Zip);
    }
    if n == 512 && (&head[257..262] == b"ustar" || tar_checksum_ok(head)) {
        return Ok(Format::Tar);
    }
    Err(ArchiveError::NotAnArchive)
}

fn tar_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want && block.iter().any(|b| *b != 0)
}

/// Counts the bytes read through it, for progress reports.
pub struct Counted<R> {
    inner: R,
    read: u64,
    report: Box<dyn FnMut(u64) + Send>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.report)(self.read);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counted<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.read = at;
        (self.report)(at);
        Ok(at)
    }
}

/// The files the pass writes into the state directory.
pub struct Outputs {
    /// Gzip windows (written for `.tar.gz`).
    pub windows: File,
    /// The zstd seekable cache (written for `.tar.zst`).
    pub cache: File,
}

/// Read `archive` once and index it. `progress(bytes)` is called with the
/// compressed bytes read so far.
pub fn build(
    archive: &File,
    format: Format,
    fingerprint: Fingerprint,
    out: Outputs,
    progress: Box<dyn FnMut(u64) + Send>,
) -> Result<Index, ArchiveError> {
    let mut file = archive.try_clone()?;
    file.seek(SeekFrom::Start(0))?;
    let counted = Counted {
        inner: io::BufReader::with_capacity(256 * 1024, file),
        read: 0,
        report: progress,
    };
    let mut index = Index {
        format,
        fingerprint,
        members: Vec::new(),
        access: Access::Direct,
        readable_end: 0,
        damage: None,
    };
    match format {
        Format::Tar => {
            let (members, damage) = scan_tar(counted, true)?;
            index.members = members;
            index.damage = damage;
            index.readable_end = fingerprint.size;
        }
        Format::TarGz => {
            let mut gz = GzIndexer::new(counted, io::BufWriter::new(out.windows))?;
            let (members, tar_damage) = scan_tar(&mut gz, false)?;
            let (points, end, damage) = gz.finish()?;
            index.members = members;
            index.damage = damage.or(tar_damage);
            index.readable_end = end;
            index.access = Access::Gzip(points);
        }
        Format::TarZst => {
            let mut zs = ZstdIndexer::new(counted, out.cache)?;
            let (members, tar_damage) = scan_tar(&mut zs, false)?;
            // Whatever the tar parser left unread still goes to the cache.
            io::copy(&mut zs, &mut io::sink())?;
            let (points, end, damage) = zs.finish()?;
            index.members = members;
            index.damage = damage.or(tar_damage);
            index.readable_end = end;
            index.access = Access::Zstd(points);
        }
        Format::Zip => {
            let (members, damage) = super::zipscan::scan_zip(archive)?;
            index.members = members;
            index.damage = damage;
            index.readable_end = fingerprint.size;
        }
    }
    if index.members.is_empty() {
        if let Some(damage) = &index.damage {
            return Err(ArchiveError::Unreadable(damage.clone()));
        }
    }
    let mtime = (fingerprint.mtime_ns / 1_000_000_000) as i64;
    index.finish(mtime);
    Ok(index)
}

/// List the members of a tar stream. `seek`: the reader can seek (plain tar),
/// so member data is skipped instead of read. Stops at the first error, which
/// is returned as the damage (a stream that is no tar at all is an error).
fn scan_tar<R: MaybeSeek>(
    reader: R,
    seek: bool,
) -> Result<(Vec<Member>, Option<String>), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut members = Vec::new();
    let mut damage = None;
    let mut visit = |entry: io::Result<tar::Entry<'_, R>>| -> bool {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                damage = Some(format!("the tar stream stops being readable: {e}"));
                return false;
            }
        };
        if let Some(m) = member_of(&entry, &members) {
            members.push(m);
        }
        true
    };
    if seek {
        let entries = R::entries_with_seek(&mut archive)?;
        for entry in entries {
            if !visit(entry) {
                break;
            }
        }
    } else {
        let entries = archive.entries().map_err(ArchiveError::Io)?;
        for entry in entries {
            if !visit(entry) {
                break;
            }
        }
    }
    if members.is_empty() && damage.is_some() {
        return Err(ArchiveError::Unreadable(format!(
            "no tar member could be read: {}",
            damage.unwrap_or_default()
        )));
    }
    Ok((members, damage))
}

/// Readers the tar scan can seek in (the plain tar file) or not.
pub trait MaybeSeek: Read + Sized {
    /// `Archive::entries_with_seek` where the reader seeks; never called otherwise.
    fn entries_with_seek(archive: &mut tar::Archive<Self>) -> io::Result<tar::Entries<'_, Self>>;
}

impl<R: Read + Seek> MaybeSeek for Counted<io::BufReader<R>> {
    fn entries_with_seek(archive: &mut tar::Archive<Self>) -> io::Result<tar::Entries<'_, Self>> {
        archive.entries_with_seek()
    }
}

impl<R: Read, W: io::Write> MaybeSeek for &mut GzIndexer<R, W> {
    fn entries_with_seek(archive: &mut tar::Archive<Self>) -> io::Result<tar::Entries<'_, Self>> {
        archive.entries()
    }
}

impl<R: Read> MaybeSeek for &mut ZstdIndexer<R> {
    fn entries_with_seek(archive: &mut tar::Archive<Self>) -> io::Result<tar::Entries<'_, Self>> {
        archive.entries()
    }
}

/// The member for one tar entry; `None` for kinds that are not projected
/// (devices, fifos) and paths that climb out of the root.
fn member_of<R: Read>(entry: &tar::Entry<'_, R>, earlier: &[Member]) -> Option<Member> {
    use tar::EntryType as T;
    let header = entry.header();
    let path = super::index::normalize(&entry.path_bytes())?;
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let mtime = header.mtime().unwrap_or(0) as i64;
    let kind = header.entry_type();
    let mut m = Member {
        path,
        kind: Kind::File,
        mode,
        mtime,
        size: 0,
        data: Data::None,
        target: Vec::new(),
    };
    match kind {
        T::Regular | T::Continuous => {
            m.size = entry.size();
            if m.size > 0 {
                m.data = Data::Stream(entry.raw_file_position());
            }
        }
        T::Directory => m.kind = Kind::Dir,
        T::Symlink => {
            m.kind = Kind::Symlink;
            m.target = entry.link_name_bytes()?.into_owned();
            m.size = m.target.len() as u64;
        }
        T::Link => {
            // A hard link: the content of an earlier member (the latest of
            // that path), with the link's own name.
            let target = super::index::normalize(&entry.link_name_bytes()?)?;
            match earlier.iter().rev().find(|e| e.path == target) {
                Some(t) if t.kind == Kind::File => {
                    m.size = t.size;
                    m.data = t.data.clone();
                    m.mode = t.mode;
                    m.mtime = t.mtime;
                }
                _ => {
                    m.data = Data::Broken(format!(
                        "hard link to {:?}, which is not an earlier file of the archive",
                        String::from_utf8_lossy(&target)
                    ))
                }
            }
        }
        T::GNUSparse => {
            m.size = entry.size();
            m.data = Data::Broken("sparse tar members are not supported".into());
        }
        _ => return None,
    }
    Some(m)
}
