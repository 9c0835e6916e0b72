//! The fuzz targets' inputs for ordinary tests: the checked-in seeds of `fuzz/seeds/` and
//! mutants of them, so that `cargo test` runs every fuzz body (a bounded run, no
//! cargo-fuzz needed) and every crash a fuzzer found, kept as a seed, stays fixed.
//!
//! ```text
//!  fuzz/seeds/<target>/* ─▶ seeds(target) ─┬─▶ body(seed)
//!                                          └─▶ mutants(seeds, n, rng seed) ─▶ body(mutant)
//! ```

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The folder of a fuzz target's seeds: `fuzz/seeds/<target>` at the workspace root.
pub fn seed_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Every seed of a fuzz target, with its file name, sorted by name.
///
/// # Panics
/// When the folder cannot be read or holds no seed: a corpus test without inputs would
/// test nothing.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = seed_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the seeds in {}: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            (name.into_owned(), bytes)
        })
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds.sort();
    seeds
}

/// `n` inputs made from the seeds by the kinds of change a fuzzer makes (bytes flipped,
/// set to edge values, inserted or removed, the input cut, two seeds spliced, random
/// bytes), the same for the same `rng_seed`.
pub fn mutants(seeds: &[(String, Vec<u8>)], n: usize, rng_seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    (0..n)
        .map(|_| {
            let mut input = seeds[rng.random_range(0..seeds.len())].1.clone();
            for _ in 0..rng.random_range(1..=4) {
                mutate(&mut rng, &mut input, seeds);
            }
            input
        })
        .collect()
}

/// One change to `input`.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[(String, Vec<u8>)]) {
    let at = |rng: &mut StdRng, len: usize| rng.random_range(0..=len);
    match rng.random_range(0..7) {
        0 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] = [0x00, 0x7F, 0x80, 0xFF, b'"', b'{', b'-', b'9'][rng.random_range(0..8)];
        }
        2 => {
            let i = at(rng, input.len());
            input.insert(i, rng.random());
        }
        3 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input.remove(i);
        }
        4 => {
            let cut = at(rng, input.len());
            input.truncate(cut);
        }
        5 => {
            let other = &seeds[rng.random_range(0..seeds.len())].1;
            let cut = at(rng, input.len());
            let from = at(rng, other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            let len = rng.random_range(0..64);
            let i = at(rng, input.len());
            let random: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            input.splice(i..i, random);
        }
    }
}

/// Runs a fuzz body over every seed of `target` and `n_mutants` mutants of them (the same
/// ones every run).
///
/// # Panics
/// When the body panics on an input, naming the seed or showing the mutant.
pub fn run_corpus(target: &str, body: fn(&[u8]), n_mutants: usize) {
    let seeds = seeds(target);
    for (name, input) in &seeds {
        let outcome = std::panic::catch_unwind(|| body(input));
        assert!(outcome.is_ok(), "{target}: seed {name} fails");
    }
    for (i, input) in mutants(&seeds, n_mutants, 0x5eed).iter().enumerate() {
        let outcome = std::panic::catch_unwind(|| body(input));
        assert!(outcome.is_ok(), "{target}: mutant {i} fails: {input:?}");
    }
}
