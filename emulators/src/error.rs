//! The error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, using or stopping a [`crate::LocalStack`].
///
/// Every variant names the component that failed, so a test failure message is enough to
/// tell which emulator or which call broke.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The emulator thread or its tokio runtime could not be created.
    #[error("could not start the emulator runtime thread: {0}")]
    Runtime(#[source] std::io::Error),

    /// The emulator thread went away before answering (it panicked or was killed).
    #[error("the emulator runtime thread stopped before the stack was ready")]
    RuntimeGone,

    /// A listening socket for an embedded server could not be bound.
    #[error("could not bind the embedded {service} server to 127.0.0.1:{port}: {source}")]
    Bind {
        /// Which emulator ("Kinesis" or "DynamoDB").
        service: &'static str,
        /// The port asked for (0 = any free port).
        port: u16,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// The embedded DynamoDB emulator could not open its in-memory database.
    #[error("could not open the embedded DynamoDB (dynoxide) in-memory database: {0}")]
    Dynoxide(String),

    /// An endpoint URL given through the environment is not usable.
    #[error("{var} is set to {value:?}, which is not an http:// or https:// URL")]
    InvalidEndpoint {
        /// The environment variable that carried it.
        var: &'static str,
        /// The rejected value.
        value: String,
    },

    /// The workspace `target` directory (where fidelity peers are installed) was not found.
    #[error(
        "could not locate the cargo target directory for the fidelity emulators; \
         set CARGO_TARGET_DIR or use LocalStackBuilder::with_fidelity_dir"
    )]
    TargetDirNotFound,

    /// A file-system operation for the fidelity peers failed.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        /// What was being done, e.g. "creating directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// `npm install` of the fidelity peers could not run or failed.
    #[error("npm install of {packages} failed: {detail}")]
    NpmInstall {
        /// The packages being installed.
        packages: String,
        /// Exit status and the tail of npm's standard error, or why npm could not run.
        detail: String,
    },

    /// A fidelity peer process could not be spawned.
    #[error("could not spawn {what} (is node installed?): {source}")]
    Spawn {
        /// Which peer ("kinesis-local" or "dynalite").
        what: &'static str,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// A fidelity peer process exited before it answered on its port.
    #[error("{what} exited with {status} before becoming ready; log tail:\n{log_tail}")]
    ExitedEarly {
        /// Which peer.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// The last lines of its combined output.
        log_tail: String,
    },

    /// A fidelity peer process did not answer in time.
    #[error(
        "{what} did not become ready on port {port} within {timeout:?}; log tail:\n{log_tail}"
    )]
    NotReady {
        /// Which peer.
        what: &'static str,
        /// The port it was told to listen on.
        port: u16,
        /// How long we waited.
        timeout: Duration,
        /// The last lines of its combined output.
        log_tail: String,
    },

    /// A Kinesis API call made by a helper failed.
    #[error("Kinesis {operation} for stream {stream} failed: {message}")]
    Kinesis {
        /// The API operation, e.g. "CreateStream".
        operation: &'static str,
        /// The stream it was about.
        stream: String,
        /// The SDK error with its full cause chain.
        message: String,
    },

    /// A stream did not reach `ACTIVE` in time.
    #[error(
        "stream {stream} did not become ACTIVE within {timeout:?} (last status: {last_status})"
    )]
    StreamNotActive {
        /// The stream name.
        stream: String,
        /// How long we waited.
        timeout: Duration,
        /// The last status seen.
        last_status: String,
    },
}

impl Error {
    /// Builds [`Error::Kinesis`] from any SDK error, keeping the whole cause chain as text.
    pub(crate) fn kinesis<E>(operation: &'static str, stream: &str, err: E) -> Self
    where
        E: std::error::Error + 'static,
    {
        Self::Kinesis {
            operation,
            stream: stream.to_owned(),
            message: aws_sdk_kinesis::error::DisplayErrorContext(err).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_failing_component() {
        let err = Error::NotReady {
            what: "kinesis-local",
            port: 4567,
            timeout: Duration::from_secs(60),
            log_tail: String::new(),
        };
        let text = err.to_string();
        assert!(text.starts_with("kinesis-local did not become ready on port 4567 within 60s"));

        let err = Error::NpmInstall {
            packages: "kinesis-local dynalite".into(),
            detail: "exit status 1: E404".into(),
        };
        assert_eq!(
            err.to_string(),
            "npm install of kinesis-local dynalite failed: exit status 1: E404"
        );
    }
}
