//! Providers for the library's tests: a recording mock instance, an in-memory store,
//! and providers that never complete, are slow, misbehave or panic.
//!
//! | Type | Behaviour |
//! |---|---|
//! | [`MemProvider`] | correct, inline, over a [`MemTree`] |
//! | [`NeverCompletes`] | pends placeholder/data callbacks forever, records cancels |
//! | [`SlowSync`] | sleeps inline before each callback of another provider |
//! | [`Misbehaving`] | invalid or unordered listings, wrong placeholders |
//! | [`Panicking`] | panics in one chosen callback |
//! | [`Flaky`], [`FlakyAsync`] | fail, panic or wait at random before another provider ([`FaultPlan`]) |
//! | [`RecordingInstance`] | an `InstanceApi` that records, for provider unit tests |

mod faulty;
mod flaky;
mod never;
mod recording;
mod tree;

pub use faulty::{Misbehaving, Misbehavior, PanicIn, Panicking, SlowSync};
pub use flaky::{FaultCounts, FaultPlan, FaultSpec, Flaky, FlakyAsync};
pub use never::{NeverCompletes, PendedCommand};
pub use recording::{RecordedCompletion, RecordingInstance};
pub use tree::{MemNode, MemProvider, MemTree, MEM_PROVIDER_ID};

#[cfg(test)]
mod tests;
