//! What the two memfs examples share: the generated in-memory tree, the command
//! line, logging, and serving until a stop signal.
//!
//! The tree is the same at every start (generated, not random), so a root the
//! example served before is served again with what was hydrated kept.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prjfs::{
    DirEntry, FileBasicInfo, FileKind, PlaceholderInfo, Provider, ProviderError, StartOptions,
    StopReason, VersionInfo, VirtualizationInstance,
};

/// The file whose GetFileData never completes: a client reading it waits until
/// it gives up (Ctrl-C) or the example stops.
pub const NEVER: &str = "slow/never.txt";

/// One item of the tree.
pub enum Node {
    File(Vec<u8>),
    Dir,
    Symlink(OsString),
}

/// A read-only in-memory tree keyed by root-relative path; the root (the empty
/// path) is an implicit directory, every other directory is an entry.
pub struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// The example's tree: a README, nested directories of text files, 40
    /// binary files of varied sizes (up to 300 KiB), a symlink, and [`NEVER`].
    pub fn generate() -> Self {
        let mut nodes = BTreeMap::new();
        let mut file = |path: &str, content: Vec<u8>| {
            nodes.insert(PathBuf::from(path), Node::File(content));
        };
        file(
            "README.txt",
            b"memfs: an in-memory tree projected by prjfs\n".to_vec(),
        );
        for i in 0..5 {
            file(
                &format!("docs/chapter{i}.txt"),
                format!("chapter {i}\n").repeat(i + 1).into_bytes(),
            );
            for j in 0..4 {
                file(
                    &format!("docs/notes/n{i}{j}.txt"),
                    format!("note {i}.{j}\n").into_bytes(),
                );
            }
        }
        for i in 0..40usize {
            let len = (i * 7919) % (300 << 10);
            file(
                &format!("data/blob{i:02}.bin"),
                (0..len).map(|k| (k * 31 + i) as u8).collect(),
            );
        }
        file(NEVER, b"you will not read this\n".to_vec());
        for dir in ["docs", "docs/notes", "data", "slow"] {
            nodes.insert(PathBuf::from(dir), Node::Dir);
        }
        nodes.insert(PathBuf::from("link"), Node::Symlink("README.txt".into()));
        Self { nodes }
    }

    /// How many items the tree holds (the root not counted).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The item at `path`.
    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The entries of the directory `dir` (in any order: the library's
    /// enumeration helper sorts them), or `NotFound`.
    pub fn list(&self, dir: &Path) -> Result<Vec<DirEntry>, ProviderError> {
        let is_dir = dir.as_os_str().is_empty() || matches!(self.get(dir), Some(Node::Dir));
        if !is_dir {
            return Err(ProviderError::NotFound);
        }
        Ok(self
            .nodes
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, node)| DirEntry {
                name: path.file_name().unwrap_or_default().to_os_string(),
                basic: basic(node),
                symlink_target: target(node),
                version: None,
            })
            .collect())
    }

    /// The placeholder of `path`, or `NotFound`.
    pub fn placeholder(&self, path: &Path) -> Result<PlaceholderInfo, ProviderError> {
        let node = self.get(path).ok_or(ProviderError::NotFound)?;
        Ok(PlaceholderInfo {
            basic: basic(node),
            // The tree never changes: one version for everything.
            version: VersionInfo {
                provider_id: b"memfs".to_vec(),
                content_id: b"v1".to_vec(),
            },
            symlink_target: target(node),
        })
    }

    /// The content of the file `path`, or `NotFound`.
    pub fn content(&self, path: &Path) -> Result<&[u8], ProviderError> {
        match self.get(path) {
            Some(Node::File(bytes)) => Ok(bytes),
            _ => Err(ProviderError::NotFound),
        }
    }
}

fn basic(node: &Node) -> FileBasicInfo {
    let mut basic = match node {
        Node::File(bytes) => FileBasicInfo::file(bytes.len() as u64),
        Node::Dir => FileBasicInfo::directory(),
        Node::Symlink(target) => FileBasicInfo {
            kind: FileKind::Symlink,
            mode: 0o777,
            ..FileBasicInfo::file(target.len() as u64)
        },
    };
    // A fixed date: the same metadata at every start.
    basic.mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    basic.atime = basic.mtime;
    basic
}

fn target(node: &Node) -> Option<OsString> {
    match node {
        Node::Symlink(target) => Some(target.clone()),
        _ => None,
    }
}

/// Log the library's warnings and errors (more with `PRJFS_LOG=debug`) to
/// stderr, block the stop signals (so one that arrives while the mount is set
/// up is taken by `run_until_signal`), and return ROOT from the command line.
pub fn setup(example: &str) -> PathBuf {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRJFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = prjfs::block_stop_signals() {
        eprintln!("{example}: blocking signals: {e}");
        std::process::exit(1);
    }
    match std::env::args_os().nth(1) {
        Some(root) => PathBuf::from(root),
        None => {
            eprintln!("usage: cargo run -p prjfs --example {example} -- ROOT");
            eprintln!("ROOT: an empty directory, or one {example} served before");
            std::process::exit(2);
        }
    }
}

/// Start `provider` on `root` with default options and serve until SIGINT,
/// SIGTERM or SIGHUP (or an unmount); the exit code.
pub fn serve(example: &str, root: &Path, provider: Arc<dyn Provider>, items: usize) -> i32 {
    let instance = match VirtualizationInstance::start(root, provider, StartOptions::default()) {
        Ok(instance) => instance,
        Err(e) => {
            eprintln!("{example}: {e}");
            return 1;
        }
    };
    println!(
        "{example}: serving {items} items at {}; Ctrl-C or SIGTERM stops",
        instance.root().display()
    );
    match instance.run_until_signal() {
        Ok(StopReason::Signal(sig)) => println!("{example}: signal {sig}, unmounted"),
        Ok(StopReason::Unmounted) => println!("{example}: unmounted"),
        Err(e) => {
            eprintln!("{example}: {e}");
            return 1;
        }
    }
    0
}
