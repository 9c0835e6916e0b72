//! One module per subcommand.
//!
//! ```text
//!  Command::Local  --> local::run
//!  Command::Stream --> stream::run --> shards (ListShards paging, hash-key arithmetic)
//! ```

pub mod consume;
pub mod leases;
pub mod local;
pub mod produce;
pub mod shards;
pub mod stream;
pub mod tail;

use aws_config::BehaviorVersion;

/// Builds a Kinesis client from the standard AWS configuration chain (environment,
/// profiles, `AWS_ENDPOINT_URL_KINESIS`, ...).
///
/// # Cancellation
/// Safe to drop at any point: it only reads configuration.
pub async fn kinesis_client() -> aws_sdk_kinesis::Client {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    aws_sdk_kinesis::Client::new(&config)
}
