//! Shared checks for the integration suites in `tests/`.
//!
//! Each check in [`checks`] takes a running [`LocalStack`] and asserts one server behaviour
//! the producer and consumer libraries rely on. The suites run the same check against the
//! embedded tier, the fidelity tier, or whatever `AWS_ENDPOINT_URL_*` points at, so a check
//! must hold on real Kinesis and DynamoDB and never lean on one emulator's quirks.
//!
//! ```text
//!  tests/local_stack.rs --+                        +--> embedded ferrokinesis + dynoxide
//!  tests/fidelity.rs    --+--> checks::*(&stack) --+--> npm kinesis-local + dynalite
//!                                                  +--> AWS_ENDPOINT_URL_* (anything else)
//! ```
//!
//! Checks panic (through assertions) when the behaviour is wrong; that is their purpose.
//! [`fault_proxy`] puts a scriptable HTTP proxy between the SDK clients and a stack, for
//! suites that inject faults; [`traffic`] puts records to every shard of a stream in the
//! background, for suites that watch a fleet under load.
#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod bench_emulator;
pub mod bench_host;
pub mod checks;
pub mod fault_proxy;
pub mod fuzz_corpus;
pub mod kcl3;
pub mod kinesis;
pub mod peers;
pub mod traffic;

pub use kinesis_emulators::LocalStack;
