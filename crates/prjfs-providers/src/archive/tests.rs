//! Unit tests of the archive provider: random access (every block decoded
//! from its resume point alone equals the same range of the whole stream) and
//! the check of a stored index.

use std::io::{Read, Write};

use super::blocks::{Blocks, Points};
use super::gzip::GzIndexer;
use super::zst::ZstdIndexer;

/// 3 MiB of bytes that compress but not trivially (deflate then makes blocks
/// of varied sizes with back references across them).
fn sample() -> Vec<u8> {
    let mut state = 7u64;
    (0..3 << 20)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (i / 1000) % 3 == 0 {
                (state >> 33) as u8
            } else {
                b"abcdefgh ijklmnop\n"[(i + (state >> 60) as usize) % 18]
            }
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn file_with(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::fs::File {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::File::open(path).unwrap()
}

/// A gzip stream indexed as the provider indexes one.
struct IndexedGzip {
    archive: std::fs::File,
    windows: std::fs::File,
    points: Vec<super::index::GzPoint>,
    end: u64,
    damage: Option<String>,
    /// The stream as the indexer decoded it.
    out: Vec<u8>,
}

/// Write `gz` to `dir/a.gz` and index it (windows in `dir/windows`).
fn index_gzip(dir: &std::path::Path, gz: &[u8]) -> IndexedGzip {
    let archive = file_with(dir, "a.gz", gz);
    let windows_path = dir.join("windows");
    let mut indexer = GzIndexer::new(
        archive.try_clone().unwrap(),
        std::fs::File::create(&windows_path).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    indexer.read_to_end(&mut out).unwrap();
    let (points, end, damage) = indexer.finish().unwrap();
    let windows = std::fs::File::open(&windows_path).unwrap();
    IndexedGzip {
        archive,
        windows,
        points,
        end,
        damage,
        out,
    }
}

impl IndexedGzip {
    fn blocks(self) -> Blocks {
        Blocks::new(
            self.archive,
            Points::Gzip {
                points: self.points,
                windows: self.windows,
            },
            self.end,
        )
    }
}

/// Every range read through the blocks equals the original bytes.
fn check_ranges(blocks: &Blocks, data: &[u8]) {
    let ranges = [
        (0, 10),
        (1000, 300_000),
        (262_000, 1_000),
        (2_000_000, 1_145_728),
        (0, data.len()),
    ];
    for (off, len) in ranges {
        let mut got = Vec::new();
        blocks
            .read(off as u64, len as u64, |at, bytes| {
                assert_eq!(at as usize, got.len());
                got.extend_from_slice(bytes);
                Ok(())
            })
            .unwrap();
        assert!(got == data[off..off + len], "range {off}+{len}");
    }
    assert!(blocks
        .read(data.len() as u64 - 5, 10, |_, _| Ok(()))
        .is_err());
}

/// `[off, off + len)` of the stream, read through `blocks`.
fn read_bytes(blocks: &Blocks, off: u64, len: u64) -> Vec<u8> {
    let mut got = Vec::new();
    blocks
        .read(off, len, |_, b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    got
}

#[test]
fn gzip_blocks_decode_from_their_points_also_across_members() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    // Two gzip members, as pigz or `cat a.gz b.gz` make.
    let mut gz = gzip(&data[..1_234_567]);
    gz.extend_from_slice(&gzip(&data[1_234_567..]));
    let indexed = index_gzip(tmp.path(), &gz);
    assert!(indexed.out == data);
    assert_eq!(indexed.end, data.len() as u64);
    assert_eq!(indexed.damage, None);
    let points = &indexed.points;
    assert!(points.len() >= 8, "{} points", points.len());
    assert!(
        points.iter().any(|p| p.bits != 0),
        "some points resume mid-byte"
    );
    check_ranges(&indexed.blocks(), &data);
}

#[test]
fn threads_needing_one_block_at_once_decode_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let indexed = index_gzip(tmp.path(), &gzip(&data));
    // Eight readers of neighbouring small ranges of the third block, started
    // together, as parallel hydrations of neighbouring members are.
    let start = indexed.points[2].out + 100;
    assert!(
        start + 8000 < indexed.points[3].out,
        "the ranges lie in one block"
    );
    let blocks = indexed.blocks();
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (blocks, barrier, data) = (&blocks, &barrier, &data);
            s.spawn(move || {
                barrier.wait();
                let off = start + t * 1000;
                let got = read_bytes(blocks, off, 1000);
                assert!(got == data[off as usize..off as usize + 1000]);
            });
        }
    });
    assert_eq!(blocks.decodes_of(2), 1, "the block was decoded once");
    // The readers that found it being decoded decoded the next two ahead,
    // once each.
    assert!(blocks.decodes_of(3) <= 1 && blocks.decodes_of(4) <= 1);
    assert_eq!(
        blocks.decodes(),
        1 + u64::from(blocks.decodes_of(3) + blocks.decodes_of(4))
    );
}

#[test]
fn a_reader_that_would_wait_decodes_the_next_block_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let indexed = index_gzip(tmp.path(), &gzip(&data));
    let (start, next) = (indexed.points[2].out, indexed.points[3].out);
    let blocks = indexed.blocks();
    assert_eq!(blocks.index_of(start), 2);
    // Another reader is decoding block 2: the reader of block 2 decodes
    // block 3 rather than wait idle, then waits for block 2.
    blocks.pretend_decoding(2);
    std::thread::scope(|s| {
        let reader = s.spawn(|| read_bytes(&blocks, start, 1000));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while blocks.decodes_of(3) == 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let (ahead, waited) = (blocks.decodes_of(3), blocks.decodes_of(2));
        // The other reader gives up: the waiting reader decodes block 2
        // (released before any assertion, so that a failure cannot hang).
        blocks.stop_pretending(2);
        let got = reader.join().unwrap();
        assert_eq!(ahead, 1, "block 3 was decoded ahead");
        assert_eq!(waited, 0, "the reader waited for block 2");
        assert!(got == data[start as usize..start as usize + 1000]);
    });
    assert_eq!(blocks.decodes_of(2), 1);
    // Block 3 was kept: reading it decodes nothing.
    let got = read_bytes(&blocks, next, 500);
    assert!(got == data[next as usize..next as usize + 500]);
    assert_eq!(blocks.decodes_of(3), 1);
    assert_eq!(blocks.decodes_of(4), 0, "one block ahead per wait");
}

#[test]
fn a_truncated_gzip_delivers_what_precedes_the_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let gz = gzip(&data);
    let archive = file_with(tmp.path(), "cut.gz", &gz[..gz.len() / 2]);
    let mut indexer = GzIndexer::new(archive, std::io::sink()).unwrap();
    let mut out = Vec::new();
    indexer.read_to_end(&mut out).unwrap();
    let (_, end, damage) = indexer.finish().unwrap();
    assert!(damage.unwrap().contains("truncated"));
    assert_eq!(end, out.len() as u64);
    assert!(out.len() > data.len() / 3 && out[..] == data[..out.len()]);
}

#[test]
fn zstd_cache_blocks_decode_alone_and_a_damaged_one_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let zst = zstd::bulk::compress(&data, 3).unwrap();
    let archive = file_with(tmp.path(), "a.zst", &zst);
    let cache_path = tmp.path().join("cache");
    let mut indexer = ZstdIndexer::new(
        archive.try_clone().unwrap(),
        std::fs::File::create(&cache_path).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    indexer.read_to_end(&mut out).unwrap();
    let (points, end, damage) = indexer.finish().unwrap();
    assert!(out == data);
    assert_eq!((end, damage), (data.len() as u64, None));
    assert_eq!(points.len(), data.len().div_ceil(super::zst::SPAN as usize));
    let cache = std::fs::File::open(&cache_path).unwrap();
    let cache_len = cache.metadata().unwrap().len();
    let blocks = |archive, points, cache| {
        Blocks::new(
            archive,
            Points::Zstd {
                points,
                cache,
                cache_len,
            },
            end,
        )
    };
    check_ranges(
        &blocks(archive.try_clone().unwrap(), points.clone(), cache),
        &data,
    );
    // One byte of the third block's body changed: its ranges fail, the
    // others still read.
    let mut bytes = std::fs::read(&cache_path).unwrap();
    bytes[points[2].inp as usize + 100] ^= 0x20;
    std::fs::write(&cache_path, &bytes).unwrap();
    let damaged = blocks(
        archive,
        points.clone(),
        std::fs::File::open(&cache_path).unwrap(),
    );
    let read = |off: u64, len: u64| damaged.read(off, len, |_, _| Ok(()));
    let err = read(points[2].out + 10, 10).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(read(points[1].out, 1000).is_ok());
    assert!(read(points[3].out, 1000).is_ok());
}

#[test]
fn index_is_current_checks_the_stored_fingerprint_only() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar");
    let state = tmp.path().join("state");
    let write = |body: &[u8]| {
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", body).unwrap();
        b.finish().unwrap();
    };
    write(b"one");
    assert!(!super::ArchiveProvider::index_is_current(&archive, &state));
    drop(super::ArchiveProvider::open(&archive, &state, None).unwrap());
    assert!(super::ArchiveProvider::index_is_current(&archive, &state));
    // New content of the same size: the head hash differs.
    write(b"two");
    assert!(!super::ArchiveProvider::index_is_current(&archive, &state));
    // A missing archive is not current either.
    std::fs::remove_file(&archive).unwrap();
    assert!(!super::ArchiveProvider::index_is_current(&archive, &state));
}

#[test]
fn a_zstd_archive_indexed_anew_leaves_only_the_lz4_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "big", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let archive = tmp.path().join("a.tar.zst");
    std::fs::write(&archive, zstd::bulk::compress(&tar_bytes, 3).unwrap()).unwrap();
    // The state of an index of format 2: its zstd cache, an index file of
    // another version.
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("cache.zst"), b"frames of format 2").unwrap();
    std::fs::write(state.join("index"), b"PJAX\x02\0\0\0 not this version").unwrap();
    assert!(!super::ArchiveProvider::index_is_current(&archive, &state));
    drop(super::ArchiveProvider::open(&archive, &state, None).unwrap());
    assert!(super::ArchiveProvider::index_is_current(&archive, &state));
    assert!(
        !state.join("cache.zst").exists(),
        "the old cache is removed"
    );
    assert!(std::fs::metadata(state.join("cache.lz4")).unwrap().len() > 0);
}
