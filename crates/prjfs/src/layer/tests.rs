//! Unit tests of the layer on temp directories.
