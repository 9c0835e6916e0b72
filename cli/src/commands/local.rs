//! `kinesis-cat local`: run local Kinesis and DynamoDB emulators in the foreground.
//!
//! ```text
//!  LocalStack::builder() (env overrides ignored, fixed ports)
//!       --> stdout: export AWS_ENDPOINT_URL_KINESIS=... / _DYNAMODB=... / credentials
//!       --> wait for Ctrl-C or SIGTERM --> drop the stack (servers stop)
//! ```

use std::io::Write;

use clap::{Args, ValueEnum};
use kinesis_emulators::{Backend, EndpointOverrides, LocalStack};

use crate::Error;

/// Arguments of `kinesis-cat local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Loopback port for Kinesis (0 = any free port).
    #[arg(long, default_value_t = 4567)]
    pub kinesis_port: u16,
    /// Loopback port for DynamoDB (0 = any free port).
    #[arg(long, default_value_t = 8000)]
    pub dynamodb_port: u16,
    /// Which emulators to run.
    #[arg(long, value_enum, default_value_t = LocalBackend::Embedded)]
    pub backend: LocalBackend,
    /// Make embedded Kinesis throttle writes like real shards (1 MiB/s, 1,000 records/s).
    /// Default: off.
    #[arg(long)]
    pub enforce_limits: bool,
}

/// The emulators `local` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum LocalBackend {
    /// ferrokinesis and dynoxide, in this process.
    Embedded,
    /// npm kinesis-local and dynalite, as child processes (needs node and npm).
    Fidelity,
}

/// The shell lines that point AWS tools at `stack`.
pub fn export_lines(stack: &LocalStack) -> String {
    format!(
        "export AWS_ENDPOINT_URL_KINESIS={}\n\
         export AWS_ENDPOINT_URL_DYNAMODB={}\n\
         export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1\n",
        stack.kinesis_endpoint(),
        stack.dynamodb_endpoint()
    )
}

/// Starts the emulators, prints the export lines and serves until Ctrl-C or SIGTERM.
///
/// Existing `AWS_ENDPOINT_URL_*` variables are ignored: this command always starts local
/// servers.
///
/// # Cancellation
/// Dropping the future stops the emulators.
///
/// # Errors
/// [`Error::Emulators`] when a server cannot start (e.g. the port is taken),
/// [`Error::Output`] / [`Error::Signal`] for I/O failures.
pub async fn run(args: LocalArgs) -> Result<(), Error> {
    let backend = match args.backend {
        LocalBackend::Embedded => Backend::Embedded,
        LocalBackend::Fidelity => Backend::Fidelity,
    };
    let stack = LocalStack::builder()
        .with_backend(backend)
        .with_endpoint_overrides(EndpointOverrides::default())
        .with_kinesis_port(args.kinesis_port)
        .with_dynamodb_port(args.dynamodb_port)
        .with_enforce_limits(args.enforce_limits)
        .start_async()
        .await?;
    {
        let mut out = std::io::stdout().lock();
        out.write_all(export_lines(&stack).as_bytes())
            .and_then(|()| out.flush())
            .map_err(Error::Output)?;
    }
    let stop = crate::signals::install("stopping the emulators")?;
    crate::say!("kinesis-cat: local emulators running; Ctrl-C or SIGTERM to stop");
    stop.cancelled().await;
    drop(stack);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: LocalArgs,
    }

    #[test]
    fn defaults_are_pinned() {
        let w = Wrapper::try_parse_from(["local"]).expect("parse");
        assert_eq!(w.args.kinesis_port, 4567);
        assert_eq!(w.args.dynamodb_port, 8000);
        assert_eq!(w.args.backend, LocalBackend::Embedded);
        assert!(!w.args.enforce_limits);
    }

    #[test]
    fn ports_and_backend_parse() {
        let w = Wrapper::try_parse_from([
            "local",
            "--kinesis-port",
            "0",
            "--dynamodb-port",
            "1234",
            "--backend",
            "fidelity",
        ])
        .expect("parse");
        assert_eq!((w.args.kinesis_port, w.args.dynamodb_port), (0, 1234));
        assert_eq!(w.args.backend, LocalBackend::Fidelity);
        assert!(Wrapper::try_parse_from(["local", "--kinesis-port", "70000"]).is_err());
    }
}
