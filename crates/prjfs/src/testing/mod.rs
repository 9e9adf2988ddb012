//! A test kit for providers: call a provider's callbacks without a mount and
//! see what it wrote, completed, and what a client listing through it would see.
//!
//! * [`RecordingInstance`]: a mock instance ([`crate::InstanceApi`]) that records
//!   placeholders written, data written per stream, completions and
//!   provider-driven changes ([`RecordedChange`]), and behaves
//!   like the library where a provider may rely on it (a cancelled or completed
//!   command completes as [`crate::Completion::Ignored`], a cancelled stream
//!   refuses writes).
//! * [`CallbackDataBuilder`]: [`crate::CallbackData`] as the library passes it.
//! * [`EnumerationDriver`]: runs the enumeration callbacks with any search
//!   expression, restart scan, single-entry request and buffer size (which a
//!   mount on Linux never sends), waiting for pended commands, checking names
//!   and order, and returns the listing a client would see.
//!
//! ```
//! use prjfs::testing::RecordingInstance;
//! use prjfs::{CallbackData, CallbackResult, Outcome};
//!
//! // The `get_file_data` of some provider, writing "hello" whatever is asked.
//! fn get_file_data(cb: &CallbackData, _offset: u64, _length: u64) -> CallbackResult {
//!     cb.instance.write_file_data(cb.data_stream_id, 0, b"hello")?;
//!     Ok(Outcome::Done)
//! }
//!
//! let instance = RecordingInstance::new();
//! let cb = instance.callback(1, "greeting.txt");
//! assert_eq!(get_file_data(&cb, 0, 5), Ok(Outcome::Done));
//! assert_eq!(instance.stream_bytes(cb.data_stream_id), b"hello");
//! ```

mod builder;
mod driver;
mod recording;

pub use builder::CallbackDataBuilder;
pub use driver::{
    names, DriverSession, EnumerationDriver, EnumerationError, GetRequest, Listing,
    DEFAULT_BUFFER_BYTES, MAX_BUFFER_BYTES,
};
pub use recording::{RecordedChange, RecordedCompletion, RecordingInstance};

#[cfg(test)]
mod tests;
