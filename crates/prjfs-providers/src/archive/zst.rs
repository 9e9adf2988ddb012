//! Zstd random access through a seekable cache. A zstd frame cannot be
//! entered in the middle (the decoder's state — up to an 8 MiB window and the
//! entropy tables — is not exported by the library), and `zstd` and `tar
//! --zstd` write one frame for the whole archive. So the index pass, while it
//! decompresses the archive once for the tar parser, cuts the output into
//! [`SPAN`]-byte pieces and compresses each as a frame of its own
//! (level 1, on a second thread) into the cache file in the state directory;
//! a resume point is the start of such a frame, and [`decode_block`]
//! decompresses one frame. The cache costs disk (about the archive's size at
//! level 1) and, during the index pass only, the second thread's time; see
//! ARCHITECTURE.md for the measured alternative.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::index::ZstdPoint;

/// Level of the cache's frames: the fastest that still halves typical data.
const CACHE_LEVEL: i32 = 1;

/// Uncompressed bytes per cache frame, so at most this much is decoded before
/// a member's first byte. Level-1 frames decode at ~0.9 GB/s here: a 256 KiB
/// frame cost ~0.28 ms, most of a random member's read; a 64 KiB frame costs
/// ~0.08 ms and the cache grows by ~1% (no matches across frames). Smaller
/// frames cost more per byte (16 KiB: 0.65 GB/s, +6%).
pub const SPAN: u64 = 64 * 1024;

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
                let mut compressor = zstd::bulk::Compressor::new(CACHE_LEVEL)?;
                for piece in receiver {
                    let frame = compressor.compress(&piece)?;
                    cache.write_all(&frame)?;
                    points.push(ZstdPoint { out, inp });
                    out += piece.len() as u64;
                    inp += frame.len() as u64;
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
    /// A decompression context and a frame buffer per callback thread: a new
    /// context (~100 KiB of tables to allocate and set up) cost a third as
    /// much as decoding a 64 KiB frame.
    static DECODER: RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
}

/// Decompress the cache frame at `point` (`clen` compressed bytes, `len`
/// uncompressed) into `out`.
pub fn decode_block(
    cache: &File,
    point: &ZstdPoint,
    clen: usize,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    DECODER.with(|slot| {
        let mut slot = slot.borrow_mut();
        let (decoder, frame) = match &mut *slot {
            Some(pair) => pair,
            empty => empty.insert((zstd::bulk::Decompressor::new()?, Vec::new())),
        };
        frame.resize(clen, 0);
        cache.read_exact_at(frame, point.inp)?;
        out.clear();
        out.reserve(len);
        let n = decoder.decompress_to_buffer(&frame[..], out)?;
        check_len(n, len)
    })
}

fn check_len(n: usize, len: usize) -> io::Result<()> {
    if n != len {
        return Err(io::Error::other(format!(
            "the zstd cache frame holds {n} bytes, {len} expected"
        )));
    }
    Ok(())
}
