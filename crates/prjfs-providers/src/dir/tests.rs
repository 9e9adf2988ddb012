//! Tests of the directory provider against a temporary source tree, a recording
//! instance and the enumeration driver of `prjfs::testing` (no mount).

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prjfs::testing::{names, EnumerationDriver, EnumerationError, GetRequest};
use prjfs::{
    Collation, DirEntry, DirEntryBuffer, EnumerationId, FileKind, Outcome, Provider, ProviderError,
};

use super::store::{self, CHUNK_SIZE, PROVIDER_ID};
use super::{DirMode, DirOptions, DirProvider};
use crate::testing::RecordingInstance;

const WAIT: Duration = Duration::from_secs(10);

/// A source tree: `a.txt` (0o640, old times), `dir/` (0o750) with `dir/inner`,
/// `link -> a.txt`, `dirlink -> dir`, `Big`, `_under`.
fn source() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir should be creatable");
    let root = tmp.path();
    fs::write(root.join("a.txt"), b"hello").unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    let times = FileTimes::new()
        .set_accessed(SystemTime::UNIX_EPOCH + Duration::new(1_000_000, 5))
        .set_modified(SystemTime::UNIX_EPOCH + Duration::new(2_000_000, 7));
    File::options()
        .write(true)
        .open(root.join("a.txt"))
        .unwrap()
        .set_times(times)
        .unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::set_permissions(root.join("dir"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(root.join("dir/inner"), b"x").unwrap();
    symlink("a.txt", root.join("link")).unwrap();
    symlink("dir", root.join("dirlink")).unwrap();
    fs::write(root.join("Big"), b"B").unwrap();
    fs::write(root.join("_under"), b"").unwrap();
    tmp
}

fn sync_dir(path: &Path) -> DirProvider {
    DirProvider::new(path, DirOptions::default()).unwrap()
}

fn placeholder_of(dir: &DirProvider, rel: &str) -> prjfs::PlaceholderInfo {
    let inst = RecordingInstance::new();
    let cb = inst.callback(1, rel);
    assert_eq!(
        Provider::get_placeholder_info(dir, &cb),
        Ok(Outcome::Done),
        "{rel}"
    );
    let written = inst.placeholders();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].0, Path::new(rel));
    written[0].1.clone()
}

fn assert_matches_metadata(info: &prjfs::PlaceholderInfo, path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    assert_eq!(info.basic.mode, meta.mode() & 0o7777, "{path:?}");
    assert_eq!(info.basic.mtime, meta.modified().unwrap(), "{path:?}");
    // Reading a symlink's target updates its atime, after the provider's stat.
    if info.basic.kind != FileKind::Symlink {
        assert_eq!(info.basic.atime, meta.accessed().unwrap(), "{path:?}");
    }
    assert_eq!(info.basic.owner, Some((meta.uid(), meta.gid())));
    assert_eq!(info.version.provider_id, PROVIDER_ID);
    let mtime_nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    assert_eq!(
        info.version.content_id,
        store::content_id(meta.ino(), meta.len(), mtime_nanos)
    );
}

#[test]
fn content_ids_are_short_varints() {
    // Inode 300, 4096 bytes, mtime 1 ns after the epoch; then negative.
    assert_eq!(
        store::content_id(300, 4096, 1),
        [0xac, 0x02, 0x80, 0x20, 0x02]
    );
    assert_eq!(store::content_id(0, 0, -1), [0, 0, 1]);
    // A typical file of today: at most 5 + 5 + 9 bytes.
    let now = 1_764_500_000_123_456_789i128;
    assert!(store::content_id(u64::from(u32::MAX), u64::from(u32::MAX), now).len() <= 19);
    // Any of the three changes the id.
    let base = store::content_id(7, 8, now);
    for other in [
        store::content_id(8, 8, now),
        store::content_id(7, 9, now),
        store::content_id(7, 8, now + 1),
    ] {
        assert_ne!(base, other);
    }
}

#[test]
fn placeholder_info_matches_std_metadata() {
    let src = source();
    let dir = sync_dir(src.path());

    let file = placeholder_of(&dir, "a.txt");
    assert_eq!(file.basic.kind, FileKind::File);
    assert_eq!(file.basic.size, 5);
    assert_eq!(file.basic.mode, 0o640);
    assert_eq!(
        file.basic.mtime,
        SystemTime::UNIX_EPOCH + Duration::new(2_000_000, 7)
    );
    assert_eq!(file.symlink_target, None);
    assert_matches_metadata(&file, &src.path().join("a.txt"));

    let d = placeholder_of(&dir, "dir");
    assert_eq!(d.basic.kind, FileKind::Directory);
    assert_eq!(d.basic.mode, 0o750);
    assert_matches_metadata(&d, &src.path().join("dir"));

    let inner = placeholder_of(&dir, "dir/inner");
    assert_eq!(inner.basic.size, 1);

    let link = placeholder_of(&dir, "link");
    assert_eq!(link.basic.kind, FileKind::Symlink);
    assert_eq!(link.basic.size, 5);
    assert_eq!(link.symlink_target.as_deref(), Some("a.txt".as_ref()));
    assert_matches_metadata(&link, &src.path().join("link"));

    assert_ne!(file.version, d.version);
    assert_eq!(dir.stats().placeholder_info, 4);
}

#[test]
fn content_id_changes_with_the_file() {
    let src = source();
    let dir = sync_dir(src.path());
    let before = placeholder_of(&dir, "a.txt");
    fs::write(src.path().join("a.txt"), b"hello, world").unwrap();
    let after = placeholder_of(&dir, "a.txt");
    assert_ne!(before.version.content_id, after.version.content_id);
    assert_eq!(before.version.provider_id, after.version.provider_id);
}

#[test]
fn symlinks_are_never_followed_and_paths_stay_below_the_root() {
    let src = source();
    let dir = sync_dir(src.path());
    let inst = RecordingInstance::new();
    let missing = |rel: &str| Provider::get_placeholder_info(&dir, &inst.callback(1, rel));
    // Through a symlink to a directory, or below a file.
    assert_eq!(missing("dirlink/inner"), Err(ProviderError::NotFound));
    assert_eq!(missing("a.txt/x"), Err(ProviderError::NotFound));
    assert_eq!(missing("nope"), Err(ProviderError::NotFound));
    assert!(matches!(
        missing("../etc"),
        Err(ProviderError::InvalidName(_))
    ));
    assert!(matches!(
        missing("dir/../../x"),
        Err(ProviderError::InvalidName(_))
    ));
    assert!(matches!(
        missing("/etc/passwd"),
        Err(ProviderError::InvalidName(_))
    ));
    assert!(inst.placeholders().is_empty());
    // Data of a symlink is not read through it.
    let cb = inst.callback(2, "link");
    assert_eq!(
        Provider::get_file_data(&dir, &cb, 0, 5),
        Err(ProviderError::NotFound)
    );
    assert!(inst.writes(2).is_empty());
}

/// The one-call open that `resolve` and `read_file` try first answers as the
/// walk does: the same item for a file, a directory and a symlink, a root
/// reached through a symlink (the fast open refuses it, the walk does not),
/// and a FIFO that took a file's place refused without blocking the reader.
#[test]
fn fast_open_answers_as_the_walk() {
    let src = source();
    let cs = Collation::CaseSensitive;
    for rel in ["a.txt", "dir", "dir/inner", "link", "dirlink"] {
        let r = store::resolve(src.path(), Path::new(rel), cs).expect(rel);
        let want = fs::symlink_metadata(src.path().join(rel)).unwrap();
        assert_eq!(r.source, src.path().join(rel), "{rel}");
        assert_eq!(r.name, Path::new(rel).file_name().unwrap(), "{rel}");
        assert_eq!(
            (r.metadata.ino(), r.metadata.mode(), r.metadata.len()),
            (want.ino(), want.mode(), want.len()),
            "{rel}"
        );
    }
    let outer = tempfile::tempdir().unwrap();
    let via_link = outer.path().join("src");
    symlink(src.path(), &via_link).unwrap();
    let dir = sync_dir(&via_link);
    let inst = RecordingInstance::new();
    assert_eq!(placeholder_of(&dir, "dir/inner").basic.size, 1);
    let cb = inst.callback(1, "a.txt");
    assert_eq!(
        Provider::get_file_data(&dir, &cb, 0, 5),
        Ok(prjfs::Outcome::Done)
    );
    assert_eq!(inst.stream_bytes(1), b"hello");
    fs::remove_file(src.path().join("Big")).unwrap();
    let fifo = std::ffi::CString::new(src.path().join("Big").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let cb = inst.callback(2, "Big");
    assert_eq!(
        Provider::get_file_data(&sync_dir(src.path()), &cb, 0, 1),
        Err(ProviderError::NotFound)
    );
}

/// The names a client listing `rel` sees, with a buffer of `capacity` bytes, and
/// the number of Gets it took.
fn list(dir: &dyn Provider, rel: &str, capacity: usize) -> (Vec<String>, usize) {
    let listing = EnumerationDriver::new(dir)
        .buffer_size(capacity)
        .list(rel)
        .expect("the listing should succeed");
    (listing.names(), listing.batches.len())
}

#[test]
fn enumeration_is_sorted_by_the_collation() {
    let src = source();
    let sensitive = sync_dir(src.path());
    let (names, _) = list(&sensitive, "", 1 << 16);
    assert_eq!(names, ["Big", "_under", "a.txt", "dir", "dirlink", "link"]);

    let insensitive = DirProvider::new(
        src.path(),
        DirOptions {
            collation: Collation::CaseInsensitive,
            ..Default::default()
        },
    )
    .unwrap();
    let listing = EnumerationDriver::new(&insensitive)
        .collation(Collation::CaseInsensitive)
        .list("")
        .unwrap();
    // Upper-cased ordinal order: `_` (0x5F) sorts after the letters.
    assert_eq!(
        listing.names(),
        ["a.txt", "Big", "dir", "dirlink", "link", "_under"]
    );

    // A small buffer takes several gets, same result.
    let (small, gets) = list(&sensitive, "", 100);
    assert_eq!(small.len(), 6);
    assert!(gets > 2, "{gets} gets");
    assert_eq!(sensitive.open_sessions(), 0);
}

#[test]
fn enumeration_entries_carry_metadata_and_targets() {
    let src = source();
    let entries = store::list_dir(src.path(), Path::new(""), Collation::CaseSensitive).unwrap();
    let by_name = |n: &str| -> &DirEntry { entries.iter().find(|e| e.name == n).unwrap() };
    assert_eq!(
        by_name("link").symlink_target.as_deref(),
        Some("a.txt".as_ref())
    );
    assert_eq!(by_name("dirlink").basic.kind, FileKind::Symlink);
    assert_eq!(by_name("dir").basic.kind, FileKind::Directory);
    assert_eq!(by_name("a.txt").basic.size, 5);
    let info = placeholder_of(&sync_dir(src.path()), "a.txt");
    assert_eq!(by_name("a.txt").basic, info.basic);
}

#[test]
fn enumeration_restart_and_search_expression() {
    let src = source();
    let dir = sync_dir(src.path());
    let driver = EnumerationDriver::new(&dir);
    let mut session = driver.start("").unwrap();
    let first = session.get(GetRequest::matching("*.txt")).unwrap();
    assert_eq!(names(&first), ["a.txt"]);
    // The expression was captured: later ones are ignored, the session is over.
    assert!(session.get(GetRequest::matching("*")).unwrap().is_empty());
    // Restart with a new expression.
    let again = session.get(GetRequest::matching("d*").restart()).unwrap();
    assert_eq!(names(&again), ["dir", "dirlink"]);
    session.end().unwrap();
    assert_eq!(dir.open_sessions(), 0);
    let s = dir.stats();
    assert_eq!((s.start_enum, s.get_enum, s.end_enum), (1, 3, 1));
}

#[test]
fn search_expressions_as_a_client_sees_them() {
    let src = source();
    let dir = sync_dir(src.path());
    let driver = EnumerationDriver::new(&dir);
    let matching = |pattern: &str| driver.list_matching("", pattern).unwrap().names();
    assert_eq!(
        matching("*"),
        ["Big", "_under", "a.txt", "dir", "dirlink", "link"]
    );
    assert_eq!(matching("di*"), ["dir", "dirlink"]);
    assert_eq!(matching("???"), ["Big", "dir"]);
    assert_eq!(matching("*link"), ["dirlink", "link"]);
    assert!(matching("nothing*").is_empty());
    // Literal characters compare under the root's collation.
    assert!(matching("BIG").is_empty());
    let insensitive = EnumerationDriver::new(&dir).collation(Collation::CaseInsensitive);
    assert_eq!(
        insensitive.list_matching("", "BIG").unwrap().names(),
        ["Big"]
    );
    assert_eq!(
        insensitive.list_matching("", "*.TXT").unwrap().names(),
        ["a.txt"]
    );
    assert_eq!(driver.list_matching("dir", "*").unwrap().names(), ["inner"]);
    // One entry at a time when asked.
    let mut session = driver.start("").unwrap();
    let one = session.get(GetRequest::matching("d*").single()).unwrap();
    assert_eq!(names(&one), ["dir"]);
    assert_eq!(
        names(&session.get(GetRequest::next().single()).unwrap()),
        ["dirlink"]
    );
    assert!(session.get(GetRequest::next()).unwrap().is_empty());
    drop(session);
    assert_eq!(dir.open_sessions(), 0, "dropping a session ends it");
}

#[test]
fn buffer_full_resume_hands_out_every_entry_once_in_order() {
    let src = tempfile::tempdir().unwrap();
    let mut expected: Vec<String> = (0..3000).map(|i| format!("entry-{i:05}.dat")).collect();
    for name in &expected {
        fs::write(src.path().join(name), b"").unwrap();
    }
    expected.sort();
    let dir = sync_dir(src.path());
    let per_entry = DirEntryBuffer::entry_size(&DirEntry {
        name: expected[0].clone().into(),
        basic: prjfs::FileBasicInfo::file(0),
        symlink_target: None,
        version: None,
    });
    for per_get in [1, 7, 1000] {
        let listing = EnumerationDriver::new(&dir)
            .buffer_size(per_get * per_entry)
            .list("")
            .unwrap();
        assert_eq!(listing.names(), expected, "{per_get} per get");
        let full = listing.batches.iter().filter(|&&n| n == per_get).count();
        assert_eq!(full, 3000 / per_get, "{per_get} per get");
        assert_eq!(listing.batches.last(), Some(&0));
    }
    // With a search expression the resume skips what does not match.
    let listing = EnumerationDriver::new(&dir)
        .buffer_size(3 * per_entry)
        .list_matching("", "entry-????0.dat")
        .unwrap();
    assert_eq!(listing.entries.len(), 300);
    // A buffer too small for one entry: InsufficientBuffer, then the doubled
    // buffer the library would offer.
    let driver = EnumerationDriver::new(&dir);
    let mut session = driver.start("").unwrap();
    let err = session
        .get(GetRequest::next().buffer(per_entry - 8))
        .unwrap_err();
    assert_eq!(
        err,
        EnumerationError::Provider {
            callback: "get_directory_enumeration",
            error: ProviderError::InsufficientBuffer
        }
    );
    assert_eq!(session.rest(None).unwrap().entries.len(), 3000);
    session.end().unwrap();
    assert_eq!(dir.open_sessions(), 0);
}

#[test]
fn async_mode_lists_like_sync_mode_through_the_driver() {
    let src = source();
    let (dir, p) = async_dir(src.path(), Duration::from_millis(2));
    let driver = EnumerationDriver::new(&*p).buffer_size(100);
    assert_eq!(
        driver.list("").unwrap().names(),
        ["Big", "_under", "a.txt", "dir", "dirlink", "link"]
    );
    assert_eq!(
        driver.list_matching("", "*.txt").unwrap().names(),
        ["a.txt"]
    );
    let err = driver.list("missing").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(dir.open_sessions(), 0);
}

#[test]
fn enumeration_of_missing_or_non_directories_fails_at_start() {
    let src = source();
    let dir = sync_dir(src.path());
    let inst = RecordingInstance::new();
    for rel in ["missing", "a.txt", "dirlink"] {
        assert_eq!(
            Provider::start_directory_enumeration(&dir, &inst.callback(1, rel), EnumerationId(1)),
            Err(ProviderError::NotFound),
            "{rel}"
        );
    }
    assert_eq!(dir.open_sessions(), 0);
    let buffer = DirEntryBuffer::new(1024);
    assert!(Provider::get_directory_enumeration(
        &dir,
        &inst.callback(2, ""),
        EnumerationId(99),
        None,
        &buffer
    )
    .is_err());
}

fn big_source(len: usize) -> (tempfile::TempDir, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(tmp.path().join("big"), &content).unwrap();
    (tmp, content)
}

#[test]
fn file_data_covers_the_file_in_chunks() {
    let (src, content) = big_source(3 * CHUNK_SIZE + 123);
    let dir = sync_dir(src.path());
    let inst = RecordingInstance::new();
    let cb = inst.callback(5, "big");
    assert_eq!(
        Provider::get_file_data(&dir, &cb, 0, content.len() as u64),
        Ok(Outcome::Done)
    );
    let writes = inst.writes(5);
    assert_eq!(writes.len(), 4);
    assert!(writes.iter().all(|(_, d)| d.len() <= CHUNK_SIZE));
    assert_eq!(inst.stream_bytes(5), content);

    // A range in the middle, and a length beyond the end.
    let cb = inst.callback(6, "big");
    Provider::get_file_data(&dir, &cb, 10, 20).unwrap();
    assert_eq!(inst.writes(6), vec![(10, content[10..30].to_vec())]);
    let cb = inst.callback(7, "big");
    let tail = content.len() as u64 - 3;
    Provider::get_file_data(&dir, &cb, tail, u64::MAX).unwrap();
    assert_eq!(
        inst.writes(7),
        vec![(tail, content[tail as usize..].to_vec())]
    );
    assert_eq!(dir.stats().file_data, 3);
}

#[test]
fn file_data_stops_when_the_stream_is_gone() {
    let (src, content) = big_source(2 * CHUNK_SIZE);
    let dir = sync_dir(src.path());
    let inst = RecordingInstance::new();
    inst.cancel(3);
    let cb = inst.callback(3, "big");
    assert_eq!(
        Provider::get_file_data(&dir, &cb, 0, content.len() as u64),
        Err(ProviderError::Cancelled)
    );
    assert!(inst.writes(3).is_empty());
}

#[test]
fn case_insensitive_lookup_writes_the_store_spelling() {
    let src = source();
    let options = DirOptions {
        collation: Collation::CaseInsensitive,
        ..Default::default()
    };
    for mode in [DirMode::Sync, DirMode::Async] {
        let provider = DirProvider::open(src.path(), DirOptions { mode, ..options }).unwrap();
        let inst = RecordingInstance::new();
        let outcome = provider.get_placeholder_info(&inst.callback(1, "DIR/INNER"));
        if outcome == Ok(Outcome::Pending) {
            assert!(inst.wait_for_completions(1, WAIT));
        }
        let written = inst.placeholders();
        assert_eq!(written.len(), 1, "{mode:?}");
        assert_eq!(written[0].0, Path::new("DIR/inner"), "{mode:?}");
    }
}

#[test]
fn sync_mode_sleeps_on_the_calling_thread() {
    let src = source();
    let dir = DirProvider::new(
        src.path(),
        DirOptions {
            latency: Duration::from_millis(30),
            ..Default::default()
        },
    )
    .unwrap();
    let inst = RecordingInstance::new();
    let start = Instant::now();
    assert_eq!(
        Provider::get_placeholder_info(&dir, &inst.callback(1, "a.txt")),
        Ok(Outcome::Done)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    // Enumeration gets and ends do not touch the store: no latency.
    let id = EnumerationId(1);
    Provider::start_directory_enumeration(&dir, &inst.callback(2, ""), id).unwrap();
    let start = Instant::now();
    Provider::end_directory_enumeration(&dir, &inst.callback(3, ""), id).unwrap();
    assert!(start.elapsed() < Duration::from_millis(30));
}

fn async_dir(path: &Path, latency: Duration) -> (DirProvider, Arc<dyn Provider>) {
    let dir = DirProvider::new(
        path,
        DirOptions {
            mode: DirMode::Async,
            latency,
            ..Default::default()
        },
    )
    .unwrap();
    let provider = dir.to_provider().unwrap();
    (dir, provider)
}

#[test]
fn async_mode_completes_with_the_right_results() {
    let src = source();
    let (dir, p) = async_dir(src.path(), Duration::from_millis(5));
    let inst = RecordingInstance::new();

    assert_eq!(
        p.get_placeholder_info(&inst.callback(1, "a.txt")),
        Ok(Outcome::Pending)
    );
    assert_eq!(
        p.get_placeholder_info(&inst.callback(2, "nope")),
        Ok(Outcome::Pending)
    );
    assert_eq!(
        p.get_file_data(&inst.callback(3, "a.txt"), 0, 5),
        Ok(Outcome::Pending)
    );
    let id = EnumerationId(4);
    assert_eq!(
        p.start_directory_enumeration(&inst.callback(4, "dir"), id),
        Ok(Outcome::Pending)
    );
    assert!(inst.wait_for_completions(4, WAIT));
    let buffer = DirEntryBuffer::new(4096);
    assert_eq!(
        p.get_directory_enumeration(&inst.callback(5, "dir"), id, None, &buffer),
        Ok(Outcome::Pending)
    );
    assert!(inst.wait_for_completions(5, WAIT));
    assert_eq!(
        p.end_directory_enumeration(&inst.callback(6, "dir"), id),
        Ok(Outcome::Pending)
    );
    assert_eq!(
        p.start_directory_enumeration(&inst.callback(7, "missing"), EnumerationId(8)),
        Ok(Outcome::Pending)
    );
    assert!(inst.wait_for_completions(7, WAIT));

    let mut done = inst.completions();
    done.sort_by_key(|c| c.id);
    let results: Vec<_> = done.iter().map(|c| (c.id, c.result.clone())).collect();
    assert_eq!(
        results,
        vec![
            (1, Ok(())),
            (2, Err(ProviderError::NotFound)),
            (3, Ok(())),
            (4, Ok(())),
            (5, Ok(())),
            (6, Ok(())),
            (7, Err(ProviderError::NotFound)),
        ]
    );
    assert_eq!(inst.placeholders().len(), 1);
    let expected = placeholder_of(&dir, "a.txt");
    let written = &inst.placeholders()[0].1;
    assert_eq!(written.version, expected.version);
    assert_eq!(written.basic.mtime, expected.basic.mtime);
    assert_eq!((written.basic.size, written.basic.mode), (5, 0o640));
    assert_eq!(inst.stream_bytes(3), b"hello");
    // Completed without handing the buffer back: the library reads its own.
    assert!(done[4].extended.is_none());
    let names: Vec<_> = buffer.take_entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["inner"]);
    assert_eq!(dir.open_sessions(), 0);
}

#[test]
fn async_cancel_during_latency_writes_and_completes_nothing() {
    let src = source();
    let (dir, p) = async_dir(src.path(), Duration::from_millis(200));
    let inst = RecordingInstance::new();
    let cb = inst.callback(1, "a.txt");
    assert_eq!(p.get_file_data(&cb, 0, 5), Ok(Outcome::Pending));
    inst.cancel(1);
    p.cancel_command(&cb);
    std::thread::sleep(Duration::from_millis(400));
    assert!(inst.completions().is_empty());
    assert!(
        inst.ignored_completions().is_empty(),
        "no completion was even tried"
    );
    assert!(inst.writes(1).is_empty());
    assert_eq!(dir.stats().cancel, 1);
    // Unknown and repeated cancels are harmless.
    p.cancel_command(&cb);
    p.cancel_command(&inst.callback(42, "x"));
    assert_eq!(dir.stats().cancel, 3);
}

#[test]
fn async_latency_holds_no_thread() {
    // 64 file-data commands with 300 ms latency on a 4-thread runtime. Structure: all
    // 64 callbacks return Pending before any completion. Timing (loose): they finish
    // far sooner than if each held a thread for its latency (64 / 4 × 300 ms).
    let (src, content) = big_source(1000);
    let latency = Duration::from_millis(300);
    let (dir, p) = async_dir(src.path(), latency);
    let inst = RecordingInstance::new();
    let start = Instant::now();
    for id in 0..64 {
        assert_eq!(
            p.get_file_data(&inst.callback(id, "big"), 0, 1000),
            Ok(Outcome::Pending)
        );
    }
    let returned = start.elapsed();
    let completed_early = inst.completions().len();
    assert!(inst.wait_for_completions(64, WAIT));
    let total = start.elapsed();
    if returned < latency {
        assert_eq!(completed_early, 0);
    }
    assert!(total < 64 / 4 * latency, "took {total:?}");
    assert!(inst.completions().iter().all(|c| c.result.is_ok()));
    assert!((0..64).all(|id| inst.stream_bytes(id) == content));
    assert_eq!(dir.stats().file_data, 64);
}

#[test]
fn source_must_be_a_directory() {
    let src = source();
    assert!(DirProvider::new(src.path().join("a.txt"), DirOptions::default()).is_err());
    assert!(DirProvider::new(src.path().join("missing"), DirOptions::default()).is_err());
}

#[test]
fn async_file_data_is_written_in_chunks_through_the_writer() {
    let (src, content) = big_source(3 * CHUNK_SIZE);
    let (_dir, p) = async_dir(src.path(), Duration::ZERO);
    let inst = RecordingInstance::new();
    let cb = inst.callback(1, "big");
    assert_eq!(
        p.get_file_data(&cb, 0, content.len() as u64),
        Ok(Outcome::Pending)
    );
    assert!(inst.wait_for_completions(1, WAIT));
    assert_eq!(inst.completions()[0].result, Ok(()));
    assert_eq!(inst.writes(1).len(), 3);
    assert_eq!(inst.stream_bytes(1), content);
}

/// Wait (up to [`WAIT`]) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn read_ahead_listings_are_used_once_and_only_while_fresh() {
    let src = tempfile::tempdir().unwrap();
    for d in ["p", "q"] {
        fs::create_dir(src.path().join(d)).unwrap();
        fs::write(src.path().join(d).join("one"), b"1").unwrap();
    }
    let dir = DirProvider::new(
        src.path(),
        DirOptions {
            prefetch: true,
            ..Default::default()
        },
    )
    .unwrap();
    let counters = dir.prefetch_counters().expect("read-ahead is on");
    let read = || counters.read.load(std::sync::atomic::Ordering::Relaxed);
    let used = || counters.used.load(std::sync::atomic::Ordering::Relaxed);
    let stale = || counters.stale.load(std::sync::atomic::Ordering::Relaxed);

    // Listing the root reads `p` and `q` ahead.
    assert_eq!(list(&dir, "", 16).0, ["p", "q"]);
    wait_until("both subdirectories read ahead", || read() == 2);

    // `p` unchanged: its listing is the one read ahead.
    assert_eq!(list(&dir, "p", 16).0, ["one"]);
    assert_eq!((used(), stale()), (1, 0));

    // A name added to `q` after it was read ahead: the held listing is
    // stale, and the client's listing has the new name.
    fs::write(src.path().join("q/two"), b"2").unwrap();
    assert_eq!(list(&dir, "q", 16).0, ["one", "two"]);
    assert_eq!((used(), stale()), (1, 1));

    // Used once: listing `p` again reads the source.
    fs::write(src.path().join("p/zz"), b"").unwrap();
    assert_eq!(list(&dir, "p", 16).0, ["one", "zz"]);
    assert_eq!(used(), 1);
}

#[test]
fn read_ahead_is_off_by_default_and_with_latency() {
    let src = source();
    assert!(sync_dir(src.path()).prefetch_counters().is_none());
    let slow = DirProvider::new(
        src.path(),
        DirOptions {
            prefetch: true,
            latency: Duration::from_millis(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(slow.prefetch_counters().is_none());
}
