//! The running stack: endpoints, SDK configuration, clients and the things to stop on drop.
//!
//! ```text
//!  caller thread                          "kinesis-emulators" thread
//!  start_with(builder) --spawn----------> build runtime
//!        |                                block_on(bring up embedded servers, load SdkConfig)
//!        | <----------- Ready(result) ---  (fidelity peers are spawned by the caller)
//!  LocalStack { endpoints, SdkConfig }    block_on(stop signal)
//!  drop: stop peers, send stop --------->  runtime shutdown (servers and listeners gone)
//!        join <-------------------------- thread ends
//! ```

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio::sync::oneshot;

use crate::builder::LocalStackBuilder;
use crate::{embedded, fidelity, names, streams, Backend, Error};

/// Region used with local emulators.
const LOCAL_REGION: &str = "us-east-1";
/// How long `create_stream` waits for `ACTIVE`; generous for real AWS, instant locally.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long probing the standard credential chain may take before test credentials are
/// used instead (only when an external endpoint is configured).
const CREDENTIAL_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a service of a [`LocalStack`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceKind {
    /// Served in-process (ferrokinesis or dynoxide).
    Embedded,
    /// Served by an npm fidelity peer child process (kinesis-local or dynalite).
    Fidelity,
    /// An endpoint from `AWS_ENDPOINT_URL_*`: another emulator or real AWS. Nothing was
    /// started for it.
    External,
}

/// One service's endpoint and origin.
#[derive(Debug, Clone)]
struct Service {
    /// Where it comes from; decides the credentials its client uses.
    kind: ServiceKind,
    /// Base URL the SDK client is pointed at.
    url: String,
    /// Loopback port when we started the server, for callers that need the raw port.
    port: Option<u16>,
}

/// The emulator thread, kept so `Drop` can stop its runtime and wait for it.
#[derive(Debug)]
struct RuntimeThread {
    /// Resolving it ends the thread's wait and shuts its runtime down.
    stop: Option<oneshot::Sender<()>>,
    /// Joined on drop so the servers are gone when `drop` returns.
    join: Option<JoinHandle<()>>,
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

/// What the emulator thread reports once it is ready.
struct Ready {
    /// Address of the embedded Kinesis server, if started.
    kinesis: Option<std::net::SocketAddr>,
    /// Address of the embedded DynamoDB server, if started.
    dynamodb: Option<std::net::SocketAddr>,
    /// The shared SDK configuration.
    sdk_config: SdkConfig,
}

/// A running set of Kinesis and DynamoDB endpoints with ready-made SDK clients.
///
/// Created by [`LocalStack::builder`]. Dropping it stops every server and process it
/// started; external endpoints are left alone.
#[derive(Debug)]
pub struct LocalStack {
    /// The Kinesis endpoint.
    kinesis: Service,
    /// The DynamoDB endpoint.
    dynamodb: Service,
    /// Configuration shared by the clients (see [`LocalStack::sdk_config`]).
    sdk_config: SdkConfig,
    /// Whether embedded ferrokinesis was asked to throttle writes.
    enforce_limits: bool,
    /// Fidelity child processes; declared before `_runtime` so they are stopped first.
    _peers: fidelity::Started,
    /// The emulator thread and its runtime; declared last so it is dropped (stopped and
    /// joined) last.
    _runtime: RuntimeThread,
}

impl LocalStack {
    /// Returns a builder with the defaults documented on each of its setters.
    pub fn builder() -> LocalStackBuilder {
        LocalStackBuilder::default()
    }

    pub(crate) fn start_with(b: LocalStackBuilder) -> Result<Self, Error> {
        let overrides = b.resolve_overrides()?;
        let local_kinesis = overrides.kinesis.is_none();
        let local_dynamodb = overrides.dynamodb.is_none();
        let embedded_kinesis = local_kinesis && b.backend == Backend::Embedded;
        let embedded_dynamodb = local_dynamodb && b.backend == Backend::Embedded;
        let any_external = !local_kinesis || !local_dynamodb;

        // Fidelity peers first (on this thread: installing and polling are blocking work).
        let peers = if b.backend == Backend::Fidelity && (local_kinesis || local_dynamodb) {
            let dir = match &b.fidelity_dir {
                Some(dir) => dir.clone(),
                None => fidelity::workspace_target_dir()?.join("fidelity-peers"),
            };
            let installed = fidelity::ensure_installed(&dir)?;
            fidelity::start(
                &installed,
                local_kinesis.then_some(b.kinesis_port),
                local_dynamodb.then_some(b.dynamodb_port),
                b.ready_timeout,
            )?
        } else {
            fidelity::Started::default()
        };

        let (ready_tx, ready_rx) = mpsc::channel::<Result<Ready, Error>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let store_options = embedded::store_options(&b);
        let (kinesis_port, dynamodb_port) = (b.kinesis_port, b.dynamodb_port);
        let join = std::thread::Builder::new()
            .name("kinesis-emulators".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("kinesis-emulators-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Runtime(e)));
                        return;
                    }
                };
                let ready = rt.block_on(async move {
                    let kinesis = if embedded_kinesis {
                        Some(embedded::start_kinesis(kinesis_port, store_options).await?)
                    } else {
                        None
                    };
                    let dynamodb = if embedded_dynamodb {
                        Some(embedded::start_dynamodb(dynamodb_port).await?)
                    } else {
                        None
                    };
                    let sdk_config = load_sdk_config(any_external).await;
                    Ok(Ready {
                        kinesis,
                        dynamodb,
                        sdk_config,
                    })
                });
                let ok = ready.is_ok();
                if ready_tx.send(ready).is_ok() && ok {
                    rt.block_on(async move {
                        let _ = stop_rx.await;
                    });
                }
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(Error::Runtime)?;
        let runtime = RuntimeThread {
            stop: Some(stop_tx),
            join: Some(join),
        };
        let ready = ready_rx.recv().map_err(|_| Error::RuntimeGone)??;

        let service = |external: &Option<String>,
                       embedded: Option<std::net::SocketAddr>,
                       peer: Option<&fidelity::PeerProcess>| {
            if let Some(url) = external {
                Service {
                    kind: ServiceKind::External,
                    url: url.clone(),
                    port: None,
                }
            } else if let Some(addr) = embedded {
                Service {
                    kind: ServiceKind::Embedded,
                    url: format!("http://{addr}"),
                    port: Some(addr.port()),
                }
            } else {
                let port = peer.map(fidelity::PeerProcess::port).unwrap_or(0);
                Service {
                    kind: ServiceKind::Fidelity,
                    url: format!("http://127.0.0.1:{port}"),
                    port: Some(port),
                }
            }
        };
        Ok(Self {
            kinesis: service(&overrides.kinesis, ready.kinesis, peers.kinesis.as_ref()),
            dynamodb: service(&overrides.dynamodb, ready.dynamodb, peers.dynamodb.as_ref()),
            sdk_config: ready.sdk_config,
            enforce_limits: b.enforce_limits,
            _peers: peers,
            _runtime: runtime,
        })
    }

    /// Base URL of the Kinesis endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn kinesis_endpoint(&self) -> &str {
        &self.kinesis.url
    }

    /// Base URL of the DynamoDB endpoint.
    pub fn dynamodb_endpoint(&self) -> &str {
        &self.dynamodb.url
    }

    /// Loopback port of the Kinesis server this stack started; `None` when external.
    pub fn kinesis_port(&self) -> Option<u16> {
        self.kinesis.port
    }

    /// Loopback port of the DynamoDB server this stack started; `None` when external.
    pub fn dynamodb_port(&self) -> Option<u16> {
        self.dynamodb.port
    }

    /// Where the Kinesis endpoint comes from.
    pub fn kinesis_kind(&self) -> ServiceKind {
        self.kinesis.kind
    }

    /// Where the DynamoDB endpoint comes from.
    pub fn dynamodb_kind(&self) -> ServiceKind {
        self.dynamodb.kind
    }

    /// Whether Kinesis write limits (per-shard throughput) are known to be enforced.
    ///
    /// `Some(true)` / `Some(false)` for embedded ferrokinesis, following
    /// [`LocalStackBuilder::with_enforce_limits`]; `None` (unknown) for fidelity and external
    /// endpoints. Tests that need throttling should skip unless this is `Some(true)`.
    pub fn write_limits_enforced(&self) -> Option<bool> {
        match self.kinesis.kind {
            ServiceKind::Embedded => Some(self.enforce_limits),
            _ => None,
        }
    }

    /// The SDK configuration the clients are built from.
    ///
    /// With only local services it carries static credentials (`test`/`test`) and region
    /// `us-east-1`; as soon as one service is external it comes from the standard AWS
    /// configuration chain (falling back to the test credentials and `us-east-1` when the
    /// chain provides none). It sets no endpoint: use [`kinesis_client`](Self::kinesis_client)
    /// and [`dynamodb_client`](Self::dynamodb_client), or add the endpoint yourself.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    /// A new Kinesis client for this stack's Kinesis endpoint.
    ///
    /// Each call builds a fresh client (and connection pool); build one per tokio runtime,
    /// as pooled connections belong to the runtime that opened them.
    pub fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        let mut conf = aws_sdk_kinesis::config::Builder::from(&self.sdk_config)
            .endpoint_url(&self.kinesis.url);
        if self.kinesis.kind != ServiceKind::External {
            conf = conf
                .credentials_provider(test_credentials())
                .region(Region::new(LOCAL_REGION));
        }
        aws_sdk_kinesis::Client::from_conf(conf.build())
    }

    /// A new DynamoDB client for this stack's DynamoDB endpoint (see
    /// [`kinesis_client`](Self::kinesis_client) about one client per runtime).
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        let mut conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk_config)
            .endpoint_url(&self.dynamodb.url);
        if self.dynamodb.kind != ServiceKind::External {
            conf = conf
                .credentials_provider(test_credentials())
                .region(Region::new(LOCAL_REGION));
        }
        aws_sdk_dynamodb::Client::from_conf(conf.build())
    }

    /// Same as [`crate::unique_name`].
    pub fn unique_name(prefix: &str) -> String {
        names::unique_name(prefix)
    }

    /// Creates a provisioned stream named [`unique_name`](crate::unique_name)`(prefix)` with
    /// `shard_count` shards, waits until it is `ACTIVE` (at most 120 s), and returns its name.
    ///
    /// # Cancellation
    /// Dropping the future may leave the stream created (possibly still `CREATING`); it is
    /// not deleted.
    ///
    /// # Errors
    /// [`Error::Kinesis`] when `CreateStream` or `DescribeStreamSummary` fails,
    /// [`Error::StreamNotActive`] on timeout.
    pub async fn create_stream(&self, prefix: &str, shard_count: i32) -> Result<String, Error> {
        let name = names::unique_name(prefix);
        let client = self.kinesis_client();
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(shard_count)
            .send()
            .await
            .map_err(|e| Error::kinesis("CreateStream", &name, e))?;
        streams::wait_for_stream_active(&client, &name, ACTIVE_TIMEOUT).await?;
        Ok(name)
    }

    /// Deletes a stream (and its registered consumers). Does not wait for it to disappear.
    ///
    /// # Cancellation
    /// Dropping the future before the request is sent leaves the stream in place; after, the
    /// deletion goes ahead.
    ///
    /// # Errors
    /// [`Error::Kinesis`] when `DeleteStream` fails (including when the stream does not exist).
    pub async fn delete_stream(&self, name: &str) -> Result<(), Error> {
        self.kinesis_client()
            .delete_stream()
            .stream_name(name)
            .enforce_consumer_deletion(true)
            .send()
            .await
            .map_err(|e| Error::kinesis("DeleteStream", name, e))?;
        Ok(())
    }
}

fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "test",
        "test",
        None,
        None,
        "kinesis-emulators",
    ))
}

/// Loads the shared SDK configuration; see [`LocalStack::sdk_config`].
async fn load_sdk_config(any_external: bool) -> SdkConfig {
    if !any_external {
        return aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(LOCAL_REGION))
            .credentials_provider(test_credentials())
            .load()
            .await;
    }
    let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let mut builder = base.to_builder();
    if base.region().is_none() {
        builder = builder.region(Region::new(LOCAL_REGION));
    }
    let has_credentials = match base.credentials_provider() {
        Some(provider) => matches!(
            tokio::time::timeout(CREDENTIAL_PROBE_TIMEOUT, provider.provide_credentials()).await,
            Ok(Ok(_))
        ),
        None => false,
    };
    if !has_credentials {
        tracing::info!("no AWS credentials found for the external endpoint; using test/test");
        builder = builder.credentials_provider(test_credentials());
    }
    builder.build()
}
