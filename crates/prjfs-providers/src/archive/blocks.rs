//! Reading ranges of a compressed archive's uncompressed stream: block `i` is
//! the output between resume points `i` and `i + 1` (the last ends at the
//! readable end), decoded from its point alone, and kept in a small LRU so that
//! neighbouring members (a directory's files are neighbours in a tar) decode
//! their block once.
//!
//! Invariants: the cache holds at most [`CACHE_BYTES`] of blocks (32 gzip
//! blocks of [`super::SPAN`], 128 zstd blocks of [`super::zst::SPAN`]); the
//! blocks in the middle of a member longer than two blocks are decoded, handed
//! over and dropped, so a large file read does not evict everything; a block
//! is decoded with no lock held, and a block to be kept is decoded by one
//! thread at a time: others that need it meanwhile (parallel hydrations of
//! neighbouring members, as `prjfs hydrate` runs them) wait for it rather
//! than decode it again. A thread that would wait first decodes, and keeps,
//! the next block that nobody holds or decodes (one of the two after the one
//! it waits for): readers going through the archive in order need it next,
//! so parallel readers of neighbours decode in parallel rather than in turn.
//! No block is decoded by two threads at once.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex};

use super::gzip;
use super::index::{GzPoint, ZstdPoint};
use super::zst;

/// Bytes of blocks kept decoded: a budget in bytes rather than blocks, so that
/// the smaller zstd blocks still cover a directory's members (neighbours in a
/// tar) when they are read in another order than the archive's.
pub const CACHE_BYTES: usize = 8 << 20;

/// How blocks are decoded.
pub enum Points {
    /// Gzip points; windows in the given file.
    Gzip {
        /// The resume points.
        points: Vec<GzPoint>,
        /// The windows file.
        windows: File,
    },
    /// Zstd: blocks of the seekable cache in the given file.
    Zstd {
        /// The resume points.
        points: Vec<ZstdPoint>,
        /// The cache file.
        cache: File,
        /// The cache file's length (the last frame's end).
        cache_len: u64,
    },
}

/// The uncompressed stream of a compressed archive.
pub struct Blocks {
    archive: File,
    points: Points,
    /// Output offset of each block's start, then the readable end.
    bounds: Vec<u64>,
    cache: Mutex<Lru>,
    /// Signalled when a block leaves [`Lru::decoding`].
    decoded: Condvar,
    /// Blocks decoded so far.
    decodes: std::sync::atomic::AtomicU64,
    /// Decodes of each block, for the tests.
    #[cfg(test)]
    decodes_by_block: Mutex<std::collections::HashMap<usize, u32>>,
}

/// Decoded blocks, least recently used first, and their total length.
#[derive(Default)]
struct Lru {
    blocks: Vec<(usize, Arc<Vec<u8>>)>,
    bytes: usize,
    /// Blocks to be kept that a thread is decoding now.
    decoding: HashSet<usize>,
}

impl Blocks {
    /// A stream of `readable_end` bytes over `archive`, through `points`.
    pub fn new(archive: File, points: Points, readable_end: u64) -> Self {
        let mut bounds: Vec<u64> = match &points {
            Points::Gzip { points, .. } => points.iter().map(|p| p.out).collect(),
            Points::Zstd { points, .. } => points.iter().map(|p| p.out).collect(),
        };
        // Points at or past the readable end (a point recorded just before
        // damage) start no block.
        while bounds.last().is_some_and(|b| *b >= readable_end) {
            bounds.pop();
        }
        bounds.push(readable_end);
        Self {
            archive,
            points,
            bounds,
            cache: Mutex::new(Lru::default()),
            decoded: Condvar::new(),
            decodes: std::sync::atomic::AtomicU64::new(0),
            #[cfg(test)]
            decodes_by_block: Mutex::default(),
        }
    }

    /// Hand `[offset, offset + len)` of the stream to `sink` in order, as
    /// (offset relative to `offset`, bytes). Fails if the range is not
    /// readable or a block does not decode.
    pub fn read(
        &self,
        offset: u64,
        len: u64,
        mut sink: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + len;
        if end
            > *self
                .bounds
                .last()
                .expect("bounds end with the readable end")
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the range lies past the readable end",
            ));
        }
        if len == 0 {
            return Ok(());
        }
        let first = self.block_of(offset);
        let last = self.block_of(end - 1);
        for i in first..=last {
            let keep = i == first || i == last;
            let block = self.block(i, keep)?;
            let start = self.bounds[i];
            let from = offset.max(start) - start;
            let to = end.min(self.bounds[i + 1]) - start;
            sink(start + from - offset, &block[from as usize..to as usize])?;
        }
        Ok(())
    }

    fn block_of(&self, offset: u64) -> usize {
        // The last block whose start is ≤ offset (bounds[0] is 0).
        self.bounds[..self.bounds.len() - 1]
            .partition_point(|b| *b <= offset)
            .saturating_sub(1)
    }

    fn block(&self, i: usize, keep: bool) -> io::Result<Arc<Vec<u8>>> {
        // Whether this call decoded a block ahead already (one at most).
        let mut helped = false;
        {
            let mut cache = self.cache.lock().expect("block cache lock");
            loop {
                if let Some(at) = cache.blocks.iter().position(|(b, _)| *b == i) {
                    let hit = cache.blocks.remove(at);
                    let data = hit.1.clone();
                    cache.blocks.push(hit);
                    return Ok(data);
                }
                if !cache.decoding.contains(&i) {
                    break;
                }
                if !helped {
                    helped = true;
                    if let Some(j) = self.ahead(&cache, i) {
                        cache.decoding.insert(j);
                        drop(cache);
                        // An error here is met again, and reported, by the
                        // reader that needs block `j`.
                        let _ = self.decode_kept(j);
                        cache = self.cache.lock().expect("block cache lock");
                        continue;
                    }
                }
                cache = self.decoded.wait(cache).expect("block cache lock");
            }
            if keep {
                cache.decoding.insert(i);
            }
        }
        if !keep {
            return self.decode(i);
        }
        self.decode_kept(i)
    }

    /// The first of the two blocks after `i` that is neither kept nor being
    /// decoded, if any.
    fn ahead(&self, cache: &Lru, i: usize) -> Option<usize> {
        let blocks = self.bounds.len() - 1;
        (i + 1..(i + 3).min(blocks))
            .find(|j| !cache.decoding.contains(j) && !cache.blocks.iter().any(|(b, _)| b == j))
    }

    /// Decode block `i`, which the caller put in [`Lru::decoding`], and keep
    /// it.
    fn decode_kept(&self, i: usize) -> io::Result<Arc<Vec<u8>>> {
        // Whatever happens in the decoding (an error, a panic), the block
        // leaves `decoding` and its waiters wake.
        let _decoding = Decoding { blocks: self, i };
        let r = self.decode(i);
        let mut cache = self.cache.lock().expect("block cache lock");
        if let Ok(data) = &r {
            if !cache.blocks.iter().any(|(b, _)| *b == i) {
                while cache.bytes + data.len() > CACHE_BYTES && !cache.blocks.is_empty() {
                    let (_, old) = cache.blocks.remove(0);
                    cache.bytes -= old.len();
                }
                cache.bytes += data.len();
                cache.blocks.push((i, data.clone()));
            }
        }
        drop(cache);
        r
    }

    /// How many blocks were decoded so far (each from its resume point).
    pub fn decodes(&self) -> u64 {
        self.decodes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Decode block `i` from its resume point.
    fn decode(&self, i: usize) -> io::Result<Arc<Vec<u8>>> {
        self.decodes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(test)]
        {
            *self.decodes_by_block.lock().unwrap().entry(i).or_default() += 1;
        }
        let len = (self.bounds[i + 1] - self.bounds[i]) as usize;
        let mut out = Vec::new();
        match &self.points {
            Points::Gzip { points, windows } => {
                gzip::decode_block(&self.archive, windows, &points[i], len, &mut out)?
            }
            Points::Zstd {
                points,
                cache,
                cache_len,
            } => {
                let next = points.get(i + 1).map_or(*cache_len, |p| p.inp);
                let clen = (next - points[i].inp) as usize;
                zst::decode_block(cache, &points[i], clen, len, &mut out)?
            }
        }
        Ok(Arc::new(out))
    }
}

#[cfg(test)]
impl Blocks {
    /// How many times block `i` was decoded.
    pub(super) fn decodes_of(&self, i: usize) -> u32 {
        self.decodes_by_block
            .lock()
            .unwrap()
            .get(&i)
            .copied()
            .unwrap_or(0)
    }

    /// Mark block `i` as being decoded, as another reader would.
    pub(super) fn pretend_decoding(&self, i: usize) {
        assert!(self.cache.lock().unwrap().decoding.insert(i));
    }

    /// End [`Blocks::pretend_decoding`] with nothing kept.
    pub(super) fn stop_pretending(&self, i: usize) {
        assert!(self.cache.lock().unwrap().decoding.remove(&i));
        self.decoded.notify_all();
    }

    /// The block holding stream offset `offset`.
    pub(super) fn index_of(&self, offset: u64) -> usize {
        self.block_of(offset)
    }
}

/// A block being decoded by this thread, to be kept; dropping it takes it
/// out of [`Lru::decoding`] and wakes the threads waiting for it.
struct Decoding<'a> {
    blocks: &'a Blocks,
    i: usize,
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        let mut cache = self.blocks.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.decoding.remove(&self.i);
        drop(cache);
        self.blocks.decoded.notify_all();
    }
}
