//! Logging, for programs that host an instance.
//!
//! prjfs logs through [`tracing`](https://docs.rs/tracing) and never installs
//! a subscriber: a program that installs none sees nothing (the `PRJFS_LOG`
//! variable is read by the `prjfs` command, not by the library). To see what
//! the library says, install one in `main`, e.g. with `tracing-subscriber`
//! (features `fmt` and `env-filter`):
//!
//! ```
//! use tracing_subscriber::EnvFilter;
//!
//! // PRJFS_LOG=debug for more; warnings and errors by default.
//! let filter = EnvFilter::try_from_env("PRJFS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
//! tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
//! ```
//!
//! Events come from the targets `prjfs::…` (the provider model, the on-disk
//! layer, the virtualizer) and `prjfs_fuse::…` (the kernel channel), so
//! `EnvFilter::new("warn,prjfs=debug")` selects by crate. Messages name the
//! root-relative path they are about. Nothing is logged per request or per
//! callback at any level: a request that works is silent, and a provider
//! that wants a trace of its callbacks logs them itself.
//!
//! # What is logged, by level
//!
//! **error**: something failed that a client saw fail (`EIO`), or that loses
//! state:
//! * the provider broke the contract: a listing with an invalid name, entries
//!   out of collation order, a pended Get completed with another buffer, any
//!   error from `get_directory_enumeration` (after InsufficientBuffer at
//!   4 MiB too);
//!   success from `get_placeholder_info` without the placeholder written at
//!   `cb.path`; a hydration that did not write the whole file;
//! * a callback or `cancel_command` panicked (the panic message; the client
//!   gets `EIO`, the mount stays up);
//! * the on-disk layer failed (listing a directory, starting or finishing a
//!   hydration, converting to full, writing the placeholder log);
//! * the kernel channel failed (reading `/dev/fuse`; a panic while handling
//!   a request), the notifier thread could not start, or stopping could not
//!   unmount.
//!
//! **warn**: a provider error that is passed to the client as its errno, from
//! `get_placeholder_info` (other than `NotFound` and `Cancelled`, normal
//! answers), `get_file_data` (other than `Cancelled`) and
//! `start_directory_enumeration`, and any error of `end_directory_enumeration`
//! (only logged); a stale mount of a
//! dead instance removed at start (also printed on stderr); a stop signal
//! taken by [`run_until_signal`](crate::VirtualizationInstance::run_until_signal);
//! FUSE passthrough refused by the kernel; the hosting process reading a
//! placeholder it would have to hydrate itself; a torn placeholder log found at
//! start; a reply the kernel did not take; an undecodable request; leftover
//! temp items that could not be removed.
//!
//! **info**: once-per-root or once-per-mount facts: the kernel did not grant
//! FUSE passthrough; the full items of a root written by an older prjfs were
//! marked.
//!
//! **debug**: the FUSE_INIT result (kernel version and flags), mounting
//! through `fusermount3` when `mount(2)` is refused, passthrough backing files
//! that could not be opened or closed, replies dropped unanswered (answered
//! `EIO`), symlink placeholders written without a record, user xattrs that
//! could not be copied.
//!
//! Nothing is logged at **trace**.
