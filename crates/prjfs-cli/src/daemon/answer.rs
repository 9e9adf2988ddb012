//! The daemon's answers on its control socket: `status` (counters, states,
//! updates, notifications, provider reads), `state`, `switch`, `refresh` and
//! `hydrate` (in [`super::prefetch`]).

use std::path::{Path, PathBuf};

use prjfs::VirtualizationInstance;
use prjfs_providers::git::GitProvider;
use prjfs_providers::readahead::PrefetchCounters;
use prjfs_providers::s3::S3Provider;
use prjfs_providers::testing::FaultPlan;

use crate::control::{Conn, ControlRequest};
use crate::source::Source;

/// What the control thread answers about.
pub(super) struct Served<'a> {
    pub(super) instance: &'a VirtualizationInstance,
    pub(super) source: &'a Source,
    pub(super) git: Option<&'a GitProvider>,
    pub(super) s3: Option<&'a S3Provider>,
    /// The provider's listing read-ahead (dir and git), when it reads ahead.
    pub(super) read_ahead: Option<&'a PrefetchCounters>,
    pub(super) log: &'a serde_json::Value,
    pub(super) pool: usize,
    pub(super) concurrent: usize,
    pub(super) faults: Option<&'a FaultPlan>,
}

pub(super) fn answer(served: &Served<'_>, req: ControlRequest, conn: &Conn) -> serde_json::Value {
    let Served {
        instance,
        source,
        git,
        s3,
        read_ahead,
        log,
        pool,
        concurrent,
        faults,
    } = *served;
    let virt = instance.virtualizer();
    match req {
        ControlRequest::Status => {
            let stats = virt.stats();
            let opens = instance.open_stats();
            let c = &stats.commands;
            let by_kind: serde_json::Map<String, serde_json::Value> = c
                .by_kind
                .iter()
                .map(|(k, n)| (k.name().to_string(), (*n).into()))
                .collect();
            let states = match virt.layer().count_states() {
                Ok(s) => serde_json::json!({
                    "placeholder": s.placeholder,
                    "hydrated": s.hydrated,
                    "dirty": s.dirty,
                    "full": s.full,
                    "tombstone": s.tombstone,
                }),
                Err(e) => return serde_json::json!({ "error": format!("counting states: {e}") }),
            };
            // One snapshot: log_bytes is the log's length while these entries pend.
            let plog = virt.layer().log_stats();
            let mut log = log.clone();
            if let Some(live) = log["live"].as_str() {
                log["exists"] = Path::new(live).exists().into();
            }
            let faults = faults.map(|f| {
                let c = f.counts();
                serde_json::json!({
                    "failed": c.failed,
                    "panicked": c.panicked,
                    "slowed": c.slowed,
                    "stalled": c.stalled,
                    "delays_cancelled": c.delays_cancelled,
                })
            });
            serde_json::json!({
                "root": instance.root(),
                "source": source.display(),
                "revision": git.map(|g| g.view().commit.to_string()),
                "git_reads": git.map(|g| {
                    let c = g.counters();
                    serde_json::json!({
                        "file_blobs": c.file_blobs.load(std::sync::atomic::Ordering::Relaxed),
                        "link_blobs": c.link_blobs.load(std::sync::atomic::Ordering::Relaxed),
                        "headers": c.headers.load(std::sync::atomic::Ordering::Relaxed),
                    })
                }),
                "s3": s3.map(|p| {
                    let c = p.counts();
                    serde_json::json!({
                        "list_requests": c.list_requests,
                        "get_requests": c.get_requests,
                        "other_requests": c.other_requests,
                        "bytes_fetched": c.bytes_fetched,
                        "retries": c.retries,
                        "failures": c.failures,
                        "in_flight": c.in_flight,
                        "throttled": c.throttled,
                    })
                }),
                "read_ahead": read_ahead.map(|c| {
                    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                    serde_json::json!({ "read": n(&c.read), "used": n(&c.used), "stale": n(&c.stale) })
                }),
                "log": log,
                "dirs_kept_open": virt.layer().kept_dirs(),
                "pid": std::process::id(),
                "threads": concurrent,
                "pool_threads": pool,
                "callbacks": {
                    "invoked": c.invoked,
                    "pending": c.pending,
                    "running": c.running,
                    "in_flight": c.pending + c.running,
                    "completed": c.completed,
                    "cancelled": c.cancelled,
                    "failed": c.failed,
                    "queued": stats.queued,
                    "by_kind": by_kind,
                },
                "states": states,
                "placeholder_log": {
                    "records": plog.records,
                    "pending_entries": plog.pending_entries,
                    "pending_bytes": plog.pending_bytes,
                    "batches_written": plog.batches_written,
                    "log_bytes": plog.log_bytes,
                },
                "updates": {
                    "applied": stats.updates_applied,
                    "refused": stats.updates_refused,
                },
                "nodes": stats.nodes,
                "opens": {
                    "no_open": instance.no_open(),
                    "passthrough_active": instance.passthrough(),
                    "passthrough": opens.passthrough,
                    "daemon": opens.daemon,
                    "refused": opens.refused,
                },
                "faults": faults,
                "notifications": stats
                    .notifications
                    .iter()
                    .map(|(k, n)| (k.name().to_string(), serde_json::Value::from(*n)))
                    .collect::<serde_json::Map<_, _>>(),
            })
        }
        ControlRequest::Hydrate { paths, jobs, walk } => {
            super::prefetch::run(virt, conn, paths, walk, jobs)
        }
        ControlRequest::Switch { rev } => match git {
            Some(git) => crate::source::switch(instance, &instance.handle(), git, &rev),
            None => serde_json::json!({
                "error": format!("{}: not a git projection (switch needs git:REPO)", source.display())
            }),
        },
        ControlRequest::Refresh { path } => match s3 {
            Some(s3) => {
                let r = s3.refresh_blocking(&instance.handle(), Path::new(&path));
                let paths = |v: &[PathBuf]| -> Vec<String> {
                    v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
                };
                tracing::info!(
                    "s3 refresh {path:?}: {} directories listed, {} changes applied, {} conflicts",
                    r.listed,
                    r.applied,
                    r.conflicts.len()
                );
                serde_json::json!({
                    "listed": r.listed,
                    "applied": r.applied,
                    "conflicts": paths(&r.conflicts),
                    "failed": paths(&r.failed),
                })
            }
            None => serde_json::json!({
                "error": format!("{}: not an s3:// projection (refresh needs s3://BUCKET)", source.display())
            }),
        },
        ControlRequest::State { path } => match virt.state_of_path(Path::new(&path)) {
            Ok(state) => serde_json::json!({
                "path": path,
                "state": state.0,
                "names": state.names(),
            }),
            Err(e) => serde_json::json!({
                "error": format!("{path}: {}", std::io::Error::from_raw_os_error(e))
            }),
        },
    }
}
