//! The connection to the object store: where it is ([`S3Options`]), the
//! `object_store` client built from it, and the HTTP requests counted on their
//! way out ([`S3Counters`]).
//!
//! Invariants:
//! * Every request the provider makes passes through [`CountingService`], so
//!   the counters are the requests the server saw (retries included), not the
//!   calls the provider meant to make.
//! * `object_store`'s own retries are off: [`Backoff`] is the one place
//!   that retries, with one bound for a whole operation. `object_store`
//!   (0.12) neither reads `Retry-After` nor passes an answer's headers on
//!   in its errors, so [`CountingService`] notes the wait a throttling
//!   answer asks for and [`Backoff`] honours it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::{ClientOptions, RetryConfig};

/// Where the bucket is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// The key prefix projected as the root, without leading or trailing `/`
    /// (empty: the whole bucket).
    pub prefix: String,
    /// `--endpoint`: an S3-compatible server (else `AWS_ENDPOINT`, else AWS).
    pub endpoint: Option<String>,
    /// The region (else `AWS_DEFAULT_REGION`/`AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Allow `http://` endpoints (local servers).
    pub allow_http: bool,
    /// Address the bucket in the path (`ENDPOINT/BUCKET/KEY`), as local
    /// servers want, instead of the host name (`BUCKET.ENDPOINT/KEY`).
    pub path_style: bool,
    /// Sign no request (public buckets, servers without authentication). Also
    /// chosen when no access key is configured at all.
    pub anonymous: bool,
    /// How long one operation (a listing, one range of a file) may spend
    /// retrying transient failures before it fails with `EIO`.
    pub retry_bound: Duration,
    /// Bytes per ranged GET of a file's content.
    pub chunk_size: u64,
    /// Ranged GETs in flight per file.
    pub parallel: usize,
}

impl S3Options {
    /// Options for `bucket` and `prefix` (slashes at either end dropped) with
    /// the defaults: AWS from the environment, a 10 s retry bound, 8 MiB
    /// ranges, 4 in flight.
    pub fn new(bucket: impl Into<String>, prefix: &str) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            allow_http: false,
            path_style: false,
            anonymous: false,
            retry_bound: Duration::from_secs(10),
            chunk_size: 8 << 20,
            parallel: 4,
        }
    }

    /// `s3://BUCKET[/PREFIX]`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The requests the provider made, as the server saw them.
#[derive(Debug, Default)]
pub struct S3Counters {
    /// LIST requests (one per page of a listing).
    pub list_requests: AtomicU64,
    /// GET requests for object content (ranged or whole).
    pub get_requests: AtomicU64,
    /// Other requests (HEAD, PUT, ...).
    pub other_requests: AtomicU64,
    /// Content bytes received by GETs (what reached the provider, whether or
    /// not a hydration used it).
    pub bytes_fetched: AtomicU64,
    /// Attempts repeated after a transient failure.
    pub retries: AtomicU64,
    /// Operations that failed (after retries), each logged once.
    pub failures: AtomicU64,
    /// Requests sent whose response headers have not arrived (a cancelled
    /// command drops its request, which leaves this count).
    pub in_flight: AtomicU64,
    /// Answers that asked the client to slow down (503 SlowDown, 429).
    pub throttled: AtomicU64,
    /// The latest instant a throttling answer's `Retry-After` asked the
    /// client to wait until: no retry is made before it.
    retry_after: Mutex<Option<tokio::time::Instant>>,
}

/// A snapshot of [`S3Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S3Counts {
    /// LIST requests.
    pub list_requests: u64,
    /// Content GET requests.
    pub get_requests: u64,
    /// Other requests.
    pub other_requests: u64,
    /// Content bytes received.
    pub bytes_fetched: u64,
    /// Attempts repeated.
    pub retries: u64,
    /// Operations failed.
    pub failures: u64,
    /// Requests awaiting their response headers.
    pub in_flight: u64,
    /// Throttling answers (503, 429).
    pub throttled: u64,
}

impl S3Counters {
    /// Read every counter.
    pub fn snapshot(&self) -> S3Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        S3Counts {
            list_requests: get(&self.list_requests),
            get_requests: get(&self.get_requests),
            other_requests: get(&self.other_requests),
            bytes_fetched: get(&self.bytes_fetched),
            retries: get(&self.retries),
            failures: get(&self.failures),
            in_flight: get(&self.in_flight),
            throttled: get(&self.throttled),
        }
    }

    /// The server asked for no request before `wait` from now (a
    /// throttling answer's `Retry-After`).
    pub fn note_retry_after(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut slot = self.retry_after.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }

    /// How long from now the server asked the client to wait, if it did.
    fn retry_after(&self) -> Option<Duration> {
        let slot = self.retry_after.lock().unwrap_or_else(|e| e.into_inner());
        slot.and_then(|t| t.checked_duration_since(tokio::time::Instant::now()))
    }
}

/// The wait a throttling answer asks for: `Retry-After` in seconds. An
/// HTTP date (which S3-compatible servers do not send) is not read; the
/// backoff alone then spaces the retries.
fn retry_after(response: &HttpResponse) -> Option<Duration> {
    parse_retry_after(response.headers().get("retry-after")?.to_str().ok()?)
}

/// A `Retry-After` value in seconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Counts each request by kind, then hands it to the real client.
#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    counters: Arc<S3Counters>,
}

#[async_trait::async_trait]
impl HttpService for CountingService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let is_list = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("list-type=")));
        let counter = if is_list {
            &self.counters.list_requests
        } else if req.method().as_str() == "GET" {
            &self.counters.get_requests
        } else {
            &self.counters.other_requests
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let pending = InFlight::enter(&self.counters);
        let response = self.inner.execute(req).await;
        drop(pending);
        if let Ok(r) = &response {
            let status = r.status().as_u16();
            if status == 503 || status == 429 {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                // object_store hides the answer's headers from its error:
                // the one place that sees them keeps what it asked for.
                if let Some(wait) = retry_after(r) {
                    self.counters.note_retry_after(wait);
                }
            }
        }
        response
    }
}

/// One request in [`S3Counters::in_flight`] until dropped (answered, failed
/// or abandoned).
struct InFlight<'a>(&'a S3Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a S3Counters) -> Self {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Builds the counting client for `object_store`.
#[derive(Debug)]
struct CountingConnector {
    counters: Arc<S3Counters>,
}

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(CountingService {
            inner,
            counters: self.counters.clone(),
        }))
    }
}

/// The client for `options`: `AWS_*` variables first, the options over them.
pub fn connect(options: &S3Options, counters: Arc<S3Counters>) -> object_store::Result<AmazonS3> {
    // Client options first: they hold allow_http, set below.
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&options.bucket)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(300)),
        );
    if let Some(endpoint) = &options.endpoint {
        b = b.with_endpoint(endpoint);
    }
    let region = options
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok());
    if let Some(region) = region {
        b = b.with_region(region);
    }
    let env_http = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if options.allow_http || env_http {
        b = b.with_allow_http(true);
    }
    if options.path_style {
        b = b.with_virtual_hosted_style_request(false);
    }
    let no_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
        && std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
        && std::env::var_os("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
        && std::env::var_os("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none();
    // Without any credential source object_store would ask the EC2 metadata
    // service, which is absent (and slow to fail) everywhere but EC2.
    if options.anonymous || (no_keys && options.endpoint.is_some()) {
        b = b.with_skip_signature(true);
    }
    b.with_retry(RetryConfig {
        max_retries: 0,
        retry_timeout: options.retry_bound,
        ..Default::default()
    })
    .with_http_connector(CountingConnector { counters })
    .build()
}

/// Whether `e` may pass if the request is made again: server errors,
/// throttling (503 SlowDown), dropped connections and timeouts. What the
/// server answered about the object itself (missing, changed, forbidden) is
/// final.
pub fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented
    )
}

/// Backoff for one operation: 100 ms doubling to 2 s, or longer when the
/// server's latest throttling answer asked for a longer wait
/// (`Retry-After`), until `bound` has passed since the operation began: a
/// retry is never made sooner than the server asked, so a wait the bound
/// cannot hold ends the operation instead.
pub struct Backoff {
    deadline: tokio::time::Instant,
    next: Duration,
}

impl Backoff {
    /// An operation beginning now, allowed `bound` in all.
    pub fn new(bound: Duration) -> Self {
        Self {
            deadline: tokio::time::Instant::now() + bound,
            next: Duration::from_millis(100),
        }
    }

    /// Wait before the next attempt, counting it; `false` when the bound
    /// leaves no room for one.
    pub async fn wait(&mut self, counters: &S3Counters) -> bool {
        let now = tokio::time::Instant::now();
        let wait = counters
            .retry_after()
            .map_or(self.next, |asked| asked.max(self.next));
        if now + wait > self.deadline {
            return false;
        }
        tokio::time::sleep(wait).await;
        self.next = (self.next * 2).min(Duration::from_secs(2));
        counters.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}
