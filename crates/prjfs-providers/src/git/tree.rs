//! Trees of the object database as the git provider needs them: decoded once
//! per tree id (trees never change), looked up by path, and compared.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use gix::ObjectId;

use super::GitError;

/// What a tree entry is, from its git mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (mode 040000).
    Tree,
    /// A regular file (100644).
    Blob,
    /// An executable file (100755).
    Executable,
    /// A symbolic link (120000); the blob is its target.
    Link,
    /// A submodule (160000): a commit of another repository, projected as an
    /// empty directory.
    Submodule,
}

impl EntryKind {
    /// The byte that stands for the kind in a placeholder's ContentId, so that
    /// a mode change is a change even when the blob is the same.
    pub fn tag(self) -> u8 {
        match self {
            EntryKind::Tree => b'd',
            EntryKind::Blob => b'f',
            EntryKind::Executable => b'x',
            EntryKind::Link => b'l',
            EntryKind::Submodule => b'm',
        }
    }

    /// Projected as a directory.
    pub fn is_dir(self) -> bool {
        matches!(self, EntryKind::Tree | EntryKind::Submodule)
    }
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Its name (one path component).
    pub name: OsString,
    /// What it is.
    pub kind: EntryKind,
    /// The object it names (for a submodule, a commit of another repository).
    pub oid: ObjectId,
}

/// A decoded tree: its entries in the tree's order, and an index by name.
#[derive(Debug, Default)]
pub struct Tree {
    /// The entries, in the tree's (git's) order.
    pub entries: Vec<TreeEntry>,
    by_name: HashMap<OsString, usize>,
}

impl Tree {
    /// The entry called `name`.
    pub fn find(&self, name: &OsStr) -> Option<&TreeEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }
}

/// Decoded trees by id, shared by all callbacks. Bounded: emptied when it
/// holds [`TreeCache::LIMIT`] trees (each is re-read on demand).
#[derive(Default)]
pub struct TreeCache {
    trees: Mutex<HashMap<ObjectId, Arc<Tree>>>,
}

impl TreeCache {
    /// Trees kept at most.
    pub const LIMIT: usize = 16 * 1024;

    /// The entries of tree `id`, in the tree's (byte) order.
    pub fn get(&self, repo: &gix::Repository, id: ObjectId) -> Result<Arc<Tree>, GitError> {
        if let Some(t) = self.trees.lock().expect("tree cache lock").get(&id) {
            return Ok(t.clone());
        }
        let object = repo
            .find_object(id)
            .map_err(|e| GitError::Object(format!("tree {id}: {e}")))?;
        let tree = object
            .try_into_tree()
            .map_err(|e| GitError::Object(format!("tree {id}: {e}")))?;
        let decoded = tree
            .decode()
            .map_err(|e| GitError::Object(format!("tree {id}: {e}")))?;
        let mut entries = Vec::with_capacity(decoded.entries.len());
        for e in &decoded.entries {
            let kind = match e.mode.kind() {
                gix::object::tree::EntryKind::Tree => EntryKind::Tree,
                gix::object::tree::EntryKind::Blob => EntryKind::Blob,
                gix::object::tree::EntryKind::BlobExecutable => EntryKind::Executable,
                gix::object::tree::EntryKind::Link => EntryKind::Link,
                gix::object::tree::EntryKind::Commit => EntryKind::Submodule,
            };
            entries.push(TreeEntry {
                name: OsStr::from_bytes(e.filename).to_os_string(),
                kind,
                oid: e.oid.to_owned(),
            });
        }
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let entries = Arc::new(Tree { entries, by_name });
        let mut trees = self.trees.lock().expect("tree cache lock");
        if trees.len() >= Self::LIMIT {
            trees.clear();
        }
        trees.insert(id, entries.clone());
        Ok(entries)
    }

    /// The entry at `rel` below the tree `root` (`None` when absent or below
    /// something that is not a tree); the root itself is a tree entry with an
    /// empty name.
    pub fn lookup(
        &self,
        repo: &gix::Repository,
        root: ObjectId,
        rel: &Path,
    ) -> Result<Option<TreeEntry>, GitError> {
        let mut current = TreeEntry {
            name: OsString::new(),
            kind: EntryKind::Tree,
            oid: root,
        };
        for c in rel.components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => return Ok(None),
            };
            match current.kind {
                EntryKind::Tree => {}
                // A submodule is an empty directory here.
                _ => return Ok(None),
            }
            let tree = self.get(repo, current.oid)?;
            match tree.find(name) {
                Some(e) => current = e.clone(),
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }
}

/// One path that differs between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Relative to the trees' root.
    pub path: PathBuf,
    /// The entry in the old tree.
    pub old: Option<TreeEntry>,
    /// The entry in the new tree.
    pub new: Option<TreeEntry>,
}

/// The paths that differ between the trees `old` and `new`: entries added,
/// removed, or with another object or kind. A tree present in both is compared
/// entry by entry (it is not a change itself); a tree only in one of them is
/// one change (its content is not listed).
pub fn diff(
    cache: &TreeCache,
    repo: &gix::Repository,
    old: ObjectId,
    new: ObjectId,
) -> Result<Vec<Change>, GitError> {
    let mut out = Vec::new();
    diff_into(cache, repo, old, new, Path::new(""), &mut out)?;
    Ok(out)
}

fn diff_into(
    cache: &TreeCache,
    repo: &gix::Repository,
    old: ObjectId,
    new: ObjectId,
    dir: &Path,
    out: &mut Vec<Change>,
) -> Result<(), GitError> {
    if old == new {
        return Ok(());
    }
    let a = cache.get(repo, old)?;
    let b = cache.get(repo, new)?;
    let mut names: Vec<&OsString> = a
        .entries
        .iter()
        .chain(b.entries.iter())
        .map(|e| &e.name)
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let ea = a.find(name);
        let eb = b.find(name);
        let path = dir.join(name);
        match (ea, eb) {
            (Some(x), Some(y)) if x.kind == EntryKind::Tree && y.kind == EntryKind::Tree => {
                diff_into(cache, repo, x.oid, y.oid, &path, out)?;
            }
            (Some(x), Some(y)) if x.kind == y.kind && x.oid == y.oid => {}
            (x, y) => out.push(Change {
                path,
                old: x.cloned(),
                new: y.cloned(),
            }),
        }
    }
    Ok(())
}
