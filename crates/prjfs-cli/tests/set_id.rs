//! Set-ID bits and file capabilities through a real mount, against ext4.
//!
//! prjfs negotiates `FUSE_HANDLE_KILLPRIV_V2`: the kernel then checks a file's
//! `security.capability` once per inode instead of at every `write(2)` (a
//! round trip each before), and leaves dropping the set-ID bits to the daemon.
//! An owner change, and a write, a truncation, an `O_TRUNC` open or an
//! `fallocate` by a process without `CAP_FSETID`, must still drop them (and
//! the capability) as ext4 does; a write by root must keep them. Each case is run on a plain directory of the
//! same file system and through a mount, on files created locally and on
//! files projected from the store (placeholders), and the modes are compared,
//! then again after a remount.
//!
//! The unprivileged writer is `setpriv` to uid and gid 65534 (leaving uid 0
//! drops every capability). Every test needs root and /dev/fuse (skipped
//! elsewhere, mandatory in CI) and holds a [`CliMount`], which unmounts even
//! when the test panics.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use prjfs_testkit::{mount_available, CliMount, SourceRootNative};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prjfs"))
}

const NOBODY: u32 = 65534;

/// What is done to a file.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `echo x >> f` by uid 65534.
    Append,
    /// `truncate -s 0 f` by uid 65534 (a SETATTR of the size).
    Truncate,
    /// `: > f` by uid 65534 (an `O_TRUNC` open).
    OpenTrunc,
    /// `fallocate -l 8192 f` by uid 65534 (FALLOCATE carries no kill flag).
    Fallocate,
    /// `echo x >> f` by root, who has `CAP_FSETID`.
    RootAppend,
    /// `chgrp 65534 f` by its owner, uid 65534 (the group it has already).
    Chgrp,
    /// `chown 0:0 f` by root (Linux drops the bits for root too).
    RootChown,
}

impl Op {
    fn script(self, file: &Path) -> (bool, String) {
        let f = file.display();
        match self {
            Op::Append => (true, format!("echo x >> '{f}'")),
            Op::Truncate => (true, format!("truncate -s 0 '{f}'")),
            Op::OpenTrunc => (true, format!(": > '{f}'")),
            Op::Fallocate => (true, format!("fallocate -l 8192 '{f}'")),
            Op::RootAppend => (false, format!("echo x >> '{f}'")),
            Op::Chgrp => (true, format!("chgrp 65534 '{f}'")),
            Op::RootChown => (false, format!("chown 0:0 '{f}'")),
        }
    }

    fn run(self, file: &Path) {
        let (unprivileged, script) = self.script(file);
        let mut cmd = if unprivileged {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "sh",
                "-c",
            ]);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        };
        let out = cmd.arg(&script).output().expect("run the writer");
        assert!(
            out.status.success(),
            "{self:?} on {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The cases: (file name, mode, operation).
const CASES: [(&str, u32, Op); 11] = [
    ("suid-sgid-gx-append", 0o6775, Op::Append),
    ("suid-append", 0o4755, Op::Append),
    // Set-group-ID without group-execute marks mandatory locking: it stays.
    ("sgid-no-gx-append", 0o2745, Op::Append),
    ("suid-truncate", 0o4755, Op::Truncate),
    ("sgid-gx-truncate", 0o2775, Op::Truncate),
    ("suid-sgid-open-trunc", 0o6775, Op::OpenTrunc),
    ("suid-sgid-fallocate", 0o6775, Op::Fallocate),
    ("suid-sgid-root-append", 0o6775, Op::RootAppend),
    ("suid-sgid-chgrp", 0o6775, Op::Chgrp),
    ("suid-sgid-root-chown", 0o6775, Op::RootChown),
    ("plain-append", 0o0775, Op::Append),
];

fn make(path: &Path, mode: u32) {
    std::fs::write(path, b"content\n").expect("write");
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Modes in octal, for readable failures.
fn octal(v: &[(String, u32)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(f, m)| (f.clone(), format!("{m:04o}")))
        .collect()
}

/// A `security.capability` value: revision 2, effective, `CAP_NET_RAW`.
fn capability() -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

fn has_capability(path: &Path) -> bool {
    let mut buf = [0u8; 64];
    match rustix::fs::getxattr(path, "security.capability", &mut buf[..]) {
        Ok(_) => true,
        Err(rustix::io::Errno::NODATA) => false,
        Err(e) => panic!("getxattr {}: {e}", path.display()),
    }
}

/// The store, mount point and plain directory, searchable by uid 65534.
fn dirs() -> SourceRootNative {
    SourceRootNative::new(true)
}

fn mount(d: &SourceRootNative) -> CliMount {
    CliMount::new(&bin(), &[], &d.source, &d.root)
}

#[test]
fn set_id_bits_are_dropped_by_unprivileged_writers_as_on_ext4() {
    if !mount_available() {
        eprintln!("skipping: needs root and /dev/fuse");
        return;
    }
    let d = dirs();
    // Projected copies of every case come from the store.
    for (name, m, _) in CASES {
        make(&d.source.join(format!("projected-{name}")), m);
    }
    let mut expected = Vec::new();
    let mut got = Vec::new();
    {
        let mnt = mount(&d);
        for (name, m, op) in CASES {
            for origin in ["local", "projected"] {
                let file = format!("{origin}-{name}");
                let native = d.native.join(&file);
                make(&native, m);
                let through = d.root.join(&file);
                if origin == "local" {
                    make(&through, m);
                }
                assert_eq!(mode(&through), m, "{file}: mode before the change");
                op.run(&native);
                op.run(&through);
                expected.push((file.clone(), mode(&native)));
                got.push((file, mode(&through)));
            }
        }
        assert_eq!(octal(&got), octal(&expected), "modes after the changes");
        drop(mnt);
    }
    // The sanity of the reference: ext4 dropped what it should.
    let by_name = |n: &str| expected.iter().find(|(f, _)| f == n).expect("case").1;
    assert_eq!(by_name("local-suid-append"), 0o755);
    assert_eq!(by_name("local-suid-sgid-root-append"), 0o6775);
    let _mnt = mount(&d);
    let again: Vec<_> = expected
        .iter()
        .map(|(f, _)| (f.clone(), mode(&d.root.join(f))))
        .collect();
    assert_eq!(octal(&again), octal(&expected), "modes after a remount");
}

#[test]
fn a_file_capability_is_dropped_by_an_unprivileged_write_as_on_ext4() {
    if !mount_available() {
        eprintln!("skipping: needs root and /dev/fuse");
        return;
    }
    let d = dirs();
    let mnt = mount(&d);
    let cap = capability();
    let mut results = Vec::new();
    for (dir, tag) in [(&d.native, "ext4"), (&d.root, "prjfs")] {
        for op in [Op::Append, Op::Truncate, Op::RootAppend] {
            let f = dir.join(format!("cap-{op:?}"));
            make(&f, 0o755);
            rustix::fs::setxattr(
                &f,
                "security.capability",
                &cap,
                rustix::fs::XattrFlags::empty(),
            )
            .expect("set a capability");
            assert!(has_capability(&f), "{tag} {op:?}: the capability was set");
            op.run(&f);
            results.push((tag, op, has_capability(&f)));
        }
    }
    let (ext4, prjfs): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.0 == "ext4");
    let strip = |v: Vec<&(&str, Op, bool)>| {
        v.iter()
            .map(|r| (format!("{:?}", r.1), r.2))
            .collect::<Vec<_>>()
    };
    let ext4 = strip(ext4);
    assert_eq!(strip(prjfs), ext4, "capability kept after each operation");
    assert!(
        ext4.iter().any(|(_, kept)| !kept),
        "ext4 dropped no capability: the reference is wrong ({ext4:?})"
    );
    drop(mnt);
}
