//! The consuming builder for [`LocalStack`].
//!
//! ```text
//!  LocalStack::builder()
//!     .with_backend(..) .with_enforce_limits(..) .with_iterator_ttl(..) .with_*_port(..)
//!     .start() / .start_async()  --> LocalStack (servers running, clients ready)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use crate::env::EndpointOverrides;
use crate::stack::LocalStack;
use crate::Error;

/// Which local emulators to start for the services that have no external endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// ferrokinesis and dynoxide, served in-process. Fast (milliseconds to start), with the
    /// known ferrokinesis gaps listed in the crate's notes. The default.
    #[default]
    Embedded,
    /// The npm packages `kinesis-local` (kinesis-mock) and `dynalite`, run as `node` child
    /// processes. Slower, but faithful on resharding lineage, shard ends, `AT_TIMESTAMP`,
    /// `MillisBehindLatest`, `ListShards` paging and fan-out starting positions. Needs `node`
    /// and `npm`; installs the packages under the cargo target directory on first use.
    Fidelity,
}

/// Where the endpoint overrides come from.
#[derive(Debug, Clone)]
pub(crate) enum OverrideSource {
    /// Read `AWS_ENDPOINT_URL_*` from the process environment at start.
    ProcessEnv,
    /// Use these, ignoring the process environment.
    Fixed(EndpointOverrides),
}

/// Configures and starts a [`LocalStack`]. Obtain one with [`LocalStack::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() or start_async() is called"]
pub struct LocalStackBuilder {
    /// Which emulators to start for services without an external endpoint.
    pub(crate) backend: Backend,
    /// Whether embedded ferrokinesis throttles writes like real shards do; tests of
    /// throttling paths need it, everything else is faster without it.
    pub(crate) enforce_limits: bool,
    /// How long embedded ferrokinesis keeps shard iterators valid; tests of iterator expiry
    /// shorten it.
    pub(crate) iterator_ttl: Duration,
    /// How long embedded ferrokinesis keeps a `SubscribeToShard` subscription open; tests
    /// of fan-out renewal shorten it.
    pub(crate) subscribe_session: Duration,
    /// The most records embedded ferrokinesis puts in one `SubscribeToShard` event; tests
    /// lower it to spread a backlog over many events.
    pub(crate) subscribe_event_records: usize,
    /// Fixed port for a local Kinesis server (0 = any free port), for `kinesis-cat local`.
    pub(crate) kinesis_port: u16,
    /// Fixed port for a local DynamoDB server (0 = any free port), for `kinesis-cat local`.
    pub(crate) dynamodb_port: u16,
    /// Where external endpoints come from; fixed in tests and in `kinesis-cat local`.
    pub(crate) overrides: OverrideSource,
    /// Where the npm fidelity peers are installed; `None` = `<target>/fidelity-peers`.
    pub(crate) fidelity_dir: Option<PathBuf>,
    /// How long to wait for a fidelity peer to answer on its port.
    pub(crate) ready_timeout: Duration,
}

impl Default for LocalStackBuilder {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            enforce_limits: false,
            iterator_ttl: Duration::from_secs(300),
            subscribe_session: Duration::from_secs(300),
            subscribe_event_records: 10_000,
            kinesis_port: 0,
            dynamodb_port: 0,
            overrides: OverrideSource::ProcessEnv,
            fidelity_dir: None,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

impl LocalStackBuilder {
    /// Chooses the emulators started for services that have no external endpoint.
    ///
    /// Default: [`Backend::Embedded`].
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Makes embedded ferrokinesis enforce the per-shard write limits (1 MiB/s and
    /// 1,000 records/s, per-record `ProvisionedThroughputExceededException`).
    ///
    /// Only the embedded Kinesis server honours this; check
    /// [`LocalStack::write_limits_enforced`] to know what the running stack does.
    /// Default: `false` (no throttling).
    pub fn with_enforce_limits(mut self, enforce: bool) -> Self {
        self.enforce_limits = enforce;
        self
    }

    /// Sets how long embedded ferrokinesis keeps a shard iterator valid. Rounded down to whole
    /// seconds, at least one second.
    ///
    /// Default: 300 seconds, as in real Kinesis.
    pub fn with_iterator_ttl(mut self, ttl: Duration) -> Self {
        self.iterator_ttl = ttl;
        self
    }

    /// Sets how long embedded ferrokinesis keeps a `SubscribeToShard` subscription open
    /// before ending it (at least one millisecond).
    ///
    /// Default: 300 seconds, as in real Kinesis.
    pub fn with_subscribe_session(mut self, session: Duration) -> Self {
        self.subscribe_session = session;
        self
    }

    /// Sets the most records embedded ferrokinesis puts in one `SubscribeToShard` event
    /// (at least one).
    ///
    /// Default: 10,000 (ferrokinesis' own default).
    pub fn with_subscribe_event_records(mut self, records: usize) -> Self {
        self.subscribe_event_records = records;
        self
    }

    /// Serves a local Kinesis emulator on this loopback port (0 = any free port).
    ///
    /// Default: 0.
    pub fn with_kinesis_port(mut self, port: u16) -> Self {
        self.kinesis_port = port;
        self
    }

    /// Serves a local DynamoDB emulator on this loopback port (0 = any free port).
    ///
    /// Default: 0.
    pub fn with_dynamodb_port(mut self, port: u16) -> Self {
        self.dynamodb_port = port;
        self
    }

    /// Uses these external endpoints instead of reading `AWS_ENDPOINT_URL_KINESIS` and
    /// `AWS_ENDPOINT_URL_DYNAMODB` from the process environment. Pass
    /// `EndpointOverrides::default()` to always start local emulators.
    ///
    /// Default: read the process environment when the stack starts.
    pub fn with_endpoint_overrides(mut self, overrides: EndpointOverrides) -> Self {
        self.overrides = OverrideSource::Fixed(overrides);
        self
    }

    /// Installs and runs the npm fidelity peers from this directory.
    ///
    /// Default: `<cargo target dir>/fidelity-peers` (see [`crate::workspace_target_dir`]).
    pub fn with_fidelity_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.fidelity_dir = Some(dir.into());
        self
    }

    /// Sets how long to wait for each fidelity peer to answer on its port.
    ///
    /// Default: 60 seconds.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the stack, blocking the calling thread until every service answers.
    ///
    /// Safe to call from synchronous code and from inside a tokio runtime (it does not
    /// create or enter a runtime on the calling thread), although inside a runtime
    /// [`start_async`](Self::start_async) avoids blocking a worker.
    ///
    /// # Errors
    /// Any [`Error`] naming the service or peer that could not be started.
    pub fn start(self) -> Result<LocalStack, Error> {
        LocalStack::start_with(self)
    }

    /// Starts the stack without blocking the async caller (the work runs on a blocking
    /// thread).
    ///
    /// # Cancellation
    /// Dropping the future does not stop a start already under way: it runs to the end on
    /// its blocking thread and the stack it produced is then dropped, which stops it.
    ///
    /// # Errors
    /// Any [`Error`] naming the service or peer that could not be started.
    pub async fn start_async(self) -> Result<LocalStack, Error> {
        match tokio::task::spawn_blocking(move || self.start()).await {
            Ok(result) => result,
            Err(_) => Err(Error::RuntimeGone),
        }
    }

    /// Resolves the endpoint overrides for this start.
    pub(crate) fn resolve_overrides(&self) -> Result<EndpointOverrides, Error> {
        match &self.overrides {
            OverrideSource::ProcessEnv => EndpointOverrides::from_process_env(),
            OverrideSource::Fixed(o) => Ok(o.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pinned() {
        let b = LocalStack::builder();
        assert_eq!(b.backend, Backend::Embedded);
        assert_eq!(Backend::default(), Backend::Embedded);
        assert!(!b.enforce_limits);
        assert_eq!(b.iterator_ttl, Duration::from_secs(300));
        assert_eq!(b.subscribe_session, Duration::from_secs(300));
        assert_eq!(b.subscribe_event_records, 10_000);
        assert_eq!(b.kinesis_port, 0);
        assert_eq!(b.dynamodb_port, 0);
        assert!(matches!(b.overrides, OverrideSource::ProcessEnv));
        assert_eq!(b.fidelity_dir, None);
        assert_eq!(b.ready_timeout, Duration::from_secs(60));
    }

    #[test]
    fn setters_set() {
        let b = LocalStack::builder()
            .with_backend(Backend::Fidelity)
            .with_enforce_limits(true)
            .with_iterator_ttl(Duration::from_secs(5))
            .with_kinesis_port(1)
            .with_dynamodb_port(2)
            .with_endpoint_overrides(EndpointOverrides {
                kinesis: Some("http://x:1".into()),
                dynamodb: None,
            })
            .with_fidelity_dir("/tmp/peers")
            .with_ready_timeout(Duration::from_secs(3));
        assert_eq!(b.backend, Backend::Fidelity);
        assert!(b.enforce_limits);
        assert_eq!(b.iterator_ttl, Duration::from_secs(5));
        assert_eq!((b.kinesis_port, b.dynamodb_port), (1, 2));
        assert_eq!(
            b.resolve_overrides().expect("fixed").kinesis.as_deref(),
            Some("http://x:1")
        );
        assert_eq!(b.fidelity_dir, Some(PathBuf::from("/tmp/peers")));
        assert_eq!(b.ready_timeout, Duration::from_secs(3));
    }
}
