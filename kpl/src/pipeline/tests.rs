//! The pipeline's timing decisions (linger, TTL, backoff, rate limits, ordering) on a
//! paused clock, driven directly: no call is launched, so no server is needed.

use super::test_support::{item, item_for, keys_of_both_halves, one_shard, two_shards};
use super::*;
use aws_sdk_kinesis::types::PutRecordsResultEntry;
use kinesis_agg::{HashKey, WHOLE_RESEND_PARTITION_KEY};
use tokio::sync::oneshot;

use crate::failure::REQUEST_TOO_LARGE;
use crate::outcome::Outcome;

fn client() -> Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    Client::from_conf(conf)
}

fn pipeline(config: Config) -> Pipeline {
    let (_tx, rx) = mpsc::unbounded_channel();
    let (failures, _) = broadcast::channel(16);
    Pipeline::new(client(), config, rx, Arc::new(Stats::default()), failures)
}

/// A fatal error as `classify` makes it for a service error with this code.
fn rejected(code: &str, message: &str) -> CallError {
    let stream_level = crate::failure::is_stream_level_code(code);
    CallError {
        code: code.to_owned(),
        message: message.to_owned(),
        throttled: false,
        fatal: true,
        stream_level,
    }
}

/// Records sent one Kinesis record each (no aggregation), as soon as they are put.
fn sent_at_once() -> Config {
    Config {
        aggregation: false,
        max_buffered_time: Duration::ZERO,
        ..Config::default()
    }
}

fn mapped(config: Config) -> Pipeline {
    let mut p = pipeline(config);
    p.stream_state("s");
    p.on_shard_map(Arc::from("s"), Ok(two_shards()));
    p
}

fn put(p: &mut Pipeline, pk: &str, size: usize) -> oneshot::Receiver<Outcome> {
    let (item, rx) = item(pk, size);
    p.on_command(Command::Put(item));
    rx
}

fn stream() -> Arc<str> {
    Arc::from("s")
}

fn put_to(p: &mut Pipeline, stream: &str, pk: &str) -> oneshot::Receiver<Outcome> {
    let (item, rx) = item_for(stream, pk, 10);
    p.on_command(Command::Put(item));
    rx
}

/// Every report sent so far.
fn drain_reports(rx: &mut broadcast::Receiver<CallFailure>) -> Vec<CallFailure> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// A successful result for every entry of `batch`.
fn all_ok(batch: &[Entry]) -> Vec<PutRecordsResultEntry> {
    all_ok_at(batch, "1")
}

/// Every entry of `batch` in its predicted shard, at sequence number `seq`.
fn all_ok_at(batch: &[Entry], seq: &str) -> Vec<PutRecordsResultEntry> {
    batch
        .iter()
        .map(|e| {
            PutRecordsResultEntry::builder()
                .shard_id(e.predicted.as_deref().unwrap())
                .sequence_number(seq)
                .build()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_stream_level_rejection_fails_the_queued_records_of_that_stream_only() {
    let config = Config {
        aggregation: false,
        max_buffered_time: Duration::ZERO,
        collection_max_count: 1,
        ..Config::default()
    };
    let mut p = mapped(config);
    p.stream_state("t");
    p.on_shard_map(Arc::from("t"), Ok(two_shards()));
    let mut reports_rx = p.failures.subscribe();
    let mut s_rx: Vec<_> = (0..4)
        .map(|i| put_to(&mut p, "s", &format!("k{i}")))
        .collect();
    let mut t_rx: Vec<_> = (0..2)
        .map(|i| put_to(&mut p, "t", &format!("k{i}")))
        .collect();

    // A record Kinesis refuses on its own fails alone.
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 1);
    p.on_call_done(
        stream(),
        batch,
        CallResult::Failed(rejected("ValidationException", "bad key")),
    );
    let failed: Vec<_> = s_rx.iter_mut().filter_map(|r| r.try_recv().ok()).collect();
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].as_ref().unwrap_err().reason.is_stream_level());
    assert_eq!(p.outstanding(), 5);

    // The stream does not exist: its queued records fail with the call's, at once.
    tokio::time::advance(Duration::from_secs(3)).await; // past the backoff
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 1, "two records of s stay queued");
    let missing = rejected("ResourceNotFoundException", "Stream s not found");
    p.on_call_done(stream(), batch, CallResult::Failed(missing));
    let failed: Vec<_> = s_rx.iter_mut().filter_map(|r| r.try_recv().ok()).collect();
    assert_eq!(failed.len(), 3, "the one sent and the two queued");
    for f in &failed {
        let f = f.as_ref().unwrap_err();
        assert!(f.reason.is_stream_level(), "{f}");
        assert!(!f.reason.is_retryable());
        assert!(matches!(
            &f.reason,
            FailureReason::Rejected { code, message }
                if code == "ResourceNotFoundException" && message == "Stream s not found"
        ));
    }
    // The other stream is untouched and still sends.
    assert!(t_rx.iter_mut().all(|r| r.try_recv().is_err()));
    assert_eq!(p.outstanding(), 2);
    assert!(p.collect(&Arc::from("t"), Instant::now()).is_some());

    let reports = drain_reports(&mut reports_rx);
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(
        (
            reports[0].code.as_str(),
            reports[0].records,
            reports[0].retryable
        ),
        ("ValidationException", 1, false)
    );
    assert_eq!(
        (
            reports[1].code.as_str(),
            reports[1].records,
            reports[1].retryable
        ),
        ("ResourceNotFoundException", 3, false)
    );
    assert_eq!(reports[1].operation, "PutRecords");
    assert_eq!(&*reports[1].stream, "s");

    // Records put to the stream later are tried again.
    let mut later = put_to(&mut p, "s", "k9");
    assert!(later.try_recv().is_err());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(p.collect(&stream(), Instant::now()).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_list_shards_refusal_fails_the_stream_unless_only_listing_is_denied() {
    let mut p = pipeline(Config::default());
    p.stream_state("s");
    p.stream_state("t");
    let mut reports_rx = p.failures.subscribe();
    let mut s_rx: Vec<_> = (0..3)
        .map(|i| put_to(&mut p, "s", &format!("k{i}")))
        .collect();
    let mut t_rx = put_to(&mut p, "t", "k");
    // ListShards may be denied to a client that may write: keep sending unaggregated.
    let denied = rejected("AccessDeniedException", "not allowed to list");
    p.on_shard_map(Arc::from("t"), Err(denied));
    assert!(t_rx.try_recv().is_err());
    assert_eq!(
        p.streams["t"].next_refresh,
        Instant::now() + Duration::from_secs(60),
        "asked again only at the refresh interval"
    );
    let missing = rejected("ResourceNotFoundException", "Stream s not found");
    p.on_shard_map(stream(), Err(missing));
    for r in &mut s_rx {
        let f = r.try_recv().unwrap().unwrap_err();
        assert!(f.reason.is_stream_level());
        assert!(f.attempts.is_empty(), "never sent");
    }
    assert_eq!(
        p.streams["s"].next_refresh,
        Instant::now() + Duration::from_secs(1)
    );
    let reports = drain_reports(&mut reports_rx);
    let summary: Vec<_> = reports
        .iter()
        .map(|r| {
            (
                &*r.stream,
                r.operation,
                r.code.as_str(),
                r.records,
                r.retryable,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("t", "ListShards", "AccessDeniedException", 0, false),
            ("s", "ListShards", "ResourceNotFoundException", 3, false),
        ]
    );
    // A temporary failure is reported as such and fails nothing.
    let mut late = put_to(&mut p, "s", "k");
    let refused = CallError::retryable(crate::failure::DISPATCH_FAILURE, "io error");
    p.on_shard_map(stream(), Err(refused));
    assert!(late.try_recv().is_err());
    let reports = drain_reports(&mut reports_rx);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].retryable);
}

#[tokio::test(start_paused = true)]
async fn failure_reports_are_one_per_call_and_per_distinct_record_error() {
    let config = sent_at_once();
    let mut p = mapped(config);
    // Nobody listens: reporting is skipped, nothing breaks.
    let _rx: Vec<_> = (0..2).map(|i| put(&mut p, &format!("a{i}"), 10)).collect();
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    p.on_call_done(
        stream(),
        batch,
        CallResult::Failed(CallError::retryable("InternalFailure", "boom")),
    );
    assert_eq!(p.streams["s"].put_failures.calls, 1);

    let mut reports_rx = p.failures.subscribe();
    tokio::time::advance(Duration::from_secs(3)).await;
    let _rx: Vec<_> = (0..6).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 8);
    let throttled = || {
        PutRecordsResultEntry::builder()
            .error_code("ProvisionedThroughputExceededException")
            .error_message("Rate exceeded for shard")
            .build()
    };
    let internal = || {
        PutRecordsResultEntry::builder()
            .error_code("InternalFailure")
            .error_message("Internal service failure.")
            .build()
    };
    let mut results = all_ok(&batch);
    for i in [0, 2, 4, 6] {
        results[i] = throttled();
    }
    for i in [1, 5] {
        results[i] = internal();
    }
    p.on_call_done(stream(), batch, CallResult::Ok(results));
    let reports = drain_reports(&mut reports_rx);
    let summary: Vec<_> = reports
        .iter()
        .map(|r| (r.code.as_str(), r.records, r.throttled, r.retryable))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ProvisionedThroughputExceededException", 4, true, true),
            ("InternalFailure", 2, false, true),
        ]
    );
    assert_eq!(reports[1].message, "Internal service failure.");
    assert_eq!(p.streams["s"].put_failures.calls, 2, "still failing");

    // One report for a whole failed call, whatever its size.
    tokio::time::advance(Duration::from_secs(5)).await;
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 6);
    let refused = CallError::retryable(crate::failure::DISPATCH_FAILURE, "io error");
    p.on_call_done(stream(), batch, CallResult::Failed(refused));
    let reports = drain_reports(&mut reports_rx);
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].records, reports[0].retryable), (6, true));
    assert_eq!(p.streams["s"].put_failures.calls, 3);

    // A clean call ends the streak; throttling alone neither starts nor ends one.
    tokio::time::advance(Duration::from_secs(5)).await;
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    let results = all_ok(&batch);
    p.on_call_done(stream(), batch, CallResult::Ok(results));
    assert_eq!(p.streams["s"].put_failures.calls, 0);
    assert!(drain_reports(&mut reports_rx).is_empty());
    let _rx = put(&mut p, "x", 10);
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    p.on_call_done(stream(), batch, CallResult::Ok(vec![throttled()]));
    assert_eq!(p.streams["s"].put_failures.calls, 0);
    assert_eq!(drain_reports(&mut reports_rx).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn records_linger_for_max_buffered_time_then_go_out_together() {
    let mut p = mapped(Config::default());
    let _rx: Vec<_> = (0..10).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
    assert!(p.collect(&stream(), Instant::now()).is_none());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(p.collect(&stream(), Instant::now()).is_none());
    assert_eq!(
        p.next_wake(Instant::now()),
        Some(Instant::now() + Duration::from_millis(1))
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let batch = p
        .collect(&stream(), Instant::now())
        .expect("linger is over");
    // Aggregated per predicted shard: one Kinesis record per shard.
    assert_eq!(batch.len(), 2);
    assert_eq!(batch.iter().map(|e| e.items.len()).sum::<usize>(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_full_aggregate_does_not_wait_but_a_partial_one_does() {
    let config = Config {
        aggregation_max_size: 1000,
        collection_max_count: 2,
        ..Config::default()
    };
    let mut p = mapped(config);
    // Two full aggregates' worth on the same key: enough for a full call.
    let _rx: Vec<_> = (0..20).map(|_| put(&mut p, "same", 100)).collect();
    let batch = p.collect(&stream(), Instant::now()).expect("full call");
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|e| e.data.len() <= 1000));
}

#[tokio::test(start_paused = true)]
async fn flush_sends_without_lingering() {
    let mut p = mapped(Config::default());
    let _rx = put(&mut p, "k", 10);
    assert!(p.collect(&stream(), Instant::now()).is_none());
    let (tx, mut done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    assert!(p.collect(&stream(), Instant::now()).is_some());
    assert!(done.try_recv().is_err(), "not settled yet");
}

#[tokio::test(start_paused = true)]
async fn records_expire_at_their_ttl_with_the_reason() {
    let config = Config {
        record_ttl: Duration::from_secs(5),
        per_key_ordering: true,
        ..Config::default()
    };
    let mut p = pipeline(config); // no shard map: ordered mode cannot send
    p.stream_state("s");
    p.streams.get_mut("s").unwrap().refreshing = true; // a load that never answers
    let mut rx = put(&mut p, "k", 10);
    tokio::time::advance(Duration::from_millis(4_999)).await;
    p.expire(Instant::now());
    assert!(rx.try_recv().is_err());
    assert_eq!(
        p.next_wake(Instant::now()),
        Some(Instant::now() + Duration::from_millis(1)),
        "woken for the expiry, not spinning on the unsendable queue"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    p.expire(Instant::now());
    let failed = rx.try_recv().unwrap().unwrap_err();
    assert_eq!(
        failed.reason,
        FailureReason::Expired {
            ttl: Duration::from_secs(5)
        }
    );
    assert_eq!(failed.record.unwrap().partition_key, "k");
    assert_eq!(p.outstanding(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_shard_backs_off_exponentially_and_keeps_its_order() {
    let config = Config {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(800),
        max_buffered_time: Duration::ZERO,
        ..Config::default()
    };
    let mut p = mapped(config);
    let _rx: Vec<_> = (0..3).map(|i| put(&mut p, "k", i + 1)).collect();
    let mut delays = Vec::new();
    for _ in 0..5 {
        let batch = p.collect(&stream(), Instant::now()).expect("sendable");
        p.in_flight_calls += 1;
        p.in_flight_calls -= 1;
        let failed = CallResult::Failed(CallError::retryable("InternalFailure", "boom"));
        let start = Instant::now();
        p.on_call_done(stream(), batch, failed);
        assert!(
            p.collect(&stream(), Instant::now()).is_none(),
            "backing off"
        );
        let wake = p.next_wake(Instant::now()).unwrap();
        delays.push(wake - start);
        tokio::time::advance(wake - start).await;
    }
    // Jittered exponential: each delay within [min * 2^n, 2 * min * 2^n], capped.
    for (n, d) in delays.iter().enumerate() {
        let base = Duration::from_millis(100) * 2u32.pow(n as u32);
        assert!(*d >= base.min(Duration::from_millis(800)), "{n}: {d:?}");
        assert!(
            *d <= (base * 2).min(Duration::from_millis(1600)),
            "{n}: {d:?}"
        );
    }
    // Retries keep put order within the shard.
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    let sizes: Vec<usize> = batch[0]
        .items
        .iter()
        .map(|i| i.record.data().len())
        .collect();
    assert_eq!(sizes, vec![1, 2, 3]);
    assert_eq!(batch[0].items[0].attempts.len(), 5);
    assert_eq!(batch[0].items[0].calls, 0, "calls are counted by launch");
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_backs_its_shards_off_one_step_whatever_its_size() {
    let config = Config {
        aggregation: false,
        max_buffered_time: Duration::ZERO,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..Config::default()
    };
    for throttled_records in [false, true] {
        let mut p = mapped(config.clone());
        let _rx: Vec<_> = (0..200)
            .map(|i| put(&mut p, &format!("k{i}"), 10))
            .collect();
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 200);
        let result = if throttled_records {
            let throttled = PutRecordsResultEntry::builder()
                .error_code("ProvisionedThroughputExceededException")
                .error_message("Rate exceeded for shard")
                .build();
            CallResult::Ok(vec![throttled; 200])
        } else {
            CallResult::Failed(CallError::retryable("InternalFailure", "boom"))
        };
        let start = Instant::now();
        p.on_call_done(stream(), batch, result);
        let wake = p.next_wake(start).unwrap();
        // The first step: min to 2 x min (jitter), for both shards.
        assert!(
            wake - start <= Duration::from_millis(200),
            "throttled records: {throttled_records}: {:?}",
            wake - start
        );
        for q in p.streams["s"].shards.values() {
            let until = q.backoff_until.expect("backing off");
            assert!(until - start <= Duration::from_millis(200));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_refused_as_too_large_or_invalid_is_split_not_failed() {
    let config = sent_at_once();
    let mut p = mapped(config);
    let mut rx: Vec<_> = (0..4).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
    for code in [REQUEST_TOO_LARGE, "ValidationException"] {
        let batch = p.collect(&stream(), Instant::now()).expect("due");
        assert_eq!(batch.len(), 4);
        let refused = CallResult::Failed(rejected(code, "no"));
        p.on_call_done(stream(), batch, refused);
        assert_eq!(p.in_flight_calls, 2, "{code}: split into two calls");
        assert!(
            rx.iter_mut().all(|r| r.try_recv().is_err()),
            "nothing failed"
        );
        // The halves come back (the endpoint is unreachable): put them back in line.
        let mut back = Vec::new();
        for _ in 0..2 {
            match p.events.recv().await {
                Some(Event::CallDone { entries, .. }) => back.extend(entries),
                other => panic!("{other:?}"),
            }
        }
        p.in_flight_calls = 0;
        let items: Vec<_> = back
            .into_iter()
            .flat_map(|e| {
                let key = e.predicted.clone();
                e.items.into_iter().map(move |i| (key.clone(), i))
            })
            .collect();
        for (key, _) in &items {
            p.streams
                .get_mut("s")
                .unwrap()
                .shards
                .get_mut(key)
                .unwrap()
                .in_flight = 0;
        }
        p.requeue(&stream(), items);
    }
    // A call of one record the server refuses fails that record, with the reason.
    let mut batch = p.collect(&stream(), Instant::now()).unwrap();
    batch.truncate(1);
    p.on_call_done(
        stream(),
        batch,
        CallResult::Failed(rejected("ValidationException", "bad key")),
    );
    let failed: Vec<_> = rx.iter_mut().filter_map(|r| r.try_recv().ok()).collect();
    assert_eq!(failed.len(), 1);
    assert!(matches!(
        &failed[0].as_ref().unwrap_err().reason,
        FailureReason::Rejected { code, .. } if code == "ValidationException"
    ));
}

#[tokio::test(start_paused = true)]
async fn throttled_records_retry_or_fail_at_once_as_configured() {
    for fail_if_throttled in [false, true] {
        let config = Config {
            aggregation: false,
            fail_if_throttled,
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut p = mapped(config);
        let mut rx = put(&mut p, "k", 10);
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        let throttled = PutRecordsResultEntry::builder()
            .error_code("ProvisionedThroughputExceededException")
            .error_message("Rate exceeded for shard")
            .build();
        p.on_call_done(stream(), batch, CallResult::Ok(vec![throttled]));
        assert_eq!(
            p.stats.throttles.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        if fail_if_throttled {
            let failed = rx.try_recv().unwrap().unwrap_err();
            assert_eq!(failed.reason, FailureReason::Throttled);
            assert!(failed.reason.is_throttling());
            assert!(failed.attempts[0].throttled);
        } else {
            assert!(rx.try_recv().is_err(), "waiting for its retry");
            assert_eq!(p.outstanding(), 1);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_shard_map_records_wait_their_linger_to_be_aggregated() {
    let mut p = pipeline(Config::default());
    p.stream_state("s");
    // Far more than a full call, but no shard map yet: keep waiting for it.
    let _rx: Vec<_> = (0..2_000)
        .map(|i| put(&mut p, &format!("k{i}"), 10))
        .collect();
    assert!(p.collect(&stream(), Instant::now()).is_none());
    // The map arrives: the records are aggregated per shard.
    p.on_shard_map(stream(), Ok(two_shards()));
    tokio::time::advance(Duration::from_millis(100)).await;
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert!(
        batch.len() <= 4,
        "aggregated: {} Kinesis records",
        batch.len()
    );
    // With no map at all, the linger sends them raw (Kinesis routes each).
    let mut p = pipeline(Config::default());
    p.stream_state("s");
    let _rx: Vec<_> = (0..10).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
    tokio::time::advance(Duration::from_millis(100)).await;
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 10);
    assert!(batch
        .iter()
        .all(|e| e.predicted.is_none() && e.items.len() == 1));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_holds_back_a_hot_shard_only() {
    let config = Config {
        aggregation: false,
        rate_limit_percent: 1, // 10 records/s per shard
        max_buffered_time: Duration::ZERO,
        ..Config::default()
    };
    let mut p = mapped(config);
    let map = two_shards();
    // Find keys for each shard.
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    let lo: Vec<&String> = keys
        .iter()
        .filter(|k| map.predict(HashKey::from_partition_key(k)).map(|s| &**s) == Some("shard-lo"))
        .take(30)
        .collect();
    let hi = keys
        .iter()
        .find(|k| map.predict(HashKey::from_partition_key(k)).map(|s| &**s) == Some("shard-hi"))
        .unwrap();
    let _rx: Vec<_> = lo.iter().map(|k| put(&mut p, k, 10)).collect();
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 10, "one second's worth of the hot shard");
    let _rx2 = put(&mut p, hi, 10);
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 1, "the other shard is not held back");
    assert_eq!(batch[0].predicted.as_deref(), Some("shard-hi"));
    assert!(p.collect(&stream(), Instant::now()).is_none());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(p.collect(&stream(), Instant::now()).unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn ordered_mode_keeps_one_record_per_shard_in_flight() {
    let config = Config {
        aggregation: false,
        per_key_ordering: true,
        max_buffered_time: Duration::ZERO,
        ..Config::default()
    };
    let mut p = mapped(config);
    let _rx: Vec<_> = (0..50).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 2, "one per shard");
    assert!(
        p.collect(&stream(), Instant::now()).is_none(),
        "both shards busy"
    );
    let results = all_ok_at(&batch, "1");
    p.on_call_done(stream(), batch, CallResult::Ok(results));
    assert_eq!(p.collect(&stream(), Instant::now()).unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_aggregate_in_a_shard_not_owning_all_its_records_is_resent_whole() {
    let mut p = mapped(Config::default());
    // Two keys of different shards forced into one aggregate through a stale map
    // that has a single shard.
    p.on_shard_map(stream(), Ok(one_shard()));
    let (lo, hi) = &keys_of_both_halves();
    let mut first = put(&mut p, lo, 10);
    let mut second = put(&mut p, hi, 10);
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].items.len(), 2);
    // Sent under the fixed key, routed by the first record's hash key.
    assert_eq!(batch[0].partition_key(), WHOLE_RESEND_PARTITION_KEY);
    assert_eq!(
        batch[0].explicit_hash_key,
        Some(HashKey::from_partition_key(lo))
    );
    // Kinesis split the stream meanwhile: the aggregate lands in shard-lo, which now
    // owns only the lower half.
    p.streams.get_mut("s").unwrap().map = Some(Arc::new(two_shards()));
    let ok = PutRecordsResultEntry::builder()
        .shard_id("shard-lo")
        .sequence_number("7")
        .build();
    p.on_call_done(stream(), batch, CallResult::Ok(vec![ok]));
    // Neither is delivered there: a Java KCL reader discards the whole aggregate.
    assert!(first.try_recv().is_err() && second.try_recv().is_err());
    assert_eq!(
        p.stats
            .wrong_shard_resends
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // After the map reload both are queued again, each for its own shard.
    p.on_shard_map(stream(), Ok(two_shards()));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    let mut sent: Vec<_> = batch
        .iter()
        .map(|e| (e.predicted.as_deref().unwrap(), e.items.len()))
        .collect();
    sent.sort();
    assert_eq!(sent, vec![("shard-hi", 1), ("shard-lo", 1)]);
    for e in &batch {
        assert_eq!(e.items[0].attempts[0].code, WRONG_SHARD);
        assert!(e.items[0].attempts[0].message.contains("shard-lo"));
    }
    let results = all_ok_at(&batch, "8");
    p.on_call_done(stream(), batch, CallResult::Ok(results));
    // (Calls are counted at launch, which this test does not do.)
    let d = first.try_recv().unwrap().unwrap();
    assert_eq!((&*d.shard_id, d.sub_sequence_number), ("shard-lo", 0));
    let d = second.try_recv().unwrap().unwrap();
    assert_eq!((&*d.shard_id, d.sub_sequence_number), ("shard-hi", 0));
}

/// Found by the demo and the chaos suite: in ordered mode, a newer record of a key
/// whose older record waits for its re-send must not go out first.
#[tokio::test(start_paused = true)]
async fn ordered_mode_sends_nothing_of_the_stream_while_records_wait_for_a_resend() {
    let mut p = mapped(Config {
        per_key_ordering: true,
        ..Config::default()
    });
    p.on_shard_map(stream(), Ok(one_shard()));
    let (lo, hi) = &keys_of_both_halves();
    let _first = put(&mut p, lo, 10);
    let mut second = put(&mut p, hi, 10);
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch[0].items.len(), 2, "one aggregate of both keys");
    p.streams.get_mut("s").unwrap().map = Some(Arc::new(two_shards()));
    let ok = PutRecordsResultEntry::builder()
        .shard_id("shard-lo")
        .sequence_number("7")
        .build();
    p.on_call_done(stream(), batch, CallResult::Ok(vec![ok]));
    // Both wait for their re-send. A newer record of `hi` must wait too: sent now, it
    // would land in shard-hi before `second`.
    let mut third = put(&mut p, hi, 10);
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    assert!(
        p.collect(&stream(), Instant::now()).is_none(),
        "nothing of the stream goes out before the re-sends"
    );
    // The map reload queues the re-sends back in line, before `third`.
    p.on_shard_map(stream(), Ok(two_shards()));
    let mut order = Vec::new();
    while order.len() < 3 {
        let batch = p
            .collect(&stream(), Instant::now())
            .expect("records to send");
        let mut results = Vec::new();
        for e in &batch {
            if e.predicted.as_deref() == Some("shard-hi") {
                order.extend(e.items.iter().map(|i| i.attempts.len()));
            } else {
                order.push(usize::MAX); // shard-lo's re-send
            }
            results.push(
                PutRecordsResultEntry::builder()
                    .shard_id(e.predicted.as_deref().unwrap())
                    .sequence_number(format!("{}", 8 + order.len()))
                    .build(),
            );
        }
        p.on_call_done(stream(), batch, CallResult::Ok(results));
    }
    let hi_order: Vec<usize> = order.into_iter().filter(|a| *a != usize::MAX).collect();
    assert_eq!(
        hi_order,
        [1, 0],
        "the re-sent record (one attempt) before the newer one"
    );
    let (s, t) = (
        second.try_recv().unwrap().unwrap(),
        third.try_recv().unwrap().unwrap(),
    );
    assert_eq!(&*s.shard_id, "shard-hi");
    assert!(
        (
            s.sequence_number.parse::<u64>().unwrap(),
            s.sub_sequence_number
        ) < (
            t.sequence_number.parse::<u64>().unwrap(),
            t.sub_sequence_number
        ),
        "{s:?} before {t:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_record_keeps_its_own_key_and_an_aggregate_in_its_shard_is_delivered() {
    let mut p = mapped(Config::default());
    let (lo, _) = &keys_of_both_halves();
    let mut alone = put(&mut p, lo, 10);
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch[0].partition_key(), lo.as_str());
    assert_eq!(batch[0].explicit_hash_key, None);
    // Landing in another shard than predicted, Kinesis routed it by its own key: it
    // is where it belongs.
    let landed = |shard: &str| {
        PutRecordsResultEntry::builder()
            .shard_id(shard)
            .sequence_number("3")
            .build()
    };
    p.on_call_done(stream(), batch, CallResult::Ok(vec![landed("shard-new")]));
    let d = alone.try_recv().unwrap().unwrap();
    assert_eq!(
        (&*d.shard_id, d.sub_sequence_number, d.aggregated),
        ("shard-new", 0, false)
    );
    // An aggregate whose records its shard owns: each at its position.
    let mut rx: Vec<_> = (0..3).map(|_| put(&mut p, lo, 10)).collect();
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 1);
    p.on_call_done(stream(), batch, CallResult::Ok(vec![landed("shard-lo")]));
    for (sub, r) in rx.iter_mut().enumerate() {
        let d = r.try_recv().unwrap().unwrap();
        assert_eq!((d.sub_sequence_number, d.aggregated), (sub as u64, true));
    }
    assert_eq!(
        p.stats
            .wrong_shard_resends
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn records_held_outside_the_queues_settle_at_their_ttl_without_a_new_map() {
    let mut p = mapped(Config::default());
    let (lo, hi) = &keys_of_both_halves();
    // One aggregate lands in a shard the map does not know (unverified), another in
    // shard-lo although one of its keys is shard-hi's (both records parked for a
    // re-send). The map is then never loaded again.
    let mut first = put(&mut p, lo, 10);
    let mut unknown = put(&mut p, lo, 10);
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    let landed = |shard: &str, seq: &str| {
        PutRecordsResultEntry::builder()
            .shard_id(shard)
            .sequence_number(seq)
            .build()
    };
    p.on_call_done(
        stream(),
        batch,
        CallResult::Ok(vec![landed("shard-new", "8")]),
    );
    // A stale one-shard map packs keys of both halves into one aggregate; it lands in
    // shard-lo, which (by the current map) does not own the second.
    p.streams.get_mut("s").unwrap().map = Some(Arc::new(one_shard()));
    let mut first_lo = put(&mut p, lo, 10);
    let mut misrouted = put(&mut p, hi, 10);
    let (tx, _done) = oneshot::channel();
    p.on_command(Command::Flush(tx));
    let batch = p.collect(&stream(), Instant::now()).unwrap();
    assert_eq!(batch.len(), 1);
    p.streams.get_mut("s").unwrap().map = Some(Arc::new(two_shards()));
    p.on_call_done(
        stream(),
        batch,
        CallResult::Ok(vec![landed("shard-lo", "9")]),
    );
    for rx in [&mut first, &mut unknown, &mut first_lo, &mut misrouted] {
        assert!(
            rx.try_recv().is_err(),
            "held: the whole aggregate is in doubt"
        );
    }
    let ttl = p.config.record_ttl;
    let wake = p
        .next_wake(Instant::now())
        .expect("a wake-up for the held records");
    assert!(
        wake <= Instant::now() + ttl,
        "woken by their TTL at the latest"
    );
    p.expire(Instant::now() + ttl + Duration::from_millis(1));
    for (sub, rx) in [&mut first, &mut unknown].into_iter().enumerate() {
        let d = rx.try_recv().unwrap().expect("in the stream: delivered");
        assert_eq!(
            (&*d.shard_id, &*d.sequence_number, d.sub_sequence_number),
            ("shard-new", "8", sub as u64)
        );
    }
    for rx in [&mut first_lo, &mut misrouted] {
        let f = rx.try_recv().unwrap().expect_err("never re-sent: failed");
        assert_eq!(f.reason, FailureReason::Expired { ttl });
        assert_eq!(f.last_attempt().map(|a| a.code.as_str()), Some(WRONG_SHARD));
    }
}

#[tokio::test(start_paused = true)]
async fn a_shard_only_throttled_waits_at_most_the_throttle_cap_other_failures_back_off_further() {
    for (code, throttle) in [
        ("ProvisionedThroughputExceededException", true),
        ("InternalFailure", false),
    ] {
        let config = sent_at_once();
        let mut p = mapped(config);
        let _rx = put(&mut p, "k", 10);
        let mut longest = Duration::ZERO;
        for _ in 0..8 {
            let batch = p.collect(&stream(), Instant::now()).expect("due");
            let key = batch[0].predicted.clone();
            let refused = PutRecordsResultEntry::builder()
                .error_code(code)
                .error_message("refused")
                .build();
            p.on_call_done(stream(), batch, CallResult::Ok(vec![refused]));
            let until = p.streams[&stream()].shards[&key]
                .backoff_until
                .expect("backing off");
            let wait = until - Instant::now();
            longest = longest.max(wait);
            tokio::time::advance(wait).await;
        }
        if throttle {
            assert!(longest <= THROTTLE_MAX_BACKOFF, "{code}: {longest:?}");
        } else {
            // 50 ms doubling (jittered) over 8 failures: far past the throttle cap.
            assert!(longest > THROTTLE_MAX_BACKOFF * 2, "{code}: {longest:?}");
        }
    }
}
