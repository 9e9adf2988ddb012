//! Mounted tests of shared fetches: one GetFileData per placeholder file at a
//! time, reads of a big file answered as soon as their range has arrived, and a
//! signalled reader that cancels the shared fetch without failing the others.
//!
//! The provider pends every GetFileData and the test writes and completes it by
//! hand, so each step is a condition the test waits for, not a race. Clients are
//! child processes (the provider's own process never reaches the provider).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prjfs::command::CallbackKind;
use prjfs::{Completion, StartOptions};
use prjfs_providers::testing::{MemTree, NeverCompletes, PendedCommand};
use prjfs_testkit::{default_signals, mount_available, InstanceGuard};
use rustix::process::{kill_process, Pid, Signal};

/// Bigger than the size from which reads stream (1 MiB).
const BIG: usize = 6 << 20;

fn content() -> Vec<u8> {
    (0..BIG).map(|i| (i * 13 % 251) as u8).collect()
}

struct Mounted {
    guard: InstanceGuard,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

fn mount(provider: Arc<NeverCompletes>) -> Mounted {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("creating the root");
    let options = StartOptions {
        pool_threads: 8,
        concurrent_threads: 4,
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
    fn file_data_calls(&self) -> u64 {
        self.guard
            .instance()
            .stats()
            .commands
            .by_kind
            .iter()
            .find(|(k, _)| *k == CallbackKind::GetFileData)
            .map_or(0, |(_, n)| *n)
    }
}

fn spawn(program: &str, args: &[&str]) -> Child {
    default_signals(&mut Command::new(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a client")
}

/// Wait for a client that must finish; its stdout.
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

fn running(child: &mut Child) -> bool {
    child.try_wait().expect("polling a client").is_none()
}

fn file_data(provider: &NeverCompletes, n: usize) -> PendedCommand {
    assert!(
        provider.wait_for_pended(n + 1, Duration::from_secs(20)),
        "GetFileData #{n} never came"
    );
    let c = provider.pended()[n].clone();
    assert!(matches!(c, PendedCommand::FileData { .. }), "{c:?}");
    c
}

#[test]
fn a_big_file_is_read_as_its_content_arrives_and_fetched_once() {
    if !mount_available() {
        return;
    }
    let data = content();
    let provider = Arc::new(
        NeverCompletes::new(MemTree::new().file("big.bin", data.clone()))
            .pend_placeholder_info(false),
    );
    let m = mount(provider.clone());
    let path = m.root.join("big.bin");
    let path = path.to_str().expect("utf-8 temp path");

    // The first 4 KiB, while the provider has written only its first MiB.
    let head = spawn(
        "dd",
        &[&format!("if={path}"), "bs=4096", "count=1", "status=none"],
    );
    let fetch = file_data(&provider, 0);
    let cb = fetch.callback().clone();
    cb.instance
        .write_file_data(cb.data_stream_id, 0, &data[..1 << 20])
        .expect("writing the first MiB");
    assert_eq!(finish(head, "dd of the first 4 KiB"), data[..4096]);
    // The fetch goes on: the file is not hydrated yet.
    let state = m
        .guard
        .instance()
        .virtualizer()
        .layer()
        .state(std::path::Path::new("big.bin"))
        .expect("the layer's state of big.bin");
    assert!(
        !state.contains(prjfs::OnDiskState::HYDRATED_PLACEHOLDER),
        "{state:?}"
    );

    // A second reader joins the fetch in progress: no second GetFileData.
    let mut whole = spawn("cat", &[path]);
    let tail = spawn(
        "dd",
        &[
            &format!("if={path}"),
            "bs=4096",
            "skip=1",
            "count=2",
            "status=none",
        ],
    );
    assert_eq!(
        finish(tail, "dd inside the first MiB"),
        data[4096..3 * 4096]
    );
    assert!(
        running(&mut whole),
        "cat cannot have read past the first MiB"
    );
    assert_eq!(m.file_data_calls(), 1);
    assert_eq!(provider.pended().len(), 1);

    // The rest arrives: cat gets every byte; still one GetFileData.
    cb.instance
        .write_file_data(cb.data_stream_id, 1 << 20, &data[1 << 20..])
        .expect("writing the rest");
    assert_eq!(
        cb.instance.complete_command(cb.command_id, Ok(()), None),
        Completion::Completed
    );
    assert!(finish(whole, "cat") == data, "cat read other bytes");
    assert_eq!(m.file_data_calls(), 1);
    assert_eq!(std::fs::read(path).expect("reading it in-process"), data);
}

#[test]
fn a_signalled_reader_cancels_the_shared_fetch_and_the_others_start_over() {
    if !mount_available() {
        return;
    }
    let data = content();
    let provider = Arc::new(
        NeverCompletes::new(MemTree::new().file("big.bin", data.clone()))
            .pend_placeholder_info(false),
    );
    let m = mount(provider.clone());
    let path = m.root.join("big.bin");
    let path = path.to_str().expect("utf-8 temp path");

    let mut first = spawn("cat", &[path]);
    let fetch = file_data(&provider, 0);
    // Direct I/O: the kernel sends its read at once (a buffered one could wait
    // on the first reader's page locks instead).
    let mut second = spawn(
        "dd",
        &[
            &format!("if={path}"),
            "iflag=direct",
            "bs=1M",
            "skip=2",
            "status=none",
        ],
    );
    // Both readers wait on the one fetch (the kernel may add readahead reads
    // of its own; none of them starts a second fetch).
    let start = Instant::now();
    while m.guard.instance().stats().content_waiters < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the readers never waited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(running(&mut first) && running(&mut second));
    assert_eq!(provider.pended().len(), 1);

    let t = Instant::now();
    kill_process(Pid::from_child(&first), Signal::INT).expect("signalling our client");
    let status = first.wait().expect("waiting for the signalled cat");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "released {:?} after the signal",
        t.elapsed()
    );
    assert_eq!(status.signal(), Some(Signal::INT.as_raw()), "{status:?}");
    assert!(
        provider.wait_for_cancels(1, Duration::from_secs(10)),
        "the provider never heard CancelCommand"
    );
    assert_eq!(provider.cancelled(), vec![fetch.id()]);

    // The other reader starts over with a fetch of its own, and gets every byte.
    let again = file_data(&provider, 1);
    assert_ne!(again.id(), fetch.id());
    assert!(running(&mut second), "the other reader must not fail");
    assert_eq!(provider.complete(again.id()), Some(Completion::Completed));
    assert!(
        finish(second, "the other reader") == data[2 << 20..],
        "it read other bytes"
    );
    assert_eq!(m.file_data_calls(), 2);
}
