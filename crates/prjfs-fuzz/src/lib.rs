//! prjfs-fuzz: fuzz harnesses for the FUSE channel and the file system behind it,
//! shared by the cargo-fuzz targets (`fuzz/`) and the seeded runs in `tests/`.
//!
//! - Level 1, [`check_decode`]: any bytes into the request decoder; it returns
//!   `Ok` or a clean error, never panics, and borrows only inside the request.
//! - Level 2, [`run_input`]: any bytes read as a sequence of FUSE requests
//!   ([`gen`]), served by a real prjfs instance over a temporary directory
//!   without a kernel ([`prjfs_fuse::Server`] writing to a
//!   [`prjfs_fuse::transport::Recorder`]); every request that takes an answer
//!   gets exactly one, promptly, and nothing panics ([`harness`] lists all
//!   checks).
//!
//! ```
//! prjfs_fuzz::check_decode(b"\x04any bytes at all");
//! let stats = prjfs_fuzz::run_input(b"\x00\x00some bytes read as requests");
//! assert!(stats.requests >= 1);
//! ```
#![deny(missing_docs)]

mod decode;
pub mod gen;
pub mod harness;
pub mod input;

pub use decode::check_decode;
pub use harness::{run_input, RunStats};
