//! Tests of the async adapter with a mock instance: completion, cancellation races,
//! panics, many pending commands.

use super::adapter::{lock, EARLY_CANCELS_KEPT};
use super::*;
use crate::provider::{Completion, InstanceApi};
use crate::provider::{Extended, Outcome, Provider};
use crate::testing::CallbackDataBuilder;
use crate::types::{DirEntry, FileBasicInfo, VersionInfo};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Condvar;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Recorded = (CommandId, Result<(), ProviderError>, Option<Extended>);

/// Records what the adapter does to the instance.
#[derive(Default)]
struct Mock {
    completions: Mutex<Vec<Recorded>>,
    changed: Condvar,
    placeholders: Mutex<Vec<(PathBuf, PlaceholderInfo)>>,
    writes: Mutex<Vec<(u64, u64, Vec<u8>)>>,
}

impl InstanceApi for Mock {
    fn write_placeholder_info(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
    ) -> Result<(), InstanceError> {
        let mut p = self.placeholders.lock().unwrap();
        p.push((path.to_path_buf(), info.clone()));
        Ok(())
    }
    fn write_file_data(&self, stream: u64, off: u64, data: &[u8]) -> Result<(), InstanceError> {
        self.writes
            .lock()
            .unwrap()
            .push((stream, off, data.to_vec()));
        Ok(())
    }
    fn complete_command(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion {
        self.completions
            .lock()
            .unwrap()
            .push((id, result, extended));
        self.changed.notify_all();
        Completion::Completed
    }
    fn clear_negative_path_cache(&self) -> usize {
        0
    }
}

impl Mock {
    fn wait_completions(&self, n: usize) -> Vec<Recorded> {
        let guard = self.completions.lock().unwrap();
        let (guard, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(10), |c| c.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "expected {n} completions, got {}",
            guard.len()
        );
        guard.clone()
    }
    fn count(&self) -> usize {
        self.completions.lock().unwrap().len()
    }
}

/// Sets its flag when dropped: proves a future was dropped.
struct DropGuard(Arc<AtomicUsize>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What `get_file_data` of [`TestProvider`] does.
#[derive(Clone, Copy, PartialEq)]
enum DataMode {
    /// Write 3 bytes and succeed.
    Immediate,
    /// Wait for a permit of the gate, then write and succeed.
    Gate,
    /// Never finish.
    Forever,
    /// Panic.
    Panic,
}

struct TestProvider {
    mode: DataMode,
    gate: Arc<tokio::sync::Semaphore>,
    dropped: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    cancelled: Mutex<Vec<CommandId>>,
}

impl TestProvider {
    fn new(mode: DataMode) -> Self {
        Self {
            mode,
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            dropped: Arc::default(),
            started: Arc::default(),
            cancelled: Mutex::default(),
        }
    }
}

fn entry(name: &str) -> DirEntry {
    DirEntry {
        name: name.into(),
        basic: FileBasicInfo::file(1),
        symlink_target: None,
        version: None,
    }
}

impl AsyncProvider for TestProvider {
    async fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        _id: EnumerationId,
    ) -> Result<(), ProviderError> {
        if cb.path.as_os_str() == "missing" {
            return Err(ProviderError::NotFound);
        }
        Ok(())
    }
    async fn get_directory_enumeration(
        &self,
        _cb: CallbackData,
        _id: EnumerationId,
        search: Option<OsString>,
        buffer: DirEntryBuffer,
    ) -> Result<(), ProviderError> {
        assert_eq!(search.as_deref(), Some(OsStr::new("*.txt")));
        tokio::task::yield_now().await;
        buffer.add(entry("a.txt")).unwrap();
        Ok(())
    }
    async fn end_directory_enumeration(
        &self,
        _cb: CallbackData,
        _id: EnumerationId,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn get_placeholder_info(&self, cb: CallbackData) -> Result<Placeholder, ProviderError> {
        let info = PlaceholderInfo {
            basic: FileBasicInfo::file(3),
            version: VersionInfo::default(),
            symlink_target: None,
        };
        let store_name = (cb.path.as_os_str() == "dir/FOO").then(|| "foo".into());
        Ok(Placeholder { info, store_name })
    }
    async fn get_file_data(
        &self,
        _cb: CallbackData,
        offset: u64,
        _length: u64,
        writer: FileDataWriter,
    ) -> Result<(), ProviderError> {
        let _guard = DropGuard(Arc::clone(&self.dropped));
        self.started.fetch_add(1, Ordering::SeqCst);
        match self.mode {
            DataMode::Immediate => {}
            DataMode::Gate => self.gate.acquire().await.expect("gate open").forget(),
            DataMode::Forever => std::future::pending::<()>().await,
            DataMode::Panic => panic!("deliberate"),
        }
        writer.write(offset, b"abc")
    }
    async fn notification(
        &self,
        cb: CallbackData,
        n: crate::notifications::Notification,
    ) -> Result<u32, ProviderError> {
        match cb.path.to_str() {
            Some("veto") => Err(ProviderError::AccessDenied),
            Some("mask") => Ok(n.kind.bit() | 0x200),
            _ => Ok(0),
        }
    }
    fn command_cancelled(&self, id: CommandId) {
        self.cancelled.lock().unwrap().push(id);
    }
}

fn cb(mock: &Arc<Mock>, id: CommandId, path: &str) -> CallbackData {
    CallbackDataBuilder::new(InstanceHandle::new(Arc::clone(mock) as Arc<dyn InstanceApi>))
        .command_id(id)
        .path(path)
        .file_id(1)
        .data_stream_id(100 + id)
        .build()
}

fn adapter(mode: DataMode) -> AsyncAdapter<TestProvider> {
    AsyncAdapter::with_worker_threads(Arc::new(TestProvider::new(mode)), 2).unwrap()
}

/// Wait until `cond` holds (the adapter's tasks run on other threads).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn file_data_pends_then_completes_after_writing() {
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Immediate);
    assert_eq!(
        a.get_file_data(&cb(&mock, 1, "f"), 7, 3),
        Ok(Outcome::Pending)
    );
    let done = mock.wait_completions(1);
    assert_eq!(done[0].0, 1);
    assert_eq!(done[0].1, Ok(()));
    assert!(done[0].2.is_none());
    assert_eq!(
        *mock.writes.lock().unwrap(),
        vec![(101, 7, b"abc".to_vec())]
    );
    eventually("table empty", || a.in_flight() == 0);
}

#[test]
fn placeholder_is_written_before_completion_with_store_spelling() {
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Immediate);
    assert_eq!(
        a.get_placeholder_info(&cb(&mock, 1, "dir/x")),
        Ok(Outcome::Pending)
    );
    mock.wait_completions(1);
    assert_eq!(
        a.get_placeholder_info(&cb(&mock, 2, "dir/FOO")),
        Ok(Outcome::Pending)
    );
    let done = mock.wait_completions(2);
    assert!(done.iter().all(|c| c.1.is_ok()));
    let paths: Vec<PathBuf> = mock
        .placeholders
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.0.clone())
        .collect();
    assert_eq!(
        paths,
        vec![PathBuf::from("dir/x"), PathBuf::from("dir/foo")]
    );
}

#[test]
fn enumeration_fills_the_given_buffer_and_completes_without_a_copy() {
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Immediate);
    let id = EnumerationId(9);
    assert_eq!(
        a.start_directory_enumeration(&cb(&mock, 1, "missing"), id),
        Ok(Outcome::Pending)
    );
    assert_eq!(mock.wait_completions(1)[0].1, Err(ProviderError::NotFound));

    let buffer = DirEntryBuffer::new(4096);
    let pattern = OsStr::new("*.txt");
    assert_eq!(
        a.get_directory_enumeration(&cb(&mock, 2, "d"), id, Some(pattern), &buffer),
        Ok(Outcome::Pending)
    );
    let done = mock.wait_completions(2);
    assert_eq!(done[1].1, Ok(()));
    // The library reads the buffer it handed out: nothing to hand back.
    assert!(done[1].2.is_none(), "{:?}", done[1].2);
    assert_eq!(buffer.take_entries(), vec![entry("a.txt")]);
    assert_eq!(
        a.end_directory_enumeration(&cb(&mock, 3, "d"), id),
        Ok(Outcome::Pending)
    );
    assert_eq!(mock.wait_completions(3)[2].1, Ok(()));
}

#[test]
fn cancel_drops_the_future_and_nothing_completes() {
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Gate);
    let p = Arc::clone(a.provider());
    let c = cb(&mock, 5, "f");
    assert_eq!(a.get_file_data(&c, 0, 3), Ok(Outcome::Pending));
    eventually("future started", || p.started.load(Ordering::SeqCst) == 1);
    a.cancel_command(&c);
    eventually("future dropped", || p.dropped.load(Ordering::SeqCst) == 1);
    // Opening the gate now would let a surviving future finish; nothing may follow.
    p.gate.add_permits(1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(mock.count(), 0);
    assert!(mock.writes.lock().unwrap().is_empty());
    assert_eq!(a.in_flight(), 0);
    assert_eq!(*p.cancelled.lock().unwrap(), vec![5]);
}

#[test]
fn cancel_of_unknown_or_finished_ids_is_harmless() {
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Immediate);
    a.cancel_command(&cb(&mock, 77, "f"));
    let c = cb(&mock, 1, "f");
    assert_eq!(a.get_file_data(&c, 0, 3), Ok(Outcome::Pending));
    mock.wait_completions(1);
    eventually("table empty", || a.in_flight() == 0);
    a.cancel_command(&c);
    a.cancel_command(&c);
    // Many stale cancels stay bounded.
    for id in 1000..(1000 + 2 * EARLY_CANCELS_KEPT as u64) {
        a.cancel_command(&cb(&mock, id, "f"));
    }
    let table = lock(&a.table);
    assert!(table.early_cancels.len() <= EARLY_CANCELS_KEPT);
    assert_eq!(table.early_cancels.len(), table.early_order.len());
    drop(table);
    assert_eq!(mock.count(), 1);
}

#[test]
fn cancel_racing_the_callback_never_lets_it_complete() {
    let mock = Arc::new(Mock::default());
    let a = Arc::new(adapter(DataMode::Forever));
    let p = Arc::clone(a.provider());
    let mut early = 0;
    for id in 0..500u64 {
        let c = cb(&mock, id, "f");
        let (a2, c2) = (Arc::clone(&a), c.clone());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let b2 = Arc::clone(&barrier);
        let canceller = std::thread::spawn(move || {
            b2.wait();
            a2.cancel_command(&c2);
        });
        barrier.wait();
        match a.get_file_data(&c, 0, 3) {
            Err(ProviderError::Cancelled) => early += 1,
            Ok(Outcome::Pending) => {}
            other => panic!("unexpected {other:?}"),
        }
        canceller.join().unwrap();
    }
    // Every spawned future is dropped; none completes; nothing stays registered.
    let spawned = 500 - early;
    eventually("all spawned futures dropped", || {
        p.dropped.load(Ordering::SeqCst) == p.started.load(Ordering::SeqCst)
    });
    assert!(p.started.load(Ordering::SeqCst) <= spawned);
    assert_eq!(a.in_flight(), 0);
    assert_eq!(mock.count(), 0);
    let table = lock(&a.table);
    // Early marks were consumed by their callback; a mark may remain only for a
    // cancel that arrived after its command was already gone (none here).
    assert!(
        table.early_cancels.is_empty(),
        "{} stale marks",
        table.early_cancels.len()
    );
}

#[test]
fn a_panicking_future_fails_its_command() {
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Panic);
    assert_eq!(
        a.get_file_data(&cb(&mock, 1, "f"), 0, 3),
        Ok(Outcome::Pending)
    );
    let done = mock.wait_completions(1);
    assert!(matches!(done[0].1, Err(ProviderError::Other(_))));
    // The runtime still serves commands.
    assert_eq!(
        a.get_placeholder_info(&cb(&mock, 2, "g")),
        Ok(Outcome::Pending)
    );
    assert_eq!(mock.wait_completions(2)[1].1, Ok(()));
}

#[test]
fn many_commands_pend_at_once_without_holding_threads() {
    // Two worker threads serve 64 commands that all wait: every callback returns
    // Pending before any completes, and all complete once released.
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Gate);
    let p = Arc::clone(a.provider());
    for id in 0..64 {
        assert_eq!(
            a.get_file_data(&cb(&mock, id, "f"), 0, 3),
            Ok(Outcome::Pending)
        );
    }
    eventually("all futures waiting", || {
        p.started.load(Ordering::SeqCst) == 64
    });
    assert_eq!(mock.count(), 0);
    assert_eq!(a.in_flight(), 64);
    p.gate.add_permits(64);
    let done = mock.wait_completions(64);
    assert!(done.iter().all(|c| c.1.is_ok()));
}

#[test]
fn adapter_on_a_borrowed_runtime_and_dropped_inside_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = Arc::new(Mock::default());
    let a = AsyncAdapter::with_handle(
        Arc::new(TestProvider::new(DataMode::Immediate)),
        rt.handle().clone(),
    );
    assert_eq!(
        a.get_file_data(&cb(&mock, 1, "f"), 0, 3),
        Ok(Outcome::Pending)
    );
    mock.wait_completions(1);
    // An owned adapter dropped on a runtime thread must not panic.
    let owned = adapter(DataMode::Forever);
    assert_eq!(
        owned.get_file_data(&cb(&mock, 2, "f"), 0, 3),
        Ok(Outcome::Pending)
    );
    rt.block_on(async move { drop(owned) });
}

#[test]
fn notifications_pend_and_complete_with_the_mask_or_the_veto() {
    use crate::notifications::Notification;
    use crate::provider::NotificationKind;
    let mock = Arc::new(Mock::default());
    let a = adapter(DataMode::Immediate);
    let n = Notification::new(NotificationKind::FileOpened, false);
    for (id, path) in [(1, "plain"), (2, "mask"), (3, "veto")] {
        assert_eq!(
            a.notification(&cb(&mock, id, path), &n),
            Ok(Outcome::Pending)
        );
    }
    let mut done = mock.wait_completions(3);
    done.sort_by_key(|d| d.0);
    assert_eq!((done[0].1.clone(), done[0].2.is_none()), (Ok(()), true));
    assert!(matches!(done[1].2, Some(Extended::NotificationMask(0x202))));
    assert_eq!(done[2].1, Err(ProviderError::AccessDenied));
    eventually("table empty", || a.in_flight() == 0);
}
