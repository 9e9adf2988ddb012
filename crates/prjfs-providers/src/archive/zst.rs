//! Zstd random access through a seekable cache. A zstd frame cannot be
//! entered in the middle (the decoder's state — up to an 8 MiB window and the
//! entropy tables — is not exported by the library), and `zstd` and `tar
//! --zstd` write one frame for the whole archive. So the index pass, while it
//! decompresses the archive once for the tar parser, cuts the output into
//! [`SPAN`]-byte pieces and compresses each as an LZ4 block of its own (on a
//! second thread) into the cache file in the state directory; a resume point
//! is the start of such a block, and [`decode_block`] decompresses one. LZ4
//! rather than zstd for the cache: its blocks decode several times faster
//! (reading every member of the bench's `.tar.zst` spent a third of its CPU
//! decoding level-1 zstd frames), for a cache about half again as large. The
//! cache costs disk and, during the index pass only, the second thread's
//! time; see ARCHITECTURE.md for the measurements.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::index::ZstdPoint;

/// Uncompressed bytes per cache block, so at most this much is decoded
/// before a member's first byte. Chosen when the blocks were zstd frames
/// (level 1, ~0.9 GB/s here: a 256 KiB frame cost ~0.28 ms, most of a random
/// member's read; a 64 KiB one ~0.08 ms for a cache ~1% larger, smaller
/// frames cost more per byte); LZ4 blocks of 64 KiB keep LZ4's whole match
/// window inside each block.
pub const SPAN: u64 = 64 * 1024;

/// Each cache block starts with the CRC-32 (little-endian) of its compressed
/// bytes, so that a damaged cache fails the read (`EIO`) rather than hand out
/// wrong bytes: LZ4 has no check of its own, and the cache outlives mounts.
const CRC_LEN: usize = 4;

/// Decompresses a zstd file for the tar parser while a second thread writes the
/// seekable cache. Errors of the archive end the stream early (see
/// [`ZstdIndexer::damage`]); errors writing the cache fail the pass.
pub struct ZstdIndexer<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, io::BufReader<R>>,
    pending: Vec<u8>,
    produced: u64,
    sender: Option<mpsc::SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<io::Result<Vec<ZstdPoint>>>>,
    damage: Option<String>,
    done: bool,
}

impl<R: Read> ZstdIndexer<R> {
    /// Decompress `input` (from its start); the cache goes to `cache`.
    pub fn new(input: R, mut cache: File) -> io::Result<Self> {
        let mut decoder = zstd::stream::read::Decoder::new(input)?;
        // Archives made with `--long` need windows up to 2 GiB.
        decoder.window_log_max(31)?;
        let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(2);
        let writer = std::thread::Builder::new()
            .name("prjfs-zstd-cache".into())
            .spawn(move || -> io::Result<Vec<ZstdPoint>> {
                let mut points = Vec::new();
                let (mut out, mut inp) = (0u64, 0u64);
                let mut block =
                    vec![0; CRC_LEN + lz4_flex::block::get_maximum_output_size(SPAN as usize)];
                for piece in receiver {
                    let n = lz4_flex::block::compress_into(&piece, &mut block[CRC_LEN..])
                        .map_err(io::Error::other)?;
                    let crc = crc32fast::hash(&block[CRC_LEN..CRC_LEN + n]);
                    block[..CRC_LEN].copy_from_slice(&crc.to_le_bytes());
                    cache.write_all(&block[..CRC_LEN + n])?;
                    points.push(ZstdPoint { out, inp });
                    out += piece.len() as u64;
                    inp += (CRC_LEN + n) as u64;
                }
                cache.flush()?;
                Ok(points)
            })?;
        Ok(Self {
            decoder,
            pending: Vec::with_capacity(SPAN as usize),
            produced: 0,
            sender: Some(sender),
            writer: Some(writer),
            damage: None,
            done: false,
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.pending, Vec::with_capacity(SPAN as usize));
        if let Some(sender) = &self.sender {
            if sender.send(piece).is_err() {
                return Err(io::Error::other("the zstd cache writer stopped"));
            }
        }
        Ok(())
    }

    /// Flush the cache; the resume points, the uncompressed length and what
    /// stopped the stream early.
    pub fn finish(mut self) -> io::Result<(Vec<ZstdPoint>, u64, Option<String>)> {
        self.send()?;
        self.sender = None;
        let points = self
            .writer
            .take()
            .expect("the writer is joined once")
            .join()
            .map_err(|_| io::Error::other("the zstd cache writer panicked"))??;
        Ok((points, self.produced, self.damage))
    }
}

impl<R: Read> Read for ZstdIndexer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let room = (SPAN as usize - self.pending.len()).min(buf.len());
        let n = loop {
            match self.decoder.read(&mut buf[..room]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let at = self.produced;
                    self.damage = Some(if e.kind() == io::ErrorKind::UnexpectedEof {
                        format!("the zstd stream is truncated after {at} uncompressed bytes")
                    } else {
                        format!("corrupt zstd data after {at} uncompressed bytes: {e}")
                    });
                    self.done = true;
                    break 0;
                }
            }
        };
        if n == 0 {
            self.done = true;
            return Ok(0);
        }
        self.pending.extend_from_slice(&buf[..n]);
        self.produced += n as u64;
        if self.pending.len() == SPAN as usize {
            self.send()?;
        }
        Ok(n)
    }
}

thread_local! {
    /// A buffer for the compressed block, per callback thread.
    static FRAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decompress the cache block at `point` (`clen` bytes with its checksum,
/// `len` uncompressed) into `out`.
pub fn decode_block(
    cache: &File,
    point: &ZstdPoint,
    clen: usize,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    FRAME.with(|frame| {
        let mut frame = frame.borrow_mut();
        frame.resize(clen, 0);
        cache.read_exact_at(&mut frame, point.inp)?;
        let bad = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the cache block at {} {why}", point.inp),
            )
        };
        let (crc, body) = frame
            .split_at_checked(CRC_LEN)
            .ok_or_else(|| bad("is shorter than its checksum".into()))?;
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(bad("fails its checksum".into()));
        }
        out.clear();
        out.resize(len, 0);
        let n = lz4_flex::block::decompress_into(body, out)
            .map_err(|e| bad(format!("does not decode: {e}")))?;
        check_len(n, len)
    })
}

fn check_len(n: usize, len: usize) -> io::Result<()> {
    if n != len {
        return Err(io::Error::other(format!(
            "the cache block holds {n} bytes, {len} expected"
        )));
    }
    Ok(())
}
