//! `prjfs mount --notify-log FILE`: a scripted session of real programs
//! (create, write, close, rename, link, delete, open and close without a
//! change, a directory made and removed) gives exactly the expected lines, in
//! order, with the clients' pids and names; `prjfs status` counts them.
//!
//! Close notifications follow the kernel's RELEASE, sent after `close`
//! returned, so each step waits for its lines before the next one runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prjfs_testkit::{mount_available, CliMount};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// Run `program ARGS` in `dir`; returns its pid.
fn step(dir: &Path, program: &str, args: &[&str]) -> u32 {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a client");
    let pid = child.id();
    let out = child.wait_with_output().expect("a client's output");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

fn lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

/// Wait until the log has `n` lines; panics after 10 s.
fn wait_lines(log: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = lines(log);
        if l.len() >= n {
            return l;
        }
        assert!(Instant::now() < deadline, "waited for {n} lines: {l:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn notify_log_of_a_scripted_session() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, root) = (tmp.path().join("src"), tmp.path().join("root"));
    std::fs::create_dir(&source).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::fs::write(source.join("projected.txt"), b"from the source\n").unwrap();
    let log = tmp.path().join("notify.jsonl");
    let log_arg = log.to_str().expect("a UTF-8 temp path");
    let m = CliMount::new(&bin(), &["--notify-log", log_arg], &source, &root);

    let mut want: Vec<(&str, &str, &str, u32, &str)> = Vec::new();
    let check = |want: &[(&str, &str, &str, u32, &str)]| {
        let got = wait_lines(&log, want.len());
        let got: Vec<_> = got
            .iter()
            .map(|v| {
                (
                    v["kind"].as_str().unwrap().to_string(),
                    v["path"].as_str().unwrap().to_string(),
                    v["destination"].as_str().unwrap().to_string(),
                    v["pid"].as_u64().unwrap() as u32,
                    v["process"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<_> = want
            .iter()
            .map(|(k, p, d, pid, name)| {
                (
                    k.to_string(),
                    p.to_string(),
                    d.to_string(),
                    *pid,
                    name.to_string(),
                )
            })
            .collect();
        assert_eq!(got, want);
    };

    // Create, write, close.
    let sh = step(
        &root,
        "sh",
        &["-c", "exec 3>new.txt; echo data >&3; exec 3>&-"],
    );
    want.push(("new_file_created", "new.txt", "", sh, "sh"));
    want.push(("file_handle_closed_file_modified", "new.txt", "", sh, "sh"));
    check(&want);
    let mv = step(&root, "mv", &["new.txt", "renamed.txt"]);
    want.push(("pre_rename", "new.txt", "renamed.txt", mv, "mv"));
    want.push(("file_renamed", "new.txt", "renamed.txt", mv, "mv"));
    check(&want);
    let ln = step(&root, "ln", &["renamed.txt", "linked.txt"]);
    want.push(("pre_set_hardlink", "renamed.txt", "linked.txt", ln, "ln"));
    want.push(("hardlink_created", "renamed.txt", "linked.txt", ln, "ln"));
    check(&want);
    let rm = step(&root, "rm", &["linked.txt"]);
    want.push(("pre_delete", "linked.txt", "", rm, "rm"));
    want.push((
        "file_handle_closed_file_deleted",
        "linked.txt",
        "",
        rm,
        "rm",
    ));
    check(&want);
    // Open and close without a change, of a local and of a projected file.
    // (One file per client: the close of one and the open of the next would
    // race, the close coming with the kernel's asynchronous RELEASE.)
    let cat = step(&root, "cat", &["renamed.txt"]);
    want.push(("file_opened", "renamed.txt", "", cat, "cat"));
    want.push((
        "file_handle_closed_no_modification",
        "renamed.txt",
        "",
        cat,
        "cat",
    ));
    check(&want);
    let cat = step(&root, "cat", &["projected.txt"]);
    want.push(("file_opened", "projected.txt", "", cat, "cat"));
    want.push((
        "file_handle_closed_no_modification",
        "projected.txt",
        "",
        cat,
        "cat",
    ));
    check(&want);
    // Append to the projected file: it becomes full first.
    let sh = step(&root, "sh", &["-c", "echo more >> projected.txt"]);
    want.push(("file_opened", "projected.txt", "", sh, "sh"));
    want.push(("file_pre_convert_to_full", "projected.txt", "", sh, "sh"));
    want.push((
        "file_handle_closed_file_modified",
        "projected.txt",
        "",
        sh,
        "sh",
    ));
    check(&want);
    // Overwrite it.
    let sh = step(&root, "sh", &["-c", "echo new > projected.txt"]);
    want.push(("file_overwritten", "projected.txt", "", sh, "sh"));
    want.push((
        "file_handle_closed_file_modified",
        "projected.txt",
        "",
        sh,
        "sh",
    ));
    check(&want);
    let mkdir = step(&root, "mkdir", &["dir"]);
    want.push(("new_file_created", "dir", "", mkdir, "mkdir"));
    let rmdir = step(&root, "rmdir", &["dir"]);
    want.push(("pre_delete", "dir", "", rmdir, "rmdir"));
    want.push(("file_handle_closed_file_deleted", "dir", "", rmdir, "rmdir"));
    check(&want);

    // Every line has a time; the status counts what was logged.
    for l in lines(&log) {
        let t = l["time"].as_str().expect("a time");
        assert!(t.len() == 27 && t.ends_with('Z'), "time {t}");
    }
    let status = m.status();
    let counted = &status["notifications"];
    for kind in [
        "file_opened",
        "new_file_created",
        "file_overwritten",
        "pre_delete",
        "pre_rename",
        "pre_set_hardlink",
        "file_renamed",
        "hardlink_created",
        "file_handle_closed_no_modification",
        "file_handle_closed_file_modified",
        "file_handle_closed_file_deleted",
        "file_pre_convert_to_full",
    ] {
        let logged = want.iter().filter(|w| w.0 == kind).count() as u64;
        assert_eq!(counted[kind].as_u64(), Some(logged), "{kind}: {counted}");
    }
    let text = m
        .prjfs(&["status"])
        .arg(&m.root)
        .output()
        .expect("prjfs status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("file_renamed 1"), "{text}");
    m.unmount();
}

/// The dir provider pending every callback (`--async`, through the library's
/// async adapter) logs the same kinds in the same order.
#[test]
fn notify_log_with_a_pending_provider() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, root) = (tmp.path().join("src"), tmp.path().join("root"));
    std::fs::create_dir(&source).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::fs::write(source.join("p.txt"), b"p\n").unwrap();
    let log = tmp.path().join("notify.jsonl");
    let log_arg = log.to_str().expect("a UTF-8 temp path");
    let m = CliMount::new(
        &bin(),
        &["--async", "--notify-log", log_arg],
        &source,
        &root,
    );
    step(&root, "sh", &["-c", "echo x >> p.txt"]);
    wait_lines(&log, 3);
    step(&root, "mv", &["p.txt", "q.txt"]);
    wait_lines(&log, 5);
    step(&root, "rm", &["q.txt"]);
    let kinds: Vec<String> = wait_lines(&log, 7)
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "file_opened",
            "file_pre_convert_to_full",
            "file_handle_closed_file_modified",
            "pre_rename",
            "file_renamed",
            "pre_delete",
            "file_handle_closed_file_deleted",
        ]
    );
    assert_eq!(m.status()["callbacks"]["by_kind"]["notification"], 7);
    m.unmount();
}

#[test]
fn without_notify_log_nothing_is_counted() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, root) = (tmp.path().join("src"), tmp.path().join("root"));
    std::fs::create_dir(&source).unwrap();
    std::fs::create_dir(&root).unwrap();
    let m = CliMount::new(&bin(), &[], &source, &root);
    step(&root, "sh", &["-c", "echo x > f; cat f; rm f"]);
    let status = m.status();
    let counts = status["notifications"].as_object().expect("counts by kind");
    assert_eq!(counts.len(), 12);
    assert!(counts.values().all(|n| n == 0), "{counts:?}");
    assert_eq!(status["callbacks"]["by_kind"]["notification"], 0);
    m.unmount();
}
