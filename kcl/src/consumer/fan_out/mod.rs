//! [`FanOut`]: the enhanced fan-out retrieval, which reads a shard through `SubscribeToShard`
//! pushes to a registered stream consumer, set by [`FanOutConfig`].
//!
//! ```text
//!  start-up: registration ─ DescribeStreamConsumer ─missing─▶ RegisterStreamConsumer
//!            (wait until ACTIVE; reused across restarts; never deregistered) ─▶ consumer ARN
//!
//!  subscriber task (one per shard consumer)
//!  SubscribeToShard(consumer ARN, shard, Continuation::position()) ─▶ event stream
//!    each event ─▶ Continuation::accept: drop replays, note the last record sent
//!               ─▶ bounded channel (event_buffer batches) ─▶ shard consumer
//!                  (full: no more events are read; flow control slows the server)
//!    renew_after passed, or the server ended it ─▶ subscribe again after the last record sent
//!    error, or no event for idle_timeout ─▶ again after 250 ms doubling to 10 s, + jitter
//!    ResourceNotFound and the shard is gone ─▶ empty batch with `end`
//!  shard end (no continuation; or children and no records) ─▶ last batch with `end`
//! ```
//!
//! Kinesis pushes each registered consumer up to 2 MiB/s per shard, apart from every other
//! reader, with about 70 ms from put to push; a subscription lasts at most 5 minutes; one
//! call per second is allowed per consumer and shard, and a call within 5 seconds of a
//! successful one fails with `ResourceInUseException` (AWS: *SubscribeToShard*, Kinesis
//! Data Streams API reference), which the backoff waits out. The parts: the
//! pure ledger of what was sent ([`Continuation`](continuation::Continuation)), the
//! per-shard `subscriber` task, and the consumer `registration`.

mod continuation;
mod registration;
mod subscriber;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Batch, RecordsSource, StartingPosition};
use crate::stream_address::StreamAddress;
pub(crate) use registration::{describe_or_register, ConsumerState, StreamConsumer};
use subscriber::Subscriber;

/// Settings of enhanced fan-out retrieval.
///
/// # Usage
/// ```
/// use kinesis_consumer::FanOutConfig;
///
/// let config = FanOutConfig::default().with_consumer_name("billing");
/// assert_eq!(config.consumer_name.as_deref(), Some("billing"));
/// assert_eq!(config.event_buffer, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutConfig {
    /// The name of the stream consumer registered for this application (each registered
    /// consumer gets its own 2 MiB/s per shard). `None`: the application name. Registered
    /// at start-up when missing, reused when present, never deregistered by the library.
    pub consumer_name: Option<String>,
    /// Events held per shard ahead of the processor. While they are all waiting, no more
    /// events are read and the server is slowed by flow control, so a slow processor
    /// never loses its subscription; this bounds the memory a shard's backlog takes
    /// (an event carries what the shard received since the one before).
    pub event_buffer: usize,
    /// How long a subscription is used before it is renewed (Kinesis ends one after
    /// 5 minutes). Renewed after the last record handed on: nothing skipped or repeated.
    pub renew_after: Duration,
    /// How long a subscription may stay silent, while there is room in the buffer, before
    /// it is given up and made again from the last record handed on: a guard against a
    /// connection that died without closing. Time spent waiting for the processor does
    /// not count.
    pub idle_timeout: Duration,
}

impl Default for FanOutConfig {
    /// The application name as consumer name, 4 buffered events, renewal after 4 min 50 s
    /// (before the 5-minute end of a subscription), a 60 s idle timeout.
    fn default() -> Self {
        Self {
            consumer_name: None,
            event_buffer: 4,
            renew_after: Duration::from_secs(290),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl FanOutConfig {
    /// Names the stream consumer. Default: the application name.
    pub fn with_consumer_name(mut self, name: impl Into<String>) -> Self {
        self.consumer_name = Some(name.into());
        self
    }

    /// Sets [`event_buffer`](Self::event_buffer). Default: 4. The scheduler's builder
    /// refuses 0 and more than 10,000.
    pub fn with_event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }

    /// Sets [`renew_after`](Self::renew_after). Default: 290 s. The scheduler's builder
    /// refuses zero and anything outside 5 s to 5 min (Kinesis refuses a subscription
    /// within 5 s of the last, and ends one after 5 min).
    pub fn with_renew_after(mut self, after: Duration) -> Self {
        self.renew_after = after;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout). Default: 60 s. The scheduler's builder
    /// refuses anything under 1 s.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// The fan-out retrieval of every shard consumer of one worker: each
/// [`start`](RecordsSource::start) spawns a subscriber task for the shard.
#[derive(Debug, Clone)]
pub(crate) struct FanOut {
    /// Kinesis client of the subscriptions (and of the shard-gone check).
    kinesis: aws_sdk_kinesis::Client,
    /// The stream, for the shard-gone check.
    stream: StreamAddress,
    /// The registered stream consumer subscriptions are made for (found again when it
    /// goes missing).
    consumer: Arc<StreamConsumer>,
    /// Buffer, renewal and idle settings of every subscriber.
    config: FanOutConfig,
}

impl FanOut {
    /// Fan-out retrieval of `stream`'s shards for the ACTIVE `consumer`.
    pub(crate) fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream: impl Into<StreamAddress>,
        consumer: StreamConsumer,
        config: FanOutConfig,
    ) -> Self {
        Self {
            kinesis,
            stream: stream.into(),
            consumer: Arc::new(consumer),
            config,
        }
    }
}

impl RecordsSource for FanOut {
    /// Spawns a subscriber (in the caller's tracing span) that buffers up to
    /// `event_buffer` batches (at least one).
    fn start(
        &self,
        shard_id: &str,
        from: StartingPosition,
        stop: CancellationToken,
    ) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(self.config.event_buffer.max(1));
        let subscriber = Subscriber {
            kinesis: self.kinesis.clone(),
            stream: self.stream.clone(),
            consumer: self.consumer.clone(),
            shard_id: shard_id.to_owned(),
            start: from,
            config: self.config.clone(),
        };
        tokio::spawn(
            subscriber
                .run(tx, stop)
                .instrument(tracing::Span::current()),
        );
        rx
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::primitives::Blob;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::*;
    use crate::metric_names as m;

    /// A bound to fail on instead of hanging, never a measured assertion.
    const DEADLINE: Duration = Duration::from_secs(60);

    /// Counter totals read through a [`DebuggingRecorder`]'s snapshotter, whose snapshots
    /// drain what they read: summed here over every snapshot taken.
    struct CounterTotals {
        /// Reads (and drains) the recorder.
        snapshotter: Snapshotter,
        /// Every counter's total so far.
        totals: std::sync::Mutex<std::collections::HashMap<metrics_util::CompositeKey, u64>>,
    }

    impl CounterTotals {
        /// Totals of the counters `recorder` records.
        fn new(recorder: &DebuggingRecorder) -> Self {
            Self {
                snapshotter: recorder.snapshotter(),
                totals: Default::default(),
            }
        }

        /// The total of counter `name` with `label` among its labels (if given), summed over
        /// the other labels.
        fn get(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
            let mut totals = self.totals.lock().expect("not poisoned");
            for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
                if let DebugValue::Counter(n) = value {
                    *totals.entry(key).or_default() += n;
                }
            }
            totals
                .iter()
                .filter(|(k, _)| k.key().name() == name)
                .filter(|(k, _)| {
                    label.is_none_or(|(lk, lv)| {
                        k.key().labels().any(|l| l.key() == lk && l.value() == lv)
                    })
                })
                .map(|(_, n)| n)
                .sum()
        }
    }

    /// The consumer "source-test" under `arn` (never looked up again in these tests).
    fn consumer(arn: String) -> StreamConsumer {
        StreamConsumer::new(String::new(), "source-test".to_owned(), arn)
    }

    /// A one-shard stream on `stack` and an ACTIVE consumer of it: (stream, shard, ARN).
    async fn stream_with_consumer(
        stack: &kinesis_emulators::LocalStack,
    ) -> (String, String, String) {
        let kinesis = stack.kinesis_client();
        let stream = stack.create_stream("fan-out-source", 1).await.unwrap();
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .unwrap();
        let stream_arn = summary.stream_description_summary().unwrap().stream_arn();
        let arn = tokio::time::timeout(DEADLINE, async {
            loop {
                match describe_or_register(&kinesis, stream_arn, "source-test")
                    .await
                    .unwrap()
                {
                    ConsumerState::Active(arn) => break arn,
                    ConsumerState::NotYet(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                }
            }
        })
        .await
        .expect("the consumer becomes ACTIVE");
        let shard = kinesis
            .list_shards()
            .stream_name(&stream)
            .send()
            .await
            .unwrap()
            .shards()[0]
            .shard_id()
            .to_owned();
        (stream, shard, arn)
    }

    /// Puts `data` records one by one; their sequence numbers.
    async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, data: &[String]) -> Vec<String> {
        let mut seqs = Vec::new();
        for d in data {
            let out = kinesis
                .put_record()
                .stream_name(stream)
                .partition_key("k")
                .data(Blob::new(d.as_bytes()))
                .send()
                .await
                .unwrap();
            seqs.push(out.sequence_number().to_owned());
        }
        seqs
    }

    /// Receives until `n` records have come; their sequence numbers.
    async fn receive(rx: &mut mpsc::Receiver<Batch>, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let batch = tokio::time::timeout(DEADLINE, rx.recv())
                .await
                .expect("records in time")
                .expect("the source goes on");
            assert!(batch.end.is_none());
            got.extend(batch.records.iter().map(|r| r.sequence_number().to_owned()));
        }
        got
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_reader_keeps_its_subscription_and_loses_nothing() {
        let recorder = DebuggingRecorder::new();
        let counters = CounterTotals::new(&recorder);
        let _local = metrics::set_default_local_recorder(&recorder);
        let stack = kinesis_emulators::LocalStack::builder()
            .with_subscribe_event_records(3)
            .start_async()
            .await
            .unwrap();
        let kinesis = stack.kinesis_client();
        let (stream, shard, arn) = stream_with_consumer(&stack).await;
        let first: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
        let mut sent = put(&kinesis, &stream, &first).await;
        // One event buffered, idle after 300 ms: the reader sleeps far longer than that.
        let config = FanOutConfig::default()
            .with_event_buffer(1)
            .with_idle_timeout(Duration::from_millis(300));
        let stop = CancellationToken::new();
        let source = FanOut::new(kinesis.clone(), stream.clone(), consumer(arn), config);
        let mut rx = source.start(&shard, StartingPosition::TrimHorizon, stop.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = receive(&mut rx, 20).await;
        let later: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
        sent.extend(put(&kinesis, &stream, &later).await);
        got.extend(receive(&mut rx, 5).await);
        assert_eq!(got, sent, "every record once, in order");
        assert_eq!(
            counters.get(m::FANOUT_SUBSCRIPTIONS, None),
            1,
            "waiting for the reader is not idleness: one subscription throughout"
        );
        assert_eq!(counters.get(m::FANOUT_SUBSCRIPTION_ERRORS, None), 0);
        stop.cancel();
        assert!(tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn subscriptions_are_renewed_before_the_server_ends_them_and_after_it_does() {
        let recorder = DebuggingRecorder::new();
        let counters = CounterTotals::new(&recorder);
        let _local = metrics::set_default_local_recorder(&recorder);
        // The server ends subscriptions after 1.5 s; the source renews its own after 400 ms
        // on one of the two sources.
        let stack = kinesis_emulators::LocalStack::builder()
            .with_subscribe_session(Duration::from_millis(1_500))
            .start_async()
            .await
            .unwrap();
        let kinesis = stack.kinesis_client();
        let (stream, shard, arn) = stream_with_consumer(&stack).await;
        for (renew_after, label) in [
            (Duration::from_millis(400), "renewed by the source"),
            (Duration::from_secs(290), "ended by the server"),
        ] {
            let before = counters.get(m::FANOUT_SUBSCRIPTIONS, Some(("reason", "renewal")));
            let stop = CancellationToken::new();
            let config = FanOutConfig::default().with_renew_after(renew_after);
            let source = FanOut::new(
                kinesis.clone(),
                stream.clone(),
                consumer(arn.clone()),
                config,
            );
            let start_seq = put(&kinesis, &stream, &[format!("{label} start")]).await;
            let from = StartingPosition::AtSequence(
                crate::checkpoint::SequenceNumber::parse(&start_seq[0]).unwrap(),
            );
            let mut rx = source.start(&shard, from, stop.clone());
            let mut sent = start_seq;
            let mut got = receive(&mut rx, 1).await;
            for round in 0..4 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let data: Vec<String> = (0..5).map(|i| format!("{label} {round}.{i}")).collect();
                let seqs = put(&kinesis, &stream, &data).await;
                got.extend(receive(&mut rx, seqs.len()).await);
                sent.extend(seqs);
            }
            assert_eq!(
                got, sent,
                "{label}: every record once, in order, across renewals"
            );
            let renewals =
                counters.get(m::FANOUT_SUBSCRIPTIONS, Some(("reason", "renewal"))) - before;
            assert!(renewals >= 1, "{label}: {renewals} renewals");
            stop.cancel();
        }
        assert_eq!(counters.get(m::FANOUT_SUBSCRIPTION_ERRORS, None), 0);
    }

    #[test]
    fn fan_out_defaults_are_pinned() {
        let c = FanOutConfig::default();
        assert_eq!(c.consumer_name, None);
        assert_eq!(c.event_buffer, 4);
        assert_eq!(c.renew_after, Duration::from_secs(290));
        assert!(
            c.renew_after < Duration::from_secs(300),
            "before Kinesis ends it"
        );
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        let c = c
            .with_consumer_name("n")
            .with_event_buffer(1)
            .with_renew_after(Duration::from_secs(5))
            .with_idle_timeout(Duration::from_secs(6));
        assert_eq!((c.consumer_name.as_deref(), c.event_buffer), (Some("n"), 1));
        assert_eq!(
            (c.renew_after, c.idle_timeout),
            (Duration::from_secs(5), Duration::from_secs(6))
        );
    }

    /// A loopback server that answers every request with the headers of an event stream
    /// and then says nothing, keeping the connection open.
    async fn silent_event_stream_server() -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((mut connection, _)) = listener.accept().await {
                let mut request = [0u8; 8192];
                let _ = connection.read(&mut request).await;
                let _ = connection
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\n\
                          transfer-encoding: chunked\r\n\r\n",
                    )
                    .await;
                open.push(connection);
            }
        });
        (endpoint, server)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_subscription_is_given_up_and_made_again() {
        use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
        let recorder = DebuggingRecorder::new();
        let counters = CounterTotals::new(&recorder);
        let _local = metrics::set_default_local_recorder(&recorder);
        let (endpoint, server) = silent_event_stream_server().await;
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .endpoint_url(endpoint)
                .build(),
        );
        let config = FanOutConfig::default().with_idle_timeout(Duration::from_millis(200));
        let source = FanOut::new(
            kinesis,
            "s",
            consumer("arn:aws:kinesis:us-east-1:1:stream/s/consumer/c:1".to_owned()),
            config,
        );
        let stop = CancellationToken::new();
        let mut rx = source.start(
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
            stop.clone(),
        );
        tokio::time::timeout(DEADLINE, async {
            while counters.get(m::FANOUT_SUBSCRIPTION_ERRORS, Some(("code", "idle"))) < 2 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the silent subscription is given up on, twice: {:?}",
                counters.totals.lock().unwrap()
            )
        });
        assert!(counters.get(m::FANOUT_SUBSCRIPTIONS, Some(("reason", "after_error"))) >= 1);
        assert!(
            rx.try_recv().is_err(),
            "nothing delivered, and the source goes on"
        );
        assert!(!rx.is_closed());
        stop.cancel();
        server.abort();
    }
}
