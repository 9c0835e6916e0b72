//! Fuzz target: one `kinesis-cat produce --input json` line, then the producer's record checks.
//! The body is `kinesis_cat::fuzzing::produce_json_line` (see ../README.md); the corpus tests run it too.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| kinesis_cat::fuzzing::produce_json_line(input));
