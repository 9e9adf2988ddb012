//! Shared by the s3 tests.

pub mod weed;
