//! Random provider faults for soak tests: a [`FaultPlan`] decides, callback by
//! callback, whether the store is slow, fails or panics; [`Flaky`] applies it in
//! front of any [`Provider`] (delays hold the callback thread), [`FlakyAsync`] in
//! front of any [`AsyncProvider`] (delays are timers of a pended command).
//!
//! A plan is written as a spec (`prjfs mount --inject-faults SPEC`), a comma
//! separated list of `key=value`:
//!
//! | Key | Meaning |
//! |---|---|
//! | `seed=N` | seed of the plan's random numbers (default 1) |
//! | `fail=P` | each callback fails with [`ProviderError::Unavailable`] (`EIO`) with probability P |
//! | `panic=P` | each callback panics with probability P |
//! | `slow=P:MS` | each callback first waits MS milliseconds with probability P |
//! | `stall=DIR:MS` | every callback about a path strictly below `DIR` first waits MS milliseconds |
//!
//! Invariants: `cancel_command` (and `command_cancelled`) is never delayed, never
//! fails and never panics; a delay ends early when its command is cancelled (the
//! callback then answers [`ProviderError::Cancelled`] without calling the inner
//! provider); a failure or panic happens after the delay and before the inner
//! provider is called, so a faulted callback changes nothing. `end_directory_enumeration`
//! is delayed but always reaches the inner provider (its session must end), and
//! only then may fail or panic.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prjfs::{
    AsyncProvider, CallbackData, CallbackResult, CommandId, DirEntryBuffer, EnumerationId,
    FileDataWriter, Notification, Placeholder, Provider, ProviderError,
};

/// A parsed fault spec (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// Seed of the random numbers.
    pub seed: u64,
    /// Probability that a callback fails.
    pub fail: f64,
    /// Probability that a callback panics.
    pub panic: f64,
    /// Probability that a callback is slow, and by how much.
    pub slow: (f64, Duration),
    /// Callbacks about paths strictly below this directory (relative to the root)
    /// wait this long first.
    pub stall: Option<(PathBuf, Duration)>,
}

impl Default for FaultSpec {
    fn default() -> Self {
        Self {
            seed: 1,
            fail: 0.0,
            panic: 0.0,
            slow: (0.0, Duration::ZERO),
            stall: None,
        }
    }
}

fn probability(key: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{key}={v}: not a probability between 0 and 1")),
    }
}

fn millis(key: &str, v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{key}: {v:?} is not a number of milliseconds"))
}

impl std::str::FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = FaultSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            match key {
                "seed" => spec.seed = v.parse().map_err(|_| format!("seed={v}: not an integer"))?,
                "fail" => spec.fail = probability(key, v)?,
                "panic" => spec.panic = probability(key, v)?,
                "slow" => {
                    let (p, ms) = v
                        .split_once(':')
                        .ok_or_else(|| format!("slow={v}: expected slow=P:MS"))?;
                    spec.slow = (probability(key, p)?, millis(key, ms)?);
                }
                "stall" => {
                    let (dir, ms) = v
                        .rsplit_once(':')
                        .ok_or_else(|| format!("stall={v}: expected stall=DIR:MS"))?;
                    let dir = PathBuf::from(dir.trim_matches('/'));
                    if dir.as_os_str().is_empty() {
                        return Err(format!("stall={v}: the directory is empty"));
                    }
                    spec.stall = Some((dir, millis(key, ms)?));
                }
                _ => {
                    return Err(format!(
                        "{key}: unknown fault (seed, fail, panic, slow, stall)"
                    ))
                }
            }
        }
        if spec.fail + spec.panic > 1.0 {
            return Err("fail + panic must not exceed 1".into());
        }
        Ok(spec)
    }
}

/// What a [`FaultPlan`] did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Callbacks failed on purpose.
    pub failed: u64,
    /// Callbacks that panicked on purpose.
    pub panicked: u64,
    /// Callbacks delayed by `slow`.
    pub slowed: u64,
    /// Callbacks delayed by `stall`.
    pub stalled: u64,
    /// Delays (slow or stall) that ended early because their command was cancelled.
    pub delays_cancelled: u64,
}

/// The decisions of a spec, drawn from one seeded generator shared by all threads.
#[derive(Debug)]
pub struct FaultPlan {
    spec: FaultSpec,
    rng: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    slowed: AtomicU64,
    stalled: AtomicU64,
    delays_cancelled: AtomicU64,
}

/// The callback a decision is for. Only End may not fail before the inner call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Site {
    Start,
    Get,
    End,
    PlaceholderInfo,
    FileData,
    Other,
}

impl FaultPlan {
    /// A plan for `spec`.
    pub fn new(spec: FaultSpec) -> Self {
        Self {
            rng: AtomicU64::new(spec.seed),
            spec,
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            slowed: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            delays_cancelled: AtomicU64::new(0),
        }
    }

    /// The spec it follows.
    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// What it did so far.
    pub fn counts(&self) -> FaultCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultCounts {
            failed: get(&self.failed),
            panicked: get(&self.panicked),
            slowed: get(&self.slowed),
            stalled: get(&self.stalled),
            delays_cancelled: get(&self.delays_cancelled),
        }
    }

    /// A uniform number in [0, 1) (splitmix64 over a shared counter).
    fn roll(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// How long a callback about `path` waits before anything else.
    fn delay(&self, path: &Path) -> Duration {
        let mut d = Duration::ZERO;
        if let Some((dir, stall)) = &self.spec.stall {
            if path.starts_with(dir) && path != dir {
                self.stalled.fetch_add(1, Ordering::Relaxed);
                d += *stall;
            }
        }
        let (p, slow) = self.spec.slow;
        if p > 0.0 && self.roll() < p {
            self.slowed.fetch_add(1, Ordering::Relaxed);
            d += slow;
        }
        d
    }

    /// Fail or panic (after the delay), or let the callback through.
    fn verdict(&self, site: Site, path: &Path) -> Result<(), ProviderError> {
        let (panic, fail) = (self.spec.panic, self.spec.fail);
        if panic + fail <= 0.0 {
            return Ok(());
        }
        let r = self.roll();
        if r < panic {
            self.panicked.fetch_add(1, Ordering::Relaxed);
            panic!("prjfs injected fault: panic in {site:?} for {path:?}");
        }
        if r < panic + fail {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(ProviderError::Unavailable(format!(
                "injected fault in {site:?} for {path:?}"
            )));
        }
        Ok(())
    }

    fn delay_cancelled(&self) {
        self.delays_cancelled.fetch_add(1, Ordering::Relaxed);
    }
}

/// A [`Provider`] wrapper that follows a [`FaultPlan`]; its delays sleep on the
/// callback thread and end early when the command is cancelled.
pub struct Flaky {
    inner: Arc<dyn Provider>,
    plan: Arc<FaultPlan>,
    /// Commands sleeping in a delay, and whether each was cancelled. Invariant: an
    /// id is present exactly while its callback sleeps (inserted before, removed
    /// after), so cancels of other commands leave nothing behind.
    sleeping: Mutex<HashMap<CommandId, bool>>,
    wake: Condvar,
}

impl Flaky {
    /// Apply `plan` in front of `inner`.
    pub fn new(inner: Arc<dyn Provider>, plan: Arc<FaultPlan>) -> Self {
        Self {
            inner,
            plan,
            sleeping: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    fn sleeping(&self) -> MutexGuard<'_, HashMap<CommandId, bool>> {
        // Entries are inserted and removed whole.
        self.sleeping.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleep `d` unless command `id` is cancelled first; true when it was.
    fn sleep(&self, id: CommandId, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut sleeping = self.sleeping();
        sleeping.insert(id, false);
        loop {
            let now = Instant::now();
            if sleeping.get(&id) == Some(&true) || now >= deadline {
                break;
            }
            sleeping = self
                .wake
                .wait_timeout(sleeping, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        sleeping.remove(&id).unwrap_or(false)
    }

    fn before(&self, site: Site, cb: &CallbackData) -> Result<(), ProviderError> {
        self.wait(cb)?;
        self.plan.verdict(site, &cb.path)
    }

    fn wait(&self, cb: &CallbackData) -> Result<(), ProviderError> {
        let d = self.plan.delay(&cb.path);
        if !d.is_zero() && self.sleep(cb.command_id, d) {
            self.plan.delay_cancelled();
            return Err(ProviderError::Cancelled);
        }
        Ok(())
    }
}

impl Provider for Flaky {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.before(Site::Start, cb)?;
        self.inner.start_directory_enumeration(cb, id)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.before(Site::Get, cb)?;
        self.inner
            .get_directory_enumeration(cb, id, search_expression, buffer)
    }

    fn end_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let waited = self.wait(cb);
        let outcome = self.inner.end_directory_enumeration(cb, id)?;
        waited?;
        self.plan.verdict(Site::End, &cb.path)?;
        Ok(outcome)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.before(Site::PlaceholderInfo, cb)?;
        self.inner.get_placeholder_info(cb)
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.before(Site::FileData, cb)?;
        self.inner.get_file_data(cb, byte_offset, length)
    }

    fn query_file_name(&self, cb: &CallbackData) -> CallbackResult {
        self.before(Site::Other, cb)?;
        self.inner.query_file_name(cb)
    }

    fn notification(&self, cb: &CallbackData, n: &Notification) -> CallbackResult {
        self.inner.notification(cb, n)
    }

    fn cancel_command(&self, cb: &CallbackData) {
        if let Some(cancelled) = self.sleeping().get_mut(&cb.command_id) {
            *cancelled = true;
            self.wake.notify_all();
        }
        self.inner.cancel_command(cb);
    }
}

/// An [`AsyncProvider`] wrapper that follows a [`FaultPlan`]; its delays are
/// timers inside the pended command's future, which the adapter drops on cancel.
pub struct FlakyAsync<P> {
    inner: P,
    plan: Arc<FaultPlan>,
}

impl<P: AsyncProvider> FlakyAsync<P> {
    /// Apply `plan` in front of `inner`.
    pub fn new(inner: P, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }

    async fn wait(&self, path: &Path) {
        let d = self.plan.delay(path);
        if d.is_zero() {
            return;
        }
        /// Counts the delay as cancelled if the future is dropped during it.
        struct Armed<'a>(Option<&'a FaultPlan>);
        impl Drop for Armed<'_> {
            fn drop(&mut self) {
                if let Some(plan) = self.0 {
                    plan.delay_cancelled();
                }
            }
        }
        let mut armed = Armed(Some(&self.plan));
        tokio::time::sleep(d).await;
        armed.0 = None;
    }

    async fn before(&self, site: Site, path: &Path) -> Result<(), ProviderError> {
        self.wait(path).await;
        self.plan.verdict(site, path)
    }
}

impl<P: AsyncProvider> AsyncProvider for FlakyAsync<P> {
    async fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        self.before(Site::Start, &cb.path).await?;
        self.inner.start_directory_enumeration(cb, id).await
    }

    async fn get_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
        search_expression: Option<OsString>,
        buffer: DirEntryBuffer,
    ) -> Result<(), ProviderError> {
        self.before(Site::Get, &cb.path).await?;
        self.inner
            .get_directory_enumeration(cb, id, search_expression, buffer)
            .await
    }

    async fn end_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        let path = cb.path.clone();
        self.wait(&path).await;
        self.inner.end_directory_enumeration(cb, id).await?;
        self.plan.verdict(Site::End, &path)
    }

    async fn get_placeholder_info(&self, cb: CallbackData) -> Result<Placeholder, ProviderError> {
        self.before(Site::PlaceholderInfo, &cb.path).await?;
        self.inner.get_placeholder_info(cb).await
    }

    async fn get_file_data(
        &self,
        cb: CallbackData,
        byte_offset: u64,
        length: u64,
        writer: FileDataWriter,
    ) -> Result<(), ProviderError> {
        self.before(Site::FileData, &cb.path).await?;
        self.inner
            .get_file_data(cb, byte_offset, length, writer)
            .await
    }

    async fn notification(&self, cb: CallbackData, n: Notification) -> Result<u32, ProviderError> {
        self.inner.notification(cb, n).await
    }

    fn command_cancelled(&self, id: CommandId) {
        self.inner.command_cancelled(id);
    }
}
