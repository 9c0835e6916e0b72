//! Runnable examples for the Kinesis producer and consumer libraries. See `src/bin/`.
#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
