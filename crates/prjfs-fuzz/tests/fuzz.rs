//! Seeded runs of the two fuzz harnesses: short ones in the normal suite, long
//! ones (`--ignored`) for a soak of millions of inputs without cargo-fuzz.
//!
//! The long runs read `PRJFS_FUZZ_INPUTS` (how many inputs; default 1,000,000
//! for the decoder, 100,000 for the dispatcher) and `PRJFS_FUZZ_SEED`
//! (default 1), and print their counts and rates. A failing input is printed
//! in hex, to replay with `PRJFS_FUZZ_REPLAY=<hex> cargo test -p prjfs-fuzz
//! --release --test fuzz replay -- --ignored --nocapture` (a file name works too,
//! e.g. a libFuzzer artifact; `PRJFS_FUZZ_TRACE=1` prints each request and answer).

use std::time::Instant;

use prjfs_fuzz::gen::{next_message, Pools};
use prjfs_fuzz::input::Input;
use prjfs_fuzz::{check_decode, run_input, RunStats};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Random bytes of a random length below `max`.
fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let mut data = vec![0u8; rng.random_range(0..max)];
    rng.fill_bytes(&mut data);
    data
}

/// A decoder input: random bytes, or a request the generator built (well
/// formed or mutated) behind a random connection byte.
fn decode_input(rng: &mut StdRng, pools: &mut Pools) -> Vec<u8> {
    let mut data = vec![rng.random::<u8>()];
    if rng.random_bool(0.5) {
        data.extend(random_bytes(rng, 200));
    } else {
        let choices = random_bytes(rng, 300);
        data.extend(next_message(&mut Input::new(&choices), pools));
    }
    data
}

fn decode_run(inputs: u64, seed: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pools = Pools::new(&["a", "dir"]);
    for i in 0..inputs {
        let data = decode_input(&mut rng, &mut pools);
        let r = std::panic::catch_unwind(|| check_decode(&data));
        assert!(r.is_ok(), "decode input {i} (seed {seed}): {}", hex(&data));
    }
    inputs
}

fn dispatch_run(inputs: u64, seed: u64) -> RunStats {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = RunStats::default();
    for i in 0..inputs {
        let data = random_bytes(&mut rng, 1500);
        let r = std::panic::catch_unwind(|| run_input(&data));
        let Ok(s) = r else {
            panic!("dispatch input {i} (seed {seed}): {}", hex(&data));
        };
        total.requests += s.requests;
        total.replies += s.replies;
        total.errors += s.errors;
        total.notifications += s.notifications;
    }
    total
}

#[test]
fn decoder_short() {
    decode_run(20_000, 1);
}

#[test]
fn dispatcher_short() {
    let s = dispatch_run(300, 1);
    assert!(s.requests > 3_000, "{s:?}");
    assert!(s.replies > s.requests / 2, "{s:?}");
}

#[test]
#[ignore = "long: millions of inputs"]
fn decoder_long() {
    let (n, seed) = (
        env_u64("PRJFS_FUZZ_INPUTS", 1_000_000),
        env_u64("PRJFS_FUZZ_SEED", 1),
    );
    let t = Instant::now();
    decode_run(n, seed);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "decoder: {n} inputs (seed {seed}) in {secs:.1} s, {:.0}/s, no failure",
        n as f64 / secs
    );
}

#[test]
#[ignore = "long: hundreds of thousands of instances"]
fn dispatcher_long() {
    let (n, seed) = (
        env_u64("PRJFS_FUZZ_INPUTS", 100_000),
        env_u64("PRJFS_FUZZ_SEED", 1),
    );
    let t = Instant::now();
    let s = dispatch_run(n, seed);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "dispatcher: {n} inputs (seed {seed}), {} requests, {} replies ({} errors), {} notifications in {secs:.1} s: {:.0} inputs/s, {:.0} requests/s, no failure",
        s.requests,
        s.replies,
        s.errors,
        s.notifications,
        n as f64 / secs,
        s.requests as f64 / secs
    );
}

#[test]
#[ignore = "replays PRJFS_FUZZ_REPLAY (hex, or a file such as a libFuzzer artifact)"]
fn replay() {
    let text = std::env::var("PRJFS_FUZZ_REPLAY").expect("PRJFS_FUZZ_REPLAY=<hex or file>");
    let data: Vec<u8> = match std::fs::read(&text) {
        Ok(bytes) => bytes,
        Err(_) => (0..text.len() / 2)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
            .collect(),
    };
    check_decode(&data);
    println!("{:?}", run_input(&data));
}

#[test]
#[ignore = "runs every file of the directory PRJFS_FUZZ_CORPUS through both harnesses"]
fn corpus() {
    let dir = std::env::var("PRJFS_FUZZ_CORPUS").expect("PRJFS_FUZZ_CORPUS=<directory>");
    let t = Instant::now();
    let (mut files, mut total) = (0u64, RunStats::default());
    for entry in std::fs::read_dir(&dir).expect("the corpus directory lists") {
        let path = entry.expect("an entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        check_decode(&data);
        let s = run_input(&data);
        files += 1;
        total.requests += s.requests;
        total.replies += s.replies;
        total.errors += s.errors;
        total.notifications += s.notifications;
    }
    println!(
        "corpus {dir}: {files} inputs, {} requests, {} replies ({} errors), {} notifications in {:.1} s",
        total.requests,
        total.replies,
        total.errors,
        total.notifications,
        t.elapsed().as_secs_f64()
    );
}
