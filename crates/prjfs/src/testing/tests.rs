//! Tests of the test kit: the driver over providers built on [`Enumerations`],
//! inline and pended, well-behaved and not.

use std::ffi::OsStr;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::enumeration::Enumerations;
use crate::{
    CallbackData, CallbackResult, Collation, DirEntry, DirEntryBuffer, EnumerationId,
    FileBasicInfo, Outcome, Provider, ProviderError,
};

fn entry(name: &str) -> DirEntry {
    DirEntry {
        name: name.into(),
        basic: FileBasicInfo::file(1),
        symlink_target: None,
        version: None,
    }
}

/// Lists `names` for every path, through [`Enumerations`]; pends Gets when
/// asked, completing them from another thread (with `None`, or with a buffer
/// of its own when `foreign`).
struct Fixed {
    names: Vec<&'static str>,
    enumerations: Enumerations,
    pend: bool,
    foreign: bool,
    /// Raw entries to hand out instead of using the session (misbehaviour).
    raw: Option<Vec<DirEntry>>,
    never: bool,
    cancelled: Mutex<Vec<u64>>,
}

impl Fixed {
    fn new(names: &[&'static str]) -> Self {
        Self {
            names: names.to_vec(),
            enumerations: Enumerations::new(),
            pend: false,
            foreign: false,
            raw: None,
            never: false,
            cancelled: Mutex::default(),
        }
    }
}

impl Provider for Fixed {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let entries = self.names.iter().map(|n| entry(n)).collect();
        self.enumerations.start(cb, id, entries)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        if let Some(raw) = &self.raw {
            // Every Get hands out the same entries: the driver must stop at
            // the first batch it refuses.
            for e in raw {
                let _ = buffer.add(e.clone());
            }
            return Ok(Outcome::Done);
        }
        if self.never {
            return Ok(Outcome::Pending);
        }
        if !self.pend {
            return self.enumerations.get(cb, id, search, buffer);
        }
        let result = self.enumerations.get(cb, id, search, buffer).map(drop);
        let (cb, foreign) = (cb.clone(), self.foreign);
        std::thread::spawn(move || {
            let extended = foreign.then(|| crate::Extended::Enumeration(DirEntryBuffer::new(8)));
            cb.instance
                .complete_command(cb.command_id, result, extended);
        });
        Ok(Outcome::Pending)
    }

    fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.enumerations.end(id)
    }

    fn get_placeholder_info(&self, _cb: &CallbackData) -> CallbackResult {
        Err(ProviderError::NotFound)
    }

    fn get_file_data(&self, _cb: &CallbackData, _offset: u64, _length: u64) -> CallbackResult {
        Err(ProviderError::NotFound)
    }

    fn cancel_command(&self, cb: &CallbackData) {
        self.cancelled.lock().unwrap().push(cb.command_id);
    }
}

const NAMES: [&str; 6] = ["b.txt", "A.rs", "a.txt", "c.txt", "_x", "B.md"];

#[test]
fn whole_listing_in_collation_order_and_sessions_end() {
    let p = Fixed::new(&NAMES);
    let driver = EnumerationDriver::new(&p);
    let listing = driver.list("any").unwrap();
    assert_eq!(
        listing.names(),
        ["A.rs", "B.md", "_x", "a.txt", "b.txt", "c.txt"]
    );
    assert_eq!(listing.batches, [6, 0]);
    let ci = EnumerationDriver::new(&p).collation(Collation::CaseInsensitive);
    assert_eq!(
        ci.list("").unwrap().names(),
        ["A.rs", "a.txt", "B.md", "b.txt", "c.txt", "_x"]
    );
    assert_eq!(p.enumerations.open_sessions(), 0);
}

#[test]
fn search_expressions_are_captured_at_the_first_get_and_at_restart() {
    let p = Fixed::new(&NAMES);
    let driver = EnumerationDriver::new(&p);
    assert_eq!(
        driver.list_matching("", "*.txt").unwrap().names(),
        ["a.txt", "b.txt", "c.txt"]
    );
    assert_eq!(driver.list_matching("", "?.*").unwrap().names().len(), 5);
    let mut s = driver.start("").unwrap();
    assert_eq!(
        names(&s.get(GetRequest::matching("b*")).unwrap()),
        ["b.txt"]
    );
    // Later patterns are ignored without a restart.
    assert!(s.get(GetRequest::matching("*")).unwrap().is_empty());
    let again = s.get(GetRequest::matching("A*").restart()).unwrap();
    assert_eq!(names(&again), ["A.rs"]);
    s.end().unwrap();
}

#[test]
fn buffer_full_resumes_at_the_next_get_and_single_entry_gives_one() {
    let p = Fixed::new(&NAMES);
    let one = DirEntryBuffer::entry_size(&entry("a.txt"));
    let driver = EnumerationDriver::new(&p).buffer_size(2 * one);
    let listing = driver.list("").unwrap();
    assert_eq!(listing.entries.len(), 6);
    assert_eq!(listing.batches, [2, 2, 2, 0]);
    let mut s = driver.start("").unwrap();
    let first = s.get(GetRequest::next().single()).unwrap();
    assert_eq!(names(&first), ["A.rs"]);
    assert_eq!(s.rest(None).unwrap().entries.len(), 5);
}

#[test]
fn insufficient_buffer_is_reported_by_get_and_retried_by_rest() {
    let p = Fixed::new(&NAMES);
    let driver = EnumerationDriver::new(&p).buffer_size(8);
    let mut s = driver.start("").unwrap();
    let err = s.get(GetRequest::next()).unwrap_err();
    assert!(matches!(
        err,
        EnumerationError::Provider {
            error: ProviderError::InsufficientBuffer,
            ..
        }
    ));
    drop(s);
    let listing = driver.list("").unwrap();
    assert_eq!(listing.entries.len(), 6);
    // 8, 16, 32 and 64 bytes hold no entry of 72; 128 holds one.
    assert_eq!(listing.batches[..5], [0, 0, 0, 0, 1]);
}

#[test]
fn pended_gets_are_awaited_and_may_complete_without_the_buffer() {
    let mut p = Fixed::new(&NAMES);
    p.pend = true;
    let driver = EnumerationDriver::new(&p);
    assert_eq!(driver.list("").unwrap().entries.len(), 6);
    p.foreign = true;
    let driver = EnumerationDriver::new(&p);
    assert!(matches!(
        driver.list("").unwrap_err(),
        EnumerationError::ForeignBuffer(_)
    ));
}

#[test]
fn misbehaviour_is_reported_as_the_library_would() {
    let mut p = Fixed::new(&[]);
    p.raw = Some(vec![entry("b"), entry("a")]);
    let err = EnumerationDriver::new(&p).list("").unwrap_err();
    assert!(matches!(err, EnumerationError::OutOfOrder(_)), "{err}");
    assert_eq!(err.errno(), libc::EIO);
    p.raw = Some(vec![entry("a"), entry("x/y")]);
    let err = EnumerationDriver::new(&p).list("").unwrap_err();
    assert!(matches!(err, EnumerationError::InvalidName(_)), "{err}");
}

#[test]
fn a_never_completed_get_times_out_and_is_cancelled() {
    let mut p = Fixed::new(&NAMES);
    p.never = true;
    let driver = EnumerationDriver::new(&p).timeout(Duration::from_millis(50));
    let err = driver.list("").unwrap_err();
    let EnumerationError::Timeout(id) = err else {
        panic!("{err}")
    };
    assert_eq!(*p.cancelled.lock().unwrap(), [id]);
    assert_eq!(err.errno(), libc::EINTR);
    assert_eq!(
        p.enumerations.open_sessions(),
        0,
        "End follows a cancelled Get"
    );
}

#[test]
fn builder_defaults_follow_the_command_id() {
    let instance = RecordingInstance::new();
    let cb = instance.builder().command_id(9).path("x").build();
    assert_eq!((cb.file_id, cb.data_stream_id), (9, 9));
    let cb = instance
        .builder()
        .command_id(9)
        .data_stream_id(3)
        .file_id(4)
        .build();
    assert_eq!((cb.file_id, cb.data_stream_id), (4, 3));
    assert_eq!(cb.collation, Collation::CaseSensitive);
}

#[test]
fn the_recording_instance_records_provider_driven_changes_in_order() {
    use crate::types::{PlaceholderInfo, UpdateFlags, VersionInfo};
    use std::path::{Path, PathBuf};
    let rec = RecordingInstance::new();
    let handle = rec.handle();
    let info = PlaceholderInfo {
        basic: FileBasicInfo::file(3),
        version: VersionInfo::default(),
        symlink_target: None,
    };
    handle
        .update_file_if_needed(Path::new("a"), &info, UpdateFlags::ALLOW_TOMBSTONE)
        .unwrap();
    handle
        .delete_file(Path::new("b"), UpdateFlags::NONE)
        .unwrap();
    handle
        .mark_directory_as_placeholder(Path::new("d"), &VersionInfo::default())
        .unwrap();
    assert!(handle.placed_children(Path::new("d")).unwrap().is_empty());
    assert_eq!(
        rec.changes(),
        vec![
            RecordedChange::Update {
                path: PathBuf::from("a"),
                info,
                flags: UpdateFlags::ALLOW_TOMBSTONE
            },
            RecordedChange::Delete {
                path: PathBuf::from("b"),
                flags: UpdateFlags::NONE
            },
            RecordedChange::MarkDirectory {
                path: PathBuf::from("d"),
                version: VersionInfo::default()
            },
        ]
    );
}
