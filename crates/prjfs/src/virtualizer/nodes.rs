//! Node ids for the items a client has looked up: parent + name, so a rename
//! touches one node, and lookup counts so nodes go when the kernel forgets them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Mutex;

/// The root's node id (fixed by FUSE).
pub const ROOT_ID: u64 = 1;

struct Node {
    parent: u64,
    name: OsString,
    lookups: u64,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<u64, Node>,
    index: HashMap<(u64, OsString), u64>,
    next: u64,
}

/// Invariant: `index` maps exactly the (parent, name) pairs of `nodes`, and every
/// node's parent chain ends at the root.
pub struct NodeTable {
    inner: Mutex<Inner>,
}

impl Default for NodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeTable {
    /// A table holding only the root.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                next: ROOT_ID + 1,
                ..Default::default()
            }),
        }
    }

    /// The path of `id` relative to the root (`""` for the root), or `None` for an
    /// unknown id.
    pub fn path(&self, id: u64) -> Option<PathBuf> {
        if id == ROOT_ID {
            return Some(PathBuf::new());
        }
        let inner = self.inner.lock().expect("node lock");
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != ROOT_ID {
            let node = inner.nodes.get(&cur)?;
            parts.push(node.name.clone());
            cur = node.parent;
        }
        Some(parts.iter().rev().collect())
    }

    /// The node for `name` under `parent`, created if needed; counts one lookup.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> u64 {
        let mut inner = self.inner.lock().expect("node lock");
        let key = (parent, name.to_os_string());
        if let Some(&id) = inner.index.get(&key) {
            inner
                .nodes
                .get_mut(&id)
                .expect("indexed node exists")
                .lookups += 1;
            return id;
        }
        let id = inner.next;
        inner.next += 1;
        inner.nodes.insert(
            id,
            Node {
                parent,
                name: key.1.clone(),
                lookups: 1,
            },
        );
        inner.index.insert(key, id);
        id
    }

    /// The kernel dropped `n` lookups of `id`.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        let mut inner = self.inner.lock().expect("node lock");
        let Some(node) = inner.nodes.get_mut(&id) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let node = inner.nodes.remove(&id).expect("node exists");
            let key = (node.parent, node.name);
            if inner.index.get(&key) == Some(&id) {
                inner.index.remove(&key);
            }
        }
    }

    /// Number of live nodes besides the root.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("node lock").nodes.len()
    }

    /// Whether only the root is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_forget() {
        let t = NodeTable::new();
        let a = t.lookup(ROOT_ID, OsStr::new("a"));
        let b = t.lookup(a, OsStr::new("b"));
        assert_eq!(t.path(b).unwrap(), PathBuf::from("a/b"));
        assert_eq!(t.lookup(ROOT_ID, OsStr::new("a")), a);
        t.forget(a, 1);
        assert_eq!(t.path(a).unwrap(), PathBuf::from("a"));
        t.forget(a, 1);
        assert!(t.path(a).is_none());
        assert_eq!(t.path(ROOT_ID).unwrap(), PathBuf::new());
    }
}
