//! Tests of the test providers themselves: what each promises a library test.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prjfs::enumeration::check_order;
use prjfs::{
    Collation, Completion, DirEntryBuffer, EnumerationId, FileKind, Outcome, Provider,
    ProviderError,
};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn tree() -> MemTree {
    MemTree::new()
        .file("b.txt", "bee")
        .file("a.txt", "hello")
        .file("dir/inner", "x")
        .symlink("link", "a.txt")
}

/// One whole listing of `rel`: start, gets until empty, end.
fn list(p: &dyn Provider, rel: &str) -> Vec<OsString> {
    let inst = RecordingInstance::new();
    let cb = inst.callback(1, rel);
    let id = EnumerationId(1);
    assert_eq!(p.start_directory_enumeration(&cb, id), Ok(Outcome::Done));
    let buffer = DirEntryBuffer::new(1 << 16);
    let mut names = Vec::new();
    loop {
        assert_eq!(
            p.get_directory_enumeration(&cb, id, None, &buffer),
            Ok(Outcome::Done)
        );
        let batch = buffer.take_entries();
        if batch.is_empty() {
            break;
        }
        names.extend(batch.into_iter().map(|e| e.name));
    }
    assert_eq!(p.end_directory_enumeration(&cb, id), Ok(Outcome::Done));
    names
}

#[test]
fn mem_tree_builds_parents_and_lists_children() {
    let t = tree();
    assert!(t.is_dir("dir"));
    assert!(t.is_dir(""));
    assert_eq!(t.get("dir/inner").unwrap().content, b"x");
    assert_eq!(t.get("link").unwrap().basic.kind, FileKind::Symlink);
    assert!(t.children("a.txt").is_none());
    let p = MemProvider::new(t);
    assert_eq!(list(&p, ""), ["a.txt", "b.txt", "dir", "link"]);
    assert_eq!(list(&p, "dir"), ["inner"]);
    assert_eq!(p.open_sessions(), 0);
    p.update(|t| t.remove("dir"));
    assert_eq!(list(&p, ""), ["a.txt", "b.txt", "link"]);
}

#[test]
fn mem_provider_writes_placeholders_and_ranges() {
    let p = MemProvider::with_collation(tree(), Collation::CaseInsensitive);
    let inst = RecordingInstance::new();
    p.get_placeholder_info(&inst.callback(1, "link")).unwrap();
    let (path, info) = inst.placeholders().remove(0);
    assert_eq!(path, Path::new("link"));
    assert_eq!(info.symlink_target.as_deref(), Some("a.txt".as_ref()));
    assert_eq!(info.version.provider_id, MEM_PROVIDER_ID);
    assert_eq!(
        p.get_placeholder_info(&inst.callback(2, "nope")),
        Err(ProviderError::NotFound)
    );
    p.get_file_data(&inst.callback(3, "a.txt"), 1, 100).unwrap();
    assert_eq!(inst.writes(3), vec![(1, b"ello".to_vec())]);
}

#[test]
fn recording_instance_ignores_cancelled_and_repeated_completions() {
    let inst = RecordingInstance::new();
    let h = inst.handle();
    assert_eq!(h.complete_command(1, Ok(()), None), Completion::Completed);
    assert_eq!(h.complete_command(1, Ok(()), None), Completion::Ignored);
    inst.cancel(2);
    assert_eq!(h.complete_command(2, Ok(()), None), Completion::Ignored);
    assert!(h.write_file_data(2, 0, b"x").is_err());
    assert_eq!(inst.completions().len(), 1);
    assert_eq!(inst.ignored_completions(), vec![1, 2]);
}

#[test]
fn never_completes_pends_records_cancels_and_late_completion_is_a_no_op() {
    let p = NeverCompletes::new(tree());
    let inst = RecordingInstance::new();
    let data = inst.callback(1, "a.txt");
    let info = inst.callback(2, "b.txt");
    assert_eq!(p.get_file_data(&data, 0, 5), Ok(Outcome::Pending));
    assert_eq!(p.get_placeholder_info(&info), Ok(Outcome::Pending));
    assert!(p.wait_for_pended(2, WAIT));
    assert!(inst.completions().is_empty());

    // The library cancels command 1; the provider records it.
    inst.cancel(1);
    p.cancel_command(&data);
    assert!(p.wait_for_cancels(1, WAIT));
    assert_eq!(p.cancelled(), vec![1]);
    // Completing it later does nothing.
    assert_eq!(p.complete(1), Some(Completion::Ignored));
    assert!(inst.writes(1).is_empty());
    // The other still completes, once.
    assert_eq!(p.complete(2), Some(Completion::Completed));
    assert_eq!(p.complete(2), Some(Completion::Ignored));
    // (`complete` redoes the work each time; only the instance decides.)
    assert_eq!(inst.completions().len(), 1);
    assert_eq!(inst.completions()[0].id, 2);
    assert_eq!(p.complete(99), None);
    let ids: Vec<_> = p.pended().iter().map(|c| c.id()).collect();
    assert_eq!(ids, vec![1, 2]);
    // Enumeration is answered inline.
    assert_eq!(list(&p, ""), ["a.txt", "b.txt", "dir", "link"]);
}

#[test]
fn never_completes_can_answer_placeholders_inline() {
    let p = NeverCompletes::new(tree()).pend_placeholder_info(false);
    let inst = RecordingInstance::new();
    assert_eq!(
        p.get_placeholder_info(&inst.callback(1, "a.txt")),
        Ok(Outcome::Done)
    );
    assert_eq!(
        p.get_file_data(&inst.callback(2, "a.txt"), 0, 5),
        Ok(Outcome::Pending)
    );
    let p = p.pend_file_data(false);
    assert_eq!(
        p.get_file_data(&inst.callback(3, "a.txt"), 0, 5),
        Ok(Outcome::Done)
    );
}

#[test]
fn slow_sync_holds_the_calling_thread() {
    let delay = Duration::from_millis(50);
    let p = Arc::new(SlowSync::over_tree(tree(), delay));
    let inst = RecordingInstance::new();
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (p, cb) = (Arc::clone(&p), inst.callback(i, "a.txt"));
            std::thread::spawn(move || p.get_placeholder_info(&cb))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Ok(Outcome::Done));
    }
    assert!(start.elapsed() >= delay);
    assert_eq!(p.max_active(), 4);
    assert_eq!(p.active(), 0);
    // Cancel is not delayed.
    let start = Instant::now();
    p.cancel_command(&inst.callback(9, "a.txt"));
    assert!(start.elapsed() < delay);
}

#[test]
fn misbehaving_listings_offer_invalid_names_the_buffer_refuses() {
    for kind in [
        Misbehavior::NameWithSlash,
        Misbehavior::DotDotName,
        Misbehavior::NameWithNul,
        Misbehavior::EmptyName,
        Misbehavior::LongName,
    ] {
        assert!(kind.bad_name().is_some());
        let p = Misbehaving::new(tree(), kind);
        assert_eq!(p.kind(), kind);
        assert_eq!(list(&p, ""), ["a.txt", "b.txt", "dir", "link"], "{kind:?}");
        assert_eq!(p.refused_entries(), 1, "{kind:?}");
    }
    assert_eq!(Misbehavior::LongName.bad_name().unwrap().len(), 256);
}

#[test]
fn misbehaving_out_of_order_listing_fails_the_order_check() {
    let p = Misbehaving::new(tree(), Misbehavior::OutOfOrder);
    let names = list(&p, "");
    assert_eq!(names, ["link", "dir", "b.txt", "a.txt"]);
    let entries = MemTree::new().children("").unwrap();
    assert!(check_order(None, &entries, Collation::CaseSensitive).is_ok());
    let mut reversed = tree().children("").unwrap();
    reversed.reverse();
    assert!(check_order(None, &reversed, Collation::CaseSensitive).is_err());
}

#[test]
fn misbehaving_placeholders() {
    let inst = RecordingInstance::new();
    let wrong = Misbehaving::new(tree(), Misbehavior::WrongPlaceholderName);
    assert_eq!(
        wrong.get_placeholder_info(&inst.callback(1, "dir/inner")),
        Ok(Outcome::Done)
    );
    assert_eq!(inst.placeholders()[0].0, Path::new("dir/inner.wrong"));

    let inst = RecordingInstance::new();
    let none = Misbehaving::new(tree(), Misbehavior::NoPlaceholder);
    assert_eq!(
        none.get_placeholder_info(&inst.callback(1, "a.txt")),
        Ok(Outcome::Done)
    );
    assert!(inst.placeholders().is_empty());
    // Listings of placeholder kinds are correct.
    assert_eq!(list(&none, ""), ["a.txt", "b.txt", "dir", "link"]);
}

#[test]
fn panicking_panics_only_where_asked() {
    let p = Panicking::new(tree(), PanicIn::FileData).only_path("a.txt");
    let inst = RecordingInstance::new();
    assert_eq!(
        p.get_file_data(&inst.callback(1, "b.txt"), 0, 3),
        Ok(Outcome::Done)
    );
    let cb = inst.callback(2, "a.txt");
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.get_file_data(&cb, 0, 5)));
    let message = caught.expect_err("should panic");
    let message = message
        .downcast_ref::<String>()
        .expect("panic message is a String");
    assert!(message.starts_with("prjfs test provider"), "{message}");
    assert_eq!(p.panics(), 1);
    assert_eq!(list(&p, ""), ["a.txt", "b.txt", "dir", "link"]);

    let every = Panicking::new(tree(), PanicIn::StartEnumeration);
    let cb = inst.callback(3, "");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        every.start_directory_enumeration(&cb, EnumerationId(1))
    }));
    assert!(caught.is_err());
    assert_eq!(every.panics(), 1);
}

#[test]
fn fault_specs_parse_and_refuse_nonsense() {
    let spec: FaultSpec = "seed=7, fail=0.01,panic=0.002,slow=0.05:200,stall=/cold/:3000"
        .parse()
        .unwrap();
    assert_eq!(spec.seed, 7);
    assert_eq!(spec.fail, 0.01);
    assert_eq!(spec.panic, 0.002);
    assert_eq!(spec.slow, (0.05, Duration::from_millis(200)));
    assert_eq!(
        spec.stall,
        Some((Path::new("cold").to_path_buf(), Duration::from_secs(3)))
    );
    assert_eq!("".parse::<FaultSpec>().unwrap(), FaultSpec::default());
    for bad in [
        "fail=2",
        "fail=x",
        "panic=-0.1",
        "slow=0.5",
        "slow=0.5:x",
        "stall=:10",
        "stall=/:10",
        "what=1",
        "fail",
        "fail=0.6,panic=0.6",
    ] {
        assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
    }
}

fn flaky(spec: &str) -> (Flaky, Arc<FaultPlan>) {
    let plan = Arc::new(FaultPlan::new(spec.parse().unwrap()));
    let inner: Arc<dyn Provider> = Arc::new(MemProvider::new(tree()));
    (Flaky::new(inner, plan.clone()), plan)
}

#[test]
fn flaky_fails_and_panics_before_the_inner_provider() {
    let inst = RecordingInstance::new();
    let (always_fails, plan) = flaky("fail=1");
    assert!(matches!(
        always_fails.get_placeholder_info(&inst.callback(1, "a.txt")),
        Err(ProviderError::Unavailable(_))
    ));
    assert!(
        inst.placeholders().is_empty(),
        "the inner provider was not called"
    );
    // End always reaches the inner provider, then fails.
    assert!(always_fails
        .end_directory_enumeration(&inst.callback(2, ""), EnumerationId(1))
        .is_err());
    assert_eq!(plan.counts().failed, 2);

    let (always_panics, plan) = flaky("panic=1");
    let cb = inst.callback(3, "a.txt");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        always_panics.get_file_data(&cb, 0, 5)
    }));
    assert!(caught.is_err());
    assert_eq!(plan.counts().panicked, 1);
    // Cancel never faults.
    always_panics.cancel_command(&cb);

    let (never, plan) = flaky("seed=3");
    assert_eq!(list(&never, ""), ["a.txt", "b.txt", "dir", "link"]);
    assert_eq!(plan.counts(), FaultCounts::default());
}

#[test]
fn flaky_fault_rates_follow_the_spec() {
    let inst = RecordingInstance::new();
    let (p, plan) = flaky("seed=11,fail=0.2,panic=0.05");
    let mut fails = 0;
    for i in 0..2000 {
        let cb = inst.callback(i, "a.txt");
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.get_placeholder_info(&cb)));
        if matches!(r, Ok(Err(_))) {
            fails += 1;
        }
    }
    let c = plan.counts();
    assert_eq!(c.failed, fails);
    assert!((300..500).contains(&c.failed), "{c:?}");
    assert!((50..150).contains(&c.panicked), "{c:?}");
}

#[test]
fn flaky_stalls_below_a_directory_until_cancelled() {
    let inst = RecordingInstance::new();
    let (p, plan) = flaky("stall=dir:10000");
    let p = Arc::new(p);
    // Not below the directory: no delay.
    let start = Instant::now();
    assert_eq!(
        p.get_placeholder_info(&inst.callback(1, "dir")),
        Ok(Outcome::Done)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    let cb = inst.callback(2, "dir/inner");
    let stalled = {
        let (p, cb) = (p.clone(), cb.clone());
        std::thread::spawn(move || p.get_file_data(&cb, 0, 1))
    };
    // Cancel once the callback sleeps in its delay.
    let deadline = Instant::now() + WAIT;
    while plan.counts().stalled == 0 {
        assert!(Instant::now() < deadline, "the callback never stalled");
        std::thread::yield_now();
    }
    let start = Instant::now();
    loop {
        p.cancel_command(&cb);
        if stalled.is_finished() {
            break;
        }
        assert!(start.elapsed() < WAIT, "the stall was not cancelled");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(stalled.join().unwrap(), Err(ProviderError::Cancelled));
    assert_eq!(plan.counts().delays_cancelled, 1);
    assert!(inst.writes(2).is_empty(), "nothing was hydrated");
}

#[test]
fn flaky_async_fails_pended_commands_and_drops_cancelled_stalls() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("slow")).unwrap();
    std::fs::write(src.path().join("a.txt"), "hello").unwrap();
    std::fs::write(src.path().join("slow/b"), "bee").unwrap();
    let dir = crate::dir::DirProvider::new(src.path(), Default::default()).unwrap();
    let plan = Arc::new(FaultPlan::new("fail=1,stall=slow:10000".parse().unwrap()));
    let p = prjfs::AsyncAdapter::new(FlakyAsync::new(dir.clone(), plan.clone())).unwrap();
    let inst = RecordingInstance::new();
    assert_eq!(
        p.get_placeholder_info(&inst.callback(1, "a.txt")),
        Ok(Outcome::Pending)
    );
    assert!(inst.wait_for_completions(1, WAIT));
    assert!(matches!(
        inst.completions()[0].result,
        Err(ProviderError::Unavailable(_))
    ));
    assert!(inst.placeholders().is_empty());
    assert_eq!(dir.stats().placeholder_info, 0, "failed before the store");

    let cb = inst.callback(2, "slow/b");
    assert_eq!(p.get_file_data(&cb, 0, 3), Ok(Outcome::Pending));
    let deadline = Instant::now() + WAIT;
    while plan.counts().stalled == 0 {
        assert!(Instant::now() < deadline, "the command never stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    inst.cancel(2);
    p.cancel_command(&cb);
    while plan.counts().delays_cancelled == 0 {
        assert!(Instant::now() < deadline, "the stall was not dropped");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(dir.stats().file_data, 0);
    assert_eq!(
        inst.completions().len(),
        1,
        "the cancelled command completes nothing"
    );
}
