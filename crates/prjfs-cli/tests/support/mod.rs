//! Shared by the s3 tests: the SeaweedFS guard `prjfs bench s3` uses too, and
//! a proxy that holds answers.

pub mod gate;
#[path = "../../src/bench/weed.rs"]
pub mod weed;
