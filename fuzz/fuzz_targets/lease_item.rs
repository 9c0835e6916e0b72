//! Fuzz target: bytes decoded into a DynamoDB item, read as the lease table reads a scanned item.
//! The body is `kinesis_consumer::leases::fuzz_lease_item` (see ../README.md); the corpus tests run it too.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| kinesis_consumer::leases::fuzz_lease_item(input));
