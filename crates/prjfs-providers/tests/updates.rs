//! Provider-driven changes through the library API on a live mount
//! (`InstanceHandle::update_file_if_needed`, `delete_file`,
//! `mark_directory_as_placeholder`, `placed_children`): every failure cause of
//! ProjFS's UpdateFileIfNeeded/DeleteFile for the local state that raises it,
//! the flag that allows it, and clients that see the new view at once despite
//! the kernel's caches (long TTLs, cached listings, passthrough, a warm page
//! cache).
//!
//! The provider is the directory provider over a temp source; clients are
//! child processes (`cat`, `stat`, `ls`, `touch`, `chmod`, `rm`): the
//! provider's own process never reaches the provider.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prjfs::{
    FileKind, InstanceError, InstanceHandle, OnDiskState, StartOptions, UpdateFailure, UpdateFlags,
    VersionInfo,
};
use prjfs_providers::dir::{store, DirOptions, DirProvider};
use prjfs_testkit::{mount_available, InstanceGuard};

struct Mounted {
    guard: InstanceGuard,
    source: PathBuf,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    /// A mount of a source holding `files` (path, content), with the options
    /// `prjfs mount` uses (passthrough, cached listings).
    fn start(files: &[(&str, &str)]) -> Mounted {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let source = tmp.path().join("source");
        for (path, content) in files {
            let p = source.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if path.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::write(&p, content).unwrap();
            }
        }
        std::fs::create_dir_all(&source).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let provider = DirProvider::new(&source, DirOptions::default())
            .and_then(|p| p.to_provider())
            .expect("the provider");
        let options = StartOptions {
            pool_threads: 4,
            concurrent_threads: 2,
            passthrough: true,
            cache_listings: true,
            ..Default::default()
        };
        let guard = InstanceGuard::start(&root, provider, options);
        let root = guard.root().to_path_buf();
        Mounted {
            guard,
            source,
            root,
            _tmp: tmp,
        }
    }

    fn handle(&self) -> InstanceHandle {
        self.guard.instance().handle()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn state(&self, rel: &str) -> OnDiskState {
        self.guard
            .instance()
            .virtualizer()
            .state_of_path(Path::new(rel))
            .expect("state")
    }

    /// Change the source file and return its new placeholder info.
    fn change_source(&self, rel: &str, content: &str) -> prjfs::PlaceholderInfo {
        std::fs::write(self.source.join(rel), content).unwrap();
        self.info(rel)
    }

    fn info(&self, rel: &str) -> prjfs::PlaceholderInfo {
        store::placeholder_info(&self.source, Path::new(rel), Default::default())
            .expect("source info")
            .0
    }

    fn update(
        &self,
        rel: &str,
        info: &prjfs::PlaceholderInfo,
        flags: UpdateFlags,
    ) -> Result<(), InstanceError> {
        self.handle()
            .update_file_if_needed(Path::new(rel), info, flags)
    }

    fn delete(&self, rel: &str, flags: UpdateFlags) -> Result<(), InstanceError> {
        self.handle().delete_file(Path::new(rel), flags)
    }

    fn cat(&self, rel: &str) -> String {
        stdout(Command::new("cat").arg(self.path(rel)))
    }

    fn ls(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = stdout(Command::new("ls").arg("-A").arg(self.path(rel)))
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    fn exists(&self, rel: &str) -> bool {
        Command::new("stat")
            .arg(self.path(rel))
            .output()
            .expect("stat")
            .status
            .success()
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running a client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

fn refused(r: Result<(), InstanceError>) -> UpdateFailure {
    match r {
        Err(InstanceError::UpdateFailed(causes)) => causes,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The files of [`local_states`]: one per local state.
const FILES: &[(&str, &str)] = &[
    ("plain.txt", "plain v1"),
    ("hydrated.txt", "hydrated v1"),
    ("dirty.txt", "dirty v1"),
    ("full.txt", "full v1"),
    ("gone.txt", "gone v1"),
    ("ro.txt", "ro v1"),
    ("rodirty.txt", "rodirty v1"),
    ("dir/child.txt", "child v1"),
    ("untouched.txt", "untouched v1"),
    ("sub/virtual.txt", "virtual v1"),
];

/// Bring each file of [`FILES`] into its local state through clients.
fn local_states(m: &Mounted) {
    std::fs::set_permissions(
        m.source.join("ro.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    run(Command::new("stat")
        .arg(m.path("plain.txt"))
        .arg(m.path("ro.txt")));
    // Read twice: the second read comes from the page cache / passthrough.
    assert_eq!(m.cat("hydrated.txt"), "hydrated v1");
    assert_eq!(m.cat("hydrated.txt"), "hydrated v1");
    // The directory provider serves a file's content as the source has it
    // now, whatever the placeholder's version: the states whose local bytes
    // the test checks are hydrated before the source changes.
    assert_eq!(m.cat("dirty.txt"), "dirty v1");
    assert_eq!(m.cat("ro.txt"), "ro v1");
    run(Command::new("touch")
        .args(["-m", "-d", "@1000000"])
        .arg(m.path("dirty.txt")));
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("echo local >> '{}'", m.path("full.txt").display())));
    run(Command::new("rm").arg(m.path("gone.txt")));
    run(Command::new("chmod").arg("0444").arg(m.path("rodirty.txt")));
    run(Command::new("stat").arg(m.path("dir/child.txt")));
    let p = OnDiskState::PLACEHOLDER.0;
    assert_eq!(m.state("plain.txt").0, p);
    assert_eq!(
        m.state("hydrated.txt").0,
        p | OnDiskState::HYDRATED_PLACEHOLDER.0
    );
    assert!(m
        .state("dirty.txt")
        .contains(OnDiskState::DIRTY_PLACEHOLDER));
    assert_eq!(m.state("full.txt"), OnDiskState::FULL);
    assert_eq!(m.state("gone.txt"), OnDiskState::TOMBSTONE);
    assert_eq!(m.state("ro.txt").0, p | OnDiskState::HYDRATED_PLACEHOLDER.0);
    assert!(m
        .state("rodirty.txt")
        .contains(OnDiskState::DIRTY_PLACEHOLDER));
    assert_eq!(m.state("untouched.txt"), OnDiskState::VIRTUAL);
}

#[test]
fn update_file_if_needed_reports_each_cause_and_clients_see_the_new_view() {
    if !mount_available() {
        return;
    }
    let m = Mounted::start(FILES);
    local_states(&m);
    let none = UpdateFlags::NONE;

    // Plain and hydrated placeholders need no flag; clients see the new
    // bytes and size at once, also after a passthrough read with a warm cache.
    let info = m.change_source("plain.txt", "plain v2, longer");
    m.update("plain.txt", &info, none)
        .expect("plain placeholder");
    assert_eq!(m.cat("plain.txt"), "plain v2, longer");
    let info = m.change_source("hydrated.txt", "hydrated v2!");
    m.update("hydrated.txt", &info, none)
        .expect("hydrated placeholder");
    assert_eq!(m.state("hydrated.txt").0, OnDiskState::PLACEHOLDER.0);
    let size = stdout(
        Command::new("stat")
            .args(["-c", "%s"])
            .arg(m.path("hydrated.txt")),
    );
    assert_eq!(size.trim(), "12");
    assert_eq!(m.cat("hydrated.txt"), "hydrated v2!");
    // The same ContentId again: nothing to do, the hydrated file stays.
    m.update("hydrated.txt", &info, none).expect("same content");
    assert!(m
        .state("hydrated.txt")
        .contains(OnDiskState::HYDRATED_PLACEHOLDER));

    // Each local state is refused without its flag (nothing changes), and
    // replaced with it.
    let cases: &[(&str, UpdateFailure, UpdateFlags, &str)] = &[
        (
            "dirty.txt",
            UpdateFailure::DIRTY_METADATA,
            UpdateFlags::ALLOW_DIRTY_METADATA,
            "dirty v1",
        ),
        (
            "full.txt",
            UpdateFailure::DIRTY_DATA,
            UpdateFlags::ALLOW_DIRTY_DATA,
            "full v1local\n",
        ),
        (
            "ro.txt",
            UpdateFailure::READ_ONLY,
            UpdateFlags::ALLOW_READ_ONLY,
            "ro v1",
        ),
    ];
    for (rel, cause, allow, before) in cases {
        let info = m.change_source(rel, &format!("{rel} v2"));
        assert_eq!(refused(m.update(rel, &info, none)), *cause, "{rel}");
        assert_eq!(m.cat(rel), *before, "{rel} kept its local bytes");
        m.update(rel, &info, *allow)
            .unwrap_or_else(|e| panic!("{rel} with its flag: {e}"));
        assert_eq!(m.cat(rel), format!("{rel} v2"), "{rel} after the update");
        assert_eq!(
            m.state(rel).0 & !OnDiskState::HYDRATED_PLACEHOLDER.0,
            OnDiskState::PLACEHOLDER.0
        );
    }

    // Several causes at once: every one is reported, and every flag needed.
    let info = m.change_source("rodirty.txt", "rodirty v2");
    let both = UpdateFailure(UpdateFailure::DIRTY_METADATA.0 | UpdateFailure::READ_ONLY.0);
    assert_eq!(refused(m.update("rodirty.txt", &info, none)), both);
    assert_eq!(
        refused(m.update("rodirty.txt", &info, UpdateFlags::ALLOW_READ_ONLY)),
        UpdateFailure::DIRTY_METADATA
    );
    m.update(
        "rodirty.txt",
        &info,
        UpdateFlags::ALLOW_READ_ONLY | UpdateFlags::ALLOW_DIRTY_METADATA,
    )
    .expect("both flags");
    assert_eq!(m.cat("rodirty.txt"), "rodirty v2");

    // A tombstone: refused, the name stays deleted; with the flag the
    // placeholder is back.
    let info = m.change_source("gone.txt", "gone v2");
    assert_eq!(
        refused(m.update("gone.txt", &info, none)),
        UpdateFailure::TOMBSTONE
    );
    assert!(!m.exists("gone.txt"));
    assert!(!m.ls("").contains(&"gone.txt".to_string()));
    m.update("gone.txt", &info, UpdateFlags::ALLOW_TOMBSTONE)
        .expect("tombstone");
    assert_eq!(m.cat("gone.txt"), "gone v2");
    assert!(m.ls("").contains(&"gone.txt".to_string()));

    // A directory holding placeholders is not changed (a ContentId of its
    // own: the same one would need no change at all).
    let mut info = m.info("dir");
    info.version.content_id = b"another".to_vec();
    match m.update("dir", &info, UpdateFlags(0x27)) {
        Err(InstanceError::DirectoryNotEmpty(p)) => assert_eq!(p, Path::new("dir")),
        other => panic!("expected DirectoryNotEmpty, got {other:?}"),
    }

    // A file a listing placed (a record without version) is replaced.
    assert_eq!(m.state("untouched.txt"), OnDiskState::PLACEHOLDER);
    let info = m.change_source("untouched.txt", "untouched v2");
    m.update("untouched.txt", &info, none)
        .expect("listed placeholder");
    assert_eq!(m.cat("untouched.txt"), "untouched v2");
    // A virtual item needs nothing and stays virtual.
    let info = m.change_source("sub/virtual.txt", "virtual v2");
    m.update("sub/virtual.txt", &info, none).expect("virtual");
    assert_eq!(m.state("sub/virtual.txt"), OnDiskState::VIRTUAL);
    assert_eq!(m.cat("sub/virtual.txt"), "virtual v2");

    let stats = m.guard.instance().stats();
    assert_eq!(stats.updates_refused, 6, "one per refusal above");
    assert_eq!(
        stats.updates_applied, 8,
        "plain, hydrated, three cases, rodirty, gone, untouched"
    );
}

#[test]
fn delete_file_reports_each_cause_and_the_name_follows_the_provider() {
    if !mount_available() {
        return;
    }
    let m = Mounted::start(FILES);
    local_states(&m);
    let none = UpdateFlags::NONE;

    // A hydrated placeholder whose source is gone: deleted, gone from
    // listings and lookups at once.
    std::fs::remove_file(m.source.join("hydrated.txt")).unwrap();
    assert!(m.ls("").contains(&"hydrated.txt".to_string()));
    m.delete("hydrated.txt", none)
        .expect("hydrated placeholder");
    assert!(!m.exists("hydrated.txt"));
    assert!(!m.ls("").contains(&"hydrated.txt".to_string()));
    // A placeholder whose source is still there becomes virtual: projected again.
    m.delete("plain.txt", none).expect("plain placeholder");
    assert_eq!(m.state("plain.txt"), OnDiskState::VIRTUAL);
    assert_eq!(m.cat("plain.txt"), "plain v1");

    let cases: &[(&str, UpdateFailure, UpdateFlags)] = &[
        (
            "dirty.txt",
            UpdateFailure::DIRTY_METADATA,
            UpdateFlags::ALLOW_DIRTY_METADATA,
        ),
        (
            "full.txt",
            UpdateFailure::DIRTY_DATA,
            UpdateFlags::ALLOW_DIRTY_DATA,
        ),
        (
            "ro.txt",
            UpdateFailure::READ_ONLY,
            UpdateFlags::ALLOW_READ_ONLY,
        ),
        (
            "gone.txt",
            UpdateFailure::TOMBSTONE,
            UpdateFlags::ALLOW_TOMBSTONE,
        ),
    ];
    for (rel, cause, allow) in cases {
        std::fs::remove_file(m.source.join(rel)).unwrap();
        assert_eq!(refused(m.delete(rel, none)), *cause, "{rel}");
        assert_ne!(m.state(rel), OnDiskState::VIRTUAL, "{rel} is kept");
        m.delete(rel, *allow)
            .unwrap_or_else(|e| panic!("{rel} with its flag: {e}"));
        assert_eq!(m.state(rel), OnDiskState::VIRTUAL, "{rel}");
        assert!(!m.exists(rel), "{rel} is gone from the source and the root");
    }

    // A directory: its children first (depth first), then the directory.
    std::fs::remove_dir_all(m.source.join("dir")).unwrap();
    assert!(matches!(
        m.delete("dir", none),
        Err(InstanceError::DirectoryNotEmpty(_))
    ));
    let children = m
        .handle()
        .placed_children(Path::new("dir"))
        .expect("children");
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].name, "child.txt");
    assert_eq!(children[0].kind, FileKind::File);
    m.delete("dir/child.txt", none).expect("child");
    m.delete("dir", none).expect("empty directory");
    assert!(!m.exists("dir"));
    assert!(!m.ls("").contains(&"dir".to_string()));
}

#[test]
fn a_local_directory_marked_as_placeholder_lists_the_provider_and_stop_refuses_changes() {
    if !mount_available() {
        return;
    }
    let m = Mounted::start(&[("a.txt", "a"), ("shared/from-source.txt", "s")]);
    // The root's listing includes "shared"; remove it locally (a tombstone),
    // then make a local directory of the same name: full, nothing projected.
    run(Command::new("rm").arg("-r").arg(m.path("shared")));
    run(Command::new("mkdir").arg(m.path("shared")));
    run(Command::new("touch").arg(m.path("shared/local.txt")));
    assert_eq!(m.ls("shared"), vec!["local.txt"]);
    assert_eq!(m.state("shared"), OnDiskState::FULL);
    let version = VersionInfo {
        provider_id: b"test".to_vec(),
        content_id: b"v1".to_vec(),
    };
    m.handle()
        .mark_directory_as_placeholder(Path::new("shared"), &version)
        .expect("mark");
    assert!(m.state("shared").contains(OnDiskState::PLACEHOLDER));
    assert_eq!(m.ls("shared"), vec!["from-source.txt", "local.txt"]);
    assert_eq!(m.cat("shared/from-source.txt"), "s");
    // A file cannot be marked.
    assert!(m
        .handle()
        .mark_directory_as_placeholder(Path::new("a.txt"), &version)
        .is_err());

    // A placeholder written proactively (no lookup asked for it) shows in a
    // listing the kernel had cached.
    assert_eq!(m.ls(""), vec!["a.txt", "shared"]);
    let extra = prjfs::PlaceholderInfo {
        basic: prjfs::FileBasicInfo::file(0),
        version: version.clone(),
        symlink_target: None,
    };
    m.handle()
        .write_placeholder_info(Path::new("extra.txt"), &extra)
        .expect("proactive placeholder");
    assert_eq!(m.ls(""), vec!["a.txt", "extra.txt", "shared"]);

    let handle = m.handle();
    m.guard.stop();
    let info = prjfs::PlaceholderInfo {
        basic: prjfs::FileBasicInfo::file(1),
        version: version.clone(),
        symlink_target: None,
    };
    assert!(matches!(
        handle.update_file_if_needed(Path::new("a.txt"), &info, UpdateFlags::NONE),
        Err(InstanceError::Stopped)
    ));
    assert!(matches!(
        handle.delete_file(Path::new("a.txt"), UpdateFlags::NONE),
        Err(InstanceError::Stopped)
    ));
}
