//! The soak's reference model: what every path below the root must show, and a
//! walk of the mount that lists every difference from it.
//!
//! Invariants: a path is in the model exactly when the root must show it; a
//! file's [`Content`] is the bytes it must read; its [`Xattrs`] are exactly the
//! `user.soak.*` attributes it must carry (the soak sets no other user names).
//! The model changes only after an operation on the mount succeeded, so an
//! operation that failed (an injected `EIO`) must have changed nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The prefix of every user xattr the soak sets.
pub const XATTR_PREFIX: &str = "user.soak.";

/// User xattrs of one item, name to value.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// What a file must read.
#[derive(Clone, Debug)]
pub enum Content {
    /// The bytes of this path of the source (the file's origin) as they are.
    Source(PathBuf),
    /// Bytes a client wrote.
    Local(Arc<Vec<u8>>),
}

/// One item of the model.
#[derive(Clone, Debug)]
pub enum Node {
    Dir { xattrs: Xattrs },
    File { content: Content, xattrs: Xattrs },
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }

    pub fn xattrs(&self) -> &Xattrs {
        match self {
            Node::Dir { xattrs } | Node::File { xattrs, .. } => xattrs,
        }
    }

    pub fn xattrs_mut(&mut self) -> &mut Xattrs {
        match self {
            Node::Dir { xattrs } | Node::File { xattrs, .. } => xattrs,
        }
    }
}

/// Paths relative to the root, each with what it must be. Parents of every path
/// are in the model too (except the root itself, which is implicit).
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub nodes: BTreeMap<PathBuf, Node>,
}

/// The bytes of `content`, reading the source when it is the origin's.
pub fn bytes_of(source: &Path, content: &Content) -> std::io::Result<Arc<Vec<u8>>> {
    match content {
        Content::Source(p) => Ok(Arc::new(std::fs::read(source.join(p))?)),
        Content::Local(b) => Ok(b.clone()),
    }
}

impl Model {
    /// `under` (a directory of the source, relative) and everything below it, as
    /// the source holds it.
    pub fn from_source(source: &Path, under: &Path) -> std::io::Result<Model> {
        let mut m = Model::default();
        let mut todo = vec![under.to_path_buf()];
        while let Some(dir) = todo.pop() {
            if !dir.as_os_str().is_empty() {
                m.nodes.insert(
                    dir.clone(),
                    Node::Dir {
                        xattrs: Xattrs::new(),
                    },
                );
            }
            for e in std::fs::read_dir(source.join(&dir))? {
                let e = e?;
                let rel = dir.join(e.file_name());
                if e.file_type()?.is_dir() {
                    todo.push(rel);
                } else {
                    let content = Content::Source(rel.clone());
                    let xattrs = Xattrs::new();
                    m.nodes.insert(rel, Node::File { content, xattrs });
                }
            }
        }
        Ok(m)
    }

    /// Add every node of `other`.
    pub fn merge(&mut self, other: &Model) {
        self.nodes
            .extend(other.nodes.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    pub fn get(&self, p: &Path) -> Option<&Node> {
        self.nodes.get(p)
    }

    /// `dir` and every path below it, in order (`dir` first when it is a node).
    pub fn subtree<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a PathBuf, &'a Node)> {
        self.nodes
            .range::<Path, _>((std::ops::Bound::Included(dir), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(dir))
    }

    /// The names directly inside `dir`.
    pub fn children(&self, dir: &Path) -> BTreeSet<OsString> {
        self.subtree(dir)
            .filter(|(k, _)| k.parent() == Some(dir))
            .filter_map(|(k, _)| k.file_name().map(|n| n.to_os_string()))
            .collect()
    }

    /// Move `from` (and, for a directory, everything below it) to `to`,
    /// replacing a file at `to`, as `rename(2)` does.
    pub fn rename(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self.subtree(from).map(|(k, _)| k.clone()).collect();
        self.nodes.remove(to);
        for old in moved {
            let node = self.nodes.remove(&old).expect("listed above");
            let rest = old.strip_prefix(from).expect("below from");
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.nodes.insert(new, node);
        }
    }

    /// Swap two files, as `RENAME_EXCHANGE` does.
    pub fn exchange(&mut self, a: &Path, b: &Path) {
        let na = self.nodes.remove(a).expect("a is in the model");
        let nb = self
            .nodes
            .insert(b.to_path_buf(), na)
            .expect("b is in the model");
        self.nodes.insert(a.to_path_buf(), nb);
    }
}

/// How much of each file a walk compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Names, kinds, sizes and xattrs of everything; content only of files whose
    /// content is already local (hydrated or full, by the `user.prjfs.state`
    /// xattr), so that the walk fetches nothing.
    LocalContent,
    /// Everything, contents included (hydrates every file).
    Full,
}

/// Calls `f` until it gives something other than `EIO` (injected faults come at
/// random), at most 200 times.
pub fn retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EIO) && tries < 200 => tries += 1,
            r => return r,
        }
    }
}

/// The `user.soak.*` xattrs of `p`.
pub fn read_xattrs(p: &Path) -> std::io::Result<Xattrs> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::listxattr(p, &mut names[..])?;
    let mut out = Xattrs::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if !name.starts_with(XATTR_PREFIX) {
            continue;
        }
        let mut value = vec![0u8; 4096];
        let len = rustix::fs::getxattr(p, name.as_str(), &mut value[..])?;
        value.truncate(len);
        out.insert(name, value);
    }
    Ok(out)
}

/// The state bits of `p` from its `user.prjfs.state` xattr ("N Name|Name").
pub fn state_bits(p: &Path) -> std::io::Result<u32> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::getxattr(p, "user.prjfs.state", &mut buf[..])?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("{}: unreadable state xattr", p.display())))
}

/// Compares the mount at `root` below each of `tops` (relative directories; the
/// empty path is the root) with `model`; returns the differences, at most
/// `limit` of them, and how many items were compared. `EIO` is retried; any
/// other error is a difference.
pub fn diff(
    root: &Path,
    source: &Path,
    model: &Model,
    tops: &[PathBuf],
    depth: Depth,
    limit: usize,
) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut compared = 0;
    let note = |out: &mut Vec<String>, s: String| {
        if out.len() < limit {
            out.push(s);
        }
    };
    for top in tops {
        let mut todo = vec![top.clone()];
        while let Some(dir) = todo.pop() {
            let names = retry(|| {
                std::fs::read_dir(root.join(&dir))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<std::io::Result<BTreeSet<OsString>>>()
            });
            let names = match names {
                Ok(n) => n,
                Err(e) => {
                    note(&mut out, format!("{}/: cannot list: {e}", dir.display()));
                    continue;
                }
            };
            let expected = model.children(&dir);
            for missing in expected.difference(&names) {
                note(
                    &mut out,
                    format!("{}: missing", dir.join(missing).display()),
                );
            }
            for extra in names.difference(&expected) {
                note(
                    &mut out,
                    format!("{}: unexpected", dir.join(extra).display()),
                );
            }
            for name in names.intersection(&expected) {
                let rel = dir.join(name);
                let node = model.get(&rel).expect("expected names are nodes");
                compared += 1;
                if let Err(e) = compare(root, source, &rel, node, depth) {
                    note(&mut out, format!("{}: {e}", rel.display()));
                }
                if node.is_dir() {
                    todo.push(rel);
                }
            }
        }
    }
    (out, compared)
}

/// Kind, size, xattrs and (per `depth`) content of one item.
fn compare(
    root: &Path,
    source: &Path,
    rel: &Path,
    node: &Node,
    depth: Depth,
) -> Result<(), String> {
    let path = root.join(rel);
    let meta = retry(|| std::fs::symlink_metadata(&path)).map_err(|e| format!("stat: {e}"))?;
    if meta.is_dir() != node.is_dir() {
        return Err(format!(
            "is a {}, the model has a {}",
            if meta.is_dir() { "directory" } else { "file" },
            if node.is_dir() { "directory" } else { "file" }
        ));
    }
    let xattrs = retry(|| read_xattrs(&path)).map_err(|e| format!("xattrs: {e}"))?;
    if &xattrs != node.xattrs() {
        return Err(format!(
            "xattrs {:?}, the model has {:?}",
            xattrs.keys().collect::<Vec<_>>(),
            node.xattrs().keys().collect::<Vec<_>>()
        ));
    }
    let Node::File { content, .. } = node else {
        return Ok(());
    };
    let want = bytes_of(source, content).map_err(|e| format!("model bytes: {e}"))?;
    if meta.len() != want.len() as u64 {
        return Err(format!("size {}, the model has {}", meta.len(), want.len()));
    }
    let read_it = match depth {
        Depth::Full => true,
        Depth::LocalContent => {
            let bits = retry(|| state_bits(&path)).map_err(|e| format!("state: {e}"))?;
            bits & (2 | 8) != 0
        }
    };
    if read_it {
        let got = retry(|| std::fs::read(&path)).map_err(|e| format!("read: {e}"))?;
        if got[..] != want[..] {
            let at = got
                .iter()
                .zip(want.iter())
                .take_while(|(a, b)| a == b)
                .count();
            return Err(format!(
                "content differs from the model at byte {at} ({} bytes read)",
                got.len()
            ));
        }
    }
    Ok(())
}

/// Whether an error is the `EIO` an injected fault gives.
pub fn is_fault(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

/// Whether an error says the name is not there.
pub fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

/// A short printable form of a path.
pub fn show(p: &Path) -> String {
    String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned()
}
