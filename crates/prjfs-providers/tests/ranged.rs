//! Mounted tests of ranged hydration (`StartOptions::ranged_hydration`): reads
//! of a big placeholder file fetch the chunks they touch, concurrent readers
//! of a chunk share its GetFileData, no read is answered before its chunks
//! have fully arrived, a change that needs the whole file fetches the missing
//! chunks first, and a signalled reader cancels its chunk's command while the
//! chunks already present stay.
//!
//! The provider pends every GetFileData and the test writes and completes it
//! by hand, so each step is a condition the test waits for. Clients are child
//! processes (the provider's own process never reaches the provider).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prjfs::{Completion, OnDiskState, RangedHydration, StartOptions};
use prjfs_providers::testing::{MemTree, NeverCompletes, PendedCommand};
use prjfs_testkit::{mount_available, InstanceGuard};
use rustix::process::{kill_process, Pid, Signal};

const MIB: u64 = 1 << 20;
const SIZE: usize = 6 << 20;

fn content() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 7 % 253) as u8).collect()
}

struct Mounted {
    guard: InstanceGuard,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

/// 1 MiB chunks from 1 MiB on, and no readahead within the test's reads, so
/// that every GetFileData is one the test expects.
fn mount(provider: Arc<NeverCompletes>) -> Mounted {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("creating the root");
    let options = StartOptions {
        pool_threads: 8,
        concurrent_threads: 4,
        ranged_hydration: Some(RangedHydration {
            chunk_size: MIB,
            min_file_size: MIB,
            readahead_after: 64 * MIB,
            max_readahead: MIB,
        }),
        ..Default::default()
    };
    let guard = InstanceGuard::start(&root, provider, options);
    let root = guard.root().to_path_buf();
    Mounted {
        guard,
        root,
        _tmp: tmp,
    }
}

impl Mounted {
    fn path(&self) -> String {
        self.root
            .join("big.bin")
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    fn waiters(&self) -> usize {
        self.guard.instance().stats().content_waiters
    }

    fn wait_for_waiters(&self, n: usize) {
        let start = Instant::now();
        while self.waiters() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{n} readers never waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn state(&self) -> OnDiskState {
        self.guard
            .instance()
            .virtualizer()
            .layer()
            .state(std::path::Path::new("big.bin"))
            .expect("the layer's state of big.bin")
    }
}

/// `dd` of `count` bytes at `offset`, read with direct I/O (each read
/// reaches the daemon, none is served from another reader's page cache).
fn read_at(path: &str, offset: u64, count: u64) -> Child {
    Command::new("dd")
        .args([
            &format!("if={path}"),
            "iflag=direct,skip_bytes,count_bytes",
            "bs=4096",
            &format!("skip={offset}"),
            &format!("count={count}"),
            "status=none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dd")
}

fn finish(mut child: Child, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut out)
        .expect("reading a client's output");
    let status = child.wait().expect("waiting for a client");
    assert!(status.success(), "{what}: {status:?}");
    out
}

/// The `n`th GetFileData (0-based), once pended: (command, offset, length).
fn file_data(provider: &NeverCompletes, n: usize) -> (PendedCommand, u64, u64) {
    assert!(
        provider.wait_for_pended(n + 1, Duration::from_secs(20)),
        "GetFileData #{n} never came"
    );
    let c = provider.pended()[n].clone();
    match &c {
        PendedCommand::FileData { offset, length, .. } => {
            let (o, l) = (*offset, *length);
            (c, o, l)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_fetch_their_chunks_shared_and_whole_and_a_write_fetches_the_rest() {
    if !mount_available() {
        return;
    }
    let data = content();
    let provider = Arc::new(
        NeverCompletes::new(MemTree::new().file("big.bin", data.clone()))
            .pend_placeholder_info(false),
    );
    let m = mount(provider.clone());
    let path = m.path();

    // Two readers inside chunk 2: one GetFileData, of that chunk only.
    let first = read_at(&path, 2 * MIB + 10, 100);
    let (fetch, offset, length) = file_data(&provider, 0);
    assert_eq!((offset, length), (2 * MIB, MIB));
    let second = read_at(&path, 3 * MIB - 4096, 4096);
    m.wait_for_waiters(2);
    assert_eq!(provider.pended().len(), 1, "the second reader joined");

    // Half the chunk: the first reader's bytes are there, but the chunk is
    // not whole, so nobody is answered.
    let cb = fetch.callback().clone();
    let half = (2 * MIB + MIB / 2) as usize;
    cb.instance
        .write_file_data(cb.data_stream_id, 2 * MIB, &data[2 << 20..half])
        .expect("writing half the chunk");
    assert_eq!(m.waiters(), 2, "a reader was answered from a partial chunk");
    cb.instance
        .write_file_data(cb.data_stream_id, half as u64, &data[half..3 << 20])
        .expect("writing the rest of the chunk");
    let at = (2 * MIB + 10) as usize;
    assert_eq!(finish(first, "first reader"), data[at..at + 100]);
    let at = (3 * MIB - 4096) as usize;
    assert_eq!(finish(second, "second reader"), data[at..at + 4096]);
    assert_eq!(
        cb.instance.complete_command(cb.command_id, Ok(()), None),
        Completion::Completed
    );
    // Partly present: still a placeholder, not hydrated.
    assert!(!m.state().contains(OnDiskState::HYDRATED_PLACEHOLDER));

    // A present chunk is read again without any GetFileData.
    let again = read_at(&path, 2 * MIB, MIB);
    assert_eq!(
        finish(again, "a reader of a present chunk"),
        data[2 << 20..3 << 20]
    );
    assert_eq!(provider.pended().len(), 1);

    // A write keeping the old bytes needs the whole file: the missing runs
    // are fetched first (one GetFileData each), then the file is full.
    let mut dd = Command::new("dd")
        .args([
            &format!("of={path}"),
            "bs=1",
            "seek=5",
            "count=1",
            "conv=notrunc",
            "status=none",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dd");
    dd.stdin
        .take()
        .expect("piped stdin")
        .write_all(b"X")
        .expect("feeding dd");
    let mut runs: Vec<(u64, u64)> = (1..3)
        .map(|n| {
            let (c, offset, length) = file_data(&provider, n);
            assert_eq!(provider.complete(c.id()), Some(Completion::Completed));
            (offset, length)
        })
        .collect();
    runs.sort();
    assert_eq!(runs, [(0, 2 * MIB), (3 * MIB, 3 * MIB)]);
    let status = dd.wait().expect("waiting for dd");
    assert!(status.success(), "dd conv=notrunc: {status:?}");
    let mut expected = data.clone();
    expected[5] = b'X';
    let read = finish(read_at(&path, 0, SIZE as u64), "a reader of the full file");
    assert!(read == expected, "the full file holds other bytes");
    assert!(m.state().contains(OnDiskState::FULL), "{:?}", m.state());
    assert_eq!(provider.pended().len(), 3);
}

#[test]
fn a_whole_read_puts_the_file_in_place_and_a_signal_keeps_present_chunks() {
    if !mount_available() {
        return;
    }
    let data = content();
    let provider = Arc::new(
        NeverCompletes::new(MemTree::new().file("big.bin", data.clone()))
            .pend_placeholder_info(false),
    );
    let m = mount(provider.clone());
    let path = m.path();

    // Chunk 1 arrives.
    let reader = read_at(&path, MIB, 4096);
    let (c, offset, _) = file_data(&provider, 0);
    assert_eq!(offset, MIB);
    assert_eq!(provider.complete(c.id()), Some(Completion::Completed));
    assert_eq!(
        finish(reader, "reader of chunk 1"),
        data[1 << 20..(1 << 20) + 4096]
    );

    // A reader of chunk 4 is killed while it waits: its command is
    // cancelled (the provider hears it), completing it later is ignored.
    let mut killed = read_at(&path, 4 * MIB, 4096);
    let (c, offset, _) = file_data(&provider, 1);
    assert_eq!(offset, 4 * MIB);
    m.wait_for_waiters(1);
    kill_process(Pid::from_child(&killed), Signal::KILL).expect("killing our client");
    killed.wait().expect("waiting for the killed reader");
    assert!(
        provider.wait_for_cancels(1, Duration::from_secs(10)),
        "the provider never heard CancelCommand"
    );
    assert_eq!(provider.cancelled(), vec![c.id()]);
    assert_eq!(provider.complete(c.id()), Some(Completion::Ignored));

    // Chunk 1 stays present; chunk 4 is asked again.
    let reader = read_at(&path, MIB + 4096, 4096);
    assert_eq!(
        finish(reader, "reader of chunk 1 again"),
        data[(1 << 20) + 4096..(1 << 20) + 8192]
    );
    assert_eq!(provider.pended().len(), 2);

    // One reader of the whole file: every missing chunk is fetched as it
    // reads; when the last arrives the file is hydrated and in place.
    // Its output is drained while the test serves the fetches.
    let whole = read_at(&path, 0, SIZE as u64);
    let whole = std::thread::spawn(move || finish(whole, "reader of the whole file"));
    let mut served = 2;
    let mut fetched = vec![(MIB, 2 * MIB)];
    while fetched.iter().map(|(a, b)| b - a).sum::<u64>() < SIZE as u64 {
        let (c, offset, length) = file_data(&provider, served);
        served += 1;
        fetched.push((offset, offset + length));
        assert_eq!(provider.complete(c.id()), Some(Completion::Completed));
    }
    fetched.sort();
    assert!(
        fetched.windows(2).all(|w| w[0].1 == w[1].0),
        "fetched ranges overlap or leave gaps: {fetched:?}"
    );
    assert!(whole.join().expect("the reader's thread") == data);
    let start = Instant::now();
    while !m.state().contains(OnDiskState::HYDRATED_PLACEHOLDER) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never hydrated: {:?}",
            m.state()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // In place: read from disk, no more GetFileData.
    let again = finish(
        read_at(&path, 0, SIZE as u64),
        "reader of the hydrated file",
    );
    assert!(again == data);
    assert_eq!(provider.pended().len(), served);
}
