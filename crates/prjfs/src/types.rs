//! Plain data types shared by providers and the library: version info, placeholder
//! and directory-entry metadata, on-disk state bits.

use std::ffi::OsString;
use std::time::SystemTime;

/// Maximum length of [`VersionInfo::provider_id`] and [`VersionInfo::content_id`].
pub const VERSION_ID_MAX: usize = 128;

/// Identifies the version of an item in the backing store (ProjFS's `PRJ_PLACEHOLDER_VERSION_INFO`).
///
/// Stored with each placeholder and handed back in every callback about that item.
/// `content_id` tells versions of a path apart; a renamed placeholder keeps it, so a
/// later hydration still fetches the original content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionInfo {
    /// Provider-defined identity of the store (at most 128 bytes).
    pub provider_id: Vec<u8>,
    /// Provider-defined identity of this content version (at most 128 bytes).
    pub content_id: Vec<u8>,
}

/// What kind of item a placeholder or entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
}

/// Basic metadata of an item, as a provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileBasicInfo {
    /// File, directory or symlink.
    pub kind: FileKind,
    /// Size in bytes (files: content length; symlinks: target length; directories: ignored).
    pub size: u64,
    /// Permission bits (`0o7777` mask); the kind bits are taken from `kind`.
    pub mode: u32,
    /// Last modification time.
    pub mtime: SystemTime,
    /// Last access time.
    pub atime: SystemTime,
    /// Owner; `None` means the owner of the virtualization root.
    pub owner: Option<(u32, u32)>,
}

impl FileBasicInfo {
    /// A regular file of `size` bytes with mode `0o644`, timestamps at the epoch.
    pub fn file(size: u64) -> Self {
        Self {
            kind: FileKind::File,
            size,
            mode: 0o644,
            mtime: SystemTime::UNIX_EPOCH,
            atime: SystemTime::UNIX_EPOCH,
            owner: None,
        }
    }

    /// A directory with mode `0o755`, timestamps at the epoch.
    pub fn directory() -> Self {
        Self {
            kind: FileKind::Directory,
            size: 0,
            mode: 0o755,
            mtime: SystemTime::UNIX_EPOCH,
            atime: SystemTime::UNIX_EPOCH,
            owner: None,
        }
    }
}

/// Everything needed to write a placeholder: what `get_placeholder_info` passes
/// to [`crate::InstanceHandle::write_placeholder_info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceholderInfo {
    /// Metadata of the item.
    pub basic: FileBasicInfo,
    /// Version of the item in the store.
    pub version: VersionInfo,
    /// Target of a symlink (required when `basic.kind` is [`FileKind::Symlink`]).
    pub symlink_target: Option<OsString>,
}

/// One entry a provider adds to a [`crate::DirEntryBuffer`] (ProjFS's `PrjFillDirEntryBuffer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name in the store's spelling (one path component).
    pub name: OsString,
    /// Metadata of the entry.
    pub basic: FileBasicInfo,
    /// Target of a symlink (the extended entry form).
    pub symlink_target: Option<OsString>,
    /// The entry's version in the store, for a provider that knows it when
    /// it lists (an archive, a git tree). For a file, the placeholder the
    /// listing records then has it, and its first open or hydration raises
    /// no GetPlaceholderInfo; `None` (the ProjFS form): the first open asks.
    /// A directory with a version is placed on disk by the listing, as its
    /// first lookup would place it, so entering it asks nothing; without
    /// one its first lookup asks GetPlaceholderInfo. A symlink's version is
    /// not kept (its first lookup asks).
    pub version: Option<Box<VersionInfo>>,
}

/// The on-disk state of an item, as ProjFS's bit set
/// (`PrjGetOnDiskFileState`; the states are described in SEMANTICS.md). `0` means the item is not on disk (virtual).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OnDiskState(pub u32);

impl OnDiskState {
    /// Not on disk; exists only in its parent's enumeration.
    pub const VIRTUAL: Self = Self(0);
    /// Metadata on disk; a file has no content yet.
    pub const PLACEHOLDER: Self = Self(1);
    /// A placeholder file whose content is on disk.
    pub const HYDRATED_PLACEHOLDER: Self = Self(2);
    /// A placeholder whose metadata changed locally.
    pub const DIRTY_PLACEHOLDER: Self = Self(4);
    /// Content changed locally, or created locally.
    pub const FULL: Self = Self(8);
    /// Hidden marker of a locally deleted projected item.
    pub const TOMBSTONE: Self = Self(16);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The ProjFS names of the set bits, `Virtual` when none is set.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [(u32, &str); 5] = [
            (1, "Placeholder"),
            (2, "HydratedPlaceholder"),
            (4, "DirtyPlaceholder"),
            (8, "Full"),
            (16, "Tombstone"),
        ];
        if self.0 == 0 {
            return vec!["Virtual"];
        }
        NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

impl std::ops::BitOr for OnDiskState {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// How names are compared and matched in a virtualization root (see [`crate::names`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Collation {
    /// Byte order, case-sensitive: the Linux default.
    #[default]
    CaseSensitive,
    /// ProjFS collation: ordinal comparison of the upper-cased names.
    CaseInsensitive,
}

/// What a provider-driven change may discard (ProjFS's `PRJ_UPDATE_TYPES`), for
/// [`crate::InstanceHandle::update_file_if_needed`] and
/// [`crate::InstanceHandle::delete_file`]. Plain and hydrated placeholders need
/// no flag; every other local state needs the flag that names it, else the call
/// fails with the matching [`UpdateFailure`] cause and changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UpdateFlags(pub u32);

impl UpdateFlags {
    /// Nothing local may be discarded.
    pub const NONE: Self = Self(0);
    /// A dirty placeholder (metadata changed locally) may be replaced.
    pub const ALLOW_DIRTY_METADATA: Self = Self(1);
    /// A full item (content changed or created locally) may be replaced.
    pub const ALLOW_DIRTY_DATA: Self = Self(2);
    /// A tombstone (a local delete) may be replaced or removed.
    pub const ALLOW_TOMBSTONE: Self = Self(4);
    /// A read-only item (no write permission bit) may be replaced.
    pub const ALLOW_READ_ONLY: Self = Self(32);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for UpdateFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Why a provider-driven change was refused (ProjFS's
/// `PRJ_UPDATE_FAILURE_CAUSES`): every local state the call found that its
/// [`UpdateFlags`] did not allow (several bits when several apply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UpdateFailure(pub u32);

impl UpdateFailure {
    /// The item is a dirty placeholder; needs [`UpdateFlags::ALLOW_DIRTY_METADATA`].
    pub const DIRTY_METADATA: Self = Self(1);
    /// The item is full; needs [`UpdateFlags::ALLOW_DIRTY_DATA`].
    pub const DIRTY_DATA: Self = Self(2);
    /// The item is a tombstone; needs [`UpdateFlags::ALLOW_TOMBSTONE`].
    pub const TOMBSTONE: Self = Self(4);
    /// The item is read-only; needs [`UpdateFlags::ALLOW_READ_ONLY`].
    pub const READ_ONLY: Self = Self(8);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The ProjFS names of the set causes.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [(u32, &str); 4] = [
            (1, "DirtyMetadata"),
            (2, "DirtyData"),
            (4, "Tombstone"),
            (8, "ReadOnly"),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

impl std::fmt::Display for UpdateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join("|"))
    }
}

/// Demand-driven (ranged) hydration, for providers that serve any byte range
/// of a file cheaply (an object store's ranged GET): a big placeholder file
/// is fetched in aligned chunks as clients read them, plus a readahead window
/// that grows on sequential reads, instead of whole at its first read
/// ([`crate::StartOptions::ranged_hydration`]). Present chunks are answered
/// from a partial file; when every chunk is present the file is hydrated
/// exactly as a whole-file hydration leaves it. A provider that opts in must
/// serve every range of one placeholder from the version its ContentId names
/// (or fail), since chunks are fetched at different times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangedHydration {
    /// Chunk size in bytes (a power of two, at least 4 KiB): the unit
    /// fetched, tracked and answered. A read waits for every chunk it touches.
    pub chunk_size: u64,
    /// Files smaller than this are hydrated whole at their first read.
    pub min_file_size: u64,
    /// How many bytes a run of sequential reads covers before chunks beyond
    /// them are fetched ahead: a lone read of up to this much (with the
    /// kernel's own readahead behind it) fetches only the chunks it touches.
    pub readahead_after: u64,
    /// Largest readahead window, in bytes: how far beyond a sequential read
    /// chunks are fetched before a client asks for them. The window is twice
    /// what the run has read beyond `readahead_after`, up to this.
    pub max_readahead: u64,
}

impl Default for RangedHydration {
    /// 256 KiB chunks, for files of 8 MiB and more, readahead after 2 MiB
    /// read in sequence, up to 32 MiB. The chunk is small because the kernel
    /// reads 128 KiB ahead of a read on its own: a lone 1 MiB read then
    /// fetches 1.25 MiB (with 1 MiB chunks it would fetch 2 MiB).
    fn default() -> Self {
        Self {
            chunk_size: 256 << 10,
            min_file_size: 8 << 20,
            readahead_after: 2 << 20,
            max_readahead: 32 << 20,
        }
    }
}

impl RangedHydration {
    /// These settings with the chunk size rounded up to a power of two of at
    /// least 4 KiB and the readahead to at least one chunk.
    pub fn normalized(self) -> Self {
        let chunk_size = self.chunk_size.max(4096).next_power_of_two();
        Self {
            chunk_size,
            max_readahead: self.max_readahead.max(chunk_size),
            ..self
        }
    }
}
