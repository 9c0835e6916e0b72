//! Fuzz target: any bytes through the deaggregator, as given and framed as an aggregate with a correct MD5, under every corruption policy and shard filter.
//! The body is `kinesis_agg::fuzzing::deaggregate` (see ../README.md); the corpus tests run it too.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| kinesis_agg::fuzzing::deaggregate(input));
