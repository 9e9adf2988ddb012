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
