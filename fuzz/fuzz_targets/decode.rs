//! Level 1: any bytes into the FUSE request decoder (see `prjfs_fuzz::check_decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prjfs_fuzz::check_decode(data));
