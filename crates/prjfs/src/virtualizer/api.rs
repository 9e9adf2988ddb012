//! The provider-facing side of a virtualizer: writing placeholders and file data,
//! completing pended commands, clearing the negative path cache.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

use super::fetch::Fetch;
use super::{check_rel_path, Api};
use crate::layer::Hydration;
use crate::provider::{
    CommandId, Completion, Extended, InstanceApi, InstanceError, PlacedItem, ProviderError,
};
use crate::types::{FileKind, PlaceholderInfo, UpdateFlags, VersionInfo};

impl InstanceApi for Api {
    fn write_placeholder_info(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
    ) -> Result<(), InstanceError> {
        let inner = self.0.upgrade().ok_or(InstanceError::Stopped)?;
        check_rel_path(path).map_err(InstanceError::InvalidName)?;
        if path.as_os_str().is_empty() {
            return Err(InstanceError::InvalidName(
                "the root has no placeholder".into(),
            ));
        }
        if info.basic.kind == FileKind::Symlink && info.symlink_target.is_none() {
            return Err(InstanceError::InvalidRequest(format!(
                "{}: a symlink placeholder needs a target",
                path.display()
            )));
        }
        if info.version.provider_id.len() > crate::types::VERSION_ID_MAX
            || info.version.content_id.len() > crate::types::VERSION_ID_MAX
        {
            return Err(InstanceError::InvalidRequest(
                "version ids are limited to 128 bytes".into(),
            ));
        }
        let target = inner
            .placeholder_targets
            .lock()
            .expect("targets lock")
            .get(path)
            .cloned();
        let result = match &target {
            Some(t) => inner.layer.write_placeholder_with_origin(t, info, path),
            None => inner.layer.write_placeholder(path, info),
        };
        let written =
            result.map_err(|e| InstanceError::Io(std::io::Error::from_raw_os_error(e.errno())))?;
        if written {
            inner.placeholder_written(target.as_deref().unwrap_or(path));
        }
        Ok(())
    }

    fn write_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), InstanceError> {
        let (hydration, fetch) = self.stream(stream_id)?;
        hydration
            .write_at(offset, data)
            .map_err(|e| InstanceError::Io(std::io::Error::from_raw_os_error(e.errno())))?;
        fetch.arrived(offset, offset.saturating_add(data.len() as u64));
        Ok(())
    }

    fn copy_file_data(
        &self,
        stream_id: u64,
        offset: u64,
        src: BorrowedFd<'_>,
        src_offset: u64,
        length: u64,
    ) -> Result<u64, InstanceError> {
        let (hydration, fetch) = self.stream(stream_id)?;
        let n = hydration
            .copy_from(offset, src, src_offset, length)
            .map_err(|e| InstanceError::Io(std::io::Error::from_raw_os_error(e.errno())))?;
        fetch.arrived(offset, offset + n);
        Ok(n)
    }

    fn complete_command(
        &self,
        id: CommandId,
        result: Result<(), ProviderError>,
        extended: Option<Extended>,
    ) -> Completion {
        match self.0.upgrade() {
            Some(inner) => inner.commands.finish(id, result, extended),
            None => Completion::Ignored,
        }
    }

    fn update_file_if_needed(
        &self,
        path: &Path,
        info: &PlaceholderInfo,
        flags: UpdateFlags,
    ) -> Result<(), InstanceError> {
        let inner = self.0.upgrade().ok_or(InstanceError::Stopped)?;
        check_rel_path(path).map_err(InstanceError::InvalidName)?;
        inner.update_file(path, info, flags)
    }

    fn delete_file(&self, path: &Path, flags: UpdateFlags) -> Result<(), InstanceError> {
        let inner = self.0.upgrade().ok_or(InstanceError::Stopped)?;
        check_rel_path(path).map_err(InstanceError::InvalidName)?;
        inner.delete_file(path, flags)
    }

    fn mark_directory_as_placeholder(
        &self,
        path: &Path,
        version: &VersionInfo,
    ) -> Result<(), InstanceError> {
        let inner = self.0.upgrade().ok_or(InstanceError::Stopped)?;
        check_rel_path(path).map_err(InstanceError::InvalidName)?;
        inner.mark_directory(path, version)
    }

    fn placed_children(&self, path: &Path) -> Result<Vec<PlacedItem>, InstanceError> {
        let inner = self.0.upgrade().ok_or(InstanceError::Stopped)?;
        check_rel_path(path).map_err(InstanceError::InvalidName)?;
        let items = inner
            .layer
            .placed_children(path)
            .map_err(|e| InstanceError::Io(std::io::Error::from_raw_os_error(e.errno())))?;
        Ok(items
            .into_iter()
            .map(|(name, item)| PlacedItem {
                name,
                kind: item.kind,
                state: item.state,
            })
            .collect())
    }

    fn clear_negative_path_cache(&self) -> usize {
        let Some(inner) = self.0.upgrade() else {
            return 0;
        };
        let mut set = inner.negative.lock().expect("negative lock");
        let n = set.len();
        set.clear();
        n
    }
}

impl Api {
    /// The hydration `stream_id` while it is in progress, and its fetch.
    fn stream(&self, stream_id: u64) -> Result<(Arc<Hydration>, Arc<Fetch>), InstanceError> {
        let inner = self.0.upgrade().ok_or(InstanceError::Stopped)?;
        let stream = inner
            .streams
            .lock()
            .expect("streams lock")
            .get(&stream_id)
            .map(|s| (s.hydration.clone(), s.fetch.clone()))
            .ok_or(InstanceError::UnknownStream(stream_id))?;
        Ok(stream)
    }
}
