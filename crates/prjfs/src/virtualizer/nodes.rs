//! Node ids for the items a client has looked up: parent + name (plus the other
//! names of a hard-linked file), so a rename touches one node, and lookup counts
//! so nodes go when the kernel forgets them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustc_hash::FxBuildHasher;

/// The root's node id (fixed by FUSE).
pub const ROOT_ID: u64 = 1;

/// Parent id of a detached node: its last name was removed; it has no path.
const DETACHED: u64 = 0;

/// A name: parent node and the name in it. The name's bytes are shared by the
/// node and the index.
type Name = (u64, Arc<OsStr>);

type FxMap<K, V> = HashMap<K, V, FxBuildHasher>;

struct Node {
    /// The name used to build the node's path.
    primary: Name,
    /// Further names of the same file (hard links made through the mount);
    /// boxed, as most nodes have none (8 bytes instead of 24 per node).
    #[allow(clippy::box_collection)]
    aliases: Option<Box<Vec<Name>>>,
    lookups: u64,
}

#[derive(Default)]
struct Inner {
    nodes: FxMap<u64, Node>,
    /// Parent → name → node: looked up by `&OsStr`, no allocation.
    index: FxMap<u64, FxMap<Arc<OsStr>, u64>>,
    next: u64,
}

impl Inner {
    fn get(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.index.get(&parent)?.get(name).copied()
    }

    fn insert(&mut self, key: Name, id: u64) {
        self.index.entry(key.0).or_default().insert(key.1, id);
    }

    fn remove(&mut self, parent: u64, name: &OsStr) -> Option<u64> {
        let names = self.index.get_mut(&parent)?;
        let id = names.remove(name)?;
        if names.is_empty() {
            self.index.remove(&parent);
        }
        Some(id)
    }

    /// The index's own copy of (parent, name), for a node that gets this name.
    fn name(parent: u64, name: &OsStr) -> Name {
        (parent, Arc::from(name))
    }
}

/// Invariant: `index` maps exactly the primary and alias names of live nodes
/// (detached primaries excepted), and every node's parent chain ends at the root.
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
    /// unknown or detached id.
    pub fn path(&self, id: u64) -> Option<PathBuf> {
        if id == ROOT_ID {
            return Some(PathBuf::new());
        }
        let inner = self.inner.lock().expect("node lock");
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != ROOT_ID {
            if cur == DETACHED {
                return None;
            }
            let node = inner.nodes.get(&cur)?;
            parts.push(node.primary.1.clone());
            cur = node.primary.0;
        }
        Some(parts.iter().rev().map(|p| &**p).collect())
    }

    /// The directory node holding `id`'s name (its first name for a hard-linked
    /// file); `None` for the root, an unknown or a detached node.
    pub fn parent(&self, id: u64) -> Option<u64> {
        let inner = self.inner.lock().expect("node lock");
        let parent = inner.nodes.get(&id)?.primary.0;
        (parent != DETACHED).then_some(parent)
    }

    /// The node named (parent, name), if the kernel holds one (no lookup counted).
    pub fn find(&self, parent: u64, name: &OsStr) -> Option<u64> {
        let inner = self.inner.lock().expect("node lock");
        inner.get(parent, name)
    }

    /// The node the kernel holds for the relative `path`, if it holds one for
    /// every component (no lookup counted).
    pub fn find_path(&self, path: &std::path::Path) -> Option<u64> {
        let inner = self.inner.lock().expect("node lock");
        path.components().try_fold(ROOT_ID, |parent, c| match c {
            std::path::Component::Normal(name) => inner.get(parent, name),
            _ => None,
        })
    }

    /// The node for `name` under `parent`, created if needed; counts one lookup.
    ///
    /// A `parent` that is not a live node (only a forged request names one: the
    /// kernel holds a directory while it looks inside) gets a new node that is
    /// born detached, with no path: named under an id not handed out yet, it
    /// would close a cycle once that id went to one of its descendants.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> u64 {
        self.lookup_with(parent, name, || Arc::from(name))
    }

    /// [`NodeTable::lookup`] of a name the caller already holds shared (a
    /// listing's): a new node keeps that allocation instead of its own copy.
    pub fn lookup_shared(&self, parent: u64, name: &Arc<OsStr>) -> u64 {
        self.lookup_with(parent, name, || Arc::clone(name))
    }

    /// [`NodeTable::lookup_shared`] of each of `names` (a listing's entries,
    /// all under `parent`), under one lock and with room made for them at once.
    pub fn lookup_shared_all<'a>(
        &self,
        parent: u64,
        names: impl Iterator<Item = &'a Arc<OsStr>>,
    ) -> Vec<u64> {
        // At most this many (a filtered listing's upper bound).
        let n = names.size_hint().1.unwrap_or(0);
        let mut inner = self.inner.lock().expect("node lock");
        let live = parent == ROOT_ID || inner.nodes.contains_key(&parent);
        let mut ids = Vec::with_capacity(n);
        inner.nodes.reserve(n);
        if !live {
            // Born detached (see `lookup`): nothing to index.
            for name in names {
                let id = inner.next;
                inner.next += 1;
                inner.nodes.insert(
                    id,
                    Node {
                        primary: (DETACHED, Arc::clone(name)),
                        aliases: None,
                        lookups: 1,
                    },
                );
                ids.push(id);
            }
            return ids;
        }
        let Inner { nodes, index, next } = &mut *inner;
        let in_dir = index.entry(parent).or_default();
        in_dir.reserve(n);
        for name in names {
            let id = match in_dir.entry(Arc::clone(name)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let id = *e.get();
                    nodes.get_mut(&id).expect("indexed node exists").lookups += 1;
                    id
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    let id = *next;
                    *next += 1;
                    nodes.insert(
                        id,
                        Node {
                            primary: (parent, Arc::clone(e.key())),
                            aliases: None,
                            lookups: 1,
                        },
                    );
                    e.insert(id);
                    id
                }
            };
            ids.push(id);
        }
        ids
    }

    fn lookup_with(&self, parent: u64, name: &OsStr, shared: impl FnOnce() -> Arc<OsStr>) -> u64 {
        let mut inner = self.inner.lock().expect("node lock");
        if let Some(id) = inner.get(parent, name) {
            inner
                .nodes
                .get_mut(&id)
                .expect("indexed node exists")
                .lookups += 1;
            return id;
        }
        let id = inner.next;
        inner.next += 1;
        let live = parent == ROOT_ID || inner.nodes.contains_key(&parent);
        let key = (if live { parent } else { DETACHED }, shared());
        inner.nodes.insert(
            id,
            Node {
                primary: key.clone(),
                aliases: None,
                lookups: 1,
            },
        );
        if live {
            inner.insert(key, id);
        }
        id
    }

    /// A hard link made through the mount: `name` under `parent` is another name
    /// of node `id` (the kernel then sees one inode). Counts one lookup.
    pub fn link(&self, id: u64, parent: u64, name: &OsStr) -> u64 {
        let mut inner = self.inner.lock().expect("node lock");
        let key = Inner::name(parent, name);
        let Some(node) = inner.nodes.get_mut(&id) else {
            drop(inner);
            return self.lookup(parent, name);
        };
        node.lookups += 1;
        node.aliases
            .get_or_insert_with(Default::default)
            .push(key.clone());
        inner.insert(key, id);
        id
    }

    /// Remove one name of its node; the node's path moves to another name, or
    /// the node is detached (no path) when it was the last.
    fn unname(inner: &mut Inner, id: u64, parent: u64, name: &OsStr) {
        let Some(node) = inner.nodes.get_mut(&id) else {
            return;
        };
        let is = |n: &Name| n.0 == parent && &*n.1 == name;
        if is(&node.primary) {
            let next = node
                .aliases
                .as_mut()
                .and_then(|a| (!a.is_empty()).then(|| a.remove(0)));
            match next {
                Some(name) => node.primary = name,
                None => node.primary.0 = DETACHED,
            }
        } else if let Some(a) = node.aliases.as_mut() {
            a.retain(|a| !is(a));
        }
    }

    /// (parent, name) no longer names anything (unlink, rmdir, or replaced by a
    /// rename): later lookups of it get a new node.
    pub fn detach(&self, parent: u64, name: &OsStr) {
        let mut inner = self.inner.lock().expect("node lock");
        if let Some(id) = inner.remove(parent, name) {
            Self::unname(&mut inner, id, parent, name);
        }
    }

    /// A rename: the node named (parent, name) is now named (new_parent,
    /// new_name); a node that had that name loses it, or with `exchange` takes
    /// the old one.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        exchange: bool,
    ) {
        let mut inner = self.inner.lock().expect("node lock");
        let from = Inner::name(parent, name);
        let to = Inner::name(new_parent, new_name);
        let moving = inner.remove(parent, name);
        let replaced = inner.remove(new_parent, new_name);
        let rename_in = |inner: &mut Inner, id: u64, old: &Name, new: &Name| {
            if let Some(node) = inner.nodes.get_mut(&id) {
                if node.primary == *old {
                    node.primary = new.clone();
                } else if let Some(a) = node
                    .aliases
                    .as_mut()
                    .and_then(|v| v.iter_mut().find(|a| *a == old))
                {
                    *a = new.clone();
                }
            }
        };
        if let Some(id) = replaced {
            if exchange {
                rename_in(&mut inner, id, &to, &from);
                inner.insert(from.clone(), id);
            } else {
                Self::unname(&mut inner, id, new_parent, new_name);
            }
        }
        if let Some(id) = moving {
            rename_in(&mut inner, id, &from, &to);
            inner.insert(to, id);
        }
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
            let aliases = node.aliases.map(|b| *b).unwrap_or_default();
            for (parent, name) in std::iter::once(node.primary).chain(aliases) {
                if inner.get(parent, &name) == Some(id) {
                    inner.remove(parent, &name);
                }
            }
        }
    }

    /// Whether the kernel still holds `id` (it is in the table, named or not).
    pub fn is_live(&self, id: u64) -> bool {
        id == ROOT_ID
            || self
                .inner
                .lock()
                .expect("node lock")
                .nodes
                .contains_key(&id)
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
    fn a_listing_counts_as_one_lookup_per_name() {
        let t = NodeTable::new();
        let a = t.lookup(ROOT_ID, OsStr::new("a"));
        let names: Vec<Arc<OsStr>> = ["x", "a", "y"]
            .iter()
            .map(|n| Arc::from(OsStr::new(n)))
            .collect();
        let ids = t.lookup_shared_all(ROOT_ID, names.iter());
        assert_eq!(ids[1], a, "a name the kernel holds keeps its node");
        assert_eq!(t.lookup_shared_all(ROOT_ID, names.iter()), ids);
        assert_eq!(t.path(ids[0]).unwrap(), PathBuf::from("x"));
        assert_eq!(t.find(ROOT_ID, OsStr::new("y")), Some(ids[2]));
        // Counted: a has 1 + 2 lookups, x and y 2 each.
        t.forget(a, 2);
        t.forget(ids[0], 1);
        assert!(t.path(a).is_some() && t.path(ids[0]).is_some());
        t.forget(a, 1);
        t.forget(ids[0], 1);
        assert!(t.path(a).is_none() && t.path(ids[0]).is_none());
        // Under a parent that is no live node: born detached.
        let orphans = t.lookup_shared_all(999, names.iter());
        assert!(orphans.iter().all(|id| t.path(*id).is_none()));
        assert_eq!(t.find(999, OsStr::new("x")), None);
    }

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

    #[test]
    fn rename_detach_and_exchange() {
        let t = NodeTable::new();
        let a = t.lookup(ROOT_ID, OsStr::new("a"));
        let d = t.lookup(ROOT_ID, OsStr::new("d"));
        let b = t.lookup(ROOT_ID, OsStr::new("b"));
        t.rename(ROOT_ID, OsStr::new("a"), d, OsStr::new("x"), false);
        assert_eq!(t.path(a).unwrap(), PathBuf::from("d/x"));
        // Replacing detaches the old target.
        t.rename(ROOT_ID, OsStr::new("b"), d, OsStr::new("x"), false);
        assert_eq!(t.path(b).unwrap(), PathBuf::from("d/x"));
        assert!(t.path(a).is_none());
        let c = t.lookup(ROOT_ID, OsStr::new("c"));
        t.rename(ROOT_ID, OsStr::new("c"), d, OsStr::new("x"), true);
        assert_eq!(t.path(c).unwrap(), PathBuf::from("d/x"));
        assert_eq!(t.path(b).unwrap(), PathBuf::from("c"));
        t.detach(ROOT_ID, OsStr::new("c"));
        assert!(t.path(b).is_none());
        assert_ne!(t.lookup(ROOT_ID, OsStr::new("c")), b);
    }

    /// Found by the dispatcher fuzzer: a READDIRPLUS whose header named a node
    /// id not handed out yet counted its entries under that id; the next new
    /// node got the id and became its own ancestor, and `path` looped forever.
    #[test]
    fn unknown_parent_makes_a_detached_node_not_a_cycle() {
        let t = NodeTable::new();
        let a = t.lookup(3, OsStr::new("a"));
        let b = t.lookup(3, OsStr::new("b"));
        assert_eq!((a, b), (2, 3));
        assert!(t.path(a).is_none());
        assert!(t.path(b).is_none());
        assert_eq!(t.find(3, OsStr::new("a")), None);
        let c = t.lookup(b, OsStr::new("c"));
        assert!(t.path(c).is_none());
        t.forget(a, 1);
        t.forget(b, 1);
        t.forget(c, 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn hard_links_share_a_node_and_survive_unlink_of_one_name() {
        let t = NodeTable::new();
        let f = t.lookup(ROOT_ID, OsStr::new("f"));
        let d = t.lookup(ROOT_ID, OsStr::new("d"));
        assert_eq!(t.link(f, d, OsStr::new("g")), f);
        assert_eq!(t.lookup(d, OsStr::new("g")), f);
        t.detach(ROOT_ID, OsStr::new("f"));
        assert_eq!(t.path(f).unwrap(), PathBuf::from("d/g"));
        t.rename(d, OsStr::new("g"), ROOT_ID, OsStr::new("h"), false);
        assert_eq!(t.path(f).unwrap(), PathBuf::from("h"));
        t.forget(f, 3);
        assert!(t.path(f).is_none());
        assert_ne!(t.lookup(ROOT_ID, OsStr::new("h")), f);
    }
}
