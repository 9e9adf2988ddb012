//! async_memfs: the memfs tree with the `async fn` form of the provider model
//! ([`prjfs::AsyncProvider`], run on a tokio runtime by [`prjfs::AsyncAdapter`]).
//!
//! ```sh
//! mkdir -p /tmp/amemfs && cargo run -p prjfs --example async_memfs -- /tmp/amemfs
//! ```
//!
//! Every callback is a future; the adapter pends it and completes the command
//! when the future ends. File content arrives after a simulated 20 ms store
//! latency (a timer: no thread waits). `slow/never.txt` awaits forever: when its
//! client gives up, the adapter drops the future and calls `cancelled`.
//! Listings go through [`Enumerations`], as in memfs.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Tree, NEVER};
use prjfs::enumeration::Enumerations;
use prjfs::{
    AsyncAdapter, AsyncProvider, CallbackData, DirEntryBuffer, EnumerationId, FileDataWriter,
    Placeholder, ProviderError,
};

struct AsyncMemFs {
    tree: Arc<Tree>,
    enumerations: Enumerations,
}

impl AsyncProvider for AsyncMemFs {
    async fn start_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        // A remote store would await its listing here.
        let entries = self.tree.list(&cb.path)?;
        self.enumerations.start(&cb, id, entries).map(drop)
    }

    async fn get_directory_enumeration(
        &self,
        cb: CallbackData,
        id: EnumerationId,
        search_expression: Option<OsString>,
        buffer: DirEntryBuffer,
    ) -> Result<(), ProviderError> {
        self.enumerations
            .get(&cb, id, search_expression.as_deref(), &buffer)
            .map(drop)
    }

    async fn end_directory_enumeration(
        &self,
        _cb: CallbackData,
        id: EnumerationId,
    ) -> Result<(), ProviderError> {
        self.enumerations.end(id).map(drop)
    }

    async fn get_placeholder_info(&self, cb: CallbackData) -> Result<Placeholder, ProviderError> {
        Ok(self.tree.placeholder(&cb.path)?.into())
    }

    async fn get_file_data(
        &self,
        cb: CallbackData,
        _byte_offset: u64,
        _length: u64,
        writer: FileDataWriter,
    ) -> Result<(), ProviderError> {
        let bytes = self.tree.content(&cb.path)?;
        println!("async_memfs: get_file_data {}", cb.path.display());
        if cb.path == Path::new(NEVER) {
            // Dropped here when the client gives up.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.write(0, bytes)
    }

    fn cancelled(&self, cb: &CallbackData) {
        println!(
            "async_memfs: cancelled command {} ({})",
            cb.command_id,
            cb.path.display()
        );
    }
}

fn main() {
    let root = common::setup("async_memfs");
    let tree = Arc::new(Tree::generate());
    let items = tree.len();
    let provider = AsyncMemFs {
        tree,
        enumerations: Enumerations::new(),
    };
    let adapter = match AsyncAdapter::new(provider) {
        Ok(adapter) => adapter,
        Err(e) => {
            eprintln!("async_memfs: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(common::serve(
        "async_memfs",
        &root,
        Arc::new(adapter),
        items,
    ));
}
