//! The object-store provider: projects an S3-compatible bucket, or a prefix of
//! it, through `object_store`; every callback is pended on tokio
//! ([`S3Provider::to_provider`] wraps it in an [`AsyncAdapter`]), so a
//! cancelled command drops its future and with it its HTTP requests.
//!
//! ```no_run
//! use prjfs_providers::s3::{S3Options, S3Provider};
//!
//! let mut options = S3Options::new("datasets", "imagenet/train");
//! options.endpoint = Some("http://127.0.0.1:8333".into());
//! options.allow_http = true;
//! options.path_style = true;
//! let provider = S3Provider::new(options)?.to_provider();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * Prefixes are directories, objects files (mode 0644, directories 0755),
//!   with the object's size and last-modified time from the listing; see
//!   [`listing`] for markers and names that clash.
//! * The view is the listing: a directory is listed once (at its first
//!   listing or the first lookup in it) and kept; lookups are answered from
//!   it. New, changed and deleted objects show after [`S3Provider::refresh`]
//!   (`prjfs refresh`, `--watch-interval`).
//! * VersionInfo: provider id `s3`, ContentId = the ETag (quotes included).
//!   Hydration reads that version only ([`fetch`]).
//! * Local changes stay local: nothing is ever written to the store. The
//!   store is reached only through [`ObjectStore`] reads (list, ranged get),
//!   so write-back can be added as another user of the same client.
//! * A failed request is retried with backoff within
//!   [`S3Options::retry_bound`]; then the callback fails with `EIO` and one
//!   log line naming the path and the key.

pub mod fetch;
pub mod listing;
pub mod refresh;
pub mod store;

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use object_store::ObjectStore;
use prjfs::{
    AsyncAdapter, AsyncProvider, CallbackData, DirEntry, DirEntryBuffer, EnumerationId,
    Enumerations, FileBasicInfo, FileDataWriter, FileKind, Placeholder, PlaceholderInfo, Provider,
    ProviderError, RangedHydration, VersionInfo,
};

use listing::{Dir, Entry, Listings};
pub use store::{S3Counters, S3Counts, S3Options};

/// Errors making a provider.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The client could not be configured.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The runtime could not be started.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// [`VersionInfo::provider_id`] of every item the provider describes.
pub const PROVIDER_ID: &[u8] = b"s3";

/// Projects a bucket. A cheap handle: clones share the client, the kept
/// listings, the sessions and the counters.
#[derive(Clone)]
pub struct S3Provider {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    options: S3Options,
    counters: Arc<S3Counters>,
    listings: Listings,
    enumerations: Enumerations,
    /// The time directories show (they have none in the store).
    started: SystemTime,
    /// Where every callback and refresh runs: one runtime, so the client's
    /// pooled connections (each driven by a task of the runtime that opened
    /// it) serve them all. `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one panics; this never blocks.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl S3Provider {
    /// A provider for `options`; makes no request.
    pub fn new(options: S3Options) -> Result<Self, S3Error> {
        let counters = Arc::new(S3Counters::default());
        let store = store::connect(&options, counters.clone())?;
        Self::with_store(Arc::new(store), options, counters)
    }

    /// A provider over an existing client (`counters` are those its requests
    /// are counted in, if any).
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        options: S3Options,
        counters: Arc<S3Counters>,
    ) -> Result<Self, S3Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(prjfs::async_provider::DEFAULT_WORKER_THREADS)
            .thread_name("prjfs-s3")
            .enable_all()
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                options,
                counters,
                listings: Listings::default(),
                enumerations: Enumerations::new(),
                started: SystemTime::now(),
                runtime: Some(runtime),
            }),
        })
    }

    /// This provider as the instance consumes it: every callback pended on the
    /// provider's runtime.
    pub fn to_provider(&self) -> Arc<dyn Provider> {
        let handle = self
            .inner
            .runtime
            .as_ref()
            .expect("the provider's runtime lives as long as it")
            .handle()
            .clone();
        Arc::new(AsyncAdapter::with_handle(Arc::new(self.clone()), handle))
    }

    /// The options given.
    pub fn options(&self) -> &S3Options {
        &self.inner.options
    }

    /// The demand-driven hydration this provider is made for (its
    /// opt-in, [`prjfs::StartOptions::ranged_hydration`]): every range is
    /// served by ranged GETs of the listed version (`If-Match`), so a big
    /// object is fetched in 1 MiB chunks as it is read, with a readahead
    /// of up to 32 MiB for sequential reads, instead of whole.
    pub fn ranged_hydration(&self) -> RangedHydration {
        RangedHydration::default()
    }

    /// The requests made so far.
    pub fn counts(&self) -> S3Counts {
        self.inner.counters.snapshot()
    }

    /// The key of `rel` (`None`: the root, the bucket's root).
    fn key(&self, rel: &Path) -> Result<Option<object_store::path::Path>, ProviderError> {
        listing::key_of(&self.inner.options.prefix, rel).map_err(|e| {
            tracing::warn!("s3: {}: no key for this path: {e}", rel.display());
            ProviderError::NotFound
        })
    }

    /// The directory `rel`, listed now (retried within the bound), not kept.
    async fn list_now(&self, rel: &Path) -> Result<Dir, ProviderError> {
        let key = self.key(rel)?;
        let counters = &self.inner.counters;
        let mut backoff = store::Backoff::new(self.inner.options.retry_bound);
        loop {
            match listing::list(self.inner.store.as_ref(), key.as_ref()).await {
                Ok(dir) => return Ok(dir),
                Err(e) if store::transient(&e) && backoff.wait(counters).await => {}
                Err(e) => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "s3: {}: listing {}/: {e}",
                        rel.display(),
                        key.as_ref().map(|k| k.as_ref()).unwrap_or("")
                    );
                    return Err(ProviderError::Io(libc::EIO));
                }
            }
        }
    }

    /// The kept listing of `rel`, listing it first if it never was.
    async fn dir(&self, rel: &Path) -> Result<Arc<Dir>, ProviderError> {
        if let Some(d) = self.inner.listings.get(rel) {
            return Ok(d);
        }
        let dir = self.list_now(rel).await?;
        Ok(self.inner.listings.put(rel, dir, false))
    }

    /// What `rel` is in the view (listing its parent if needed).
    async fn entry(&self, rel: &Path) -> Result<Entry, ProviderError> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(Entry::Dir);
        };
        self.dir(parent)
            .await?
            .get(name)
            .cloned()
            .ok_or(ProviderError::NotFound)
    }

    /// The placeholder of `entry`.
    fn info(&self, entry: &Entry) -> PlaceholderInfo {
        placeholder(entry, self.inner.started)
    }

    /// The entries of the directory `rel` in the view.
    pub async fn list(&self, rel: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        if !matches!(self.entry(rel).await?, Entry::Dir) {
            return Err(ProviderError::NotFound);
        }
        let dir = self.dir(rel).await?;
        Ok(dir
            .iter()
            .map(|(name, e)| DirEntry {
                name: name.clone(),
                basic: self.info(e).basic,
                symlink_target: None,
                version: None,
            })
            .collect())
    }
}

/// The placeholder of `entry`; directories show `dir_time`.
fn placeholder(entry: &Entry, dir_time: SystemTime) -> PlaceholderInfo {
    let (basic, content_id) = match entry {
        Entry::Dir => (
            FileBasicInfo {
                kind: FileKind::Directory,
                size: 0,
                mode: 0o755,
                mtime: dir_time,
                atime: dir_time,
                owner: None,
            },
            Vec::new(),
        ),
        Entry::File { size, mtime, etag } => (
            FileBasicInfo {
                kind: FileKind::File,
                size: *size,
                mode: 0o644,
                mtime: *mtime,
                atime: *mtime,
                owner: None,
            },
            etag.clone().unwrap_or_default().into_bytes(),
        ),
    };
    PlaceholderInfo {
        basic,
        version: VersionInfo {
            provider_id: PROVIDER_ID.to_vec(),
            content_id,
        },
        symlink_target: None,
    }
}

impl AsyncProvider for S3Provider {
    async fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        let entries = self.list(&cb.path).await?;
        self.inner.enumerations.start(&cb, id, entries).map(drop)
    }

    async fn get_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
        search_expression: Option<OsString>,
        buffer: DirEntryBuffer,
    ) -> Result<(), ProviderError> {
        self.inner
            .enumerations
            .get(&cb, id, search_expression.as_deref(), &buffer)
            .map(drop)
    }

    async fn end_directory_enumeration(
        &self,
        _cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        self.inner.enumerations.end(id).map(drop)
    }

    async fn get_placeholder_info(&self, cb: CallbackData) -> Result<Placeholder, ProviderError> {
        let entry = self.entry(&cb.path).await?;
        Ok(self.info(&entry).into())
    }

    async fn get_file_data(
        &self,
        cb: CallbackData,
        byte_offset: u64,
        length: u64,
        writer: FileDataWriter,
    ) -> Result<(), ProviderError> {
        let key = self.key(&cb.path)?.ok_or(ProviderError::NotFound)?;
        // The version the placeholder was written for, whatever the view is now.
        let etag = cb
            .version
            .as_ref()
            .filter(|v| v.provider_id == PROVIDER_ID && !v.content_id.is_empty())
            .and_then(|v| String::from_utf8(v.content_id.clone()).ok());
        let req = fetch::FetchRequest {
            rel: &cb.path,
            key: &key,
            etag: etag.as_deref(),
            offset: byte_offset,
            length,
        };
        fetch::fetch(
            self.inner.store.as_ref(),
            &self.inner.options,
            &self.inner.counters,
            &req,
            &writer,
        )
        .await
    }
}

#[cfg(test)]
mod tests;
