//! `prjfs mount ARCHIVE ROOT` on archives made by the real `tar`, `gzip`,
//! `zstd` and `zip`: the projection equals the unpacked tree (`diff -r`, and
//! kinds, modes, mtimes and symlink targets from `find -printf`), the index is
//! reused while the archive is unchanged, a truncated archive mounts with its
//! intact members readable and the cut ones failing with EIO, and a file that
//! is no archive is refused with a clear error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prjfs_testkit::{mount_available, CliMount};
use rand::{Rng, RngCore, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_prjfs");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `prjfs mount` keeping its output; the guard exists whenever it succeeded.
fn mount(source: &Path, root: &Path) -> (Output, Option<CliMount>) {
    let out = Command::new(BIN)
        .arg("mount")
        .arg(source)
        .arg(root)
        .output()
        .expect("running prjfs mount");
    if !out.status.success() {
        return (out, None);
    }
    let mut m = CliMount {
        bin: PathBuf::from(BIN),
        source: source.to_path_buf(),
        root: std::path::absolute(root).expect("absolute root"),
        pid: None,
    };
    m.pid = m.status()["pid"].as_u64().map(|p| p as u32);
    (out, Some(m))
}

fn mounted(source: &Path, root: &Path) -> CliMount {
    let (out, m) = mount(source, root);
    m.unwrap_or_else(|| {
        panic!(
            "prjfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Random bytes, half of them compressible text, so that compressed archives
/// span many resume points.
fn content(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    for (i, b) in v.iter_mut().enumerate() {
        if (i / 4096) % 2 == 0 {
            *b = b"the quick brown fox jumps\n"[i % 26];
        }
    }
    v
}

/// A tree with what archives carry: nested dirs, empty dirs, executables,
/// symlinks (relative, dangling, to a dir), a hard link, long names and
/// paths, empty files and files spanning many resume points.
fn make_source(dir: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    std::fs::create_dir_all(dir.join("src/deep/er/still")).unwrap();
    std::fs::create_dir_all(dir.join("empty/inner_empty")).unwrap();
    let long = "n".repeat(200);
    let long_dir = dir.join(format!("{long}/{long}"));
    std::fs::create_dir_all(&long_dir).unwrap();
    std::fs::write(
        long_dir.join(format!("{long}.txt")),
        b"at the end of a long path\n",
    )
    .unwrap();
    for i in 0..60 {
        let len = [0, 1, 511, 512, 513, 4096, 70_000][i % 7] + i;
        std::fs::write(dir.join(format!("src/f{i:02}")), content(&mut rng, len)).unwrap();
    }
    std::fs::write(
        dir.join("src/deep/er/still/big"),
        content(&mut rng, 3 << 20),
    )
    .unwrap();
    std::fs::write(dir.join("src/empty_file"), b"").unwrap();
    let tool = dir.join("src/tool.sh");
    std::fs::write(&tool, b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = dir.join("src/private");
    std::fs::write(&private, b"secret\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("f01", dir.join("src/link")).unwrap();
    std::os::unix::fs::symlink("../nowhere", dir.join("src/dangling")).unwrap();
    std::os::unix::fs::symlink("src/deep", dir.join("dirlink")).unwrap();
    std::fs::hard_link(dir.join("src/f06"), dir.join("hardlink")).unwrap();
    let n: u32 = rng.random_range(1..5);
    std::fs::write(dir.join("top.txt"), format!("{n}\n")).unwrap();
    // Fixed mtimes, so that unpacking cannot take "now" for a time the
    // archive does not carry.
    run(Command::new("find").arg(dir).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        "2024-02-03 04:05:06",
        "{}",
        "+",
    ]));
}

/// Kind, mode, mtime (files and symlinks) and target of every path under `dir`.
fn listing(dir: &Path, with_mtimes: bool, symlink_mtimes: bool) -> String {
    let format = if with_mtimes {
        "%P %y %m %l %T@\\n"
    } else {
        "%P %y %m %l\\n"
    };
    let out = run(Command::new("find")
        .arg(dir)
        .args(["-mindepth", "1", "-printf", format]));
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            // Directory mtimes change when unpacking adds their entries, and
            // symlink modes are always 777: compare what archives keep.
            let fields: Vec<&str> = l.split(' ').collect();
            match fields.get(1) {
                Some(&"d") if with_mtimes => fields[..fields.len() - 1].join(" "),
                // unzip leaves a symlink's own mtime at "now".
                Some(&"l") if with_mtimes && !symlink_mtimes => {
                    fields[..fields.len() - 1].join(" ")
                }
                _ => l.to_string(),
            }
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

fn diff(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .expect("diff");
    assert!(
        out.status.success(),
        "diff -r {} {} is not empty:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make `archive` from `src` with the real tools.
fn pack(kind: &str, src: &Path, archive: &Path) {
    match kind {
        "tar" => run(Command::new("tar")
            .arg("-C")
            .arg(src)
            .arg("-cf")
            .arg(archive)
            .arg(".")),
        "tar.gz" => run(Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' -cf - . | gzip -6 > '{}'",
            src.display(),
            archive.display()
        ))),
        "tar.zst" => run(Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' -cf - . | zstd -q -3 > '{}'",
            src.display(),
            archive.display()
        ))),
        // zip adds `.zip` to a name without it: rename after.
        "zip" => run(Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && zip -qry '{}.zip' . && mv '{}.zip' '{}'",
            src.display(),
            archive.display(),
            archive.display(),
            archive.display()
        ))),
        _ => unreachable!("unknown kind {kind}"),
    };
}

fn unpack(kind: &str, archive: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    if kind == "zip" {
        run(Command::new("unzip")
            .arg("-q")
            .arg(archive)
            .arg("-d")
            .arg(dest));
    } else {
        run(Command::new("tar")
            .arg("-C")
            .arg(dest)
            .arg("-xf")
            .arg(archive));
    }
}

#[test]
fn each_format_projects_the_unpacked_tree() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    for kind in ["tar", "tar.gz", "tar.zst", "zip"] {
        // A name that does not tell the format: it is recognised by content.
        let archive = tmp
            .path()
            .join(format!("archive-{}", kind.replace('.', "-")));
        pack(kind, &src, &archive);
        let unpacked = tmp.path().join(format!("unpacked-{kind}"));
        unpack(kind, &archive, &unpacked);
        let root = tmp.path().join(format!("root-{kind}"));
        std::fs::create_dir(&root).unwrap();
        let before = std::fs::read(&archive).unwrap();
        let m = mounted(&archive, &root);
        // Metadata first (listings and lookups only), then content.
        let symlink_mtimes = kind != "zip";
        assert_eq!(
            listing(&root, true, symlink_mtimes),
            listing(&unpacked, true, symlink_mtimes),
            "{kind}: kinds, modes, mtimes and symlink targets"
        );
        // The listings gave each directory its version and placed it: the
        // walk's lookups asked the provider for the symlinks only.
        let asked = m.invoked("get_placeholder_info");
        assert_eq!(
            asked,
            symlinks_under(&unpacked),
            "{kind}: GetPlaceholderInfo beyond the symlinks"
        );
        // The listings gave each file its version: reading them all asks
        // the provider for content only.
        diff(&unpacked, &root);
        assert_eq!(
            m.invoked("get_placeholder_info"),
            asked,
            "{kind}: the first opens of listed files asked GetPlaceholderInfo"
        );
        assert!(m.invoked("get_file_data") > 0, "{kind}: content was read");
        let out = run(&mut Command::new(root.join("src/tool.sh")));
        assert_eq!(out.stdout, b"tool\n", "{kind}: an executable member runs");
        // Read-write like every projection; the archive is never written.
        std::fs::write(root.join("src/f01"), b"changed locally\n").unwrap();
        std::fs::create_dir(root.join("new_dir")).unwrap();
        std::fs::remove_file(root.join("top.txt")).unwrap();
        assert_eq!(
            std::fs::read(root.join("src/link")).unwrap(),
            b"changed locally\n"
        );
        m.unmount();
        assert_eq!(
            std::fs::read(&archive).unwrap(),
            before,
            "{kind}: archive unchanged"
        );
        // Local changes survive a remount; the rest is still the archive's.
        let m = mounted(&archive, &root);
        assert_eq!(
            std::fs::read(root.join("src/f01")).unwrap(),
            b"changed locally\n"
        );
        assert!(!root.join("top.txt").exists());
        assert_eq!(
            std::fs::read(root.join("src/f02")).unwrap(),
            std::fs::read(unpacked.join("src/f02")).unwrap()
        );
        m.unmount();
    }
}

#[test]
fn the_index_is_reused_while_the_archive_is_unchanged() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    let archive = tmp.path().join("a.tar.gz");
    pack("tar.gz", &src, &archive);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (out, m) = mount(&archive, &root);
    let m = m.expect("first mount");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("indexed"),
        "the first mount builds the index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.unmount();
    assert!(root.join(".prjfs/archive/index").is_file());
    let (out, m) = mount(&archive, &root);
    let m = m.expect("second mount");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("indexed"),
        "the second mount reuses the index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    diff(&src, &root);
    m.unmount();
    // A changed archive (here: new content, same name) is indexed again.
    std::fs::write(src.join("top.txt"), b"a new version\n").unwrap();
    pack("tar.gz", &src, &archive);
    let root2 = tmp.path().join("root2");
    std::fs::create_dir(&root2).unwrap();
    std::fs::create_dir_all(root2.join(".prjfs/archive")).unwrap();
    std::fs::copy(
        root.join(".prjfs/archive/index"),
        root2.join(".prjfs/archive/index"),
    )
    .unwrap();
    let (out, m) = mount(&archive, &root2);
    let m = m.expect("mount of the changed archive");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("indexed"),
        "a stale index is rebuilt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(root2.join("top.txt")).unwrap(),
        b"a new version\n"
    );
    m.unmount();
}

#[test]
fn ten_thousand_members() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..100 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(
                dir.join(format!("f{f:02}")),
                format!("{d} {f}\n").repeat(f + 1),
            )
            .unwrap();
        }
    }
    let archive = tmp.path().join("many.tar.zst");
    pack("tar.zst", &src, &archive);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let m = mounted(&archive, &root);
    let out = run(Command::new("find").arg(&root).args(["-type", "f"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10_000);
    diff(&src, &root);
    m.unmount();
    remove_tree_parallel(&root);
    remove_tree_parallel(&src);
}

/// Remove a tree with many threads: hydrated files carry an xattr block, and
/// freeing it waits for the device on a file system mounted with `discard`, so
/// a serial removal of 10k of them (the temp dir's drop) took 15 s here.
fn remove_tree_parallel(top: &Path) {
    let mut files = Vec::new();
    let mut dirs = vec![top.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
        i += 1;
    }
    let chunk = files.len().div_ceil(16).max(1);
    std::thread::scope(|s| {
        for part in files.chunks(chunk) {
            s.spawn(move || part.iter().for_each(|f| drop(std::fs::remove_file(f))));
        }
    });
    let _ = std::fs::remove_dir_all(top);
}

/// Read `path` with `cat`: Ok(bytes), or Err(stderr) when it fails.
fn cat(path: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("cat").arg(path).output().expect("cat");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn check_truncated(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    // Incompressible members: compressed offsets then follow the tar's
    // (headers shrink by a few hundred bytes each), so the cut below falls
    // inside the data of member 20 in every format.
    for i in 0..40 {
        let mut data = vec![0u8; 50_000];
        rng.fill_bytes(&mut data);
        std::fs::write(src.join(format!("m{i:02}")), data).unwrap();
    }
    let archive = tmp.path().join(format!("cut.{kind}"));
    // Members in a known order, so that the cut falls in the middle.
    let names: Vec<String> = (0..40).map(|i| format!("m{i:02}")).collect();
    let list = names.join(" ");
    let pipe = match kind {
        "tar" => "cat",
        "tar.gz" => "gzip -6",
        "tar.zst" => "zstd -q -3",
        _ => unreachable!(),
    };
    if kind == "zip" {
        unreachable!()
    }
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && tar -cf - {list} | {pipe} > '{}'",
        src.display(),
        archive.display()
    )));
    // Member i's header is at i * 50,688 of the tar (512 + 50,000 padded to
    // 50,176): cut 25,000 bytes into member 20's data.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap();
    f.set_len(20 * 50_688 + 512 + 25_000).unwrap();
    drop(f);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (out, m) = mount(&archive, &root);
    let m = m.unwrap_or_else(|| {
        panic!(
            "{kind}: a truncated archive still mounts: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("EIO"),
        "{kind}: the mount says what it could not read: {stderr}"
    );
    let (mut intact, mut eio, mut missing) = (0, 0, 0);
    for name in &names {
        let want = std::fs::read(src.join(name)).unwrap();
        match cat(&root.join(name)) {
            Ok(got) => {
                assert!(got == want, "{kind}: {name} read with wrong content");
                assert_eq!(missing, 0, "{kind}: {name} read after a missing member");
                intact += 1;
            }
            Err(e) if e.contains("Input/output error") => {
                assert_eq!(missing, 0, "{kind}: {name} indexed after a missing member");
                eio += 1
            }
            Err(e) if e.contains("No such file") => {
                // Members whose header lies past the cut are not in the index;
                // they all come after every member that is.
                missing += 1;
            }
            Err(e) => panic!("{kind}: {name}: unexpected error {e}"),
        }
    }
    assert_eq!(intact, 20, "{kind}: the members before the cut read whole");
    assert_eq!(
        eio, 1,
        "{kind}: the member cut in the middle fails with EIO"
    );
    assert_eq!(intact + eio + missing, names.len());
    let log = m.status()["log"]["live"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("its read fails with EIO"),
        "{kind}: the log names the failure: {text}"
    );
    // The mount is still up and answers.
    assert!(root.join("m00").exists());
    m.unmount();
    // A remount reuses the index and says again what it could not read.
    let (out, m) = mount(&archive, &root);
    let m = m.expect("remount of the truncated archive");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("indexed") && stderr.contains("warning") && stderr.contains("EIO"),
        "{kind}: the remount reuses the index and warns again: {stderr}"
    );
    m.unmount();
}

#[test]
fn a_truncated_archive_mounts_and_only_the_cut_members_fail() {
    if !mount_available() {
        return;
    }
    for kind in ["tar.gz", "tar.zst", "tar"] {
        check_truncated(kind);
    }
}

#[test]
fn a_truncated_zip_is_read_from_its_local_headers() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for i in 0..20 {
        std::fs::write(src.join(format!("z{i:02}")), content(&mut rng, 30_000)).unwrap();
    }
    let archive = tmp.path().join("cut.zip");
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && zip -q '{}' z*",
        src.display(),
        archive.display()
    )));
    let len = std::fs::metadata(&archive).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let m = mounted(&archive, &root);
    let (mut intact, mut eio) = (0, 0);
    for i in 0..20 {
        let name = format!("z{i:02}");
        let want = std::fs::read(src.join(&name)).unwrap();
        match cat(&root.join(&name)) {
            Ok(got) => {
                assert!(got == want, "{name} read with wrong content");
                intact += 1;
            }
            Err(e) if e.contains("Input/output error") => eio += 1,
            Err(e) if e.contains("No such file") => {}
            Err(e) => panic!("{name}: unexpected error {e}"),
        }
    }
    assert!(intact >= 5, "intact members read ({intact})");
    assert!(eio >= 1, "the member cut in the middle fails with EIO");
    m.unmount();
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    if !mount_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let text = tmp.path().join("notes.tar.gz");
    std::fs::write(&text, "just some text, no archive\n".repeat(40)).unwrap();
    let (out, m) = mount(&text, &root);
    assert!(m.is_none());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a directory, nor an archive"), "{err}");
    // Gzip magic, then nothing a tar parser can use.
    let cut = tmp.path().join("cut.tgz");
    std::fs::write(&cut, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x4b]).unwrap();
    let (out, m) = mount(&cut, &root);
    assert!(m.is_none());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreadable archive"), "{err}");
    let missing = tmp.path().join("missing.tar");
    let (out, m) = mount(&missing, &root);
    assert!(m.is_none());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No such file"), "{err}");
    // A refused mount leaves the empty root as it was.
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// How many symlinks there are below `dir`.
fn symlinks_under(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            n += 1;
        } else if t.is_dir() {
            n += symlinks_under(&e.path());
        }
    }
    n
}
