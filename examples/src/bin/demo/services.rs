//! Where Kinesis and DynamoDB come from, for the demo and for its worker processes.
//!
//! ```text
//!  demo                    AWS_ENDPOINT_URL_KINESIS / _DYNAMODB      no override
//!   default ─────────────▶ that endpoint                             embedded emulator (LocalStack)
//!   --aws   ─────────────▶ that endpoint                             real AWS: asks first (--yes)
//!      └─ worker flags: --kinesis-endpoint URL [--kinesis-test-credentials] (same for DynamoDB),
//!         none with --aws (the workers resolve as the SDK does, from the same environment)
//! ```

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use kinesis_emulators::{EndpointOverrides, LocalStack, ServiceKind};

use crate::cli::{DemoArgs, WorkerArgs};

/// Region the emulators are addressed with.
const LOCAL_REGION: &str = "us-east-1";

/// The clients the demo uses, and how its workers reach the same services.
#[derive(Debug)]
pub(crate) struct Services {
    /// Kinesis.
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    /// DynamoDB.
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    /// One line saying where each service is.
    pub(crate) description: String,
    /// Endpoint and credential flags for the worker processes.
    pub(crate) worker_flags: Vec<String>,
    /// Whether anything is created in a real AWS account.
    pub(crate) real_account: bool,
    /// The embedded emulators, kept running while the demo runs.
    _stack: Option<LocalStack>,
}

/// Why [`connect`] did not connect.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The user said no, or could not be asked: nothing was done (exit status 2).
    NotConfirmed(String),
    /// A setting or a service is wrong (exit status 1).
    Failed(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConfirmed(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

/// Connects to the services the flags and the environment choose; with `--aws` and a service
/// without an endpoint override, asks before going on (unless `--yes`).
///
/// # Cancellation
/// Dropping the future while the emulators start lets them start, then stops them.
///
/// # Errors
/// [`ConnectError::Failed`]: an emulator that cannot start, a malformed endpoint variable,
/// no region for real AWS; [`ConnectError::NotConfirmed`]: the user's "no" (or no terminal
/// to ask on, without `--yes`).
pub(crate) async fn connect(args: &DemoArgs) -> Result<Services, ConnectError> {
    if args.aws {
        return connect_aws(args).await;
    }
    let stack = LocalStack::builder()
        .start_async()
        .await
        .map_err(|e| ConnectError::Failed(format!("cannot start the local stack: {e}")))?;
    let fell_back_to_test = match stack.sdk_config().credentials_provider() {
        Some(p) => p
            .provide_credentials()
            .await
            .map(|c| c.access_key_id() == "test")
            .unwrap_or(true),
        None => true,
    };
    let mut flags = vec![
        "--kinesis-endpoint".to_owned(),
        stack.kinesis_endpoint().to_owned(),
        "--dynamodb-endpoint".to_owned(),
        stack.dynamodb_endpoint().to_owned(),
    ];
    if stack.kinesis_kind() != ServiceKind::External || fell_back_to_test {
        flags.push("--kinesis-test-credentials".into());
    }
    if stack.dynamodb_kind() != ServiceKind::External || fell_back_to_test {
        flags.push("--dynamodb-test-credentials".into());
    }
    let description = format!(
        "Kinesis {} ({}), DynamoDB {} ({})",
        stack.kinesis_endpoint(),
        kind_name(stack.kinesis_kind()),
        stack.dynamodb_endpoint(),
        kind_name(stack.dynamodb_kind()),
    );
    Ok(Services {
        kinesis: stack.kinesis_client(),
        dynamodb: stack.dynamodb_client(),
        description,
        worker_flags: flags,
        real_account: false,
        _stack: Some(stack),
    })
}

/// `--aws`: the standard chain, endpoint overrides where set.
async fn connect_aws(args: &DemoArgs) -> Result<Services, ConnectError> {
    let overrides =
        EndpointOverrides::from_process_env().map_err(|e| ConnectError::Failed(e.to_string()))?;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .load()
        .await;
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        return Err(ConnectError::Failed(
            "no AWS region: set AWS_REGION (or a profile's region)".into(),
        ));
    };
    let place = |o: &Option<String>| match o {
        Some(url) => url.clone(),
        None => format!("AWS {region}"),
    };
    let real_account = overrides.kinesis.is_none() || overrides.dynamodb.is_none();
    if real_account && !args.yes {
        confirm(args, &region).map_err(ConnectError::NotConfirmed)?;
    }
    Ok(Services {
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        description: format!(
            "Kinesis {}, DynamoDB {}",
            place(&overrides.kinesis),
            place(&overrides.dynamodb)
        ),
        worker_flags: Vec::new(),
        real_account,
        _stack: None,
    })
}

/// Says what will be created in the account and waits for a yes.
fn confirm(args: &DemoArgs, region: &str) -> Result<(), String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(
            "this would create resources in a real AWS account; pass --yes to allow it \
             (standard input is not a terminal to ask on)"
                .into(),
        );
    }
    let mut out = std::io::stderr();
    let _ = write!(
        out,
        "This creates in your AWS account, region {region}:\n  \
         - a Kinesis stream \"demo-…\" with {} shards (one more after the split; billed per shard-hour)\n  \
         - DynamoDB tables \"demo-app-…\" and \"demo-app-…-Workers\" (on demand)\n{}\
         and deletes them at the end{}. Go on? [y/N] ",
        args.shards,
        if args.efo {
            "  - an enhanced fan-out consumer (billed per consumer-shard-hour)\n"
        } else {
            ""
        },
        if args.keep {
            " (not: --keep)"
        } else {
            " (or on Ctrl-C)"
        },
    );
    let _ = out.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err("not confirmed; nothing was created".into())
    }
}

/// Timeouts for every client: an endpoint that never answers becomes a retryable error.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build()
}

/// The emulators' static credentials.
fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "demo"))
}

/// Readable name of a service's origin.
fn kind_name(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Embedded => "embedded",
        ServiceKind::Fidelity => "fidelity emulator",
        _ => "AWS_ENDPOINT_URL_*",
    }
}

/// A worker process's clients, from its flags.
pub(crate) async fn worker_clients(
    args: &WorkerArgs,
) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let sdk: SdkConfig = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .load()
        .await;
    let mut k = aws_sdk_kinesis::config::Builder::from(&sdk);
    if let Some(url) = &args.kinesis_endpoint {
        k = k.endpoint_url(url);
    }
    if args.kinesis_test_credentials {
        k = k
            .credentials_provider(test_credentials())
            .region(Region::new(LOCAL_REGION));
    }
    let mut d = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(url) = &args.dynamodb_endpoint {
        d = d.endpoint_url(url);
    }
    if args.dynamodb_test_credentials {
        d = d
            .credentials_provider(test_credentials())
            .region(Region::new(LOCAL_REGION));
    }
    (
        aws_sdk_kinesis::Client::from_conf(k.build()),
        aws_sdk_dynamodb::Client::from_conf(d.build()),
    )
}
