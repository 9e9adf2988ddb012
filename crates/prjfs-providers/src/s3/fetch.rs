//! Hydration: a file's content by ranged GETs, several in flight, each
//! streamed into the layer as its bytes arrive.
//!
//! Invariants:
//! * Every GET carries `If-Match` with the ETag the placeholder was written
//!   with (its ContentId), when it has one: all the bytes of one hydration
//!   come from that one version of the object. An object overwritten since
//!   fails the hydration (`412`, logged, `EIO`) instead of mixing versions; a
//!   refresh then gives the placeholder the new ETag.
//! * A range that fails part-way is asked again from the first byte not yet
//!   written, after a backoff, until the options' retry bound has passed since
//!   the range began; then the hydration fails with `EIO` and one log line.
//!   The bound counts from the last byte received, and a request or body
//!   that stalls for the whole bound counts as a failure.
//! * Dropping the future (cancellation) drops the responses in flight, which
//!   closes their connections: the server stops sending.

use std::path::Path;
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore};
use prjfs::{FileDataWriter, ProviderError};

use super::store::{transient, Backoff, S3Counters, S3Options};

/// What one hydration needs.
pub struct FetchRequest<'a> {
    /// The path being hydrated (for log lines).
    pub rel: &'a Path,
    /// The object.
    pub key: &'a Key,
    /// The version to read, quotes included (`None`: whatever is there).
    pub etag: Option<&'a str>,
    /// First byte wanted.
    pub offset: u64,
    /// Bytes wanted (to the end of the object at most).
    pub length: u64,
}

/// Write `req`'s range of the object through `writer`, in ranges of
/// `options.chunk_size`, `options.parallel` in flight.
pub async fn fetch(
    store: &dyn ObjectStore,
    options: &S3Options,
    counters: &S3Counters,
    req: &FetchRequest<'_>,
    writer: &FileDataWriter,
) -> Result<(), ProviderError> {
    let end = req.offset.saturating_add(req.length);
    let chunk = options.chunk_size.max(1);
    let ranges = (req.offset..end)
        .step_by(usize::try_from(chunk).unwrap_or(usize::MAX))
        .map(|start| (start, (start + chunk).min(end)));
    futures::stream::iter(ranges)
        .map(|(start, stop)| fetch_range(store, options, counters, req, writer, start, stop))
        .buffer_unordered(options.parallel.max(1))
        .try_collect::<()>()
        .await
}

/// One range, retried from where it stopped.
async fn fetch_range(
    store: &dyn ObjectStore,
    options: &S3Options,
    counters: &S3Counters,
    req: &FetchRequest<'_>,
    writer: &FileDataWriter,
    start: u64,
    stop: u64,
) -> Result<(), ProviderError> {
    let mut backoff = Backoff::new(options.retry_bound);
    let mut at = start;
    loop {
        let before = at;
        let result = read_from(store, counters, req, writer, &mut at, stop, options).await;
        if at > before {
            // Progress: the bound counts from the last byte that arrived.
            backoff = Backoff::new(options.retry_bound);
        }
        let error = match result {
            Ok(()) => return Ok(()),
            Err(Failure::Provider(e)) => return Err(e),
            Err(Failure::Store(e)) => e,
        };
        if transient(&error) && backoff.wait(counters).await {
            continue;
        }
        counters.failures.fetch_add(1, Ordering::Relaxed);
        let why = match &error {
            object_store::Error::Precondition { .. } => format!(
                "the object changed since it was listed (ETag {} no longer matches); \
                 `prjfs refresh` shows the new version",
                req.etag.unwrap_or("?")
            ),
            e if transient(e) => format!("gave up after {:?} of retries: {e}", options.retry_bound),
            e => e.to_string(),
        };
        tracing::error!(
            "s3: {}: reading {} bytes {start}..{stop}: {why}",
            req.rel.display(),
            req.key
        );
        return Err(ProviderError::Io(libc::EIO));
    }
}

enum Failure {
    /// The hydration is gone (cancelled) or the layer failed: no retry.
    Provider(ProviderError),
    /// The request failed.
    Store(object_store::Error),
}

/// GET `[*at, stop)` and write it as it arrives, advancing `*at`.
async fn read_from(
    store: &dyn ObjectStore,
    counters: &S3Counters,
    req: &FetchRequest<'_>,
    writer: &FileDataWriter,
    at: &mut u64,
    stop: u64,
    s3: &S3Options,
) -> Result<(), Failure> {
    let options = GetOptions {
        if_match: req.etag.map(str::to_string),
        range: Some(GetRange::Bounded(*at..stop)),
        ..Default::default()
    };
    let stalled = || object_store::Error::Generic {
        store: "S3",
        source: "no data for the whole retry bound".into(),
    };
    let result = tokio::time::timeout(s3.retry_bound, store.get_opts(req.key, options))
        .await
        .map_err(|_| Failure::Store(stalled()))?
        .map_err(Failure::Store)?;
    let mut body = result.into_stream();
    while *at < stop {
        let next = tokio::time::timeout(s3.retry_bound, body.next())
            .await
            .map_err(|_| Failure::Store(stalled()))?;
        let bytes = match next {
            Some(b) => b.map_err(Failure::Store)?,
            None => {
                return Err(Failure::Store(object_store::Error::Generic {
                    store: "S3",
                    source: format!("the body ended at {} of {stop}", *at).into(),
                }))
            }
        };
        counters
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let n = (bytes.len() as u64).min(stop - *at) as usize;
        writer.write(*at, &bytes[..n]).map_err(Failure::Provider)?;
        *at += n as u64;
    }
    Ok(())
}
