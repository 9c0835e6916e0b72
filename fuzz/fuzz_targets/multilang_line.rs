//! Fuzz target: one line of a MultiLang child's standard output, as the host reads it.
//! The body is `kinesis_cat::fuzzing::multilang_line` (see ../README.md); the corpus tests run it too.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| kinesis_cat::fuzzing::multilang_line(input));
