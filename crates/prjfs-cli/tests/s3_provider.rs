//! Mounted tests of the object-store provider (`prjfs mount s3://BUCKET`)
//! against a real SeaweedFS server (`weed mini`, started here on loopback
//! and stopped by pid): a bucket with nested prefixes, keys with spaces and
//! unicode, directory markers, 5000 small objects and a big one, projected
//! and compared with a download made through `object_store`; the LIST
//! requests a 5000-object directory costs; a ranged read in the middle of the
//! big object, and scattered reads then a write of another (ranged
//! hydration); an object overwritten during its hydration; a paused server
//! (a killed client cancels its GET) and a stopped one (EIO within the retry
//! bound, hydrated files still served); `prjfs refresh`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};
use prjfs_testkit::{mount_available, CliMount};
use support::gate::Gate;
use support::weed::{weed_available, Weed};

const BUCKET: &str = "prjfs-test";
const MANY: usize = 5000;
/// The big object. The issue names 200 MB; this is what the test uploads,
/// downloads and reads through the mount.
const BIG: usize = 200 << 20;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The test's own client (unsigned, path style, plain HTTP), not the
/// provider's.
fn client(weed: &Weed) -> Arc<AmazonS3> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(&weed.endpoint)
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_skip_signature(true)
            .build()
            .expect("client"),
    )
}

fn mount(weed: &Weed, root: &Path, extra: &[&str]) -> CliMount {
    mount_at(&weed.endpoint, root, extra)
}

/// `prjfs mount --endpoint ENDPOINT --path-style --allow-http EXTRA.. s3://BUCKET ROOT`.
fn mount_at(endpoint: &str, root: &Path, extra: &[&str]) -> CliMount {
    std::fs::create_dir_all(root).unwrap();
    let mut args = vec!["--endpoint", endpoint, "--path-style", "--allow-http"];
    args.extend_from_slice(extra);
    CliMount::new(&bin(), &args, Path::new(&format!("s3://{BUCKET}")), root)
}

/// Deterministic bytes (xorshift), different for each `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn put_all(store: &AmazonS3, objects: Vec<(String, Bytes)>) {
    futures::stream::iter(objects)
        .map(|(k, v)| async move {
            store
                .put(&Key::parse(&k).unwrap(), PutPayload::from(v))
                .await
                .map(drop)
                .map_err(|e| format!("{k}: {e}"))
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .expect("upload");
}

/// Directory markers: `object_store` cannot name a key ending in `/`, so
/// they are put with a raw request.
fn put_marker(weed: &Weed, key: &str) {
    assert_eq!(weed.request("PUT", &format!("/{BUCKET}/{key}")), Some(200));
}

/// Download every object under `dir` (`a/b` keys as `dir/a/b`); markers
/// become directories.
async fn download(store: &AmazonS3, dir: &Path, markers: &[&str]) {
    let metas: Vec<_> = store.list(None).try_collect().await.expect("list");
    // A marker lists as its key without the `/`, which names no object.
    let metas: Vec<_> = metas
        .into_iter()
        .filter(|m| {
            !markers
                .iter()
                .any(|k| k.trim_end_matches('/') == m.location.as_ref())
        })
        .collect();
    futures::stream::iter(metas)
        .map(|m| async move {
            let data = store.get(&m.location).await?.bytes().await?;
            let path = dir.join(m.location.as_ref());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
            Ok::<_, object_store::Error>(())
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
        .expect("download");
    for m in markers {
        std::fs::create_dir_all(dir.join(m.trim_end_matches('/'))).unwrap();
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a program");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `find DIR` as sorted "type path size" lines (sizes of files only).
fn find(dir: &Path) -> Vec<String> {
    let text = sh(Command::new("find")
        .arg(dir)
        .arg("-mindepth")
        .arg("1")
        .args(["(", "-type", "f", "-printf", "f %P %s\\n", ")"])
        .args(["-o", "-printf", "%y %P\\n"]));
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

fn s3_status(m: &CliMount) -> serde_json::Value {
    m.status()["s3"].clone()
}

fn counter(m: &CliMount, name: &str) -> u64 {
    s3_status(m)[name]
        .as_u64()
        .unwrap_or_else(|| panic!("s3.{name} in status"))
}

/// No GetFileData is queued, running or pended, and no request awaits its
/// answer: every fetch started so far has ended, and the counters are final.
fn settled(m: &CliMount) -> bool {
    let s = m.status();
    s["callbacks"]["in_flight"] == 0 && s["callbacks"]["queued"] == 0 && s["s3"]["in_flight"] == 0
}

/// Wait for `cond`, failing after a minute.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bucket_projection_equals_download() {
    if !mount_available() || !weed_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(tmp.path());
    weed.create_bucket(BUCKET);
    let store = client(&weed);
    let rt = runtime();
    let big = Bytes::from(pattern(BIG, 7));
    let mut objects: Vec<(String, Bytes)> = [
        ("top.txt", "top\n"),
        ("nested/a/b/c.txt", "deep\n"),
        ("nested/a/d.txt", "d\n"),
        ("nested/e.txt", "e\n"),
        ("with space/file name.txt", "spaces\n"),
        ("ünïcødé/日本語 ファイル.txt", "unicode\n"),
        ("marked/inside.txt", "inside a marked directory\n"),
        ("zero.bin", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Bytes::from(v)))
    .collect();
    objects.extend((0..MANY).map(|i| {
        (
            format!("many/f{i:05}.txt"),
            Bytes::from(format!("object {i}\n")),
        )
    }));
    objects.push(("big.bin".into(), big.clone()));
    let started = Instant::now();
    rt.block_on(put_all(&store, objects));
    let markers = ["empty-dir/", "marked/"];
    for m in markers {
        put_marker(&weed, m);
    }
    eprintln!("uploaded in {:?}", started.elapsed());

    let root = tmp.path().join("root");
    let m = mount(&weed, &root, &[]);

    // A directory of 5000 objects: one LIST per 1000 keys.
    std::fs::metadata(root.join("many")).unwrap();
    let before = counter(&m, "list_requests");
    let names = std::fs::read_dir(root.join("many")).unwrap().count();
    assert_eq!(names, MANY);
    let lists = counter(&m, "list_requests") - before;
    eprintln!("listing {MANY} objects: {lists} LIST requests");
    assert!(
        lists as usize <= MANY.div_ceil(1000) + 1,
        "{lists} LIST requests for {MANY} objects"
    );

    // 1 MiB in the middle of the big object, read by dd: the chunks it
    // touches are fetched, not the object (ranged hydration). Counted once
    // every fetch the read started has ended, readahead included.
    let before = counter(&m, "bytes_fetched");
    let mid = BIG / 2 / (1 << 20);
    let piece = tmp.path().join("piece");
    sh(Command::new("dd")
        .arg(format!("if={}", root.join("big.bin").display()))
        .arg(format!("of={}", piece.display()))
        .args(["bs=1M", &format!("skip={mid}"), "count=1", "status=none"]));
    wait_for("the fetches of the read to end", || settled(&m));
    let fetched = counter(&m, "bytes_fetched") - before;
    eprintln!(
        "1 MiB read at {} MiB of {} MiB: {fetched} bytes fetched in all ({:.2}x the bytes read)",
        mid,
        BIG >> 20,
        fetched as f64 / (1 << 20) as f64
    );
    assert_eq!(
        std::fs::read(&piece).unwrap(),
        &big[mid << 20..(mid + 1) << 20]
    );
    assert!(
        fetched <= 2 << 20,
        "reading 1 MiB fetched {fetched} bytes, more than twice that"
    );
    // Partly present is not hydrated.
    let state = m.state(&root.join("big.bin"));
    assert!(state.ends_with(": Placeholder (1)"), "{state}");

    // The tree and every byte equal a download of the bucket.
    let download_dir = tmp.path().join("download");
    let started = Instant::now();
    rt.block_on(download(&store, &download_dir, &markers));
    eprintln!("downloaded in {:?}", started.elapsed());
    let lists_before_find = counter(&m, "list_requests");
    let projected = find(&root);
    assert_eq!(projected, find(&download_dir));
    assert!(projected.contains(&"d empty-dir".to_string()));
    assert!(projected.contains(&"f ünïcødé/日本語 ファイル.txt 8".to_string()));
    eprintln!(
        "find: {} entries, {} more LIST requests",
        projected.len(),
        counter(&m, "list_requests") - lists_before_find
    );
    let started = Instant::now();
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&root)
        .arg(&download_dir)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "diff -r: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
    eprintln!(
        "diff -r in {:?}; s3 counters {}",
        started.elapsed(),
        s3_status(&m)
    );
    // Every object was fetched once: hydrated files are served from the layer.
    let gets = counter(&m, "get_requests");
    let again = Command::new("diff")
        .arg("-r")
        .arg(&root)
        .arg(&download_dir)
        .status()
        .unwrap();
    assert!(again.success());
    assert_eq!(counter(&m, "get_requests"), gets);
    m.unmount();
}

/// `prjfs refresh PATH`: (success, stdout).
fn refresh(path: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .arg("refresh")
        .arg(path)
        .output()
        .expect("prjfs refresh");
    eprintln!(
        "prjfs refresh: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The daemon's log, read through its fd while the root is mounted.
fn daemon_log(m: &CliMount) -> String {
    let status = m.status();
    let live = status["log"]["live"].as_str().expect("a daemon log");
    std::fs::read_to_string(live).unwrap_or_default()
}

#[test]
fn versions_never_mix_and_refresh_applies_changes() {
    if !mount_available() || !weed_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(tmp.path());
    weed.create_bucket(BUCKET);
    let store = client(&weed);
    let rt = runtime();
    const SIZE: usize = 64 << 20;
    let (a, b) = (pattern(SIZE, 1), pattern(SIZE, 2));
    let put = |k: &str, v: &[u8]| {
        rt.block_on(put_all(
            &store,
            vec![(k.to_string(), Bytes::copy_from_slice(v))],
        ))
    };
    put("v.bin", &a);
    put("w.txt", b"first\n");
    put("keep.txt", b"kept\n");
    put("gone.txt", b"to be deleted\n");
    put("dir/local.txt", b"store\n");
    let root = tmp.path().join("root");
    let gate = Gate::start(weed.port());
    let m = mount_at(&gate.endpoint, &root, &[]);
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&root),
        ["dir", "gone.txt", "keep.txt", "v.bin", "w.txt"]
    );

    // Overwritten while `cat` hydrates it: the proxy lets 1 MiB of the
    // first ranges through and holds the rest while the object is replaced;
    // the ranges asked after that are refused (If-Match), and the file is
    // never a mix of the two versions.
    gate.arm(1 << 20);
    let out = tmp.path().join("out");
    let cat = Command::new("cat")
        .arg(root.join("v.bin"))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("1 MiB to pass and the rest to be held", || gate.held());
    put("v.bin", &b);
    gate.open();
    let cat = cat.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&cat.stderr);
    assert!(!cat.status.success(), "a mixed hydration was served");
    assert!(stderr.contains("Input/output error"), "cat: {stderr}");
    assert!(daemon_log(&m).contains("the object changed since it was listed"));
    // Still a placeholder (never read): nothing of either version is served.
    let state = m.state(&root.join("v.bin"));
    assert!(state.ends_with(": Placeholder (1)"), "{state}");

    // Overwritten before its first read: If-Match refuses the new bytes.
    put("w.txt", b"second, longer\n");
    let err = std::fs::read(root.join("w.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_eio()));

    // A local change, then store changes: new, deleted, changed objects.
    std::fs::write(root.join("dir/local.txt"), b"mine\n").unwrap();
    put("dir/local.txt", b"store changed\n");
    put("new.txt", b"new\n");
    rt.block_on(store.delete(&Key::from("gone.txt"))).unwrap();
    let (ok, conflicts) = refresh(&root);
    assert!(!ok, "a conflict makes refresh fail");
    assert_eq!(conflicts.trim(), "dir/local.txt");
    assert_eq!(
        names(&root),
        ["dir", "keep.txt", "new.txt", "v.bin", "w.txt"]
    );
    assert_eq!(
        std::fs::read(root.join("w.txt")).unwrap(),
        b"second, longer\n"
    );
    assert_eq!(std::fs::read(root.join("v.bin")).unwrap(), b);
    assert_eq!(std::fs::read(root.join("new.txt")).unwrap(), b"new\n");
    assert_eq!(std::fs::read(root.join("keep.txt")).unwrap(), b"kept\n");
    assert_eq!(
        std::fs::read(root.join("dir/local.txt")).unwrap(),
        b"mine\n"
    );
    // Nothing changed since: a second refresh touches nothing (the kept
    // local change was reported once), and hydrated files stay hydrated.
    let gets = counter(&m, "get_requests");
    let (ok, conflicts) = refresh(&root);
    assert!(ok && conflicts.is_empty(), "{conflicts}");
    std::fs::read(root.join("keep.txt")).unwrap();
    std::fs::read(root.join("v.bin")).unwrap();
    assert_eq!(counter(&m, "get_requests"), gets);
    m.unmount();
}

fn libc_eio() -> i32 {
    5
}

#[test]
fn paused_server_cancels_and_stopped_server_fails_within_bound() {
    if !mount_available() || !weed_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(tmp.path());
    weed.create_bucket(BUCKET);
    let store = client(&weed);
    let rt = runtime();
    let mut objects = ["a.txt", "b.txt"]
        .map(|k| (k.to_string(), Bytes::from(format!("{k}\n"))))
        .to_vec();
    objects.push(("d.bin".into(), Bytes::from(pattern(16 << 20, 3))));
    rt.block_on(put_all(&store, objects));
    let root = tmp.path().join("root");
    const BOUND: u64 = 3;
    let gate = Gate::start(weed.port());
    let m = mount_at(
        &gate.endpoint,
        &root,
        &["--retry-bound", &BOUND.to_string()],
    );
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"a.txt\n");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 3);

    // A client killed during a GET the paused server never answers: the
    // command is cancelled and its request dropped, before any retry.
    weed.pause(true);
    let mut cat = Command::new("cat")
        .arg(root.join("b.txt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the GET to be in flight", || counter(&m, "in_flight") == 1);
    cat.kill().unwrap();
    cat.wait().unwrap();
    wait_for("the GET to be dropped", || counter(&m, "in_flight") == 0);
    let s = m.status();
    assert_eq!(s["s3"]["retries"], 0, "the request timed out instead: {s}");
    assert!(s["callbacks"]["cancelled"].as_u64().unwrap() >= 1, "{s}");
    weed.pause(false);

    // The server stopped in the middle of a read (the proxy holds the
    // answers after the first MiB): EIO within the bound; hydrated files
    // are still read.
    gate.arm(1 << 20);
    let cat = Command::new("cat")
        .arg(root.join("d.bin"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("1 MiB of d.bin to pass and the rest to be held", || {
        gate.held()
    });
    weed.stop();
    let started = Instant::now();
    gate.open();
    let cat = cat.wait_with_output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&cat.stderr);
    eprintln!(
        "read with the server stopped mid-read: {} after {took:?}",
        stderr.trim()
    );
    assert!(!cat.status.success());
    assert!(stderr.contains("Input/output error"), "cat: {stderr}");
    // The bound, plus room for a loaded machine.
    assert!(took < Duration::from_secs(BOUND + 20), "{took:?}");
    assert!(daemon_log(&m).contains("gave up after"));
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"a.txt\n");
    m.unmount();
}

#[test]
fn watch_interval_then_remount_and_refresh() {
    if !mount_available() || !weed_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(tmp.path());
    weed.create_bucket(BUCKET);
    let store = client(&weed);
    let rt = runtime();
    let put = |k: &str, v: &'static [u8]| {
        rt.block_on(put_all(&store, vec![(k.to_string(), Bytes::from(v))]))
    };
    put("sub/old.txt", b"old\n");
    let root = tmp.path().join("root");
    let m = mount(&weed, &root, &["--watch-interval", "1"]);
    let listing = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(listing(&root.join("sub")), ["old.txt"]);
    assert_eq!(std::fs::read(root.join("sub/old.txt")).unwrap(), b"old\n");
    put("sub/new.txt", b"new\n");
    rt.block_on(store.delete(&Key::from("sub/old.txt")))
        .unwrap();
    // The kernel's cached listing is dropped by the refresh, not by time.
    wait_for("the watch to apply the changes", || {
        listing(&root.join("sub")) == ["new.txt"]
    });
    assert_eq!(std::fs::read(root.join("sub/new.txt")).unwrap(), b"new\n");
    assert!(!root.join("sub/old.txt").exists());
    m.unmount();

    // Remounted: the hydrated file is served from the root without a GET,
    // and a refresh with no listing kept yet still applies a change.
    let m = mount(&weed, &root, &[]);
    assert_eq!(std::fs::read(root.join("sub/new.txt")).unwrap(), b"new\n");
    assert_eq!(counter(&m, "get_requests"), 0);
    put("sub/new.txt", b"newer\n");
    let (ok, conflicts) = refresh(&root);
    assert!(ok && conflicts.is_empty(), "{conflicts}");
    assert_eq!(std::fs::read(root.join("sub/new.txt")).unwrap(), b"newer\n");
    m.unmount();
}

/// Ranged hydration against the real server: scattered reads of a big
/// object fetch only the chunks they touch (the file stays a placeholder),
/// a write that keeps the old bytes fetches the rest first, and every byte
/// of the object is fetched exactly once in all.
#[test]
fn scattered_reads_fetch_their_chunks_and_a_write_fetches_the_rest_once() {
    if !mount_available() || !weed_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(tmp.path());
    weed.create_bucket(BUCKET);
    let store = client(&weed);
    let rt = runtime();
    const SIZE: usize = 24 << 20;
    let data = pattern(SIZE, 9);
    rt.block_on(put_all(
        &store,
        vec![("r.bin".to_string(), Bytes::from(data.clone()))],
    ));
    let root = tmp.path().join("root");
    let m = mount(&weed, &root, &[]);
    let file = root.join("r.bin");

    // Three reads of 64 KiB, far apart.
    let offsets = [1 << 20, (10 << 20) + 100, 20 << 20];
    for at in offsets {
        let piece = tmp.path().join("piece");
        sh(Command::new("dd")
            .arg(format!("if={}", file.display()))
            .arg(format!("of={}", piece.display()))
            .args([
                "iflag=skip_bytes,count_bytes",
                "bs=64K",
                &format!("skip={at}"),
                "count=65536",
                "status=none",
            ]));
        assert_eq!(std::fs::read(&piece).unwrap(), &data[at..at + 65536]);
    }
    wait_for("the fetches of the reads to end", || settled(&m));
    let fetched = counter(&m, "bytes_fetched");
    eprintln!("3 reads of 64 KiB: {fetched} bytes fetched");
    // Each read's chunks (256 KiB, two where a read crosses a boundary), and
    // the kernel's own readahead behind it: far from the 24 MiB.
    assert!(fetched <= 3 << 20, "{fetched} bytes fetched");
    let state = m.state(&file);
    assert!(state.ends_with(": Placeholder (1)"), "{state}");

    // A write in place needs the whole file: the missing chunks first.
    let mut dd = Command::new("dd")
        .arg(format!("of={}", file.display()))
        .args([
            "bs=1",
            "seek=5000000",
            "count=1",
            "conv=notrunc",
            "status=none",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut dd.stdin.take().unwrap(), b"X").unwrap();
    assert!(dd.wait().unwrap().success());
    wait_for("the fetches of the write to end", || settled(&m));
    assert_eq!(
        counter(&m, "bytes_fetched"),
        SIZE as u64,
        "every byte fetched once"
    );
    let state = m.state(&file);
    assert!(state.ends_with(": Full (8)"), "{state}");
    let mut expected = data;
    expected[5_000_000] = b'X';
    assert!(std::fs::read(&file).unwrap() == expected, "other bytes");
    m.unmount();
}
