//! [`MemTree`], a small in-memory store, and [`MemProvider`], a well-behaved inline
//! provider over it that the misbehaving test providers build on.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use prjfs::enumeration::Enumerations;
use prjfs::{
    CallbackData, CallbackResult, Collation, DirEntry, DirEntryBuffer, EnumerationId,
    FileBasicInfo, FileKind, Outcome, PlaceholderInfo, Provider, ProviderError, VersionInfo,
};

/// [`VersionInfo::provider_id`] of items of a [`MemTree`].
pub const MEM_PROVIDER_ID: &[u8] = b"prjfs-mem";

/// One item of a [`MemTree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemNode {
    /// Metadata (`size` is kept equal to the content or target length).
    pub basic: FileBasicInfo,
    /// Content of a file.
    pub content: Vec<u8>,
    /// Target of a symlink.
    pub symlink_target: Option<OsString>,
    /// Content id: a counter value, new for each insert.
    pub version: u64,
}

/// An in-memory tree keyed by root-relative path; the root (the empty path) is an
/// implicit directory. Inserting an item creates its missing parent directories.
#[derive(Clone, Debug, Default)]
pub struct MemTree {
    nodes: BTreeMap<PathBuf, MemNode>,
    next_version: u64,
}

impl MemTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the file `path` with `content`.
    pub fn file(mut self, path: impl AsRef<Path>, content: impl Into<Vec<u8>>) -> Self {
        let content = content.into();
        let basic = FileBasicInfo::file(content.len() as u64);
        self.insert(path.as_ref(), basic, content, None);
        self
    }

    /// Add the directory `path`.
    pub fn dir(mut self, path: impl AsRef<Path>) -> Self {
        self.insert(path.as_ref(), FileBasicInfo::directory(), Vec::new(), None);
        self
    }

    /// Add the symlink `path` pointing at `target`.
    pub fn symlink(mut self, path: impl AsRef<Path>, target: impl Into<OsString>) -> Self {
        let target = target.into();
        let basic = FileBasicInfo {
            kind: FileKind::Symlink,
            mode: 0o777,
            ..FileBasicInfo::file(target.len() as u64)
        };
        self.insert(path.as_ref(), basic, Vec::new(), Some(target));
        self
    }

    /// Remove `path` and everything below it.
    pub fn remove(&mut self, path: impl AsRef<Path>) {
        let path = normalize(path.as_ref());
        self.nodes.retain(|p, _| !p.starts_with(&path));
    }

    /// The item at `path` (the root is not an item).
    pub fn get(&self, path: impl AsRef<Path>) -> Option<&MemNode> {
        self.nodes.get(&normalize(path.as_ref()))
    }

    /// Whether `path` is the root or a directory of the tree.
    pub fn is_dir(&self, path: impl AsRef<Path>) -> bool {
        let path = normalize(path.as_ref());
        path.as_os_str().is_empty()
            || self
                .nodes
                .get(&path)
                .is_some_and(|n| n.basic.kind == FileKind::Directory)
    }

    /// The entries of directory `path` in byte order; `None` if it is not a
    /// directory.
    pub fn children(&self, path: impl AsRef<Path>) -> Option<Vec<DirEntry>> {
        let path = normalize(path.as_ref());
        if !self.is_dir(&path) {
            return None;
        }
        let entries = self
            .nodes
            .iter()
            .filter(|(p, _)| p.parent() == Some(path.as_path()))
            .map(|(p, n)| DirEntry {
                name: p.file_name().map(OsStr::to_os_string).unwrap_or_default(),
                basic: n.basic.clone(),
                symlink_target: n.symlink_target.clone(),
                version: None,
            })
            .collect();
        Some(entries)
    }

    /// The placeholder of `path`.
    pub fn placeholder_info(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<PlaceholderInfo, ProviderError> {
        let node = self.get(path).ok_or(ProviderError::NotFound)?;
        Ok(PlaceholderInfo {
            basic: node.basic.clone(),
            version: VersionInfo {
                provider_id: MEM_PROVIDER_ID.to_vec(),
                content_id: node.version.to_le_bytes().to_vec(),
            },
            symlink_target: node.symlink_target.clone(),
        })
    }

    fn insert(
        &mut self,
        path: &Path,
        basic: FileBasicInfo,
        content: Vec<u8>,
        target: Option<OsString>,
    ) {
        let path = normalize(path);
        assert!(!path.as_os_str().is_empty(), "the root is implicit");
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if !self.nodes.contains_key(p) {
                self.next_version += 1;
                let node = MemNode {
                    basic: FileBasicInfo::directory(),
                    content: Vec::new(),
                    symlink_target: None,
                    version: self.next_version,
                };
                self.nodes.insert(p.to_path_buf(), node);
            }
            parent = p.parent();
        }
        self.next_version += 1;
        let node = MemNode {
            basic,
            content,
            symlink_target: target,
            version: self.next_version,
        };
        self.nodes.insert(path, node);
    }
}

/// `path` without `.` components and leading `/`. Test trees use plain paths; `..`
/// is kept (and then matches nothing).
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir | Component::RootDir))
        .collect()
}

/// A correct provider over a [`MemTree`] that answers everything inline. The tree
/// can be changed while mounted ([`MemProvider::update`]); open sessions keep the
/// listing they started with.
pub struct MemProvider {
    tree: RwLock<MemTree>,
    /// The order of its listings, whatever the root's collation
    /// (`cb.collation`): the tests choose it.
    collation: Collation,
    enumerations: Enumerations,
}

impl MemProvider {
    /// A provider over `tree`, listing in byte order.
    pub fn new(tree: MemTree) -> Self {
        Self::with_collation(tree, Collation::CaseSensitive)
    }

    /// A provider over `tree`, listing in `collation` order.
    pub fn with_collation(tree: MemTree, collation: Collation) -> Self {
        Self {
            tree: RwLock::new(tree),
            collation,
            enumerations: Enumerations::new(),
        }
    }

    /// Change the tree.
    pub fn update(&self, f: impl FnOnce(&mut MemTree)) {
        f(&mut self.tree.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// A copy of the tree.
    pub fn tree(&self) -> MemTree {
        self.read().clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, MemTree> {
        // Writers replace nodes whole: poisoning breaks nothing.
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How many enumeration sessions are open.
    pub fn open_sessions(&self) -> usize {
        self.enumerations.open_sessions()
    }

    /// Write the placeholder of `cb.path` (the work of `get_placeholder_info`).
    pub fn write_placeholder(&self, cb: &CallbackData) -> Result<(), ProviderError> {
        let info = self.read().placeholder_info(&cb.path)?;
        cb.instance.write_placeholder_info(&cb.path, &info)?;
        Ok(())
    }

    /// Write `[offset, offset + length)` of `cb.path`, clipped to its size, in one
    /// piece (the work of `get_file_data`).
    pub fn write_data(
        &self,
        cb: &CallbackData,
        offset: u64,
        length: u64,
    ) -> Result<(), ProviderError> {
        let tree = self.read();
        let node = tree.get(&cb.path).ok_or(ProviderError::NotFound)?;
        if node.basic.kind != FileKind::File {
            return Err(ProviderError::NotFound);
        }
        let size = node.content.len() as u64;
        let start = offset.min(size);
        let end = offset.saturating_add(length).min(size);
        let piece = &node.content[start as usize..end as usize];
        cb.instance
            .write_file_data(cb.data_stream_id, start, piece)?;
        Ok(())
    }
}

impl Provider for MemProvider {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        let entries = self
            .read()
            .children(&cb.path)
            .ok_or(ProviderError::NotFound)?;
        let mut cb = cb.clone();
        cb.collation = self.collation;
        self.enumerations.start(&cb, id, entries)
    }

    fn get_directory_enumeration(
        &self,
        cb: &CallbackData,
        id: EnumerationId,
        search_expression: Option<&OsStr>,
        buffer: &DirEntryBuffer,
    ) -> CallbackResult {
        self.enumerations.get(cb, id, search_expression, buffer)
    }

    fn end_directory_enumeration(&self, _cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.enumerations.end(id)
    }

    fn get_placeholder_info(&self, cb: &CallbackData) -> CallbackResult {
        self.write_placeholder(cb)?;
        Ok(Outcome::Done)
    }

    fn get_file_data(&self, cb: &CallbackData, byte_offset: u64, length: u64) -> CallbackResult {
        self.write_data(cb, byte_offset, length)?;
        Ok(Outcome::Done)
    }

    fn query_file_name(&self, cb: &CallbackData) -> CallbackResult {
        self.read().get(&cb.path).ok_or(ProviderError::NotFound)?;
        Ok(Outcome::Done)
    }
}
