//! `kinesis-cat multilang`: a drop-in MultiLangDaemon. Record processors written for the
//! Java KCL's MultiLang protocol (amazon-kclpy, aws-kcl for Node, or any program speaking
//! it) run unchanged, one child process per shard, with this project's consumer library
//! underneath (leases, balancing, checkpoints, polling or fan-out, parents before
//! children, graceful shutdown).
//!
//! ```text
//!  app.properties ─properties─▶ MultiLangConfig ─(one warning: keys without effect here)
//!        │                         │ regionName, kinesisEndpoint, dynamoDBEndpoint
//!        │                         ▼
//!        │                  AWS config chain ─▶ Kinesis + DynamoDB clients
//!        ▼                         ▼
//!  executableName ──▶ Host ──▶ Scheduler (kinesis-consumer) ── per held shard ──▶
//!                               MultiLangProcessor ─stdin/stdout JSON lines─▶ child process
//!                                                  ◀─ checkpoint / status ─┘  stderr ─▶ "[shard] ..."
//!  SIGINT / SIGTERM ─▶ graceful_shutdown ─▶ shutdownRequested to every child ─▶ leases released
//!  second signal ─▶ exit 130 at once (children see their input close)
//! ```
//!
//! Modules: [`properties`] (the file and its keys), [`messages`] (the protocol's JSON),
//! [`child`] (the process and its pipes), [`processor`] (the library's processor speaking
//! to a child, and what happens when a child fails).

pub mod child;
pub mod messages;
pub mod processor;
pub mod properties;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use kinesis_consumer::{RecordProcessor, Retrieval, Scheduler};
use tokio_util::sync::CancellationToken;

use crate::Error;
use processor::Host;
use properties::{MultiLangConfig, PropertiesError};

/// Arguments of `kinesis-cat multilang`.
#[derive(Debug, Args)]
pub struct MultiLangArgs {
    /// The MultiLangDaemon properties file (executableName, streamName, applicationName,
    /// ...). A relative executableName is found in this file's folder, and the children
    /// run there.
    #[arg(short, long, value_name = "FILE")]
    pub properties: PathBuf,
}

/// Builds the worker the configuration describes, with `host` making a processor per shard.
///
/// # Errors
/// [`Error::Consumer`] for a setting the library refuses (status 2).
pub fn scheduler(
    config: &MultiLangConfig,
    host: Arc<Host>,
    sdk: &aws_config::SdkConfig,
) -> Result<Scheduler, Error> {
    let factory = move |shard: &str| Box::new(host.processor(shard)) as Box<dyn RecordProcessor>;
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(sdk);
    if let Some(url) = &config.kinesis_endpoint {
        kinesis = kinesis.endpoint_url(url);
    }
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = &config.dynamodb_endpoint {
        dynamodb = dynamodb.endpoint_url(url);
    }
    let mut builder = Scheduler::builder(&config.application_name, &config.stream_name, factory)
        .with_clients(
            aws_sdk_kinesis::Client::from_conf(kinesis.build()),
            aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        )
        .with_initial_position(config.initial_position)
        .with_retrieval(config.retrieval.clone());
    if let Some(t) = &config.table_name {
        builder = builder.with_table_name(t);
    }
    if let Some(id) = &config.worker_id {
        builder = builder.with_worker_id(id);
    }
    if let Some(d) = config.failover_time {
        builder = builder.with_failover_time(d);
    }
    if let Some(d) = config.taker_interval {
        builder = builder.with_taker_interval(d);
    }
    if let Some(d) = config.shard_sync_interval {
        builder = builder.with_shard_sync_interval(d);
    }
    if let Some(n) = config.max_leases_per_worker {
        builder = builder.with_max_leases_per_worker(n);
    }
    if let Some(n) = config.max_leases_to_steal {
        builder = builder.with_max_leases_to_steal_at_one_time(n);
    }
    if let Some(d) = config.parent_poll_interval {
        builder = builder.with_parent_poll_interval(d);
    }
    if let Some(d) = config.shutdown_grace {
        builder = builder.with_shutdown_timeout(d);
    }
    Ok(builder.build()?)
}

/// Reads the properties, warns once about keys without effect, and checks that the
/// program exists.
///
/// # Errors
/// [`Error::Properties`] (status 2).
pub fn load_config(args: &MultiLangArgs) -> Result<MultiLangConfig, Error> {
    let config = MultiLangConfig::load(&args.properties)?;
    if let Some(warning) = config.no_effect_warning() {
        crate::say!("kinesis-cat: warning: {warning}");
    }
    for (key, earlier, later) in &config.duplicates {
        crate::say!(
            "kinesis-cat: warning: {}: {key} is set on lines {earlier} and {later}; line {later} wins",
            config.path
        );
    }
    let exe = &config.executable;
    if !exe.program_exists() {
        return Err(PropertiesError::BadValue {
            path: config.path.clone(),
            line: exe.line,
            key: "executableName".into(),
            value: exe.text.clone(),
            reason: format!(
                "program {} not found (a relative path is taken from {}; a bare name from there or PATH)",
                exe.program.display(),
                exe.working_dir.display()
            ),
        }
        .into());
    }
    Ok(config)
}

/// Runs the host until SIGINT/SIGTERM, then shuts down gracefully: every child gets
/// `shutdownRequested` (a last checkpoint) and the leases are released. A second signal
/// exits at once with status 130.
///
/// # Cancellation
/// Dropping the future stops the worker abruptly: children are killed, leases expire to
/// other workers.
///
/// # Errors
/// [`Error::Properties`] for the properties file (status 2); [`Error::Config`] for an
/// unusable AWS configuration; [`Error::Consumer`] for a setting the library refuses, a
/// missing stream, or a lease table that cannot be created or read.
pub async fn run(args: MultiLangArgs, aws: &crate::aws::AwsOptions) -> Result<(), Error> {
    let config = load_config(&args)?;
    let sdk = crate::aws::load_in(aws, config.region.clone()).await?;
    let stop = crate::signals::install("shutting the record processors down")?;
    run_until(&config, &sdk, stop).await
}

/// Runs a host of `config` until `stop` is cancelled, then shuts it down gracefully.
///
/// # Cancellation
/// As [`run`].
///
/// # Errors
/// As [`run`], without the properties and signal errors.
pub async fn run_until(
    config: &MultiLangConfig,
    sdk: &aws_config::SdkConfig,
    stop: CancellationToken,
) -> Result<(), Error> {
    let host = Arc::new(Host::new(
        config.executable.clone(),
        config.timeout,
        config
            .empty_record_lists
            .then_some(config.empty_record_list_interval),
        stop.child_token(),
    ));
    let scheduler = scheduler(config, host.clone(), sdk)?;
    let retrieval = match &config.retrieval {
        Retrieval::FanOut(_) => "enhanced fan-out",
        _ => "polling",
    };
    crate::say!(
        "kinesis-cat: multilang worker {} of {} on stream {} ({retrieval}), one `{}` per shard",
        scheduler.worker_id(),
        config.application_name,
        config.stream_name,
        config.executable.text
    );
    let worker = scheduler.clone();
    let mut run = tokio::spawn(async move { worker.run().await });
    let result = tokio::select! {
        r = &mut run => r,
        _ = stop.cancelled() => {
            host.stopping.cancel();
            scheduler.graceful_shutdown().await;
            run.await
        }
    };
    let failures = host.failures.load(Ordering::Relaxed);
    if failures > 0 {
        crate::say!(
            "kinesis-cat: {failures} child process(es) failed and were given up (see the errors above)"
        );
    }
    match result {
        Ok(r) => r.map_err(Error::from),
        Err(e) => Err(Error::Internal(format!("the worker task failed: {e}"))),
    }
}
