//! Local Kinesis and DynamoDB stacks for tests, benches, examples and the `kinesis-cat local`
//! command.
//!
//! A [`LocalStack`] gives a Kinesis endpoint and a DynamoDB endpoint plus ready-made SDK
//! clients. Each service comes from one of three places, chosen per service:
//!
//! ```text
//!                    LocalStack::builder() ... .start()
//!                                   |
//!          AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB set?
//!               | yes (per service)                     | no
//!               v                                       v
//!        External endpoint                    Backend::Embedded (default)
//!   (another emulator or real AWS,     +-------------------------------------+
//!    standard AWS config chain)        | emulator thread, own tokio runtime  |
//!                                      |  ferrokinesis  (axum, 127.0.0.1:p) |
//!                                      |  dynoxide      (axum, 127.0.0.1:q) |
//!                                      +-------------------------------------+
//!                                             or Backend::Fidelity
//!                                      +-------------------------------------+
//!                                      | npm install -> target/fidelity-peers|
//!                                      |  node kinesis-local (child process) |
//!                                      |  node dynalite      (child process) |
//!                                      +-------------------------------------+
//!               \__________________________ _______________________/
//!                                          v
//!              endpoints + SdkConfig -> kinesis_client() / dynamodb_client()
//! ```
//!
//! The embedded servers run on a dedicated thread with its own runtime, so one stack can
//! outlive any single test runtime and can be started from synchronous code. Dropping the
//! [`LocalStack`] stops everything it started: the embedded servers' runtime is shut down and
//! child processes get SIGTERM, then SIGKILL after a short grace period. Child processes also
//! watch their standard input, which is a pipe from this process, and exit when it closes, so
//! they do not outlive a test process that is killed before it can run `Drop`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kinesis_emulators::Error> {
//! let stack = kinesis_emulators::LocalStack::builder().start_async().await?;
//! let stream = stack.create_stream("orders", 2).await?;
//! let kinesis = stack.kinesis_client();
//! kinesis
//!     .put_record()
//!     .stream_name(&stream)
//!     .partition_key("k")
//!     .data(aws_sdk_kinesis::primitives::Blob::new("hello"))
//!     .send()
//!     .await
//!     .expect("put");
//! # Ok(()) }
//! ```
#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod builder;
mod embedded;
mod env;
mod error;
mod fidelity;
mod names;
mod stack;
mod streams;

pub use builder::{Backend, LocalStackBuilder};
pub use env::{EndpointOverrides, DYNAMODB_ENDPOINT_VAR, KINESIS_ENDPOINT_VAR};
pub use error::Error;
pub use fidelity::workspace_target_dir;
pub use names::unique_name;
pub use stack::{LocalStack, ServiceKind};
pub use streams::wait_for_stream_active;
