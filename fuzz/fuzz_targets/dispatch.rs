//! Level 2: any bytes as a sequence of FUSE requests served by a fresh prjfs
//! instance without a kernel (see `prjfs_fuzz::harness`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prjfs_fuzz::run_input(data);
});
