//! Shared by the s3 tests: the SeaweedFS guard `prjfs bench s3` uses too.

#[path = "../../src/bench/weed.rs"]
pub mod weed;
