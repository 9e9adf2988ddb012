//! Mounted tests of a virtualization instance with the test providers: interrupts
//! and cancellation, stop with commands that never complete, callback slots that do
//! not hold up local I/O, misbehaving and panicking providers, and the enumeration
//! protocol (End after every Start, rewinddir as a restart scan).
//!
//! The provider runs in this process, whose own I/O on the mount never reaches the
//! provider; every client operation that needs a callback is therefore done by a
//! child process (`cat`, `stat`, `ls`, `perl`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prjfs::command::{CallbackKind, CommandStats};
use prjfs::enumeration::EnumerationSession;
use prjfs::{
    CallbackData, CallbackFlags, CallbackResult, Collation, CommandId, Completion, DirEntry,
    DirEntryBuffer, EnumerationId, FileBasicInfo, Outcome, Provider, ProviderError, StartOptions,
};
use prjfs_providers::testing::{
    MemProvider, MemTree, Misbehaving, Misbehavior, NeverCompletes, PanicIn, Panicking,
    PendedCommand, SlowSync,
};
use prjfs_testkit::{default_signals, eventually, mount_available, InstanceGuard};
use rustix::process::{kill_process, Pid, Signal};

// ---------------------------------------------------------------------------------
// Fixture and client helpers

/// An instance on `TMP/root`; the instance stops before the temp dir goes.
struct Mounted {
    guard: Option<InstanceGuard>,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    fn start(provider: Arc<dyn Provider>, options: StartOptions) -> Mounted {
        logs::install();
        let tmp = tempfile::tempdir().expect("a temp dir");
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).expect("creating the root");
        let guard = InstanceGuard::start(&root, provider, options);
        let root = guard.root().to_path_buf();
        Mounted {
            guard: Some(guard),
            root,
            _tmp: tmp,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn stats(&self) -> CommandStats {
        self.guard
            .as_ref()
            .expect("the instance runs")
            .instance()
            .stats()
            .commands
    }

    fn invoked(&self, kind: CallbackKind) -> u64 {
        self.stats()
            .by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

fn options() -> StartOptions {
    StartOptions {
        pool_threads: 8,
        concurrent_threads: 4,
        ..Default::default()
    }
}

/// Run a client to completion; panics if it takes longer than `timeout`.
fn run_within(program: &str, args: &[&OsStr], timeout: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = spawn(program, args);
    loop {
        if child.try_wait().expect("polling a client").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("`{program} {args:?}` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let out = child
        .wait_with_output()
        .expect("collecting a client's output");
    (out, elapsed)
}

fn run(program: &str, args: &[&OsStr]) -> Output {
    run_within(program, args, Duration::from_secs(20)).0
}

fn spawn(program: &str, args: &[&OsStr]) -> Child {
    default_signals(&mut Command::new(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status,
        text(&out.stderr)
    );
}

/// The client failed with EIO.
fn assert_eio(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} succeeded, expected EIO; stdout: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("Input/output error"),
        "{what}: expected EIO, stderr: {}",
        text(&out.stderr)
    );
}

fn cat(m: &Mounted, rel: &str) -> Output {
    run("cat", &[m.path(rel).as_os_str()])
}

fn stat(m: &Mounted, rel: &str) -> Output {
    run("stat", &[m.path(rel).as_os_str()])
}

fn ls(m: &Mounted, rel: &str) -> Output {
    run("ls", &[m.path(rel).as_os_str()])
}

/// Wait for a child that should exit soon; panics after `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("polling a client") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("{what} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal(child: &Child, sig: Signal) {
    kill_process(Pid::from_child(child), sig).expect("signalling our own client");
}

fn still_running(child: &mut Child) -> bool {
    child.try_wait().expect("polling a client").is_none()
}

fn tree() -> MemTree {
    MemTree::new()
        .file("a.txt", "alpha\n")
        .file("b.txt", "bravo\n")
        .file("c.txt", "charlie\n")
        .file("d/inner.txt", "inner\n")
}

/// Captures warnings and errors the instance logs through `tracing` (from its own
/// threads, hence a global subscriber); tests look for the message about their
/// problem. Every event is also echoed to stderr for failed runs.
mod logs {
    use std::fmt::Write as _;
    use std::sync::{Mutex, Once};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    struct Message(String);

    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.0, "{value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::WARN
        }
        fn new_span(&self, _span: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _span: &Id, _values: &Record<'_>) {}
        fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut m = Message(String::new());
            event.record(&mut m);
            let line = format!("{} {}", event.metadata().level(), m.0);
            eprintln!("log: {line}");
            LOG.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
        fn enter(&self, _span: &Id) {}
        fn exit(&self, _span: &Id) {}
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let _ = tracing::subscriber::set_global_default(Capture);
        });
    }

    /// Whether a logged line contains every one of `words`.
    pub fn any(words: &[&str]) -> bool {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| words.iter().all(|w| l.contains(w)))
    }
}

// ---------------------------------------------------------------------------------
// 1. Interrupts cancel pended commands

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    PlaceholderInfo,
    FileData,
}

/// A `cat` blocked in a never-completed GetPlaceholderInfo or GetFileData is killed
/// (SIGKILL) or interrupted (SIGINT): it exits at once, the command counts as
/// cancelled, the provider hears CancelCommand for that id, and completing it later
/// is ignored without touching a counter.
#[test]
fn killed_client_cancels_its_pended_command() {
    if !mount_available() {
        return;
    }
    for stage in [Stage::FileData, Stage::PlaceholderInfo] {
        let provider = Arc::new(
            NeverCompletes::new(tree()).pend_placeholder_info(stage == Stage::PlaceholderInfo),
        );
        let m = Mounted::start(provider.clone(), options());
        let cases = [(Signal::KILL, "a.txt"), (Signal::INT, "b.txt")];
        for (n, (sig, file)) in cases.into_iter().enumerate() {
            let what = format!("{stage:?}, {sig:?}, cat {file}");
            let mut child = spawn("cat", &[m.path(file).as_os_str()]);
            assert!(
                provider.wait_for_pended(n + 1, Duration::from_secs(10)),
                "{what}: the provider was never asked"
            );
            let pended = provider.pended()[n].clone();
            match (&pended, stage) {
                (PendedCommand::PlaceholderInfo(_), Stage::PlaceholderInfo)
                | (PendedCommand::FileData { .. }, Stage::FileData) => {}
                other => panic!("{what}: unexpected pended command {other:?}"),
            }
            assert_eq!(pended.callback().path, Path::new(file), "{what}");
            let id = pended.id();
            // Pended: counted once the callback has returned.
            assert!(
                eventually(Duration::from_secs(10), || m.stats().pending == 1),
                "{what}: the command was never counted pending: {:?}",
                m.stats()
            );
            assert!(still_running(&mut child), "{what}: cat did not block");

            let t = Instant::now();
            signal(&child, sig);
            let status = wait_exit(&mut child, Duration::from_secs(10), &what);
            let elapsed = t.elapsed();
            assert!(
                elapsed < Duration::from_secs(1),
                "{what}: exited {elapsed:?} after the signal"
            );
            assert_eq!(status.signal(), Some(sig.as_raw()), "{what}: {status:?}");

            assert!(
                provider.wait_for_cancels(n + 1, Duration::from_secs(5)),
                "{what}: the provider never heard CancelCommand"
            );
            assert!(
                provider.cancelled().contains(&id),
                "{what}: cancels {:?}, pended id {id}",
                provider.cancelled()
            );
            let st = m.stats();
            assert!(st.cancelled > n as u64, "{what}: {st:?}");
            assert_eq!(st.pending, 0, "{what}: {st:?}");

            let before = m.stats();
            assert_eq!(
                provider.complete(id),
                Some(Completion::Ignored),
                "{what}: completing a cancelled command"
            );
            assert_eq!(m.stats(), before, "{what}: a counter changed");
        }
        // The mount serves on.
        assert_ok(&stat(&m, ""), "stat ROOT after the interrupts");
    }
}

// ---------------------------------------------------------------------------------
// 2. Stop with commands that were never completed

/// Two clients wait on commands the provider never completes (one in a lookup, one
/// in a read); stopping the instance answers both at once and returns.
#[test]
fn stop_answers_commands_never_completed() {
    if !mount_available() {
        return;
    }
    let provider = Arc::new(NeverCompletes::new(tree()));
    let mut m = Mounted::start(provider.clone(), options());

    let mut in_lookup = spawn("cat", &[m.path("a.txt").as_os_str()]);
    assert!(provider.wait_for_pended(1, Duration::from_secs(10)));
    let mut in_read = spawn("cat", &[m.path("b.txt").as_os_str()]);
    assert!(provider.wait_for_pended(2, Duration::from_secs(10)));
    // Let b.txt's lookup through: its read then pends.
    let b_lookup = provider.pended()[1].id();
    assert_eq!(provider.complete(b_lookup), Some(Completion::Completed));
    assert!(provider.wait_for_pended(3, Duration::from_secs(10)));
    let pended = provider.pended();
    assert!(matches!(pended[0], PendedCommand::PlaceholderInfo(_)));
    assert!(matches!(pended[2], PendedCommand::FileData { .. }));
    assert!(
        eventually(Duration::from_secs(10), || m.stats().pending == 2),
        "both commands pending: {:?}",
        m.stats()
    );
    assert!(still_running(&mut in_lookup) && still_running(&mut in_read));

    let guard = m.guard.take().expect("the instance runs");
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        guard.stop();
        tx.send(Instant::now()).expect("report stop");
    });
    for (child, what) in [
        (&mut in_lookup, "cat in lookup"),
        (&mut in_read, "cat in read"),
    ] {
        let status = wait_exit(child, Duration::from_secs(10), what);
        let elapsed = t.elapsed();
        assert!(!status.success(), "{what} succeeded after stop");
        assert!(
            elapsed < Duration::from_secs(2),
            "{what} exited {elapsed:?} after stop began"
        );
    }
    let stopped = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("stop returned");
    assert!(
        stopped - t < Duration::from_secs(5),
        "stop took {:?}",
        stopped - t
    );
    for c in [&pended[0], &pended[2]] {
        assert!(
            provider.cancelled().contains(&c.id()),
            "no CancelCommand for {c:?}"
        );
    }
    for (child, what) in [(in_lookup, "cat in lookup"), (in_read, "cat in read")] {
        let out = child.wait_with_output().expect("output");
        assert!(!out.stderr.is_empty(), "{what} printed no error");
    }
    assert!(
        !prjfs_testkit::is_mounted(&m.root),
        "still mounted after stop"
    );
}

// ---------------------------------------------------------------------------------
// 3. Stuck callback slots do not hold up local I/O

/// Answers from `fast` until `slow_on` is set, from `slow` (the same store behind a
/// [`SlowSync`]) afterwards.
struct Switch {
    fast: Arc<MemProvider>,
    slow: SlowSync,
    slow_on: AtomicBool,
}

impl Switch {
    fn pick(&self) -> &dyn Provider {
        if self.slow_on.load(Ordering::SeqCst) {
            &self.slow
        } else {
            &*self.fast
        }
    }
}

impl Provider for Switch {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.pick().start_directory_enumeration(cb, id)
    }
    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.pick()
            .get_directory_enumeration(cb, id, search_expression, buffer)
    }
    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.pick().end_directory_enumeration(cb, id)
    }
    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.pick().get_placeholder_info(cb)
    }
    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.pick().get_file_data(cb, byte_offset, length)
    }
    fn cancel_command(&self, cb: &CallbackData) {
        self.pick().cancel_command(cb)
    }
}

/// ConcurrentThreadCount 2, PoolThreadCount 4: with both callback slots stuck in a
/// slow provider and more callbacks queued, a hydrated file still reads and a
/// placeholder still stats at once.
#[test]
fn stuck_callback_slots_do_not_block_local_io() {
    if !mount_available() {
        return;
    }
    const DELAY: Duration = Duration::from_secs(5);
    let mut t = tree();
    for i in 0..6 {
        t = t.file(format!("f{i}.txt"), format!("file {i}\n"));
    }
    let fast = Arc::new(MemProvider::new(t));
    let switch = Arc::new(Switch {
        fast: fast.clone(),
        slow: SlowSync::new(fast.clone(), DELAY),
        slow_on: AtomicBool::new(false),
    });
    let m = Mounted::start(
        switch.clone(),
        StartOptions {
            pool_threads: 4,
            concurrent_threads: 2,
            ..Default::default()
        },
    );
    let out = cat(&m, "a.txt");
    assert_ok(&out, "cat a.txt");
    assert_eq!(out.stdout, b"alpha\n");
    let names: Vec<PathBuf> = (0..6).map(|i| m.path(&format!("f{i}.txt"))).collect();
    let mut args: Vec<&OsStr> = names.iter().map(|p| p.as_os_str()).collect();
    let b = m.path("b.txt");
    args.push(b.as_os_str());
    assert_ok(&run("stat", &args), "stat of the placeholders");

    switch.slow_on.store(true, Ordering::SeqCst);
    let mut slow: Vec<Child> = names
        .iter()
        .map(|p| spawn("cat", &[p.as_os_str()]))
        .collect();
    assert!(
        eventually(Duration::from_secs(4), || switch.slow.active() == 2),
        "the two callback slots never filled: {} active",
        switch.slow.active()
    );
    assert!(
        eventually(Duration::from_secs(2), || {
            m.guard.as_ref().unwrap().instance().stats().queued >= 2
        }),
        "callbacks should queue behind the stuck slots"
    );
    // Let the kernel's entry and attribute cache (1 s) lapse, so the lookups and
    // getattrs below reach the instance.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(switch.slow.active(), 2, "the slots must still be stuck");

    let (out, took) = run_within("cat", &[m.path("a.txt").as_os_str()], DELAY * 3);
    assert_ok(&out, "cat of the hydrated a.txt");
    assert_eq!(out.stdout, b"alpha\n");
    assert!(
        took < Duration::from_secs(2),
        "cat of a hydrated file took {took:?} behind stuck callbacks"
    );
    let (out, took) = run_within("stat", &[b.as_os_str()], DELAY * 3);
    assert_ok(&out, "stat of the placeholder b.txt");
    assert!(
        took < Duration::from_secs(2),
        "stat of a placeholder took {took:?} behind stuck callbacks"
    );
    assert!(
        switch.slow.max_active() <= 2,
        "more callbacks than slots ran"
    );

    // Interrupting the stuck readers answers them at once, running or queued.
    let t = Instant::now();
    for c in &slow {
        signal(c, Signal::KILL);
    }
    for c in &mut slow {
        wait_exit(c, Duration::from_secs(10), "a killed slow cat");
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "killed readers took {:?} to exit",
        t.elapsed()
    );
}

/// Hydration with a provider that answers inline, many times over: each read of a
/// placeholder returns its content. (An inline answer can finish the command on the
/// callback thread before the request thread has left `read`.)
#[test]
fn inline_hydration_of_many_files() {
    if !mount_available() {
        return;
    }
    const FILES: usize = 64;
    let mut t = MemTree::new();
    for i in 0..FILES {
        t = t.file(format!("many/f{i:02}.txt"), format!("content {i}\n"));
    }
    let m = Mounted::start(Arc::new(MemProvider::new(t)), options());
    let paths: Vec<PathBuf> = (0..FILES)
        .map(|i| m.path(&format!("many/f{i:02}.txt")))
        .collect();
    let args: Vec<&OsStr> = paths.iter().map(|p| p.as_os_str()).collect();
    let out = run("cat", &args);
    assert_ok(&out, "cat of 64 placeholders");
    let expected: String = (0..FILES).map(|i| format!("content {i}\n")).collect();
    assert_eq!(text(&out.stdout), expected);
    let st = m.stats();
    assert_eq!(st.failed, 0, "{st:?}");
}

// ---------------------------------------------------------------------------------
// 4. Misbehaving providers

/// A provider that lists one extra entry with an invalid name through an
/// [`EnumerationSession`], which reports it as [`ProviderError::InvalidName`].
struct ExtraEntry {
    mem: MemProvider,
    name: OsString,
    sessions: Mutex<std::collections::HashMap<EnumerationId, EnumerationSession>>,
}

impl Provider for ExtraEntry {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let mut entries = self
            .mem
            .tree()
            .children(&cb.path)
            .ok_or(ProviderError::NotFound)?;
        entries.push(DirEntry {
            name: self.name.clone(),
            basic: FileBasicInfo::file(1),
            symlink_target: None,
            version: None,
        });
        let session = EnumerationSession::new(entries, Collation::CaseSensitive);
        self.sessions.lock().unwrap().insert(id, session);
        Ok(Outcome::Done)
    }
    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        let mut sessions = self.sessions.lock().unwrap();
        let session = sessions
            .get_mut(&id)
            .ok_or_else(|| ProviderError::Other(format!("no session {id:?}")))?;
        session.fill(search_expression, cb.flags, buffer)
    }
    fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.sessions.lock().unwrap().remove(&id);
        Ok(Outcome::Done)
    }
    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.mem.get_placeholder_info(cb)
    }
    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.mem.get_file_data(cb, byte_offset, length)
    }
}

/// A tree whose directory `dir` (named after the case, so that log lines can be
/// told apart) holds a few files.
fn case_tree(dir: &str) -> MemTree {
    tree()
        .file(format!("{dir}/one.txt"), "one\n")
        .file(format!("{dir}/two.txt"), "two\n")
        .file(format!("{dir}/three.txt"), "three\n")
}

/// After a provider error the mount still serves: the root stats and a good file
/// reads.
fn assert_still_serves(m: &Mounted, what: &str) {
    assert_ok(&stat(m, ""), &format!("{what}: stat ROOT afterwards"));
    let out = cat(m, "c.txt");
    assert_ok(&out, &format!("{what}: cat c.txt afterwards"));
    assert_eq!(out.stdout, b"charlie\n", "{what}");
}

/// Listings with an invalid name (offered to the buffer and ignored by the
/// provider, or reported by the provider) or out of order fail the client's
/// readdir with EIO, the instance logs the problem, and the mount stays up.
#[test]
fn invalid_listings_fail_with_eio_and_the_mount_stays_up() {
    if !mount_available() {
        return;
    }
    let kinds = [
        (Misbehavior::NameWithSlash, "slash-dir"),
        (Misbehavior::DotDotName, "dotdot-dir"),
        (Misbehavior::NameWithNul, "nul-dir"),
        (Misbehavior::EmptyName, "empty-dir"),
        (Misbehavior::LongName, "long-dir"),
        (Misbehavior::OutOfOrder, "order-dir"),
    ];
    let mut failures = Vec::new();
    for (kind, dir) in kinds {
        let provider = Arc::new(Misbehaving::new(case_tree(dir), kind));
        let m = Mounted::start(provider.clone(), options());
        let what = format!("Misbehaving {kind:?}: ls ROOT/{dir}");
        let out = ls(&m, dir);
        if out.status.success() || !text(&out.stderr).contains("Input/output error") {
            failures.push(format!(
                "{what}: expected EIO, got {:?}, stdout {:?}, stderr {:?}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        if kind == Misbehavior::OutOfOrder {
            if !logs::any(&[dir, "order"]) {
                failures.push(format!("{what}: no log line about the order"));
            }
        } else {
            assert!(provider.refused_entries() >= 1, "{what}: name not offered");
            if !logs::any(&[dir, "invalid"]) {
                failures.push(format!("{what}: no log line about the invalid name"));
            }
        }
        // The provider gets every listing wrong, the root's too.
        let out = ls(&m, "");
        if out.status.success() || !text(&out.stderr).contains("Input/output error") {
            failures.push(format!(
                "Misbehaving {kind:?}: ls ROOT: expected EIO, got {:?}",
                out.status
            ));
        }
        assert_still_serves(&m, &what);
    }

    let bad_names: [(OsString, &str); 7] = [
        ("/".into(), "root-slash"),
        ("a/b".into(), "inner-slash"),
        (".".into(), "dot"),
        ("..".into(), "dotdot"),
        (OsString::from_vec(b"a\0b".to_vec()), "nul"),
        (OsString::new(), "empty"),
        ("y".repeat(256).into(), "long"),
    ];
    for (name, case) in bad_names {
        let dir = format!("{case}-reported");
        let provider = Arc::new(ExtraEntry {
            mem: MemProvider::new(case_tree(&dir)),
            name: name.clone(),
            sessions: Mutex::default(),
        });
        let m = Mounted::start(provider, options());
        let what = format!("provider reporting {name:?}: ls ROOT/{dir}");
        let out = ls(&m, &dir);
        if out.status.success() || !text(&out.stderr).contains("Input/output error") {
            failures.push(format!(
                "{what}: expected EIO, got {:?}, stderr {:?}",
                out.status,
                text(&out.stderr)
            ));
        }
        if !logs::any(&[&dir, "invalid"]) {
            failures.push(format!("{what}: no log line about the invalid name"));
        }
        assert_still_serves(&m, &what);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A placeholder written under a wrong name, or not written at all, fails the
/// client's lookup with EIO; the mount stays up.
#[test]
fn wrong_placeholders_fail_with_eio_and_the_mount_stays_up() {
    if !mount_available() {
        return;
    }
    for kind in [
        Misbehavior::WrongPlaceholderName,
        Misbehavior::NoPlaceholder,
    ] {
        let file = format!("{kind:?}.txt");
        let provider = Arc::new(Misbehaving::new(tree().file(&file, "x\n"), kind));
        let m = Mounted::start(provider, options());
        let what = format!("{kind:?}: stat ROOT/{file}");
        assert_eio(&stat(&m, &file), &what);
        assert!(
            logs::any(&[&file, "placeholder"]),
            "{what}: no log line about the placeholder"
        );
        assert_ok(&stat(&m, ""), &format!("{what}: stat ROOT afterwards"));
        let out = ls(&m, "");
        assert_ok(&out, &format!("{what}: ls ROOT afterwards"));
        assert!(text(&out.stdout).contains("c.txt"), "{what}");
    }
}

// ---------------------------------------------------------------------------------
// 5. Panicking providers

/// A panic in a callback reaches the client as EIO (or, in End, only the log); the
/// mount stays up and a later request works.
#[test]
fn panicking_provider_fails_the_request_and_the_mount_stays_up() {
    if !mount_available() {
        return;
    }
    let cases = [
        (PanicIn::PlaceholderInfo, "a.txt"),
        (PanicIn::FileData, "a.txt"),
        (PanicIn::StartEnumeration, "d"),
        (PanicIn::GetEnumeration, "d"),
        (PanicIn::EndEnumeration, "d"),
    ];
    for (at, path) in cases {
        let provider = Arc::new(Panicking::new(tree(), at).only_path(path));
        let m = Mounted::start(provider.clone(), options());
        let what = format!("panic in {at:?} for {path}");
        match at {
            PanicIn::PlaceholderInfo | PanicIn::FileData => {
                assert_eio(&cat(&m, path), &what);
            }
            PanicIn::StartEnumeration | PanicIn::GetEnumeration => {
                assert_eio(&ls(&m, path), &what);
            }
            _ => {
                let out = ls(&m, path);
                assert_ok(&out, &what);
                assert_eq!(text(&out.stdout), "inner.txt\n", "{what}");
            }
        }
        assert!(
            eventually(Duration::from_secs(5), || provider.panics() >= 1),
            "{what}: the provider never panicked"
        );
        assert!(
            m.stats().failed >= 1 || at == PanicIn::EndEnumeration,
            "{what}: {:?}",
            m.stats()
        );
        assert_still_serves(&m, &what);
        assert_ok(&ls(&m, ""), &format!("{what}: ls ROOT afterwards"));
        // The same request once more: it fails the same way, it does not hang.
        if at == PanicIn::FileData {
            assert_eio(&cat(&m, path), &format!("{what}, again"));
        }
    }
}

// ---------------------------------------------------------------------------------
// 6, 7. The enumeration protocol through the mount

#[derive(Clone, Debug, Default)]
struct EnumLog {
    starts: Vec<(EnumerationId, PathBuf)>,
    /// (session, command, flags, path).
    gets: Vec<(EnumerationId, CommandId, CallbackFlags, PathBuf)>,
    ends: Vec<EnumerationId>,
    pended: Vec<CommandId>,
    cancels: Vec<CommandId>,
}

impl EnumLog {
    fn starts_of(&self, path: &str) -> Vec<EnumerationId> {
        self.starts
            .iter()
            .filter(|(_, p)| p == Path::new(path))
            .map(|(id, _)| *id)
            .collect()
    }

    fn sorted_ids(ids: impl Iterator<Item = EnumerationId>) -> Vec<EnumerationId> {
        let mut v: Vec<_> = ids.collect();
        v.sort();
        v
    }

    /// Every successful Start has had its End, and no End came without a Start.
    fn balanced(&self) -> bool {
        Self::sorted_ids(self.starts.iter().map(|(id, _)| *id))
            == Self::sorted_ids(self.ends.iter().copied())
    }
}

/// A [`MemProvider`] that records the enumeration callbacks with their flags, and
/// pends (forever) every Get for the directory `pend_gets_in`.
struct EnumRecorder {
    mem: MemProvider,
    pend_gets_in: Option<PathBuf>,
    log: Mutex<EnumLog>,
    changed: Condvar,
}

impl EnumRecorder {
    fn new(tree: MemTree, pend_gets_in: Option<&str>) -> Self {
        Self {
            mem: MemProvider::new(tree),
            pend_gets_in: pend_gets_in.map(PathBuf::from),
            log: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, EnumLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self) -> EnumLog {
        self.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut EnumLog)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    fn wait(&self, timeout: Duration, cond: impl Fn(&EnumLog) -> bool) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |l| !cond(l))
            .unwrap_or_else(|e| e.into_inner());
        cond(&guard)
    }
}

impl Provider for EnumRecorder {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let r = self.mem.start_directory_enumeration(cb, id);
        if r.is_ok() {
            self.update(|l| l.starts.push((id, cb.path.clone())));
        }
        r
    }
    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.update(|l| l.gets.push((id, cb.command_id, cb.flags, cb.path.clone())));
        if self.pend_gets_in.as_deref() == Some(cb.path.as_path()) {
            self.update(|l| l.pended.push(cb.command_id));
            return Ok(Outcome::Pending);
        }
        self.mem
            .get_directory_enumeration(cb, id, search_expression, buffer)
    }
    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.update(|l| l.ends.push(id));
        self.mem.end_directory_enumeration(cb, id)
    }
    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.mem.get_placeholder_info(cb)
    }
    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.mem.get_file_data(cb, byte_offset, length)
    }
    fn cancel_command(&self, cb: &CallbackData) {
        self.update(|l| l.cancels.push(cb.command_id));
    }
}

fn dirs_tree(n: usize) -> MemTree {
    let mut t = tree().file("slow/x.txt", "x\n").file("slow/y.txt", "y\n");
    for d in 0..n {
        for f in 0..3 {
            t = t.file(format!("dir{d}/f{f}.txt"), format!("{d}/{f}\n"));
        }
    }
    t
}

/// After listings of N directories End has followed every Start; after a listing
/// killed while its Get was pended (the Get is cancelled), End still follows once
/// the handle is closed.
#[test]
fn end_enumeration_follows_every_start() {
    if !mount_available() {
        return;
    }
    const N: usize = 6;
    let provider = Arc::new(EnumRecorder::new(dirs_tree(N), Some("slow")));
    let m = Mounted::start(provider.clone(), options());

    let dirs: Vec<PathBuf> = (0..N).map(|d| m.path(&format!("dir{d}"))).collect();
    let mut args: Vec<&OsStr> = dirs.iter().map(|p| p.as_os_str()).collect();
    args.push(m.root.as_os_str());
    let out = run("ls", &args);
    assert_ok(&out, "ls of the directories");
    assert!(text(&out.stdout).contains("f2.txt"));
    assert!(
        provider.wait(Duration::from_secs(5), |l| l.starts.len() == N + 1
            && l.balanced()),
        "Start/End unbalanced: {:?}",
        provider.log()
    );
    assert!(eventually(Duration::from_secs(5), || {
        m.invoked(CallbackKind::StartEnumeration) == m.invoked(CallbackKind::EndEnumeration)
    }));

    // A listing killed while its Get pends.
    let mut child = spawn("ls", &[m.path("slow").as_os_str()]);
    assert!(
        provider.wait(Duration::from_secs(10), |l| !l.pended.is_empty()),
        "ls slow never reached a Get"
    );
    let log = provider.log();
    let get = log.pended[0];
    let session = log.starts_of("slow")[0];
    assert!(
        !log.ends.contains(&session),
        "End came before the handle closed"
    );
    let t = Instant::now();
    signal(&child, Signal::KILL);
    wait_exit(&mut child, Duration::from_secs(10), "killed ls");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "ls exited {:?} after SIGKILL",
        t.elapsed()
    );
    assert!(
        provider.wait(Duration::from_secs(5), |l| l.cancels.contains(&get)),
        "the pended Get {get} was never cancelled: {:?}",
        provider.log()
    );
    assert!(
        provider.wait(Duration::from_secs(5), |l| l.ends.contains(&session)),
        "no End after the cancelled Get's handle closed: {:?}",
        provider.log()
    );
    assert!(provider.log().balanced(), "{:?}", provider.log());
    assert_eq!(m.stats().pending, 0);
}

/// rewinddir on an open directory restarts the scan: both reads list the same
/// entries, and the provider sees a Get with RESTART_SCAN in that session.
#[test]
fn rewinddir_is_a_restart_scan() {
    if !mount_available() {
        return;
    }
    let provider = Arc::new(EnumRecorder::new(dirs_tree(1), None));
    let m = Mounted::start(provider.clone(), options());
    let script = r#"opendir(D, $ARGV[0]) or die "opendir: $!";
        my @a = readdir D; rewinddir D; my @b = readdir D; closedir D;
        print join(",", @a), "\n", join(",", @b), "\n";"#;
    let dir = m.path("dir0");
    let out = run(
        "perl",
        &[OsStr::new("-e"), OsStr::new(script), dir.as_os_str()],
    );
    assert_ok(&out, "perl readdir/rewinddir/readdir");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], lines[1], "the rescan listed other entries");
    let mut names: Vec<&str> = lines[0].split(',').collect();
    names.sort();
    assert_eq!(names, [".", "..", "f0.txt", "f1.txt", "f2.txt"]);

    let log = provider.log();
    let sessions = log.starts_of("dir0");
    assert_eq!(sessions.len(), 1, "{log:?}");
    let gets: Vec<_> = log.gets.iter().filter(|g| g.0 == sessions[0]).collect();
    assert!(
        gets.iter().skip(1).any(|g| g.2.restart_scan),
        "no Get with RESTART_SCAN after the rewind: {gets:?}"
    );
    assert!(
        provider.wait(Duration::from_secs(5), |l| l.ends.contains(&sessions[0])),
        "no End after closedir"
    );
}

/// Stopping the instance while a listing waits on a pended Get answers the client,
/// cancels the Get and ends the session exactly once (the client's close after the
/// stop adds no second End).
#[test]
fn stop_ends_open_enumerations_once() {
    if !mount_available() {
        return;
    }
    let provider = Arc::new(EnumRecorder::new(dirs_tree(1), Some("slow")));
    let mut m = Mounted::start(provider.clone(), options());
    let mut child = spawn("ls", &[m.path("slow").as_os_str()]);
    assert!(
        provider.wait(Duration::from_secs(10), |l| !l.pended.is_empty()),
        "ls slow never reached a Get"
    );
    let log = provider.log();
    let (get, session) = (log.pended[0], log.starts_of("slow")[0]);
    let t = Instant::now();
    m.guard.take().expect("the instance runs").stop();
    let status = wait_exit(&mut child, Duration::from_secs(10), "ls during stop");
    assert!(!status.success(), "ls succeeded after stop");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop and ls took {:?}",
        t.elapsed()
    );
    let log = provider.log();
    assert!(log.cancels.contains(&get), "Get not cancelled: {log:?}");
    let ends = log.ends.iter().filter(|id| **id == session).count();
    assert_eq!(ends, 1, "End of the open session: {log:?}");
    assert!(log.balanced(), "{log:?}");
}
