//! Providers for the library's tests: an in-memory store, and providers that never
//! complete, are slow, misbehave or panic. The mock instance, the callback data
//! builder and the enumeration driver are the library's own test kit,
//! [`prjfs::testing`]; [`RecordingInstance`] is re-exported from there.
//!
//! | Type | Behaviour |
//! |---|---|
//! | [`MemProvider`] | correct, inline, over a [`MemTree`] |
//! | [`NeverCompletes`] | pends placeholder/data callbacks forever, records cancels |
//! | [`SlowSync`] | sleeps inline before each callback of another provider |
//! | [`Misbehaving`] | invalid or unordered listings, wrong placeholders |
//! | [`Panicking`] | panics in one chosen callback |
//! | [`Flaky`], [`FlakyAsync`] | fail, panic or wait at random before another provider ([`FaultPlan`]) |
//! | [`RecordingInstance`] | an `InstanceApi` that records, for provider unit tests (from [`prjfs::testing`]) |

mod faulty;
mod flaky;
mod never;
mod tree;

pub use faulty::{Misbehaving, Misbehavior, PanicIn, Panicking, SlowSync};
pub use flaky::{FaultCounts, FaultPlan, FaultSpec, Flaky, FlakyAsync};
pub use never::{NeverCompletes, PendedCommand};
pub use prjfs::testing::{RecordedCompletion, RecordingInstance};
pub use tree::{MemNode, MemProvider, MemTree, MEM_PROVIDER_ID};

#[cfg(test)]
mod tests;
