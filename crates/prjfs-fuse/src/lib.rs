//! prjfs-fuse: the Linux FUSE kernel channel for prjfs, written against the kernel's
//! documented ABI rather than a FUSE library.
//!
//! - [`abi`]: the wire structs (`#[repr(C)]`, [`zerocopy`]-derived), opcodes, INIT
//!   and open flags, `/dev/fuse` ioctl numbers.
//! - [`request`]: [`request::decode`] turns the bytes of one `/dev/fuse` read into a
//!   [`request::RequestHeader`] and a typed [`request::Operation`].
//! - [`encode`]: reply bodies ([`encode::entry_out`], [`encode::DirBuf`], ...) and
//!   complete invalidation notifications.
//! - [`server`]: [`server::Server::handle`] serves one message (INIT negotiation,
//!   decode errors, interrupts, forgets, dispatch to a [`Filesystem`]) and writes
//!   the answers to a [`transport::Transport`]: `/dev/fuse` in a [`Session`], an
//!   in-memory [`transport::Recorder`] in tests and fuzzers.
//!
//! ```
//! use prjfs_fuse::{abi, request::{decode, Operation}};
//! use zerocopy::IntoBytes;
//!
//! // A FUSE_LOOKUP of "a" in the root directory, as the kernel writes it.
//! let mut msg = abi::FuseInHeader {
//!     len: 42, opcode: abi::FUSE_LOOKUP, unique: 7, nodeid: abi::FUSE_ROOT_ID,
//!     ..Default::default()
//! }.as_bytes().to_vec();
//! msg.extend_from_slice(b"a\0");
//! let (header, op) = decode(&msg, abi::FUSE_KERNEL_MINOR_VERSION).unwrap();
//! assert_eq!(header.unique, 7);
//! assert_eq!(op, Operation::Lookup { name: "a".as_ref() });
//! ```
#![deny(missing_docs)]

pub mod abi;
pub mod encode;
pub mod mount;
pub mod reply;
pub mod request;
pub mod server;
pub mod session;
pub mod transport;

pub use reply::Reply;
pub use server::Server;
pub use session::{Filesystem, InitInfo, Notifier, Request, Session, SessionConfig};
