//! Mounted tests of notifications (spec §7): one per kind, with its order and
//! content as the provider receives them; a veto of each vetoable kind;
//! nested mappings with SUPPRESS; the default mask; a new mask set by a reply;
//! pended notifications completed later and cancelled by a killed client; the
//! instance's own I/O raising nothing.
//!
//! The provider runs in this process (whose own I/O never reaches it); every
//! client operation is a real program in a child process (`cat`, `touch`,
//! `sh`, `mv`, `ln`, `rm`, `mkdir`, `rmdir`). Close notifications follow the
//! kernel's RELEASE, which comes after `close` returned: the tests wait for
//! them, and wait for every handle to be released before asserting that
//! something was *not* raised.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prjfs::notifications::{NotificationMapping, ALL_KINDS, SUPPRESS_NOTIFICATIONS};
use prjfs::{
    CallbackData, CallbackResult, CommandId, Completion, DirEntryBuffer, EnumerationId, Extended,
    Notification, NotificationKind, Outcome, Provider, ProviderError, StartOptions,
};
use prjfs_providers::testing::{MemProvider, MemTree};
use prjfs_testkit::{mount_available, InstanceGuard};
use NotificationKind::*;

/// One notification as the provider received it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    kind: NotificationKind,
    path: PathBuf,
    destination: Option<PathBuf>,
    is_directory: bool,
    file_modified: bool,
    pid: u32,
    process: Option<String>,
    command: CommandId,
}

/// What the provider does with a kind.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Veto,
    Pend,
    Mask(u32),
}

/// A [`MemProvider`] that records notifications and answers them as told.
#[derive(Default)]
struct Watcher {
    inner: Option<MemProvider>,
    recs: Mutex<Vec<Rec>>,
    answers: Mutex<HashMap<NotificationKind, Answer>>,
    cancelled: Mutex<HashSet<CommandId>>,
    changed: Condvar,
}

impl Watcher {
    fn new(tree: MemTree) -> Arc<Self> {
        Arc::new(Self {
            inner: Some(MemProvider::new(tree)),
            ..Default::default()
        })
    }

    fn mem(&self) -> &MemProvider {
        self.inner.as_ref().expect("a tree")
    }

    fn answer(&self, kind: NotificationKind, a: Option<Answer>) {
        let mut answers = self.answers.lock().unwrap();
        match a {
            Some(a) => answers.insert(kind, a),
            None => answers.remove(&kind),
        };
    }

    fn recs(&self) -> Vec<Rec> {
        self.recs.lock().unwrap().clone()
    }

    fn kinds(&self) -> Vec<NotificationKind> {
        self.recs().iter().map(|r| r.kind).collect()
    }

    /// Wait until `n` notifications arrived; panics after 10 s.
    fn wait_count(&self, n: usize) -> Vec<Rec> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut recs = self.recs.lock().unwrap();
        while recs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited for {n} notifications, got {recs:#?}"
            );
            recs = self.changed.wait_timeout(recs, left).unwrap().0;
        }
        recs.clone()
    }

    /// Wait until a command of `kind` was cancelled.
    fn wait_cancelled(&self, id: CommandId) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut recs = self.recs.lock().unwrap();
        while !self.cancelled.lock().unwrap().contains(&id) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "command {id} was never cancelled");
            recs = self.changed.wait_timeout(recs, left).unwrap().0;
        }
    }
}

impl Provider for Watcher {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.mem().start_directory_enumeration(cb, id)
    }
    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.mem().get_directory_enumeration(cb, id, search, buffer)
    }
    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.mem().end_directory_enumeration(cb, id)
    }
    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.mem().get_placeholder_info(cb)
    }
    fn get_file_data(&self, cb: &CallbackData, offset: u64, length: u64) -> CallbackResult {
        self.mem().get_file_data(cb, offset, length)
    }

    fn notification(&self, cb: &CallbackData, n: &Notification) -> CallbackResult {
        let answer = self.answers.lock().unwrap().get(&n.kind).copied();
        self.recs.lock().unwrap().push(Rec {
            kind: n.kind,
            path: cb.path.clone(),
            destination: n.destination.clone(),
            is_directory: n.is_directory,
            file_modified: n.file_modified,
            pid: cb.triggering_pid,
            process: cb.triggering_process_name.clone(),
            command: cb.command_id,
        });
        self.changed.notify_all();
        match answer {
            None => Ok(Outcome::Done),
            Some(Answer::Veto) => Err(ProviderError::AccessDenied),
            Some(Answer::Pend) => Ok(Outcome::Pending),
            Some(Answer::Mask(mask)) => {
                n.set_new_mask(mask);
                Ok(Outcome::Done)
            }
        }
    }

    fn cancel_command(&self, cb: &CallbackData) {
        let _recs = self.recs.lock().unwrap();
        self.cancelled.lock().unwrap().insert(cb.command_id);
        self.changed.notify_all();
    }
}

/// An instance of a [`Watcher`] on `TMP/root`.
struct Mounted {
    guard: Option<InstanceGuard>,
    root: PathBuf,
    watcher: Arc<Watcher>,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    fn start(mappings: Option<Vec<NotificationMapping>>) -> Mounted {
        let tree = MemTree::new()
            .file("a.txt", "alpha\n")
            .file("b.txt", "bravo\n")
            .file("d/inner.txt", "inner\n")
            .file("quiet/q.txt", "q\n")
            .file("quiet/loud/l.txt", "l\n");
        let watcher = Watcher::new(tree);
        let tmp = tempfile::tempdir().expect("a temp dir");
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).expect("creating the root");
        let options = StartOptions {
            notification_mappings: mappings,
            ..Default::default()
        };
        let guard = InstanceGuard::start(&root, watcher.clone(), options);
        let root = guard.root().to_path_buf();
        Mounted {
            guard: Some(guard),
            root,
            watcher,
            _tmp: tmp,
        }
    }

    /// Every kind under the whole root.
    fn all() -> Mounted {
        Self::start(Some(vec![NotificationMapping::new(ALL_KINDS, "")]))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn instance(&self) -> &prjfs::VirtualizationInstance {
        self.guard.as_ref().expect("running").instance()
    }

    /// Wait until the kernel released every file handle.
    fn wait_released(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.instance().stats().open_files > 0 {
            assert!(Instant::now() < deadline, "handles still open");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn complete(
        &self,
        id: CommandId,
        r: Result<(), ProviderError>,
        e: Option<Extended>,
    ) -> Completion {
        self.instance().handle().complete_command(id, r, e)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            g.stop();
        }
    }
}

/// Run a client in `dir`; returns its output and pid.
fn client(dir: &Path, program: &str, args: &[&str]) -> (Output, u32) {
    let child = spawn(dir, program, args);
    let pid = child.id();
    (child.wait_with_output().expect("a client's output"), pid)
}

fn spawn(dir: &Path, program: &str, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a client")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn eperm(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what} succeeded despite a veto");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{what}: {err}");
}

/// Assert kind, path, destination and client of each record, in order.
fn expect(recs: &[Rec], want: &[(NotificationKind, &str, Option<&str>, u32, &str)]) {
    let got: Vec<_> = recs
        .iter()
        .map(|r| {
            (
                r.kind,
                r.path.to_string_lossy().into_owned(),
                r.destination
                    .as_ref()
                    .map(|d| d.to_string_lossy().into_owned()),
                r.pid,
                r.process.clone().unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<_> = want
        .iter()
        .map(|(k, p, d, pid, name)| {
            (
                *k,
                p.to_string(),
                d.map(str::to_string),
                *pid,
                name.to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().expect("polling") {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------
// One test per kind

#[test]
fn file_opened_then_closed_without_modification_name_the_opener() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    let (out, pid) = client(&m.root, "cat", &["a.txt"]);
    ok(&out, "cat");
    assert_eq!(out.stdout, b"alpha\n");
    let recs = m.watcher.wait_count(2);
    expect(
        &recs,
        &[
            (FileOpened, "a.txt", None, pid, "cat"),
            (FileHandleClosedNoModification, "a.txt", None, pid, "cat"),
        ],
    );
    assert!(recs.iter().all(|r| !r.is_directory && !r.file_modified));
}

#[test]
fn new_file_created_then_closed_modified_or_not() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    let (out, sh) = client(&m.root, "sh", &["-c", "echo data > new.txt"]);
    ok(&out, "sh");
    m.watcher.wait_count(2);
    let (out, touch) = client(&m.root, "touch", &["empty.txt"]);
    ok(&out, "touch");
    m.watcher.wait_count(4);
    let (out, mkdir) = client(&m.root, "mkdir", &["newdir"]);
    ok(&out, "mkdir");
    let recs = m.watcher.wait_count(5);
    expect(
        &recs,
        &[
            (NewFileCreated, "new.txt", None, sh, "sh"),
            (FileHandleClosedFileModified, "new.txt", None, sh, "sh"),
            (NewFileCreated, "empty.txt", None, touch, "touch"),
            (
                FileHandleClosedNoModification,
                "empty.txt",
                None,
                touch,
                "touch",
            ),
            (NewFileCreated, "newdir", None, mkdir, "mkdir"),
        ],
    );
    assert!(recs[4].is_directory && !recs[0].is_directory);
}

#[test]
fn file_overwritten_after_pre_convert_to_full() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    let (out, sh) = client(&m.root, "sh", &["-c", "echo new > a.txt"]);
    ok(&out, "sh");
    let recs = m.watcher.wait_count(3);
    expect(
        &recs,
        &[
            (FilePreConvertToFull, "a.txt", None, sh, "sh"),
            (FileOverwritten, "a.txt", None, sh, "sh"),
            (FileHandleClosedFileModified, "a.txt", None, sh, "sh"),
        ],
    );
    assert_eq!(std::fs::read(m.path("a.txt")).unwrap(), b"new\n");
}

#[test]
fn pre_convert_to_full_is_sent_once_for_two_handles() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    // Two handles open for appending, each writing: one conversion.
    let script = "exec 3>>a.txt 4>>a.txt; echo one >&3; echo two >&4";
    let (out, sh) = client(&m.root, "sh", &["-c", script]);
    ok(&out, "sh");
    let recs = m.watcher.wait_count(5);
    expect(
        &recs,
        &[
            (FileOpened, "a.txt", None, sh, "sh"),
            (FileOpened, "a.txt", None, sh, "sh"),
            (FilePreConvertToFull, "a.txt", None, sh, "sh"),
            (FileHandleClosedFileModified, "a.txt", None, sh, "sh"),
            (FileHandleClosedFileModified, "a.txt", None, sh, "sh"),
        ],
    );
    m.wait_released();
    assert_eq!(m.watcher.recs().len(), 5);
    assert_eq!(
        std::fs::read(m.path("a.txt")).unwrap(),
        b"alpha\none\ntwo\n"
    );
}

#[test]
fn rename_raises_pre_rename_then_file_renamed_with_the_destination() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    let (out, mv) = client(&m.root, "mv", &["a.txt", "d/moved.txt"]);
    ok(&out, "mv");
    let (out, mv2) = client(&m.root, "mv", &["d", "e"]);
    ok(&out, "mv dir");
    let recs = m.watcher.wait_count(4);
    expect(
        &recs,
        &[
            (PreRename, "a.txt", Some("d/moved.txt"), mv, "mv"),
            (FileRenamed, "a.txt", Some("d/moved.txt"), mv, "mv"),
            (PreRename, "d", Some("e"), mv2, "mv"),
            (FileRenamed, "d", Some("e"), mv2, "mv"),
        ],
    );
    assert!(recs[2].is_directory && recs[3].is_directory && !recs[0].is_directory);
}

#[test]
fn link_raises_pre_set_hardlink_then_hardlink_created() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    // A placeholder is made full before it gets a second name.
    let (out, ln) = client(&m.root, "ln", &["a.txt", "d/link.txt"]);
    ok(&out, "ln");
    let recs = m.watcher.wait_count(3);
    expect(
        &recs,
        &[
            (PreSetHardlink, "a.txt", Some("d/link.txt"), ln, "ln"),
            (FilePreConvertToFull, "a.txt", None, ln, "ln"),
            (HardlinkCreated, "a.txt", Some("d/link.txt"), ln, "ln"),
        ],
    );
}

#[test]
fn delete_raises_pre_delete_then_closed_deleted_at_once_or_at_last_close() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    let (out, rm) = client(&m.root, "rm", &["b.txt"]);
    ok(&out, "rm");
    m.watcher.wait_count(2);
    let (out, _) = client(&m.root, "mkdir", &["newdir"]);
    ok(&out, "mkdir");
    m.watcher.wait_count(3);
    let (out, rmdir2) = client(&m.root, "rmdir", &["newdir"]);
    ok(&out, "rmdir");
    m.watcher.wait_count(5);
    // Deleted while open: the deleted kind waits for the opener's last close,
    // and says the item was written through it.
    let script = "exec 3>>a.txt; echo more >&3; rm a.txt; echo after >&3";
    let (out, sh) = client(&m.root, "sh", &["-c", script]);
    ok(&out, "sh");
    let recs = m.watcher.wait_count(9);
    let rm2 = recs[7].pid;
    assert_ne!(rm2, sh, "rm runs in a process of its own");
    expect(
        &recs,
        &[
            (PreDelete, "b.txt", None, rm, "rm"),
            (FileHandleClosedFileDeleted, "b.txt", None, rm, "rm"),
            (NewFileCreated, "newdir", None, recs[2].pid, "mkdir"),
            (PreDelete, "newdir", None, rmdir2, "rmdir"),
            (FileHandleClosedFileDeleted, "newdir", None, rmdir2, "rmdir"),
            (FileOpened, "a.txt", None, sh, "sh"),
            (FilePreConvertToFull, "a.txt", None, sh, "sh"),
            (PreDelete, "a.txt", None, rm2, "rm"),
            (FileHandleClosedFileDeleted, "a.txt", None, sh, "sh"),
        ],
    );
    assert!(recs[3].is_directory && recs[4].is_directory);
    assert!(!recs[1].file_modified, "b.txt was not written");
    assert!(
        recs[8].file_modified,
        "a.txt was written through its handle"
    );
}

// ---------------------------------------------------------------------------------
// Vetoes

#[test]
fn each_vetoable_kind_is_refused_with_eperm_and_nothing_changes() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    m.watcher.answer(FileOpened, Some(Answer::Veto));
    let (out, _) = client(&m.root, "cat", &["a.txt"]);
    eperm(&out, "cat");
    m.watcher.answer(FileOpened, None);

    m.watcher.answer(PreDelete, Some(Answer::Veto));
    eperm(&client(&m.root, "rm", &["a.txt"]).0, "rm");
    eperm(&client(&m.root, "rmdir", &["quiet/loud"]).0, "rmdir");
    m.watcher.answer(PreRename, Some(Answer::Veto));
    eperm(&client(&m.root, "mv", &["a.txt", "c.txt"]).0, "mv");
    m.watcher.answer(PreSetHardlink, Some(Answer::Veto));
    eperm(&client(&m.root, "ln", &["a.txt", "l.txt"]).0, "ln");
    m.watcher.answer(FilePreConvertToFull, Some(Answer::Veto));
    // perl names the failing call and its errno (dash reports any failed
    // write of `echo` as "I/O error").
    let append =
        "open(F, '>>', 'b.txt') or die \"open: $!\"; syswrite(F, 'x') // die \"write: $!\"";
    let (out, _) = client(&m.root, "perl", &["-e", append]);
    eperm(&out, "append");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("write: "));
    let truncate = "open(F, '>', 'b.txt') or die \"open: $!\"";
    let (out, _) = client(&m.root, "perl", &["-e", truncate]);
    eperm(&out, "open with O_TRUNC");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("open: "));
    let (out, _) = client(&m.root, "truncate", &["-s", "2", "b.txt"]);
    eperm(&out, "truncate");

    // Nothing changed: the names, the content and the placeholder state.
    let (out, _) = client(&m.root, "cat", &["a.txt", "b.txt"]);
    ok(&out, "cat after the vetoes");
    assert_eq!(out.stdout, b"alpha\nbravo\n");
    for gone in ["c.txt", "l.txt"] {
        assert!(!m.path(gone).exists(), "{gone} exists after a veto");
    }
    assert!(m.path("quiet/loud").is_dir());
    let state = m
        .instance()
        .virtualizer()
        .state_of_path(Path::new("b.txt"))
        .unwrap();
    assert!(
        !state.contains(prjfs::OnDiskState::FULL),
        "b.txt became full despite the veto: {state:?}"
    );
    m.wait_released();
    let kinds = m.watcher.kinds();
    for k in [
        FileOpened,
        PreDelete,
        PreRename,
        PreSetHardlink,
        FilePreConvertToFull,
    ] {
        assert!(kinds.contains(&k), "{k:?} never asked: {kinds:?}");
    }
    for k in [
        FileRenamed,
        HardlinkCreated,
        FileHandleClosedFileDeleted,
        FileOverwritten,
    ] {
        assert!(!kinds.contains(&k), "{k:?} after a veto: {kinds:?}");
    }
}

// ---------------------------------------------------------------------------------
// Masks

#[test]
fn nested_mappings_deepest_wins_and_suppress_silences_a_subtree() {
    if !mount_available() {
        return;
    }
    let m = Mounted::start(Some(vec![
        NotificationMapping::new(ALL_KINDS, ""),
        NotificationMapping::new(SUPPRESS_NOTIFICATIONS | ALL_KINDS, "quiet"),
        NotificationMapping::new(PreDelete.bit(), "quiet/loud"),
    ]));
    ok(&client(&m.root, "rm", &["quiet/q.txt"]).0, "rm quiet");
    ok(&client(&m.root, "cat", &["quiet/loud/l.txt"]).0, "cat loud");
    let (out, rm) = client(&m.root, "rm", &["quiet/loud/l.txt"]);
    ok(&out, "rm loud");
    let (out, rm2) = client(&m.root, "rm", &["b.txt"]);
    ok(&out, "rm b.txt");
    m.wait_released();
    let recs = m.watcher.wait_count(3);
    expect(
        &recs,
        &[
            (PreDelete, "quiet/loud/l.txt", None, rm, "rm"),
            (PreDelete, "b.txt", None, rm2, "rm"),
            (FileHandleClosedFileDeleted, "b.txt", None, rm2, "rm"),
        ],
    );
}

#[test]
fn no_mappings_mean_the_default_mask_and_none_mean_no_notification() {
    if !mount_available() {
        return;
    }
    let m = Mounted::start(Some(Vec::new()));
    let (out, cat) = client(&m.root, "cat", &["a.txt"]);
    ok(&out, "cat");
    ok(&client(&m.root, "rm", &["b.txt"]).0, "rm");
    ok(&client(&m.root, "mv", &["d/inner.txt", "d/x.txt"]).0, "mv");
    let (out, touch) = client(&m.root, "touch", &["new.txt"]);
    ok(&out, "touch");
    let (out, sh) = client(&m.root, "sh", &["-c", "echo x > a.txt"]);
    ok(&out, "sh");
    m.wait_released();
    expect(
        &m.watcher.recs(),
        &[
            (FileOpened, "a.txt", None, cat, "cat"),
            (NewFileCreated, "new.txt", None, touch, "touch"),
            (FileOverwritten, "a.txt", None, sh, "sh"),
        ],
    );
    drop(m);

    let m = Mounted::start(None);
    ok(&client(&m.root, "cat", &["a.txt"]).0, "cat");
    ok(&client(&m.root, "rm", &["b.txt"]).0, "rm");
    m.wait_released();
    assert!(m.watcher.recs().is_empty());
    let counts = m.instance().stats().notifications;
    assert_eq!(counts.len(), 12);
    assert!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
}

#[test]
fn a_mask_set_by_a_reply_lasts_until_the_items_handles_close() {
    if !mount_available() {
        return;
    }
    // The mapping asks for opens only; the reply adds the close kinds.
    let m = Mounted::start(Some(vec![NotificationMapping::new(FileOpened.bit(), "")]));
    m.watcher.answer(
        FileOpened,
        Some(Answer::Mask(
            FileOpened.bit() | FileHandleClosedNoModification.bit(),
        )),
    );
    let (out, cat) = client(&m.root, "cat", &["a.txt"]);
    ok(&out, "cat");
    m.watcher.wait_count(2);
    m.wait_released();
    // The item's handles are closed: the mapping's mask is back.
    m.watcher.answer(FileOpened, None);
    let (out, cat2) = client(&m.root, "cat", &["a.txt"]);
    ok(&out, "cat again");
    m.wait_released();
    expect(
        &m.watcher.recs(),
        &[
            (FileOpened, "a.txt", None, cat, "cat"),
            (FileHandleClosedNoModification, "a.txt", None, cat, "cat"),
            (FileOpened, "a.txt", None, cat2, "cat"),
        ],
    );
    let counts: HashMap<_, _> = m.instance().stats().notifications.into_iter().collect();
    assert_eq!(counts[&FileOpened], 2);
    assert_eq!(counts[&FileHandleClosedNoModification], 1);
}

// ---------------------------------------------------------------------------------
// Pended notifications

#[test]
fn pended_notifications_hold_the_client_until_completed() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    m.watcher.answer(PreDelete, Some(Answer::Pend));
    let mut rm = spawn(&m.root, "rm", &["a.txt"]);
    let id = m.watcher.wait_count(1)[0].command;
    // Recorded inside the callback: pending once it returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.instance().stats().commands.pending != 1 {
        assert!(Instant::now() < deadline, "the notification never pended");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        rm.try_wait().unwrap().is_none(),
        "rm did not wait for the provider"
    );
    assert!(m.path("a.txt").exists(), "deleted before the answer");
    assert_eq!(m.complete(id, Ok(()), None), Completion::Completed);
    assert!(wait_exit(&mut rm, "rm").success());
    assert!(!m.path("a.txt").exists());

    // A pended open completed later with a refusal is the client's EPERM; one
    // completed with a mask keeps the mask for the handle.
    m.watcher.answer(FileOpened, Some(Answer::Pend));
    let cat = spawn(&m.root, "cat", &["b.txt"]);
    let id = m.watcher.wait_count(3)[2].command;
    m.complete(id, Err(ProviderError::AccessDenied), None);
    eperm(&cat.wait_with_output().unwrap(), "cat refused later");
    let cat = spawn(&m.root, "cat", &["b.txt"]);
    let id = m.watcher.wait_count(4)[3].command;
    let mask = Extended::NotificationMask(FileOpened.bit());
    assert_eq!(m.complete(id, Ok(()), Some(mask)), Completion::Completed);
    let out = cat.wait_with_output().unwrap();
    ok(&out, "cat completed later");
    assert_eq!(out.stdout, b"bravo\n");
    m.wait_released();
    // The mask the completion set silenced the close.
    assert_eq!(
        m.watcher.kinds(),
        vec![
            PreDelete,
            FileHandleClosedFileDeleted,
            FileOpened,
            FileOpened
        ]
    );
}

#[test]
fn a_killed_client_cancels_its_pended_notification() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    // A read-only open: the kernel's interrupt is answered at once.
    m.watcher.answer(FileOpened, Some(Answer::Pend));
    let mut cat = spawn(&m.root, "cat", &["a.txt"]);
    let id = m.watcher.wait_count(1)[0].command;
    cat.kill().expect("killing our client");
    wait_exit(&mut cat, "killed cat");
    m.watcher.wait_cancelled(id);
    assert_eq!(m.complete(id, Ok(()), None), Completion::Ignored);
    // A rename, whose answer only its worker gives: cancelled too, not done.
    m.watcher.answer(PreRename, Some(Answer::Pend));
    let mut mv = spawn(&m.root, "mv", &["b.txt", "c.txt"]);
    let id = m.watcher.wait_count(2)[1].command;
    mv.kill().expect("killing our client");
    wait_exit(&mut mv, "killed mv");
    m.watcher.wait_cancelled(id);
    assert_eq!(m.complete(id, Ok(()), None), Completion::Ignored);
    assert!(m.path("b.txt").exists() && !m.path("c.txt").exists());
    // The open of a hydrated file, which would be answered with a
    // passthrough backing file: cancelled the same way, and the next open of
    // it works (no backing id or io mode was left behind).
    m.watcher.answer(FileOpened, None);
    let (out, _) = client(&m.root, "cat", &["b.txt"]);
    ok(&out, "cat to hydrate");
    m.watcher.wait_count(4);
    m.watcher.answer(FileOpened, Some(Answer::Pend));
    let mut cat = spawn(&m.root, "cat", &["b.txt"]);
    let id = m.watcher.wait_count(5)[4].command;
    cat.kill().expect("killing our client");
    wait_exit(&mut cat, "killed cat of a hydrated file");
    m.watcher.wait_cancelled(id);
    m.watcher.answer(FileOpened, None);
    let before = m.instance().open_stats().passthrough;
    let (out, _) = client(&m.root, "cat", &["b.txt"]);
    ok(&out, "cat after the cancelled open");
    assert_eq!(out.stdout, b"bravo\n");
    if m.instance().passthrough() {
        // Read-only, hydrated: answered with a backing file.
        assert!(m.instance().open_stats().passthrough > before);
    }
    m.wait_released();
    let stats = m.instance().stats().commands;
    assert_eq!(stats.pending, 0);
    assert!(stats.cancelled >= 3, "{stats:?}");
    // Nothing followed the cancelled ones: no close of a handle never given.
    assert_eq!(
        m.watcher.kinds(),
        vec![
            FileOpened,
            PreRename,
            FileOpened,
            FileHandleClosedNoModification,
            FileOpened,
            FileOpened,
            FileHandleClosedNoModification,
        ]
    );
}

#[test]
fn the_instances_own_io_raises_nothing() {
    if !mount_available() {
        return;
    }
    let m = Mounted::all();
    // Placed by another process first, so that this one sees the file.
    ok(&client(&m.root, "cat", &["a.txt"]).0, "cat");
    m.watcher.wait_count(2);
    std::fs::read(m.path("a.txt")).expect("own read");
    std::fs::write(m.path("own.txt"), b"mine").expect("own create");
    std::fs::rename(m.path("own.txt"), m.path("own2.txt")).expect("own rename");
    std::fs::remove_file(m.path("own2.txt")).expect("own delete");
    m.wait_released();
    assert_eq!(m.watcher.recs().len(), 2, "{:#?}", m.watcher.recs());
}

// ---------------------------------------------------------------------------------
// Without a mount: the virtualizer itself

/// Writes through two handles racing to convert one placeholder: one
/// FilePreConvertToFull, whose answer (completed later) both writes wait for.
/// Served by the virtualizer directly, so that the second write surely
/// arrives while the first one's notification is pending.
#[test]
fn racing_conversions_share_one_pre_convert_to_full() {
    use prjfs::virtualizer::{RequestCtx, Virtualizer, VirtualizerOptions, ROOT_ID};
    use std::sync::mpsc;

    let tmp = tempfile::tempdir().expect("a temp dir");
    let layer = prjfs::layer::Layer::open(tmp.path()).expect("a layer");
    let watcher = Watcher::new(MemTree::new().file("a.txt", "alpha\n").file("b.txt", "b\n"));
    let virt = Virtualizer::new(
        layer,
        watcher.clone(),
        VirtualizerOptions {
            concurrent_threads: 2,
            notification_mappings: Some(vec![NotificationMapping::new(ALL_KINDS, "")]),
            ..Default::default()
        },
    );
    let ctx = RequestCtx::default();
    type Answer64 = Box<dyn FnOnce(Result<u64, i32>) + Send>;
    let call = |f: &dyn Fn(Answer64)| {
        let (tx, rx) = mpsc::channel();
        f(Box::new(move |r| tx.send(r).unwrap()));
        rx
    };
    watcher.answer(FilePreConvertToFull, Some(Answer::Pend));
    for (name, verdict) in [
        ("a.txt", Ok(())),
        ("b.txt", Err(ProviderError::AccessDenied)),
    ] {
        let seen = watcher.recs().len();
        let node = call(&|done| {
            virt.lookup(
                &ctx,
                ROOT_ID,
                OsStr::new(name),
                Box::new(move |r| done(r.map(|(n, _)| n))),
            )
        })
        .recv()
        .unwrap()
        .expect("lookup");
        let flags = libc::O_WRONLY | libc::O_APPEND;
        let open = || {
            call(&|done| virt.open(&ctx, node, flags, Box::new(move |r| done(r.map(|o| o.fh)))))
                .recv()
                .unwrap()
                .expect("open")
        };
        let (fh1, fh2) = (open(), open());
        let write = |fh: u64, data: &'static [u8]| {
            call(&|done| {
                virt.write(
                    &ctx,
                    fh,
                    0,
                    data,
                    false,
                    Box::new(move |r| done(r.map(u64::from))),
                )
            })
        };
        let (w1, w2) = (write(fh1, b"one"), write(fh2, b"two"));
        let recs = watcher.wait_count(seen + 3);
        let kinds: Vec<_> = recs[seen..].iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [FileOpened, FileOpened, FilePreConvertToFull]);
        assert!(
            w1.try_recv().is_err() && w2.try_recv().is_err(),
            "a write did not wait"
        );
        let id = recs[seen + 2].command;
        let want = verdict.clone().map(|()| 3).map_err(|_| libc::EPERM);
        assert_eq!(
            virt.handle().complete_command(id, verdict, None),
            Completion::Completed
        );
        assert_eq!(w1.recv().unwrap(), want);
        assert_eq!(w2.recv().unwrap(), want);
        virt.release(fh1);
        virt.release(fh2);
        let closes = watcher.wait_count(seen + 5);
        assert_eq!(closes.len(), seen + 5, "{closes:#?}");
    }
    let st = virt.state_of_path(Path::new("b.txt")).unwrap();
    assert!(
        !st.contains(prjfs::OnDiskState::FULL),
        "vetoed, yet full: {st:?}"
    );
    let st = virt.state_of_path(Path::new("a.txt")).unwrap();
    assert!(st.contains(prjfs::OnDiskState::FULL), "{st:?}");
    virt.stop();
}
