//! Level 2: requests served by a real prjfs file system without a kernel.
//!
//! [`run_input`] builds a fresh instance (a [`Layer`] on a new temporary
//! directory, a [`Virtualizer`] over an inline [`MemProvider`], the
//! [`FuseFs`] adapter, a [`Server`] writing to a [`Recorder`]), feeds it the
//! requests [`crate::gen`] reads from the input, one at a time on a worker
//! thread as a session would, and asserts after each request and at the end:
//! - no panic anywhere in the process (also one the server caught);
//! - every `handle` returns within [`TIMEOUT`] (no hung worker);
//! - every request with a readable header that takes an answer gets exactly
//!   one, with its `unique`, within [`TIMEOUT`]; FORGET, BATCH_FORGET and
//!   NOTIFY_REPLY get none; INTERRUPT gets none or `EAGAIN`; an undecodable
//!   request gets `EIO`; a message without a whole header gets none;
//! - every answer is well formed: its `len` is its size, errors are in
//!   `-4095..0` with no body, and reads, listings and xattr values are no
//!   larger than asked for;
//! - the file system asked to close no backing id twice, and nothing was
//!   created beside the temporary root.
//!
//! Any broken assertion panics: the fuzzer's crash, a failed test.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Once};
use std::time::Duration;

use prjfs::fuse_fs::FuseFs;
use prjfs::layer::Layer;
use prjfs::virtualizer::{Virtualizer, VirtualizerOptions};
use prjfs_fuse::abi::*;
use prjfs_fuse::request::{decode, Operation};
use prjfs_fuse::session::{Filesystem, SessionConfig};
use prjfs_fuse::transport::{Recorded, Recorder};
use prjfs_fuse::Server;
use prjfs_providers::testing::{MemProvider, MemTree};
use zerocopy::FromBytes;

use crate::gen::{self, Pools};
use crate::input::Input;

/// How long one request may keep a worker, or wait for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Requests per run at most (the rest of a long input is ignored).
pub const MAX_REQUESTS: usize = 64;

/// What one run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Messages handed to the server (INIT included).
    pub requests: u64,
    /// Replies received.
    pub replies: u64,
    /// Replies with an error.
    pub errors: u64,
    /// Kernel cache notifications received.
    pub notifications: u64,
}

/// The provider's tree: a file, a directory with a file and a subdirectory,
/// a symlink and an empty file.
fn tree() -> MemTree {
    MemTree::new()
        .file("a.txt", b"hello".to_vec())
        .file("dir/b.txt", vec![b'b'; 70_000])
        .file("dir/sub/c", b"c".to_vec())
        .symlink("link", "a.txt")
        .file("empty", Vec::new())
}

/// Names of [`tree`], for requests to use.
const TREE_NAMES: [&str; 7] = ["a.txt", "dir", "b.txt", "sub", "c", "link", "empty"];

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Count every panic of the process, caught or not, then report it as before.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info)
        }));
    });
}

/// A worker thread handing each message to the server, as a session's does.
struct Worker {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    rx: mpsc::Receiver<std::io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn new(server: Arc<Server<FuseFs>>) -> Self {
        let (tx, jobs) = mpsc::channel::<Vec<u8>>();
        let (done, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fuzz-worker".into())
            .spawn(move || {
                for msg in jobs {
                    let _ = done.send(server.handle(&msg));
                }
            })
            .expect("the worker thread starts");
        Self {
            tx: Some(tx),
            rx,
            thread: Some(thread),
        }
    }

    /// Handle `msg` on the worker; panics if it takes longer than [`TIMEOUT`].
    fn handle(&self, msg: &[u8]) -> std::io::Result<()> {
        let tx = self.tx.as_ref().expect("worker running");
        tx.send(msg.to_vec()).expect("the worker takes messages");
        match self.rx.recv_timeout(TIMEOUT) {
            Ok(r) => r,
            Err(_) => panic!("a worker hung for {TIMEOUT:?} on {}", describe(msg)),
        }
    }

    fn stop(mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("the worker ends cleanly");
        }
    }
}

/// What a message must be answered with.
#[derive(Clone, Copy, Debug, Default)]
struct Expect {
    min: u32,
    max: u32,
    /// The one errno allowed (EIO for undecodable, EAGAIN for INTERRUPT).
    errno: Option<i32>,
}

fn expect(msg: &[u8], minor: Option<u32>) -> Expect {
    let one = Expect {
        min: 1,
        max: 1,
        errno: None,
    };
    if msg.len() < size_of::<FuseInHeader>() {
        return Expect::default();
    }
    let Some(minor) = minor else {
        return one;
    };
    match decode(msg, minor) {
        Err(_) => Expect {
            errno: Some(libc::EIO),
            ..one
        },
        Ok((_, Operation::Forget { .. } | Operation::BatchForget { .. })) => Expect::default(),
        Ok((_, Operation::Unknown { opcode })) if opcode == FUSE_NOTIFY_REPLY => Expect::default(),
        Ok((_, Operation::Interrupt { .. })) => Expect {
            min: 0,
            max: 1,
            errno: Some(libc::EAGAIN),
        },
        Ok(_) => one,
    }
}

fn describe(msg: &[u8]) -> String {
    match decode(msg, FUSE_KERNEL_MINOR_VERSION) {
        Ok((h, op)) => format!("unique {} node {}: {op:?}", h.unique, h.nodeid),
        Err(e) => format!("{} bytes: {e}", msg.len()),
    }
}

/// Replies and notifications taken from the recorder so far.
#[derive(Default)]
struct Answers {
    by_unique: HashMap<u64, u32>,
    stats: RunStats,
}

impl Answers {
    /// Take what arrived, check each message's form, and return the replies.
    fn take(&mut self, rec: &Recorder) -> Vec<Recorded> {
        let mut replies = Vec::new();
        for m in rec.take() {
            assert_eq!(m.len as usize, m.written, "length field of {m:?}");
            if m.is_notification() {
                assert_eq!(m.error, FUSE_NOTIFY_INVAL_INODE, "only inode invalidations");
                assert_eq!(m.body.len(), 24, "fuse_notify_inval_inode_out");
                self.stats.notifications += 1;
                continue;
            }
            assert!((-4095..=0).contains(&m.error), "errno of {m:?}");
            if m.error != 0 {
                assert!(m.body.is_empty(), "an error with a body: {m:?}");
                self.stats.errors += 1;
            }
            self.stats.replies += 1;
            *self.by_unique.entry(m.unique).or_default() += 1;
            replies.push(m);
        }
        replies
    }

    fn count(&self, unique: u64) -> u32 {
        self.by_unique.get(&unique).copied().unwrap_or(0)
    }
}

/// One fresh instance and the bookkeeping of a run of requests over it: what
/// [`run_input`] drives, and what regression tests drive with hand-made
/// requests ([`Harness::send`], ids from [`Harness::pools`]).
pub struct Harness {
    sandbox: tempfile::TempDir,
    fs: Arc<FuseFs>,
    server: Arc<Server<FuseFs>>,
    rec: Arc<Recorder>,
    worker: Worker,
    answers: Answers,
    /// Per unique: summed expectations of every message sent with it.
    wanted: HashMap<u64, Expect>,
    sent: HashMap<u64, u32>,
    pools: Pools,
    panics: u64,
    /// `PRJFS_FUZZ_TRACE` set: print each request and its answers.
    trace: bool,
}

impl Harness {
    /// A new instance; `inline_callbacks` as a started instance has it (true),
    /// or every callback on the callback threads (false).
    pub fn new(inline_callbacks: bool) -> Self {
        count_panics();
        let sandbox = match std::env::var_os("PRJFS_FUZZ_TMP") {
            Some(dir) => tempfile::tempdir_in(dir),
            None => tempfile::tempdir(),
        }
        .expect("a temporary directory");
        let root = sandbox.path().join("root");
        std::fs::create_dir(&root).expect("the root directory");
        let layer = Layer::open(&root).expect("the layer opens on an empty directory");
        let provider = Arc::new(MemProvider::new(tree()));
        let options = VirtualizerOptions {
            concurrent_threads: 2,
            inline_callbacks,
            ..Default::default()
        };
        let fs = Arc::new(FuseFs::new(Virtualizer::new(layer, provider, options)));
        let rec = Arc::new(Recorder::new());
        let config = SessionConfig {
            threads: 4,
            ..Default::default()
        };
        let server = Arc::new(Server::new(rec.clone(), config, fs.clone()));
        let worker = Worker::new(server.clone());
        Self {
            sandbox,
            fs,
            server,
            rec,
            worker,
            answers: Answers::default(),
            wanted: HashMap::new(),
            sent: HashMap::new(),
            pools: Pools::new(&TREE_NAMES),
            panics: PANICS.load(Ordering::SeqCst),
            trace: std::env::var_os("PRJFS_FUZZ_TRACE").is_some(),
        }
    }

    /// What the file system handed out so far.
    pub fn pools(&mut self) -> &mut Pools {
        &mut self.pools
    }

    /// The replies received so far to requests with `unique`.
    pub fn answers_to(&self, unique: u64) -> u32 {
        self.answers.count(unique)
    }

    /// Send one message (after [`gen::guard`]) and check its answer; false
    /// once the connection is dead (INIT failed). Panics as the module doc says.
    pub fn send(&mut self, mut msg: Vec<u8>) -> bool {
        let minor = self.server.init_info().map(|i| i.minor);
        gen::guard(&mut msg, minor.unwrap_or(FUSE_KERNEL_MINOR_VERSION));
        let e = expect(&msg, minor);
        let unique = FuseInHeader::read_from_prefix(&msg)
            .map(|(h, _)| h.unique)
            .ok();
        let before = unique.map_or(0, |u| self.answers.count(u));
        if let Some(u) = unique {
            let w = self.wanted.entry(u).or_default();
            w.min += e.min;
            w.max += e.max;
            *self.sent.entry(u).or_default() += 1;
        }
        self.answers.stats.requests += 1;
        if self.trace {
            eprintln!("-> {}", describe(&msg));
        }
        let alive = self.worker.handle(&msg).is_ok();
        let Some(unique) = unique else {
            return alive;
        };
        let needed = self.wanted[&unique].min;
        let answers = &mut self.answers;
        let mut mine = Vec::new();
        let arrived = self.rec.wait_until(TIMEOUT, |m| {
            let new = m
                .iter()
                .filter(|r| r.unique == unique && !r.is_notification());
            answers.count(unique) + new.count() as u32 >= needed
        });
        assert!(
            arrived,
            "no answer within {TIMEOUT:?} to {}",
            describe(&msg)
        );
        mine.extend(
            answers
                .take(&self.rec)
                .into_iter()
                .filter(|r| r.unique == unique),
        );
        if self.trace {
            for r in &mine {
                eprintln!(
                    "<- unique {} error {} ({} bytes)",
                    r.unique,
                    r.error,
                    r.body.len()
                );
            }
        }
        let got = self.answers.count(unique) - before;
        if self.sent[&unique] == 1 {
            assert!(got <= e.max, "{got} answers to {}", describe(&msg));
            if let (Some(errno), Some(r)) = (e.errno, mine.last()) {
                assert_eq!(r.error, -errno, "answer to {}", describe(&msg));
            }
            if let (Some(r), Some(info)) = (mine.last(), self.server.init_info()) {
                check_and_learn(&msg, info.minor, info.max_read, r, &mut self.pools);
            }
        }
        alive
    }

    /// After the last request: every answer in, the connection ended as a
    /// session ends it, nothing answered twice, nothing outside the root, no
    /// panic since [`Harness::new`].
    pub fn finish(mut self) -> RunStats {
        let quiet = (0..TIMEOUT.as_millis() / 5).any(|_| {
            let idle = self.server.inflight() == 0;
            if !idle {
                std::thread::sleep(Duration::from_millis(5));
            }
            idle
        });
        assert!(quiet, "{} requests never answered", self.server.inflight());
        self.fs.destroy();
        self.worker.stop();
        drop(self.server);
        self.answers.take(&self.rec);
        for (unique, w) in &self.wanted {
            let got = self.answers.count(*unique);
            assert!(
                (w.min..=w.max).contains(&got),
                "unique {unique}: {got} answers, expected {}..={}",
                w.min,
                w.max
            );
        }
        for unique in self.answers.by_unique.keys() {
            assert!(
                self.wanted.contains_key(unique),
                "answer to unsent {unique}"
            );
        }
        assert_eq!(self.rec.bad_backing_closes(), 0, "backing ids closed twice");
        let beside: Vec<PathBuf> = std::fs::read_dir(self.sandbox.path())
            .expect("the sandbox lists")
            .map(|e| e.expect("an entry").path())
            .collect();
        assert_eq!(beside.len(), 1, "created beside the root: {beside:?}");
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            self.panics,
            "a panic during the run"
        );
        self.answers.stats
    }
}

/// Check a successful answer against its request and remember the ids it
/// hands out.
fn check_and_learn(msg: &[u8], minor: u32, max_read: u32, r: &Recorded, pools: &mut Pools) {
    let Ok((_, op)) = decode(msg, minor) else {
        return;
    };
    if r.error != 0 {
        return;
    }
    let b = &r.body;
    let entry = |b: &[u8]| {
        FuseEntryOut::read_from_prefix(b)
            .map(|(e, _)| e.nodeid)
            .ok()
    };
    match op {
        Operation::Lookup { .. }
        | Operation::MkDir { .. }
        | Operation::MkNod { .. }
        | Operation::Symlink { .. }
        | Operation::Link { .. } => {
            assert_eq!(b.len(), size_of::<FuseEntryOut>(), "entry reply size");
            let node = entry(b).expect("an entry");
            assert_ne!(node, 0, "an entry with node id 0");
            Pools::add(&mut pools.nodes, node);
        }
        Operation::Create { name, .. } => {
            let want = size_of::<FuseEntryOut>() + size_of::<FuseOpenOut>();
            assert_eq!(b.len(), want, "create reply size");
            Pools::add(&mut pools.nodes, entry(b).expect("an entry"));
            let (open, _) = FuseOpenOut::read_from_prefix(&b[size_of::<FuseEntryOut>()..])
                .expect("an open reply");
            Pools::add(&mut pools.files, open.fh);
            pools.add_name(name.as_bytes());
        }
        Operation::Open { .. } | Operation::OpenDir { .. } => {
            assert_eq!(b.len(), size_of::<FuseOpenOut>(), "open reply size");
            let (open, _) = FuseOpenOut::read_from_prefix(b).expect("an open reply");
            let pool = match op {
                Operation::Open { .. } => &mut pools.files,
                _ => &mut pools.dirs,
            };
            Pools::add(pool, open.fh);
        }
        Operation::Read { size, .. } => {
            let most = size.min(max_read) as usize;
            assert!(
                b.len() <= most,
                "{} bytes read, at most {most} allowed",
                b.len()
            );
        }
        Operation::Write { data, .. } => {
            let (w, _) = FuseWriteOut::read_from_prefix(b).expect("a write reply");
            assert!(w.size as usize <= data.len(), "wrote more than sent");
        }
        Operation::ReadDir { size, .. } => {
            assert!(b.len() <= size as usize, "listing too long");
            learn_dirents(b, 0, pools);
        }
        Operation::ReadDirPlus { size, .. } => {
            assert!(b.len() <= size as usize, "listing too long");
            learn_dirents(b, size_of::<FuseEntryOut>(), pools);
        }
        Operation::GetXattr { size, .. } | Operation::ListXattr { size } => {
            if size == 0 {
                assert_eq!(b.len(), size_of::<FuseGetxattrOut>(), "xattr size reply");
            } else {
                assert!(b.len() <= size as usize, "xattr reply too long");
            }
        }
        _ => {}
    }
}

/// Names (and, for READDIRPLUS, node ids) of a listing reply whose records
/// start with `entry` bytes of `fuse_entry_out`.
fn learn_dirents(mut b: &[u8], entry: usize, pools: &mut Pools) {
    while b.len() >= entry + size_of::<FuseDirent>() {
        if entry > 0 {
            if let Ok((e, _)) = FuseEntryOut::read_from_prefix(b) {
                if e.nodeid != 0 {
                    Pools::add(&mut pools.nodes, e.nodeid);
                }
            }
        }
        let (d, rest) = FuseDirent::read_from_prefix(&b[entry..]).expect("a dirent");
        let namelen = d.namelen as usize;
        assert!(namelen <= rest.len(), "dirent name past the reply");
        let name = &rest[..namelen];
        if name != b"." && name != b".." {
            pools.add_name(name);
        }
        let record = (entry + size_of::<FuseDirent>() + namelen).next_multiple_of(8);
        b = &b[record.min(b.len())..];
    }
}

/// Run one input against a fresh instance; callbacks run inline on the
/// worker where a slot is free (as in a started instance), or always on the
/// callback threads when the input's first byte is odd.
///
/// Panics when an invariant of the module doc breaks.
pub fn run_input(data: &[u8]) -> RunStats {
    let mut inp = Input::new(data);
    let mut run = Harness::new(inp.u8() & 1 == 0);
    let first = gen::first_message(&mut inp, &mut run.pools);
    let mut alive = run.send(first);
    let mut n = 1;
    while alive && !inp.is_empty() && n < MAX_REQUESTS {
        let msg = gen::next_message(&mut inp, &mut run.pools);
        alive = run.send(msg);
        n += 1;
    }
    run.finish()
}
