//! Unit tests of the pieces that need no server: keys, placeholders, kept
//! listings. The provider's mounted tests, against SeaweedFS, are
//! `crates/prjfs-cli/tests/s3_provider.rs`.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, SystemTime};

use prjfs::FileKind;

use super::listing::{key_of, Dir, Entry, Listings};
use super::{placeholder, PROVIDER_ID};

#[test]
fn keys_join_prefix_and_path() {
    assert_eq!(key_of("", Path::new("")).unwrap(), None);
    let k = |p: &str, rel: &str| key_of(p, Path::new(rel)).unwrap().unwrap().to_string();
    assert_eq!(k("", "a b/ü.txt"), "a b/ü.txt");
    assert_eq!(k("data/set", ""), "data/set");
    assert_eq!(k("data/set", "x/y"), "data/set/x/y");
}

#[test]
fn placeholders_carry_the_etag() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let file = placeholder(
        &Entry::File {
            size: 42,
            mtime: t,
            etag: Some("\"abc\"".into()),
        },
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(file.basic.kind, FileKind::File);
    assert_eq!(
        (file.basic.size, file.basic.mode, file.basic.mtime),
        (42, 0o644, t)
    );
    assert_eq!(file.version.provider_id, PROVIDER_ID);
    assert_eq!(file.version.content_id, b"\"abc\"");
    let dir = placeholder(&Entry::Dir, t);
    assert_eq!(
        (dir.basic.kind, dir.basic.mode, dir.basic.mtime),
        (FileKind::Directory, 0o755, t)
    );
    assert!(dir.version.content_id.is_empty());
}

#[test]
fn a_kept_listing_is_replaced_only_by_a_refresh() {
    let listings = Listings::default();
    let one: Dir = [(OsString::from("a"), Entry::Dir)].into();
    let two: Dir = [(OsString::from("b"), Entry::Dir)].into();
    let kept = listings.put(Path::new("d"), one.clone(), false);
    assert_eq!(*kept, one);
    // A second first listing (a race) keeps the first.
    assert_eq!(*listings.put(Path::new("d"), two.clone(), false), one);
    assert_eq!(*listings.put(Path::new("d"), two.clone(), true), two);
    listings.put(Path::new("d/e"), one.clone(), false);
    listings.put(Path::new("de"), one.clone(), false);
    listings.forget_below(Path::new("d"));
    assert!(listings.get(Path::new("d")).is_none());
    assert!(listings.get(Path::new("d/e")).is_none());
    assert!(listings.get(Path::new("de")).is_some());
}

#[test]
fn only_answers_about_the_object_are_final() {
    use super::store::transient;
    use object_store::Error as E;
    let source = || -> Box<dyn std::error::Error + Send + Sync> { "x".into() };
    // Server errors, throttling and dropped connections reach object_store as
    // Generic (its own retries are off): retried.
    assert!(transient(&E::Generic {
        store: "S3",
        source: source()
    }));
    for e in [
        E::NotFound {
            path: "k".into(),
            source: source(),
        },
        E::Precondition {
            path: "k".into(),
            source: source(),
        },
        E::PermissionDenied {
            path: "k".into(),
            source: source(),
        },
    ] {
        assert!(!transient(&e), "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_stops_within_the_bound() {
    use super::store::{Backoff, S3Counters};
    let counters = S3Counters::default();
    let start = tokio::time::Instant::now();
    let mut b = Backoff::new(Duration::from_secs(3));
    let mut waits = 0;
    while b.wait(&counters).await {
        waits += 1;
    }
    // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 > 3: four waits fit.
    assert_eq!(waits, 4);
    assert!(start.elapsed() <= Duration::from_secs(3));
    assert_eq!(counters.snapshot().retries, 4);
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_as_long_as_the_server_asked() {
    use super::store::{Backoff, S3Counters};
    let counters = S3Counters::default();
    let start = tokio::time::Instant::now();
    let mut b = Backoff::new(Duration::from_secs(3));
    // A throttling answer asked for 2 s: the first retry waits that long,
    // not 100 ms.
    counters.note_retry_after(Duration::from_secs(2));
    assert!(b.wait(&counters).await);
    assert!(start.elapsed() >= Duration::from_secs(2));
    // A wait the bound cannot hold ends the operation at once.
    counters.note_retry_after(Duration::from_secs(5));
    let before = tokio::time::Instant::now();
    assert!(!b.wait(&counters).await);
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(counters.snapshot().retries, 1);
}

#[test]
fn retry_after_is_read_in_seconds() {
    use super::store::parse_retry_after;
    assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(parse_retry_after("-1"), None);
}
