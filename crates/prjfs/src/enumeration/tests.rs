//! Tests of the entry buffer, provider-side sessions and the merge.
use super::*;
use crate::types::FileBasicInfo;

fn entry(name: &str) -> DirEntry {
    DirEntry {
        name: name.into(),
        basic: FileBasicInfo::file(0),
        symlink_target: None,
        version: None,
    }
}

fn names(entries: &[DirEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

/// Cost of an entry with a short (at most 8 bytes) name and no target.
const SMALL: usize = 72;
const FLAGS: CallbackFlags = CallbackFlags {
    restart_scan: false,
    return_single_entry: false,
};
const RESTART: CallbackFlags = CallbackFlags {
    restart_scan: true,
    return_single_entry: false,
};

fn session(list: &[&str]) -> EnumerationSession {
    EnumerationSession::new(
        list.iter().map(|n| entry(n)).collect(),
        Collation::CaseInsensitive,
    )
}

/// One get with a fresh buffer of `capacity`; the names added and the result.
fn get(
    s: &mut EnumerationSession,
    expr: Option<&str>,
    flags: CallbackFlags,
    capacity: usize,
) -> (CallbackResult, Vec<String>) {
    let buffer = DirEntryBuffer::new(capacity);
    let result = s.fill(expr.map(OsStr::new), flags, &buffer);
    (result, names(&buffer.take_entries()))
}

#[test]
fn entry_size_is_header_name_target_rounded_to_8() {
    assert_eq!(DirEntryBuffer::entry_size(&entry("a")), 72);
    assert_eq!(DirEntryBuffer::entry_size(&entry("abcdefgh")), 72);
    assert_eq!(DirEntryBuffer::entry_size(&entry("abcdefghi")), 80);
    let mut link = entry("l");
    link.symlink_target = Some("target/of/link".into()); // 14 bytes
    assert_eq!(DirEntryBuffer::entry_size(&link), 80); // 64 + 1 + 14 = 79
}

#[test]
fn add_respects_capacity_and_adds_nothing_on_full() {
    let buffer = DirEntryBuffer::new(2 * SMALL);
    assert!(buffer.is_empty());
    assert_eq!(buffer.capacity(), 2 * SMALL);
    buffer.add(entry("a")).expect("first entry should fit");
    buffer
        .add(entry("b"))
        .expect("second entry should fit exactly");
    assert_eq!(buffer.used_bytes(), 2 * SMALL);
    assert_eq!(buffer.add(entry("c")), Err(AddEntryError::Full));
    assert_eq!(buffer.len(), 2);
    assert_eq!(buffer.used_bytes(), 2 * SMALL);
    assert_eq!(names(&buffer.take_entries()), ["a", "b"]);
    // Draining frees the capacity again.
    assert!(buffer.is_empty());
    assert_eq!(buffer.used_bytes(), 0);
    buffer
        .add(entry("c"))
        .expect("drained buffer should take entries");
    assert_eq!(buffer.len(), 1);
}

#[test]
fn add_rejects_invalid_names_before_checking_capacity() {
    let empty = DirEntryBuffer::new(0);
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        match empty.add(entry(bad)) {
            Err(AddEntryError::InvalidName(msg)) => assert!(!msg.is_empty()),
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
    assert_eq!(empty.add(entry("ok")), Err(AddEntryError::Full));
    let roomy = DirEntryBuffer::new(4096);
    assert!(matches!(
        roomy.add(entry(&"x".repeat(256))),
        Err(AddEntryError::InvalidName(_))
    ));
    assert!(roomy.is_empty());
    assert_eq!(roomy.used_bytes(), 0);
}

#[test]
fn add_takes_versions_up_to_the_placeholder_limit() {
    let buffer = DirEntryBuffer::new(4096);
    let with = |provider: usize, content: usize| DirEntry {
        version: Some(Box::new(crate::types::VersionInfo {
            provider_id: vec![1; provider],
            content_id: vec![2; content],
        })),
        ..entry("f")
    };
    let max = crate::types::VERSION_ID_MAX;
    buffer.add(with(max, max)).expect("ids of the largest size");
    for (p, c) in [(max + 1, 1), (1, max + 1)] {
        match buffer.add(with(p, c)) {
            Err(AddEntryError::InvalidVersion(msg)) => assert!(msg.contains("128")),
            other => panic!("ids of {p} and {c} bytes: expected InvalidVersion, got {other:?}"),
        }
    }
    assert_eq!(buffer.len(), 1, "nothing added on error");
    assert!(
        buffer.take_rejected().is_some(),
        "the library sees the refusal"
    );
}

#[test]
fn clones_share_one_buffer() {
    let buffer = DirEntryBuffer::new(10 * SMALL);
    let clone = buffer.clone();
    assert!(buffer.same_buffer(&clone));
    assert!(!buffer.same_buffer(&DirEntryBuffer::new(10 * SMALL)));
    let handle = std::thread::spawn(move || clone.add(entry("from-thread")));
    handle
        .join()
        .expect("thread should not panic")
        .expect("entry should fit");
    assert_eq!(buffer.len(), 1);
    let debug = format!("{buffer:?}");
    assert!(
        debug.contains("capacity: 720") && debug.contains("len: 1"),
        "{debug}"
    );
}

#[test]
fn concurrent_adds_never_exceed_capacity() {
    let buffer = DirEntryBuffer::new(10 * SMALL);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let b = buffer.clone();
            std::thread::spawn(move || {
                (0..10)
                    .filter(|i| b.add(entry(&format!("t{t}-{i}"))).is_ok())
                    .count()
            })
        })
        .collect();
    let added: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(added, 10);
    assert_eq!(buffer.len(), 10);
    assert_eq!(buffer.used_bytes(), 10 * SMALL);
}

#[test]
fn session_sorts_by_collation_and_drops_exact_duplicates() {
    let list = ["c", "B", "_x", "a", "c"];
    let mut ci = session(&list);
    assert_eq!(get(&mut ci, None, FLAGS, 4096).1, ["a", "B", "c", "_x"]);
    let mut cs = EnumerationSession::new(
        list.iter().map(|n| entry(n)).collect(),
        Collation::CaseSensitive,
    );
    assert_eq!(get(&mut cs, None, FLAGS, 4096).1, ["B", "_x", "a", "c"]);
    // Same name, other metadata: not an exact duplicate, both kept.
    let mut big = entry("c");
    big.basic.size = 7;
    let mut s = EnumerationSession::new(
        vec![entry("c"), big.clone(), entry("c")],
        Collation::CaseInsensitive,
    );
    let buffer = DirEntryBuffer::new(4096);
    s.fill(None, FLAGS, &buffer).unwrap();
    assert_eq!(buffer.take_entries(), vec![entry("c"), big]);
}

#[test]
fn entry_that_does_not_fit_is_kept_for_next_call() {
    let mut s = session(&["a", "b", "c", "d", "e"]);
    assert!(!s.is_finished(), "not finished before the first get");
    assert_eq!(
        get(&mut s, None, FLAGS, 2 * SMALL),
        (Ok(Outcome::Done), names_of(&["a", "b"]))
    );
    assert!(!s.is_finished());
    assert_eq!(get(&mut s, None, FLAGS, 2 * SMALL).1, ["c", "d"]);
    assert_eq!(get(&mut s, None, FLAGS, 2 * SMALL).1, ["e"]);
    assert!(s.is_finished());
    // Ok with nothing added: the end, and it stays the end.
    assert_eq!(
        get(&mut s, None, FLAGS, 2 * SMALL),
        (Ok(Outcome::Done), vec![])
    );
    assert_eq!(
        get(&mut s, None, FLAGS, 2 * SMALL),
        (Ok(Outcome::Done), vec![])
    );
}

fn names_of(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn insufficient_buffer_only_when_nothing_fits() {
    let long = "l".repeat(100); // costs 168 bytes
    let mut s = session(&["a", &long, "z"]);
    // "a" fits, the long name does not: Ok, and the long name waits.
    assert_eq!(
        get(&mut s, None, FLAGS, 2 * SMALL),
        (Ok(Outcome::Done), names_of(&["a"]))
    );
    // Now nothing fits at all.
    assert_eq!(
        get(&mut s, None, FLAGS, 2 * SMALL),
        (Err(ProviderError::InsufficientBuffer), vec![])
    );
    assert!(!s.is_finished());
    // The entry was not lost: a bigger buffer gets it next.
    assert_eq!(get(&mut s, None, FLAGS, 168).1, [long.as_str()]);
    assert_eq!(get(&mut s, None, FLAGS, 168).1, ["z"]);
    assert_eq!(get(&mut s, None, FLAGS, 168), (Ok(Outcome::Done), vec![]));
}

#[test]
fn buffer_already_partly_filled_counts_only_this_call() {
    let mut s = session(&["b", "c"]);
    let buffer = DirEntryBuffer::new(2 * SMALL);
    buffer.add(entry("x")).unwrap();
    assert_eq!(s.fill(None, FLAGS, &buffer), Ok(Outcome::Done));
    assert_eq!(names(&buffer.take_entries()), ["x", "b"]);
    buffer.add(entry("x")).unwrap();
    buffer.add(entry("y")).unwrap();
    assert_eq!(
        s.fill(None, FLAGS, &buffer),
        Err(ProviderError::InsufficientBuffer)
    );
}

#[test]
fn nothing_matching_is_ok_with_an_empty_buffer() {
    let mut s = session(&["a.txt", "b.rs"]);
    assert_eq!(
        get(&mut s, Some("*.zip"), FLAGS, 4096),
        (Ok(Outcome::Done), vec![])
    );
    assert!(s.is_finished());
    let mut empty = session(&[]);
    assert_eq!(
        get(&mut empty, None, FLAGS, 4096),
        (Ok(Outcome::Done), vec![])
    );
    assert!(empty.is_finished());
}

#[test]
fn first_call_captures_expression_and_later_calls_ignore_it() {
    let mut s = session(&["a.txt", "b.rs", "c.txt", "d.TXT", "e.rs"]);
    // The first call captures "*.txt" even without RESTART_SCAN.
    assert_eq!(get(&mut s, Some("*.txt"), FLAGS, SMALL).1, ["a.txt"]);
    // Later expressions are ignored: still "*.txt", also with None.
    assert_eq!(get(&mut s, Some("*.rs"), FLAGS, SMALL).1, ["c.txt"]);
    assert_eq!(get(&mut s, None, FLAGS, SMALL).1, ["d.TXT"]);
    assert!(s.is_finished(), "no .txt entry left");
    assert_eq!(get(&mut s, Some("*"), FLAGS, SMALL).1, Vec::<String>::new());
}

#[test]
fn restart_scan_rewinds_and_recaptures() {
    let mut s = session(&["a.txt", "b.rs", "c.txt", "e.rs"]);
    assert_eq!(
        get(&mut s, Some("*.txt"), FLAGS, 4096).1,
        ["a.txt", "c.txt"]
    );
    assert!(s.is_finished());
    // Like rewinddir: back to the start, with the new expression.
    assert_eq!(get(&mut s, Some("*.rs"), RESTART, SMALL).1, ["b.rs"]);
    assert_eq!(get(&mut s, Some("*.txt"), FLAGS, SMALL).1, ["e.rs"]);
    assert_eq!(get(&mut s, None, FLAGS, SMALL).1, Vec::<String>::new());
    // A restart with no expression matches everything again.
    assert_eq!(
        get(&mut s, None, RESTART, 4096).1,
        ["a.txt", "b.rs", "c.txt", "e.rs"]
    );
    // A restart in the middle of a listing starts over.
    assert_eq!(get(&mut s, None, RESTART, SMALL).1, ["a.txt"]);
    assert_eq!(get(&mut s, None, RESTART, SMALL).1, ["a.txt"]);
    assert_eq!(get(&mut s, None, FLAGS, SMALL).1, ["b.rs"]);
}

#[test]
fn return_single_entry_is_honoured_as_a_hint() {
    let single = CallbackFlags {
        restart_scan: false,
        return_single_entry: true,
    };
    let mut s = session(&["a", "b", "c"]);
    assert_eq!(
        get(&mut s, None, single, 4096),
        (Ok(Outcome::Done), names_of(&["a"]))
    );
    // Without the hint the rest comes at once.
    assert_eq!(get(&mut s, None, FLAGS, 4096).1, ["b", "c"]);
    assert!(s.is_finished());
    // With a restart too: one entry, from the start.
    let both = CallbackFlags {
        restart_scan: true,
        return_single_entry: true,
    };
    assert_eq!(get(&mut s, None, both, 4096).1, ["a"]);
    // The hint never turns "nothing fits" into success.
    assert_eq!(
        get(&mut s, None, single, 8).0,
        Err(ProviderError::InsufficientBuffer)
    );
}

#[test]
fn invalid_entry_name_fails_the_get() {
    let mut s = session(&["a/b", "ok"]);
    let (result, added) = get(&mut s, None, FLAGS, 4096);
    match result {
        Err(ProviderError::InvalidName(msg)) => assert!(msg.contains("a/b"), "{msg}"),
        other => panic!("expected InvalidName, got {other:?}"),
    }
    assert!(added.is_empty());
    // The bad entry stays at the cursor: the error repeats.
    assert!(matches!(
        get(&mut s, None, FLAGS, 4096).0,
        Err(ProviderError::InvalidName(_))
    ));
    // Filtered out by the expression, it does no harm.
    assert_eq!(
        get(&mut s, Some("ok"), RESTART, 4096),
        (Ok(Outcome::Done), names_of(&["ok"]))
    );
}

#[test]
fn session_collation_governs_the_filter() {
    let list = vec![entry("A.TXT"), entry("b.txt")];
    let mut ci = EnumerationSession::new(list.clone(), Collation::CaseInsensitive);
    assert_eq!(
        get(&mut ci, Some("*.txt"), FLAGS, 4096).1,
        ["A.TXT", "b.txt"]
    );
    let mut cs = EnumerationSession::new(list, Collation::CaseSensitive);
    assert_eq!(get(&mut cs, Some("*.txt"), FLAGS, 4096).1, ["b.txt"]);
}

#[test]
fn pended_get_fills_the_same_buffer_from_another_thread() {
    let buffer = DirEntryBuffer::new(4096);
    let mut s = session(&["x", "y"]);
    let handle = buffer.clone();
    let worker = std::thread::spawn(move || s.fill(None, FLAGS, &handle));
    assert_eq!(worker.join().unwrap(), Ok(Outcome::Done));
    assert_eq!(names(&buffer.take_entries()), ["x", "y"]);
}

type L = u32;

fn local(name: &str, v: L) -> (OsString, LocalItem<L>) {
    (name.into(), LocalItem::Present(v))
}

fn tomb(name: &str) -> (OsString, LocalItem<L>) {
    (name.into(), LocalItem::Tombstone)
}

/// The merged listing as strings: `name=L<v>` for local, `name` for projected.
fn show(merged: &[Merged<L>]) -> Vec<String> {
    merged
        .iter()
        .map(|m| match m {
            Merged::Local(n, v) => format!("{}=L{v}", n.to_string_lossy()),
            Merged::Projected(e) => e.name.to_string_lossy().into_owned(),
        })
        .collect()
}

fn projected(list: &[&str]) -> Vec<DirEntry> {
    list.iter().map(|n| entry(n)).collect()
}

#[test]
fn merge_interleaves_in_order() {
    let merged = merge_listing(
        vec![local("a", 1), local("c", 2), local("e", 3)],
        projected(&["b", "d", "f"]),
        Collation::CaseSensitive,
    );
    assert_eq!(show(&merged), ["a=L1", "b", "c=L2", "d", "e=L3", "f"]);
    assert_eq!(merged[1], Merged::Projected(entry("b")));
    let none: Vec<Merged<L>> = merge_listing(vec![], vec![], Collation::CaseSensitive);
    assert!(none.is_empty());
}

#[test]
fn merge_local_item_wins_a_clash() {
    let merged = merge_listing(
        vec![local("b", 9)],
        projected(&["a", "b", "c"]),
        Collation::CaseSensitive,
    );
    assert_eq!(show(&merged), ["a", "b=L9", "c"]);
}

#[test]
fn merge_tombstone_hides_projected_name_and_is_not_emitted() {
    let merged = merge_listing(
        vec![tomb("b"), tomb("zz"), local("d", 4)],
        projected(&["a", "b", "c"]),
        Collation::CaseSensitive,
    );
    assert_eq!(show(&merged), ["a", "c", "d=L4"]);
}

#[test]
fn merge_follows_the_collation() {
    // "Old" < "README" < "_x" under both collations.
    let local_items = || vec![tomb("Old"), local("README", 1), local("_x", 2)];
    let proj = || projected(&["b", "old", "readme"]);
    // Case-insensitive: names equal ignoring case clash; `_` after letters.
    let ci = merge_listing(local_items(), proj(), Collation::CaseInsensitive);
    assert_eq!(show(&ci), ["b", "README=L1", "_x=L2"]);
    // Byte order: upper case first, no clash between spellings.
    let cs = merge_listing(local_items(), proj(), Collation::CaseSensitive);
    assert_eq!(show(&cs), ["README=L1", "_x=L2", "b", "old", "readme"]);
}

#[test]
fn merge_of_unsorted_input_does_not_panic() {
    // Out of order: "a" shows twice, as ProjFS warns.
    let merged = merge_listing(
        vec![local("b", 1), local("a", 2)],
        projected(&["a"]),
        Collation::CaseSensitive,
    );
    assert_eq!(show(&merged), ["a", "b=L1", "a=L2"]);
}

#[test]
fn check_order_accepts_strictly_increasing_batches() {
    let ci = Collation::CaseInsensitive;
    let cs = Collation::CaseSensitive;
    assert_eq!(check_order(None, &[], ci), Ok(()));
    assert_eq!(check_order(None, &projected(&["a", "B", "c"]), ci), Ok(()));
    assert_eq!(
        check_order(Some(OsStr::new("a")), &projected(&["b"]), cs),
        Ok(())
    );
    assert_eq!(check_order(None, &projected(&["abc", "a_b"]), ci), Ok(()));
    assert_eq!(check_order(None, &projected(&["a_b", "abc"]), cs), Ok(()));
    assert_eq!(check_order(None, &projected(&["A", "a"]), cs), Ok(()));
}

#[test]
fn check_order_names_the_offending_pair() {
    let ci = Collation::CaseInsensitive;
    let cs = Collation::CaseSensitive;
    let err = check_order(None, &projected(&["a", "c", "b"]), cs).unwrap_err();
    assert!(err.contains("\"c\"") && err.contains("\"b\""), "{err}");
    // Equal names are not strictly increasing.
    let err = check_order(None, &projected(&["A", "a"]), ci).unwrap_err();
    assert!(err.contains("\"A\"") && err.contains("\"a\""), "{err}");
    assert!(check_order(None, &projected(&["x", "x"]), cs).is_err());
    // The collations disagree about `_`.
    assert!(check_order(None, &projected(&["a_b", "abc"]), ci).is_err());
    assert!(check_order(None, &projected(&["abc", "a_b"]), cs).is_err());
    // The previous batch's last name counts.
    let err = check_order(Some(OsStr::new("m")), &projected(&["a"]), cs).unwrap_err();
    assert!(err.contains("\"m\"") && err.contains("\"a\""), "{err}");
    assert!(check_order(Some(OsStr::new("a")), &projected(&["a"]), cs).is_err());
}

#[test]
fn session_output_passes_check_order() {
    for collation in [Collation::CaseInsensitive, Collation::CaseSensitive] {
        let list = ["Zeta", "alpha", "_u", "Beta", "beta2", "éclair", "Alpha2"];
        let mut s = EnumerationSession::new(list.iter().map(|n| entry(n)).collect(), collation);
        let mut previous: Option<OsString> = None;
        let mut total = 0;
        loop {
            let buffer = DirEntryBuffer::new(2 * SMALL);
            s.fill(None, FLAGS, &buffer).unwrap();
            let batch = buffer.take_entries();
            if batch.is_empty() {
                break;
            }
            check_order(previous.as_deref(), &batch, collation).unwrap();
            previous = batch.last().map(|e| e.name.clone());
            total += batch.len();
        }
        assert_eq!(total, list.len());
    }
}
