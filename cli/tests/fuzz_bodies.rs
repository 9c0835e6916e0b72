//! The CLI's fuzz bodies (`fuzz/`) as ordinary tests: every checked-in seed of
//! `fuzz/seeds/<target>` (crashes the fuzzers found included) and a few thousand mutants of
//! them, so that CI runs each target briefly without cargo-fuzz.

use integration_tests::fuzz_corpus::run_corpus;

/// Inputs made per target on top of the seeds; a second or so of work each.
const MUTANTS: usize = 4_000;

#[test]
fn produce_json_line_seeds_and_mutants() {
    run_corpus(
        "produce_json_line",
        kinesis_cat::fuzzing::produce_json_line,
        MUTANTS,
    );
}

#[test]
fn multilang_line_seeds_and_mutants() {
    run_corpus(
        "multilang_line",
        kinesis_cat::fuzzing::multilang_line,
        MUTANTS,
    );
}
