//! The library fuzz bodies (`fuzz/`) as ordinary tests: every checked-in seed of
//! `fuzz/seeds/<target>` (crashes the fuzzers found included) and a few thousand mutants of
//! them, so that CI runs each target briefly without cargo-fuzz. The CLI's bodies run in
//! `cli/tests/fuzz_bodies.rs`.

use integration_tests::fuzz_corpus::run_corpus;

/// Inputs made per target on top of the seeds; a second or so of work each.
const MUTANTS: usize = 4_000;

#[test]
fn deaggregate_seeds_and_mutants() {
    run_corpus("deaggregate", kinesis_agg::fuzzing::deaggregate, MUTANTS);
}

#[test]
fn lease_item_seeds_and_mutants() {
    run_corpus(
        "lease_item",
        kinesis_consumer::leases::fuzz_lease_item,
        MUTANTS,
    );
}
