//! Gzip random access, as zran (zlib's `examples/zran.c`) and indexed_gzip do
//! it: while the index pass inflates the archive once, [`GzIndexer`] records a
//! resume point at the first deflate block boundary after every
//! [`super::SPAN`] bytes of output, with the 32 KiB of output before it (the
//! window a later block may refer back to). [`decode_block`] resumes at one
//! point (raw inflate primed with the point's leftover bits, the window as its
//! dictionary) and inflates up to the next.
//!
//! Concatenated gzip members (pigz, `cat a.gz b.gz`) are followed: the index
//! pass resets at each member's end, and a block that crosses a member end
//! skips the trailer and the next header.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::index::GzPoint;
use super::zlib::{Inflater, Z_BUF_ERROR, Z_OK, Z_STREAM_END};
use super::SPAN;

/// The deflate window: the most output a block may refer back to.
pub const WINDOW: usize = 32 * 1024;

/// Inflates a gzip file for the tar parser, recording resume points and their
/// windows (appended to `windows`) on the way. A read error or corrupt data
/// ends the stream early: what inflated before it is delivered, the rest is an
/// end of file, and [`GzIndexer::damage`] says what happened.
pub struct GzIndexer<R: Read, W: Write> {
    input: R,
    windows: W,
    windows_len: u64,
    inflater: Inflater,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_end: usize,
    /// Compressed bytes consumed by the inflater so far.
    total_in: u64,
    /// Uncompressed bytes produced so far.
    total_out: u64,
    outbuf: Vec<u8>,
    out_pos: usize,
    out_end: usize,
    /// The last [`WINDOW`] bytes of output (a ring would save copies; this is
    /// 32 KiB moved per 64 KiB produced).
    history: Vec<u8>,
    points: Vec<GzPoint>,
    done: bool,
    damage: Option<String>,
}

impl<R: Read, W: Write> GzIndexer<R, W> {
    /// Inflate `input` (a gzip file read from its start), writing windows to `windows`.
    pub fn new(input: R, windows: W) -> io::Result<Self> {
        Ok(Self {
            input,
            windows,
            windows_len: 0,
            inflater: Inflater::new(true)?,
            inbuf: vec![0; 64 * 1024],
            in_pos: 0,
            in_end: 0,
            total_in: 0,
            total_out: 0,
            outbuf: vec![0; 64 * 1024],
            out_pos: 0,
            out_end: 0,
            history: Vec::with_capacity(2 * WINDOW),
            points: Vec::new(),
            done: false,
            damage: None,
        })
    }

    /// The resume points recorded so far, and the uncompressed bytes produced.
    pub fn finish(mut self) -> io::Result<(Vec<GzPoint>, u64, Option<String>)> {
        self.windows.flush()?;
        Ok((self.points, self.total_out, self.damage))
    }

    /// Compressed bytes consumed so far (for progress).
    pub fn consumed(&self) -> u64 {
        self.total_in
    }

    fn stop(&mut self, why: String) {
        self.done = true;
        self.damage = Some(why);
    }

    /// Inflate one step into `outbuf`; false at the end of the stream.
    fn step(&mut self) -> io::Result<bool> {
        loop {
            if self.done {
                return Ok(false);
            }
            if self.in_pos == self.in_end {
                match self.input.read(&mut self.inbuf) {
                    Ok(n) => {
                        self.in_pos = 0;
                        self.in_end = n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.stop(format!(
                            "read error at compressed byte {}: {e}",
                            self.total_in
                        ));
                        return Ok(false);
                    }
                }
            }
            let eof = self.in_pos == self.in_end;
            let step = self.inflater.inflate(
                &self.inbuf[self.in_pos..self.in_end],
                &mut self.outbuf,
                true,
            );
            self.in_pos += step.consumed;
            self.total_in += step.consumed as u64;
            let produced = &self.outbuf[..step.produced];
            self.total_out += step.produced as u64;
            self.history.extend_from_slice(produced);
            if self.history.len() > WINDOW {
                let extra = self.history.len() - WINDOW;
                self.history.drain(..extra);
            }
            self.out_pos = 0;
            self.out_end = step.produced;
            match step.code {
                Z_OK | Z_BUF_ERROR if !(eof && step.produced == 0 && step.consumed == 0) => {
                    if step.at_block_boundary() {
                        let due = self
                            .points
                            .last()
                            .is_none_or(|p| self.total_out - p.out >= SPAN);
                        if due {
                            self.add_point(step.data_type)?;
                        }
                    }
                }
                Z_STREAM_END => {
                    // Another gzip member may follow; anything else ends the stream.
                    if !self.next_member()? {
                        self.done = true;
                    }
                }
                _ if eof => {
                    let at = self.total_in;
                    self.stop(format!(
                        "the gzip stream is truncated: it ends inside compressed data at byte {at}"
                    ));
                }
                code => {
                    let at = self.total_in;
                    let msg = self.inflater.message();
                    self.stop(format!(
                        "corrupt gzip data near compressed byte {at}: {msg} ({code})"
                    ));
                }
            }
            if step.produced > 0 || self.done {
                return Ok(step.produced > 0);
            }
        }
    }

    fn add_point(&mut self, data_type: i32) -> io::Result<()> {
        self.windows.write_all(&self.history)?;
        self.points.push(GzPoint {
            out: self.total_out,
            inp: self.total_in,
            bits: (data_type & 7) as u8,
            window_at: self.windows_len,
            window_len: self.history.len() as u32,
        });
        self.windows_len += self.history.len() as u64;
        Ok(())
    }

    /// After a member's end: true if another member starts (the inflater was
    /// reset for it), false at the end of the file or before trailing garbage.
    fn next_member(&mut self) -> io::Result<bool> {
        loop {
            if self.in_pos < self.in_end {
                if self.inbuf[self.in_pos] != 0x1f {
                    return Ok(false);
                }
                self.inflater.reset()?;
                return Ok(true);
            }
            match self.input.read(&mut self.inbuf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.in_pos = 0;
                    self.in_end = n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read, W: Write> Read for GzIndexer<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out_end {
            if !self.step()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out_end - self.out_pos);
        buf[..n].copy_from_slice(&self.outbuf[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Reads a file from an offset with `pread`, so that threads share one fd.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Skip a gzip member header (RFC 1952) at the reader's position.
fn skip_header(r: &mut impl Read) -> io::Result<()> {
    let mut head = [0u8; 10];
    r.read_exact(&mut head)?;
    if head[0] != 0x1f || head[1] != 0x8b || head[2] != 8 {
        return Err(io::Error::other("not a gzip member header"));
    }
    let flags = head[3];
    if flags & 4 != 0 {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        io::copy(
            &mut r.take(u64::from(u16::from_le_bytes(len))),
            &mut io::sink(),
        )?;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let mut b = [0u8; 1];
            loop {
                r.read_exact(&mut b)?;
                if b[0] == 0 {
                    break;
                }
            }
        }
    }
    if flags & 2 != 0 {
        let mut crc = [0u8; 2];
        r.read_exact(&mut crc)?;
    }
    Ok(())
}

/// Inflate `len` bytes of output starting at `point` into `out`.
pub fn decode_block(
    archive: &File,
    windows: &File,
    point: &GzPoint,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.resize(len, 0);
    let mut window = vec![0u8; point.window_len as usize];
    windows.read_exact_at(&mut window, point.window_at)?;
    let mut inflater = Inflater::new(false)?;
    let start = point.inp - u64::from(point.bits > 0);
    let mut input = At {
        file: archive,
        pos: start,
    };
    if point.bits > 0 {
        let mut byte = [0u8; 1];
        input.read_exact(&mut byte)?;
        inflater.prime(point.bits, byte[0])?;
    }
    inflater.set_dictionary(&window)?;
    let mut inbuf = vec![0u8; 64 * 1024];
    let (mut in_pos, mut in_end) = (0, 0);
    let mut done = 0;
    while done < len {
        if in_pos == in_end {
            in_end = input.read(&mut inbuf)?;
            in_pos = 0;
            if in_end == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the gzip stream ends {} bytes short of this block",
                        len - done
                    ),
                ));
            }
        }
        let step = inflater.inflate(&inbuf[in_pos..in_end], &mut out[done..], false);
        in_pos += step.consumed;
        done += step.produced;
        match step.code {
            Z_OK | Z_BUF_ERROR => {}
            Z_STREAM_END => {
                // The member ends inside this block: trailer, next header, raw again.
                let rest = (in_end - in_pos) as u64;
                input.pos -= rest;
                input.pos += 8;
                if done < len {
                    skip_header(&mut input)?;
                }
                inflater = Inflater::new(false)?;
                in_pos = 0;
                in_end = 0;
            }
            code => {
                return Err(io::Error::other(format!(
                    "corrupt gzip data: {} ({code})",
                    inflater.message()
                )))
            }
        }
    }
    Ok(())
}
