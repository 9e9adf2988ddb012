//! The catalog: the members of a finished [`Index`] laid out as the mount
//! reads them, stored as it is (see [`super::persist`]) so that loading it
//! builds nothing.
//!
//! Invariants: entries are in breadth-first order of the tree, so the
//! children of a directory are one run of entries, sorted by name bytes, after
//! their parent (the root's children are the first [`Catalog::root_count`]
//! entries); a lookup walks the path's components with a binary search per
//! directory, a listing is a range. Names and symlink targets live in one
//! byte string. A member whose parent is not a directory is not in the
//! catalog (it would be hidden under a file).

use std::collections::HashMap;
use std::ops::Range;

use super::index::{Access, Data, Fingerprint, Format, Index, Kind, Member};

/// The index standing for the root directory.
pub const ROOT: u32 = u32::MAX;

/// One member as the mount sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name (last path component) in [`Catalog::strings`].
    pub name: Range<u32>,
    /// Its directory ([`ROOT`] for the top level).
    pub parent: u32,
    /// Its children (directories only; empty otherwise).
    pub children: Range<u32>,
    /// File, directory or symlink.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Content length (files), target length (symlinks), 0 (directories).
    pub size: u64,
    /// Where the content is.
    pub data: Data,
    /// Symlink target in [`Catalog::strings`] (empty for other kinds).
    pub target: Range<u32>,
}

/// The members of an archive, how to reach its bytes, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// The archive's format.
    pub format: Format,
    /// The archive this was built from.
    pub fingerprint: Fingerprint,
    /// Resume points.
    pub access: Access,
    /// Bytes of the uncompressed stream that could be read.
    pub readable_end: u64,
    /// What stopped the index pass early, if anything.
    pub damage: Option<String>,
    /// The members, breadth first.
    pub entries: Vec<Entry>,
    /// Entries `0..root_count` are the top level.
    pub root_count: u32,
    /// Names and targets.
    pub strings: Vec<u8>,
}

fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

fn name_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

impl Catalog {
    /// Lay out a finished index (see [`Index::finish`]).
    pub fn from_index(index: Index) -> Self {
        let members = index.members;
        // The directory of each member (`None`: the top level); members under
        // something that is not a directory stay out.
        let mut kids: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
        let mut parent_of_member = vec![None; members.len()];
        {
            let by_path: HashMap<&[u8], usize> = members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.path.as_slice(), i))
                .collect();
            for (i, m) in members.iter().enumerate() {
                let parent = parent_of(&m.path);
                let p = if parent.is_empty() {
                    None
                } else {
                    match by_path.get(parent) {
                        Some(&p) if members[p].kind == Kind::Dir => Some(p),
                        _ => continue,
                    }
                };
                parent_of_member[i] = p;
                kids.entry(p).or_default().push(i);
            }
        }
        for list in kids.values_mut() {
            list.sort_unstable_by(|a, b| {
                name_of(&members[*a].path).cmp(name_of(&members[*b].path))
            });
        }
        // Breadth first: the order, and each directory's run of children.
        let mut order: Vec<usize> = kids.remove(&None).unwrap_or_default();
        let root_count = order.len() as u32;
        let mut runs = vec![0u32..0; order.len()];
        let mut k = 0;
        while k < order.len() {
            if let Some(list) = kids.remove(&Some(order[k])) {
                let first = order.len() as u32;
                order.extend_from_slice(&list);
                runs.resize(order.len(), 0..0);
                runs[k] = first..order.len() as u32;
            }
            k += 1;
        }
        let mut new_of = vec![ROOT; members.len()];
        for (new, &old) in order.iter().enumerate() {
            new_of[old] = new as u32;
        }
        let mut strings = Vec::new();
        let mut put = |bytes: &[u8]| {
            let at = strings.len() as u32;
            strings.extend_from_slice(bytes);
            at..strings.len() as u32
        };
        let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
        let mut entries = Vec::with_capacity(order.len());
        for (new, &old) in order.iter().enumerate() {
            let m = members[old].take().expect("each member is placed once");
            entries.push(Entry {
                name: put(name_of(&m.path)),
                parent: parent_of_member[old].map_or(ROOT, |p| new_of[p]),
                children: runs[new].clone(),
                kind: m.kind,
                mode: m.mode,
                mtime: m.mtime,
                size: m.size,
                data: m.data,
                target: put(&m.target),
            });
        }
        Self {
            format: index.format,
            fingerprint: index.fingerprint,
            access: index.access,
            readable_end: index.readable_end,
            damage: index.damage,
            entries,
            root_count,
            strings,
        }
    }

    /// Members in the catalog.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog has no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry `i` (not [`ROOT`]).
    pub fn entry(&self, i: u32) -> &Entry {
        &self.entries[i as usize]
    }

    /// The children of directory `dir` ([`ROOT`] or a directory entry),
    /// sorted by name.
    pub fn children(&self, dir: u32) -> Range<u32> {
        if dir == ROOT {
            0..self.root_count
        } else {
            self.entry(dir).children.clone()
        }
    }

    fn string(&self, range: &Range<u32>) -> &[u8] {
        &self.strings[range.start as usize..range.end as usize]
    }

    /// The name (last path component) of entry `i`.
    pub fn name(&self, i: u32) -> &[u8] {
        self.string(&self.entry(i).name)
    }

    /// The symlink target of entry `i` (empty for other kinds).
    pub fn target(&self, i: u32) -> &[u8] {
        self.string(&self.entry(i).target)
    }

    /// The whole path of entry `i` (for messages).
    pub fn path(&self, i: u32) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut at = i;
        while at != ROOT {
            parts.push(self.name(at));
            at = self.entry(at).parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// The entry at `path` (normalized; empty for the root).
    pub fn lookup(&self, path: &[u8]) -> Option<u32> {
        if path.is_empty() {
            return Some(ROOT);
        }
        let mut at = ROOT;
        for part in path.split(|b| *b == b'/') {
            let run = self.children(at);
            let names = &self.entries[run.start as usize..run.end as usize];
            let k = names
                .binary_search_by(|e| self.string(&e.name).cmp(part))
                .ok()?;
            at = run.start + k as u32;
        }
        Some(at)
    }

    /// Check what a stored catalog must satisfy for [`Catalog`]'s methods
    /// never to index out of bounds: strings in range, each directory's run
    /// after it and inside the entries, parents before their children.
    pub fn is_well_formed(&self) -> bool {
        let n = self.entries.len() as u32;
        let s = self.strings.len() as u32;
        let in_strings = |r: &Range<u32>| r.start <= r.end && r.end <= s;
        self.root_count <= n
            && self.entries.iter().enumerate().all(|(i, e)| {
                let i = i as u32;
                in_strings(&e.name)
                    && in_strings(&e.target)
                    && (e.parent == ROOT || e.parent < i)
                    && (e.children.is_empty()
                        || (e.children.start > i
                            && e.children.start <= e.children.end
                            && e.children.end <= n))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::Member;

    fn member(path: &str, kind: Kind) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            mtime: 5,
            size: 0,
            data: Data::None,
            target: Vec::new(),
        }
    }

    #[test]
    fn children_are_runs_in_name_order_and_lookups_walk_them() {
        let index = Index {
            format: Format::Tar,
            fingerprint: Fingerprint {
                size: 0,
                mtime_ns: 0,
                head_tail: 0,
            },
            members: vec![
                member("d/z", Kind::File),
                member("b", Kind::File),
                member("d", Kind::Dir),
                member("d/a", Kind::Dir),
                member("d/a/x", Kind::File),
                member("b/hidden", Kind::File),
                member("a", Kind::Dir),
            ],
            access: Access::Direct,
            readable_end: 0,
            damage: None,
        };
        let c = Catalog::from_index(index);
        assert!(c.is_well_formed());
        let names = |r: Range<u32>| -> Vec<&[u8]> { r.map(|i| c.name(i)).collect() };
        assert_eq!(names(c.children(ROOT)), vec![&b"a"[..], b"b", b"d"]);
        let d = c.lookup(b"d").unwrap();
        assert_eq!(names(c.children(d)), vec![&b"a"[..], b"z"]);
        let x = c.lookup(b"d/a/x").unwrap();
        assert_eq!(c.path(x), b"d/a/x");
        assert_eq!(c.entry(x).parent, c.lookup(b"d/a").unwrap());
        assert_eq!(c.lookup(b"b/hidden"), None);
        assert_eq!(c.lookup(b"d/q"), None);
        assert_eq!(c.lookup(b"a/x"), None);
        assert_eq!(c.lookup(b""), Some(ROOT));
        assert!(c.children(c.lookup(b"a").unwrap()).is_empty());
        assert_eq!(c.len(), 6);
    }
}
