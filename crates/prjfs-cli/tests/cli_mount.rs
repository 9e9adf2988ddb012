//! Mounted end-to-end tests of the `prjfs` command: real programs (`diff`, `find`,
//! `ls`, `cp`, `cat`, `stat`) run against a projected root and its source.
//!
//! Every test needs root and /dev/fuse (skipped elsewhere, mandatory in CI), builds
//! its source and root under one temp dir, and holds a [`CliMount`] so the mount is
//! removed even when the test panics.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use prjfs_testkit::{
    default_signals, eventually, is_mounted, make_tree, mount_available, CliMount, TreeSpec,
};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

/// A temp dir holding `src/` and an empty `root/` (both 0755, not tempfile's 0700).
struct Dirs {
    tmp: tempfile::TempDir,
    source: PathBuf,
    root: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("src");
        let root = tmp.path().join("root");
        std::fs::create_dir(&source).expect("mkdir src");
        std::fs::create_dir(&root).expect("mkdir root");
        Dirs { tmp, source, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// A command with a fixed locale, so listings sort and print the same way.
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("LC_ALL", "C").env("TZ", "UTC");
    c
}

fn prjfs(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run to completion; panic with its output unless it succeeded.
fn ok(c: &mut Command) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Run to completion, expecting failure; returns its output.
fn fails(c: &mut Command) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        !out.status.success(),
        "{c:?} succeeded but should have failed:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `diff -r --no-dereference A B` is clean.
fn assert_diff_clean(a: &Path, b: &Path) {
    let out = ok(cmd("diff").arg("-r").arg("--no-dereference").arg(a).arg(b));
    assert!(out.is_empty(), "diff -r {a:?} {b:?}:\n{out}");
}

/// `find DIR -printf '%P %y %s %m %T@ %l'` sorted, for everything below DIR; for
/// directories everything but the size.
fn find_listing(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = ok(cmd("find")
        .arg(dir)
        .args(["-mindepth", "1", "!", "-type", "d"])
        .args(["-printf", "%P %y %s %m %T@ %l\\n"]))
    .lines()
    .map(str::to_string)
    .collect();
    lines.extend(
        ok(cmd("find")
            .arg(dir)
            .args(["-mindepth", "1", "-type", "d"])
            .args(["-printf", "%P %y %m %T@\\n"]))
        .lines()
        .map(str::to_string),
    );
    lines.sort();
    lines
}

fn assert_same_listing(what: &str, got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).take(10).collect();
    let extra: Vec<&String> = got.iter().filter(|l| !want.contains(l)).take(10).collect();
    panic!(
        "{what}: {} lines vs {} expected\nexpected but missing (first 10): {missing:#?}\nunexpected (first 10): {extra:#?}",
        got.len(),
        want.len()
    );
}

/// `ls -lR` of DIR without `total` lines and the link-count column, with DIR's path
/// removed from the headers.
fn ls_listing(dir: &Path) -> Vec<String> {
    let out = ok(cmd("ls").args(["-lR", "--time-style=full-iso"]).arg(dir));
    let prefix = dir.to_string_lossy().into_owned();
    out.lines()
        .filter(|l| !l.starts_with("total "))
        .map(|l| {
            if let Some(rest) = l.strip_prefix(prefix.as_str()) {
                if l.ends_with(':') {
                    return format!("<DIR>{rest}");
                }
            }
            let fields: Vec<&str> = l.split(' ').filter(|f| !f.is_empty()).collect();
            if fields.len() < 8 {
                return l.to_string();
            }
            // perms links owner group size date time zone name...
            let mut kept = vec![fields[0], fields[2], fields[3], fields[4]];
            kept.extend_from_slice(&fields[5..]);
            kept.join(" ")
        })
        .collect()
}

/// Mount like [`CliMount::new`] but keep the command's output; the guard exists
/// (so the mount is removed on panic) whenever the mount succeeded.
fn try_mount(args: &[&str], source: &Path, root: &Path) -> (Output, Option<CliMount>) {
    let out = prjfs(&["mount"])
        .args(args)
        .arg(source)
        .arg(root)
        .output()
        .expect("running prjfs mount");
    if !out.status.success() {
        return (out, None);
    }
    let mut m = CliMount {
        bin: bin(),
        source: source.to_path_buf(),
        root: std::path::absolute(root).expect("absolute root"),
        pid: None,
    };
    m.pid = m.status()["pid"].as_u64().map(|p| p as u32);
    (out, Some(m))
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["callbacks"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no callbacks.{name}: {status}"))
}

fn by_kind(status: &serde_json::Value, kind: &str) -> u64 {
    status["callbacks"]["by_kind"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no callbacks.by_kind.{kind}: {status}"))
}

fn states(status: &serde_json::Value, name: &str) -> u64 {
    status["states"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no states.{name}: {status}"))
}

/// `prjfs state PATH` must print exactly `PATH: WANT`.
fn assert_state(m: &CliMount, path: &Path, want: &str) {
    assert_eq!(m.state(path), format!("{}: {want}", path.display()));
}

/// Wait for a child for at most `limit`; kill it (SIGKILL) when it overruns.
fn wait_limited(child: &mut Child, limit: Duration) -> (Option<ExitStatus>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return (Some(st), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            return (None, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we own (our child or our own daemon).
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

fn write_file(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, data).expect("write");
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((seed * 131 + j * 17) % 253) as u8)
        .collect()
}

/// Case 1: A 2,000-file tree looks the same through the mount as in the source, to
/// diff, find, ls -lR and cp -a.
#[test]
fn big_tree_matches_source_for_real_tools() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let files = make_tree(&d.source, TreeSpec::default());
    assert!(files.len() >= 2000);
    let m = CliMount::new(&bin(), &[], &d.source, &d.root);
    let root = m.root.clone();

    let want = find_listing(&d.source);
    assert!(want.iter().any(|l| l.contains(" l ")), "tree has symlinks");
    assert!(
        want.iter().any(|l| l.starts_with("empty d ")),
        "tree has an empty dir"
    );
    // Before anything is hydrated: placeholders and virtual items show the source's
    // metadata.
    assert_same_listing("find before hydration", &find_listing(&root), &want);
    assert_eq!(m.invoked("get_file_data"), 0, "find read no file data");

    assert_diff_clean(&d.source, &root);
    let st = m.status();
    assert!(
        by_kind(&st, "get_file_data") > 0,
        "diff read through the provider"
    );
    assert_eq!(counter(&st, "failed"), 0, "{st}");

    // After hydration the metadata is still the source's.
    assert_same_listing("find after hydration", &find_listing(&root), &want);
    assert_same_listing("ls -lR", &ls_listing(&root), &ls_listing(&d.source));

    let dest = d.path("dest");
    ok(cmd("cp").arg("-a").arg(&root).arg(&dest));
    assert_diff_clean(&d.source, &dest);
    assert_same_listing("find of the cp -a copy", &find_listing(&dest), &want);
    assert!(
        !dest.join(".prjfs").exists(),
        "the layer's hidden directory leaked into the projection"
    );
    m.unmount();
}

/// `prjfs status` counts the listings read ahead and whether a client used
/// them (`listings:` line, `read_ahead` in JSON); none with `--no-read-ahead`.
#[test]
fn status_counts_listings_read_ahead() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    for dir in ["a", "b"] {
        std::fs::create_dir_all(d.source.join(dir)).unwrap();
        write_file(&d.source.join(dir).join("x"), b"x\n");
    }
    let m = CliMount::new(&bin(), &[], &d.source, &d.root);
    let read_ahead = |name: &str| {
        m.status()["read_ahead"][name]
            .as_u64()
            .expect("read_ahead counters")
    };
    assert_eq!(read_ahead("read"), 0, "nothing listed yet");
    // Listing the root queues a and b; the read-ahead thread reads both and
    // holds them (two held, nothing more queued: it waits for a client).
    assert_eq!(entries(&d.root), ["a", "b"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_ahead("read") < 2 {
        assert!(
            Instant::now() < deadline,
            "a and b were not read ahead in a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_ahead("read"), 2);
    // Listing a takes its listing: used, or stale if it waited over a second.
    assert_eq!(entries(&d.root.join("a")), ["x"]);
    assert_eq!(read_ahead("used") + read_ahead("stale"), 1);
    let text = ok(prjfs(&["status"]).arg(&m.root));
    assert!(text.contains("listings:  2 read ahead"), "{text}");
    m.unmount();

    let m = CliMount::new(&bin(), &["--no-read-ahead"], &d.source, &d.root);
    assert!(m.status()["read_ahead"].is_null());
    assert!(!ok(prjfs(&["status"]).arg(&m.root)).contains("listings:"));
    m.unmount();
}

/// Case 2: Virtual → Placeholder (stat) → Hydrated (cat); `ls -l` hydrates nothing.
/// A pipe whose read end is closed: a write to it fails for sure.
fn closed_pipe() -> Stdio {
    let (read_end, write_end) = rustix::pipe::pipe().expect("pipe");
    drop(read_end);
    Stdio::from(write_end)
}

/// `prjfs status` and `prjfs state` whose reader has gone (`| head`) end by
/// SIGPIPE, as `ls` does, not with a panic message; `prjfs hydrate` does its
/// work and exits 0 (its summary line is all it prints). Their stdout is a
/// pipe whose read end is closed before they start.
#[test]
fn listing_commands_end_quietly_when_their_reader_is_gone() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    write_file(&d.source.join("a.txt"), b"a\n");
    let m = CliMount::new(&bin(), &[], &d.source, &d.root);
    let file = m.root.join("a.txt");
    for args in [
        vec!["status".to_string(), m.root.display().to_string()],
        vec!["state".to_string(), file.display().to_string()],
    ] {
        let out = Command::new(bin())
            .args(&args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .expect("running prjfs");
        let err = text(&out.stderr);
        assert!(
            !err.contains("panicked"),
            "prjfs {args:?} panicked writing to a closed pipe: {err}"
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "prjfs {args:?}: {:?}, stderr: {err}",
            out.status
        );
    }
    let out = Command::new(bin())
        .arg("hydrate")
        .arg(&m.root)
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("running prjfs hydrate");
    let err = text(&out.stderr);
    assert!(
        out.status.success() && !err.contains("panicked"),
        "prjfs hydrate with its reader gone: {:?}, stderr: {err}",
        out.status
    );
    assert_state(&m, &file, "Placeholder|HydratedPlaceholder (3)");
}

#[test]
fn state_transitions_seen_by_prjfs_state() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let f1 = pattern(1, 5000);
    write_file(&d.source.join("d/f1.txt"), &f1);
    write_file(&d.source.join("d/f2.txt"), &pattern(2, 300));
    write_file(&d.source.join("d/sub/g.txt"), b"g\n");
    for i in 0..5 {
        write_file(
            &d.source.join(format!("e/x{i}")),
            &pattern(10 + i, 100 * i + 1),
        );
    }
    let m = CliMount::new(&bin(), &[], &d.source, &d.root);
    let root = m.root.clone();

    // Never listed, never looked up: the parent (the root) is on disk, the item not.
    assert_state(&m, &root.join("d"), "Virtual (0)");

    // stat creates the placeholder without data, with the source's metadata.
    let stat_fmt = "%s %a %Y %F";
    let got = ok(cmd("stat")
        .args(["-c", stat_fmt])
        .arg(root.join("d/f1.txt")));
    let want = ok(cmd("stat")
        .args(["-c", stat_fmt])
        .arg(d.source.join("d/f1.txt")));
    assert_eq!(got, want, "stat of a never-touched file");
    assert!(got.starts_with("5000 "), "{got}");
    assert_state(&m, &root.join("d/f1.txt"), "Placeholder (1)");
    assert_state(&m, &root.join("d"), "Placeholder (1)");
    // Its sibling: parent on disk, never listed, never looked up.
    assert_state(&m, &root.join("d/f2.txt"), "Virtual (0)");
    assert_state(&m, &root.join("d/sub"), "Virtual (0)");
    assert_eq!(m.invoked("get_file_data"), 0, "stat fetched data");

    // cat hydrates.
    let out = cmd("cat").arg(root.join("d/f1.txt")).output().expect("cat");
    assert!(out.status.success(), "cat: {}", text(&out.stderr));
    assert_eq!(out.stdout, f1, "cat returned the source bytes");
    assert_state(
        &m,
        &root.join("d/f1.txt"),
        "Placeholder|HydratedPlaceholder (3)",
    );
    let st = m.status();
    assert_eq!(by_kind(&st, "get_file_data"), 1, "{st}");
    assert_eq!(states(&st, "hydrated"), 1, "{st}");

    // ls -l of a never-listed directory lists everything and hydrates nothing.
    // (`total` counts blocks on disk, which placeholders do not have yet.)
    let no_total = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("total "))
            .map(str::to_string)
            .collect()
    };
    let listing = no_total(ok(cmd("ls").arg("-l").arg(root.join("e"))));
    let want_listing = no_total(ok(cmd("ls").arg("-l").arg(d.source.join("e"))));
    assert_eq!(listing.len(), 5, "{listing:?}");
    assert_eq!(listing, want_listing, "ls -l of a projected directory");
    let st2 = m.status();
    assert_eq!(
        by_kind(&st2, "get_file_data"),
        by_kind(&st, "get_file_data"),
        "ls -l fetched file data: {st2}"
    );
    assert_eq!(states(&st2, "hydrated"), 1, "{st2}");
    for i in 0..5 {
        let p = root.join(format!("e/x{i}"));
        let s = m.state(&p);
        assert!(
            s == format!("{}: Placeholder (1)", p.display())
                || s == format!("{}: Virtual (0)", p.display()),
            "after ls -l: {s}"
        );
    }
    m.unmount();
}

/// Case 3: Hydrated files survive an unmount as plain bytes in the root and are not
/// fetched again after a remount.
#[test]
fn hydrated_files_persist_across_remount() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let spec = TreeSpec {
        files: 300,
        dirs: 30,
        depth: 4,
        symlinks: 6,
        max_size: 16 * 1024,
        seed: 11,
    };
    let files: Vec<PathBuf> = make_tree(&d.source, spec)
        .into_iter()
        .filter(|f| std::fs::metadata(d.source.join(f)).unwrap().len() > 0)
        .collect();
    let (hydrated, placeholders) = (&files[..20], &files[20..25]);

    let m = CliMount::new(&bin(), &[], &d.source, &d.root);
    let root = m.root.clone();
    for f in hydrated {
        let out = cmd("cat").arg(root.join(f)).output().expect("cat");
        assert!(out.status.success(), "cat {f:?}: {}", text(&out.stderr));
        assert_eq!(
            out.stdout,
            std::fs::read(d.source.join(f)).unwrap(),
            "{f:?}"
        );
    }
    for f in placeholders {
        ok(cmd("stat").arg(root.join(f)));
        assert_state(&m, &root.join(f), "Placeholder (1)");
    }
    m.unmount();
    assert!(!is_mounted(&root), "still mounted after prjfs unmount");

    // The bare root directory holds the hydrated files' bytes.
    for f in hydrated {
        let on_disk = std::fs::read(root.join(f))
            .unwrap_or_else(|e| panic!("{f:?} missing from the unmounted root: {e}"));
        assert_eq!(on_disk, std::fs::read(d.source.join(f)).unwrap(), "{f:?}");
    }

    let m = CliMount::new(&bin(), &[], &d.source, &d.root);
    for f in hydrated {
        assert_state(&m, &root.join(f), "Placeholder|HydratedPlaceholder (3)");
    }
    for f in placeholders {
        assert_state(&m, &root.join(f), "Placeholder (1)");
    }
    for f in hydrated {
        let out = cmd("cat").arg(root.join(f)).output().expect("cat");
        assert!(out.status.success(), "cat {f:?}: {}", text(&out.stderr));
        assert_eq!(
            out.stdout,
            std::fs::read(d.source.join(f)).unwrap(),
            "{f:?}"
        );
    }
    assert_eq!(
        m.invoked("get_file_data"),
        0,
        "already-hydrated files were fetched again"
    );
    for f in placeholders {
        let out = cmd("cat").arg(root.join(f)).output().expect("cat");
        assert!(out.status.success(), "cat {f:?}: {}", text(&out.stderr));
        assert_eq!(
            out.stdout,
            std::fs::read(d.source.join(f)).unwrap(),
            "{f:?}"
        );
        assert_state(&m, &root.join(f), "Placeholder|HydratedPlaceholder (3)");
    }
    let n = m.invoked("get_file_data");
    assert!(
        (1..=placeholders.len() as u64).contains(&n),
        "get_file_data = {n} for {} placeholder files",
        placeholders.len()
    );
    assert_diff_clean(&d.source, &root);
    m.unmount();
}

/// A failed `prjfs mount` at `root` left no mount and no daemon behind.
fn assert_nothing_mounted(root: &Path) {
    let abs = std::path::absolute(root).unwrap();
    assert!(
        !is_mounted(&abs),
        "{abs:?} is mounted after a refused mount"
    );
    let out = prjfs(&["status"]).arg(&abs).output().unwrap();
    assert!(
        !out.status.success(),
        "a daemon answers for {abs:?} after a refused mount"
    );
}

fn assert_stderr_has(out: &Output, words: &[&str]) {
    let err = text(&out.stderr);
    for w in words {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Case 4: Bad input: non-zero exit, a clear message, nothing mounted.
#[test]
fn bad_input_is_refused_clearly() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    write_file(&d.source.join("a.txt"), b"a\n");
    let other = d.path("other");
    write_file(&other.join("b.txt"), b"b\n");
    let a_file = d.path("plain-file");
    write_file(&a_file, b"x");

    // Missing SOURCE.
    let out = fails(prjfs(&["mount"]).arg(d.path("nosuch")).arg(&d.root));
    assert_stderr_has(&out, &["source", "nosuch", "No such file"]);
    assert_nothing_mounted(&d.root);

    // SOURCE a regular file.
    let out = fails(prjfs(&["mount"]).arg(&a_file).arg(&d.root));
    assert_stderr_has(&out, &["source", "not a directory"]);
    assert_nothing_mounted(&d.root);

    // ROOT a regular file.
    let out = fails(prjfs(&["mount"]).arg(&d.source).arg(&a_file));
    assert_stderr_has(&out, &["root", "plain-file", "not a directory"]);
    assert_nothing_mounted(&a_file);
    assert_eq!(std::fs::read(&a_file).unwrap(), b"x");

    // ROOT a non-empty directory that is not a prjfs root.
    let foreign = d.path("foreign");
    write_file(&foreign.join("mine.txt"), b"mine\n");
    let out = fails(prjfs(&["mount"]).arg(&d.source).arg(&foreign));
    assert_stderr_has(&out, &["foreign", "not empty"]);
    assert_nothing_mounted(&foreign);

    // ROOT the root of another source: A at R, unmount, B at R.
    let r = d.path("r");
    std::fs::create_dir(&r).unwrap();
    CliMount::new(&bin(), &[], &d.source, &r).unmount();
    let out = fails(prjfs(&["mount"]).arg(&other).arg(&r));
    assert_stderr_has(&out, &["another projection", &d.source.to_string_lossy()]);
    assert_nothing_mounted(&r);
    // ... and A may still come back there.
    let m = CliMount::new(&bin(), &[], &d.source, &r);
    assert_eq!(
        ok(cmd("cat").arg(r.join("a.txt"))),
        "a\n",
        "the original source remounts"
    );
    m.unmount();

    // --threads 0.
    let out = fails(
        prjfs(&["mount", "--threads", "0"])
            .arg(&d.source)
            .arg(&d.root),
    );
    assert_stderr_has(&out, &["--threads", "'0'"]);
    assert_nothing_mounted(&d.root);

    // Unknown flag.
    let out = fails(
        prjfs(&["mount", "--no-such-flag"])
            .arg(&d.source)
            .arg(&d.root),
    );
    assert_stderr_has(&out, &["unexpected argument", "--no-such-flag"]);
    assert_nothing_mounted(&d.root);

    // The root is still untouched and empty after all the refusals.
    assert!(entries(&d.root).is_empty(), "{:?}", entries(&d.root));

    // unmount / status of something that is not a mount.
    let out = fails(prjfs(&["unmount"]).arg(&d.root));
    assert_stderr_has(&out, &["root", "not a mounted prjfs root"]);
    let out = fails(prjfs(&["status"]).arg(&d.root));
    assert_stderr_has(&out, &["no prjfs daemon"]);
    let out = fails(prjfs(&["status", "--json"]).arg(&d.root));
    assert_stderr_has(&out, &["no prjfs daemon"]);
    assert!(
        out.stdout.is_empty(),
        "status printed: {}",
        text(&out.stdout)
    );

    // state of a path outside any mount.
    let out = fails(prjfs(&["state"]).arg(d.source.join("a.txt")));
    assert_stderr_has(&out, &["a.txt", "not inside a mounted prjfs root"]);
}

/// Case 4 (cont.): a mount refused because ROOT is a foreign non-empty directory
/// leaves that directory exactly as it was.
#[test]
fn refused_mount_leaves_a_foreign_directory_untouched() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    write_file(&d.source.join("a.txt"), b"a\n");
    let foreign = d.path("foreign");
    write_file(&foreign.join("mine.txt"), b"mine\n");
    let out = fails(prjfs(&["mount"]).arg(&d.source).arg(&foreign));
    assert_stderr_has(&out, &["foreign", "not empty"]);
    assert_nothing_mounted(&foreign);
    assert_eq!(
        entries(&foreign),
        vec!["mine.txt".to_string()],
        "a refused mount changed the foreign directory"
    );
    assert_eq!(std::fs::read(foreign.join("mine.txt")).unwrap(), b"mine\n");
}

/// Spawn `cat PATH` with its output captured.
fn spawn_cat(path: &Path) -> Child {
    default_signals(&mut cmd("cat"))
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cat")
}

/// Interrupt `cat` of an already-looked-up file while its GetFileData waits in the
/// provider: the cat ends at once and the callback is counted cancelled.
fn interrupt_slow_cat(m: &CliMount, file: &Path, sig: i32) {
    let before = m.status();
    let mut cat = spawn_cat(file);
    // The read reaches the provider, whose callback waits 3 s.
    assert!(
        eventually(Duration::from_secs(3), || counter(&m.status(), "pending")
            == 1),
        "cat's GetFileData was never pending: {}",
        m.status()
    );
    assert!(
        cat.try_wait().unwrap().is_none(),
        "cat ended before the 3 s latency"
    );
    let during = m.status();
    assert_eq!(
        by_kind(&during, "get_file_data"),
        by_kind(&before, "get_file_data") + 1,
        "the pending callback is GetFileData: {during}"
    );
    assert_eq!(
        by_kind(&during, "get_placeholder_info"),
        by_kind(&before, "get_placeholder_info"),
        "the file was looked up already: {during}"
    );
    assert_eq!(counter(&during, "pending"), 1, "{during}");
    signal(cat.id(), sig);
    let (status, took) = wait_limited(&mut cat, Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("cat still running {took:?} after signal {sig}"));
    assert!(
        took < Duration::from_secs(1),
        "cat took {took:?} to end after signal {sig}"
    );
    assert_eq!(status.signal(), Some(sig), "cat: {status}");
    let after = m.status();
    assert!(
        counter(&after, "cancelled") > counter(&before, "cancelled"),
        "nothing counted cancelled after signal {sig}: {after}"
    );
    assert!(counter(&after, "cancelled") >= 1, "{after}");
    assert_eq!(counter(&after, "pending"), 0, "{after}");
    assert_state(m, file, "Placeholder (1)");
}

/// Case 5: Ctrl-C (and SIGKILL) on a cat stuck behind a slow provider.
#[test]
fn signals_cancel_slow_reads() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let data_a = pattern(3, 200_000);
    let data_b = pattern(4, 70_000);
    write_file(&d.source.join("a.bin"), &data_a);
    write_file(&d.source.join("b.bin"), &data_b);
    let m = CliMount::new(&bin(), &["--latency", "3000"], &d.source, &d.root);
    let root = m.root.clone();
    let (a, b) = (root.join("a.bin"), root.join("b.bin"));

    // Look both up (one slow GetPlaceholderInfo each, in parallel).
    let stats: Vec<Child> = [&a, &b]
        .iter()
        .map(|p| {
            cmd("stat")
                .arg(p)
                .stdout(Stdio::null())
                .spawn()
                .expect("stat")
        })
        .collect();
    for mut s in stats {
        let (st, took) = wait_limited(&mut s, Duration::from_secs(20));
        assert!(
            st.is_some_and(|s| s.success()),
            "stat: {st:?} after {took:?}"
        );
    }
    assert_state(&m, &a, "Placeholder (1)");
    assert_state(&m, &b, "Placeholder (1)");

    interrupt_slow_cat(&m, &a, libc::SIGINT);
    interrupt_slow_cat(&m, &b, libc::SIGKILL);

    // The cancelled reads left nothing half-written: a full read still works.
    let out = cmd("cat").arg(&a).output().expect("cat");
    assert!(out.status.success(), "cat: {}", text(&out.stderr));
    assert_eq!(out.stdout, data_a);
    assert_state(&m, &a, "Placeholder|HydratedPlaceholder (3)");
    let st = m.status();
    assert_eq!(counter(&st, "pending"), 0, "{st}");
    m.unmount();
}

/// Case 6: 64 concurrent readers with 2 callback slots and a slow provider.
#[test]
fn parallel_clients_get_the_right_bytes() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let files: Vec<PathBuf> = (0..64)
        .map(|i| PathBuf::from(format!("d{}/s{}/f{i:02}.bin", i % 4, i % 3)))
        .collect();
    for (i, f) in files.iter().enumerate() {
        write_file(&d.source.join(f), &pattern(100 + i, 1000 + i * 997));
    }
    let m = CliMount::new(
        &bin(),
        &["--latency", "50", "--threads", "2"],
        &d.source,
        &d.root,
    );
    let root = m.root.clone();
    assert_eq!(m.status()["threads"], 2);
    let readers: Vec<_> = files
        .iter()
        .map(|f| {
            let path = root.join(f);
            std::thread::spawn(move || cmd("cat").arg(&path).output().expect("cat"))
        })
        .collect();
    for (f, r) in files.iter().zip(readers) {
        let out = r.join().expect("reader thread");
        assert!(out.status.success(), "cat {f:?}: {}", text(&out.stderr));
        assert_eq!(
            out.stdout,
            std::fs::read(d.source.join(f)).unwrap(),
            "cat {f:?} returned the wrong bytes"
        );
    }
    let st = m.status();
    assert_eq!(counter(&st, "pending"), 0, "{st}");
    assert_eq!(counter(&st, "failed"), 0, "{st}");
    assert_eq!(states(&st, "hydrated"), 64, "{st}");
    m.unmount();
}

/// Whether a line of the (unmounted) root's daemon log files mentions `word`.
fn logs_mention(root: &Path, word: &str) -> bool {
    std::fs::read_dir(root.join(".prjfs/log"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path())
                .map(|t| t.lines().any(|l| l.contains(word)))
                .unwrap_or(false)
        })
}

/// Mount `source` (one file `top.bin` with `data`, one `dir/x.txt`) with a slow
/// provider, SIGKILL the daemon while a `cat` waits on it, and check the aftermath:
/// the cat ends at once, the mount stays and answers ENOTCONN without hanging, no
/// daemon answers. Returns the dead mount's guard and the dead daemon's pid.
fn kill_daemon_under_a_client(d: &Dirs, data: &[u8]) -> (CliMount, u32) {
    write_file(&d.source.join("top.bin"), data);
    write_file(&d.source.join("dir/x.txt"), b"x\n");
    let old = CliMount::new(&bin(), &["--latency", "1000"], &d.source, &d.root);
    let root = old.root.clone();
    let pid = old.pid.expect("daemon pid from status");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // A client is waiting on the provider when the daemon dies.
    ok(cmd("stat").arg(root.join("top.bin")));
    let fetches = by_kind(&old.status(), "get_file_data");
    let mut cat = spawn_cat(&root.join("top.bin"));
    assert!(
        eventually(Duration::from_secs(10), || {
            by_kind(&old.status(), "get_file_data") > fetches
        }),
        "cat's read never reached the provider"
    );
    assert!(cat.try_wait().unwrap().is_none(), "cat ended too early");
    signal(pid, libc::SIGKILL);
    let (st, took) = wait_limited(&mut cat, Duration::from_secs(10));
    let st = st.unwrap_or_else(|| panic!("cat hung {took:?} after the daemon died"));
    assert!(!st.success(), "cat succeeded against a dead daemon");
    assert!(took < Duration::from_secs(1), "cat took {took:?}");

    // The mount stays, answering ENOTCONN at once.
    assert!(is_mounted(&root), "the dead daemon's mount disappeared");
    // The root's own attributes may come from the kernel's attribute cache; a
    // stat of it must only return promptly.
    let mut c = cmd("stat")
        .arg(&root)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (st, took) = wait_limited(&mut c, Duration::from_secs(5));
    assert!(
        st.is_some() && took < Duration::from_secs(2),
        "stat ROOT: {took:?}"
    );
    for p in [root.join("x"), root.join("dir/x.txt"), root.join("top.bin")] {
        let mut c = cmd("stat")
            .arg(&p)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (st, took) = wait_limited(&mut c, Duration::from_secs(5));
        let st = st.unwrap_or_else(|| panic!("stat {p:?} hung against a dead daemon"));
        assert!(!st.success(), "stat {p:?} succeeded against a dead daemon");
        assert!(took < Duration::from_secs(2), "stat {p:?} took {took:?}");
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(
            err.contains("Transport endpoint is not connected"),
            "stat {p:?}: {err}"
        );
    }
    let out = fails(prjfs(&["status"]).arg(&root));
    assert_stderr_has(&out, &["no prjfs daemon"]);
    (old, pid)
}

/// Case 7a: A daemon killed with SIGKILL leaves a mount that answers ENOTCONN;
/// clients, also one waiting on the daemon when it died, do not hang.
#[test]
fn killed_daemon_leaves_a_mount_answering_enotconn() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let (old, _pid) = kill_daemon_under_a_client(&d, &pattern(7, 40_000));
    // The guard removes the dead mount.
    drop(old);
    assert!(!is_mounted(&std::path::absolute(&d.root).unwrap()));
}

/// Case 7b: after a daemon was killed with SIGKILL, the next `prjfs mount` of that
/// root removes the stale mount (and says so) and works.
#[test]
fn next_mount_cleans_the_stale_mount_of_a_killed_daemon() {
    if !mount_available() {
        return;
    }
    let d = Dirs::new();
    let data = pattern(7, 40_000);
    let (old, pid) = kill_daemon_under_a_client(&d, &data);
    let root = old.root.clone();

    // The next mount removes the stale mount and works.
    let (out, new) = try_mount(&[], &d.source, &d.root);
    let new = new.unwrap_or_else(|| panic!("remount failed: {}", text(&out.stderr)));
    assert_ne!(new.pid, Some(pid));
    let got = cmd("cat").arg(root.join("top.bin")).output().unwrap();
    assert!(got.status.success(), "{}", text(&got.stderr));
    assert_eq!(got.stdout, data);
    assert_diff_clean(&d.source, &root);
    let mounts = prjfs::instance_mounts().unwrap();
    assert_eq!(
        mounts.iter().filter(|p| **p == root).count(),
        1,
        "exactly one mount at the root: {mounts:?}"
    );
    new.unmount();
    assert!(!is_mounted(&root));
    assert!(
        text(&out.stderr).contains("stale") || logs_mention(&root, "stale"),
        "neither stderr nor the daemon log mentions the stale mount: {}",
        text(&out.stderr)
    );
    drop(old);
}
