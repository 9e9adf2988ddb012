//! Unit tests of the archive provider.
