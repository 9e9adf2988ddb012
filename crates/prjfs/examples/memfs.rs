//! memfs: a provider serving a generated in-memory tree, with the callback form
//! of the provider model ([`prjfs::Provider`]).
//!
//! ```sh
//! mkdir -p /tmp/memfs && cargo run -p prjfs --example memfs -- /tmp/memfs
//! ls -R /tmp/memfs; find /tmp/memfs; cat /tmp/memfs/README.txt
//! cat /tmp/memfs/slow/never.txt    # waits until Ctrl-C
//! ```
//!
//! * Listings go through [`Enumerations`]: the tree only knows how to list a
//!   directory whole.
//! * Placeholders are answered inline.
//! * File content is pended: `get_file_data` hands the command to a worker
//!   thread, which writes the bytes and completes it later.
//! * `slow/never.txt` is pended and never completed; a client reading it waits
//!   until it gives up (Ctrl-C, kill), when the provider hears
//!   `cancel_command`.
//! * It serves until SIGINT, SIGTERM or SIGHUP, then unmounts and exits 0;
//!   started again on the same root it serves it again, with the files read
//!   before still hydrated (their reads never reach the provider again).
//!
//! It prints one line per event it sees on stdout (the mounted test of this
//! example waits for them).

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use common::{Tree, NEVER};
use prjfs::enumeration::Enumerations;
use prjfs::{
    CallbackData, CallbackResult, DirEntryBuffer, EnumerationId, Outcome, Provider, ProviderError,
};

struct MemFs {
    tree: Arc<Tree>,
    enumerations: Enumerations,
    /// Pended GetFileData commands for the worker thread.
    work: Mutex<Sender<CallbackData>>,
}

impl Provider for MemFs {
    fn start_directory_enumeration(&self, cb: &CallbackData, id: EnumerationId) -> CallbackResult {
        self.enumerations.start(cb, id, self.tree.list(&cb.path)?)
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
        let info = self.tree.placeholder(&cb.path)?;
        cb.instance.write_placeholder_info(&cb.path, &info)?;
        Ok(Outcome::Done)
    }

    fn get_file_data(&self, cb: &CallbackData, _offset: u64, _length: u64) -> CallbackResult {
        // Checked inline so that a missing file fails at once.
        self.tree.content(&cb.path)?;
        if cb.path == Path::new(NEVER) {
            println!(
                "memfs: get_file_data {} pended, never completed (command {})",
                cb.path.display(),
                cb.command_id
            );
            return Ok(Outcome::Pending);
        }
        println!(
            "memfs: get_file_data {} pended (command {})",
            cb.path.display(),
            cb.command_id
        );
        let sent = self
            .work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(cb.clone());
        sent.map_err(|_| ProviderError::Unavailable("the worker thread is gone".into()))?;
        Ok(Outcome::Pending)
    }

    fn cancel_command(&self, cb: &CallbackData) {
        // On the library's thread: print and return, never block.
        println!(
            "memfs: cancelled command {} ({})",
            cb.command_id,
            cb.path.display()
        );
    }
}

/// Complete each pended GetFileData: write the whole file, then complete. A
/// command cancelled meanwhile fails its write (the stream is gone) and its
/// completion is ignored: nothing to check for here.
fn worker(tree: Arc<Tree>, commands: mpsc::Receiver<CallbackData>) {
    for cb in commands {
        let result = tree
            .content(&cb.path)
            .and_then(|bytes| Ok(cb.instance.write_file_data(cb.data_stream_id, 0, bytes)?));
        let completion = cb.instance.complete_command(cb.command_id, result, None);
        println!("memfs: completed {} ({completion:?})", cb.path.display());
    }
}

fn main() {
    let root = common::setup("memfs");
    let tree = Arc::new(Tree::generate());
    let (work, commands) = mpsc::channel();
    {
        let tree = Arc::clone(&tree);
        std::thread::Builder::new()
            .name("memfs-worker".into())
            .spawn(move || worker(tree, commands))
            .expect("the worker thread should start");
    }
    let items = tree.len();
    let provider = Arc::new(MemFs {
        tree,
        enumerations: Enumerations::new(),
        work: Mutex::new(work),
    });
    std::process::exit(common::serve("memfs", &root, provider, items));
}
