//! Throughput balancing end to end, against the local stack: two workers on four shards,
//! one shard carrying 80 % of the records. Balanced by count first (nothing measured),
//! the workers then move to the throughput-balanced state, the hot shard's holder holding
//! it alone, stay there, and lose no record.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use integration_tests::traffic::Traffic;
use kinesis_consumer::Balancing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_ends_alone_on_its_worker_and_nothing_is_lost() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-balance", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-balance-app");
    let kinesis = stack.kinesis_client();
    let shards = list_shards(&kinesis, &stream).await;
    assert_eq!(shards.len(), 4);
    let hot = shards[0].shard_id().to_owned();

    let rec = Recorder::default();
    let failover = Duration::from_secs(1);
    let worker = |id: &str| {
        scheduler_builder(&stack, &app, &stream, id, &rec, failover)
            .with_balancing(Balancing::throughput())
            .build()
            .unwrap()
    };
    let (a, b) = (worker("a"), worker("b"));
    let runs = [spawn_run(&a), spawn_run(&b)];
    wait_until("two leases each (nothing measured: by count)", || {
        a.coordinator().held_lease_keys().len() == 2 && b.coordinator().held_lease_keys().len() == 2
    })
    .await;

    // The producer: 80 % of the records to the hot shard (about 117 KB/s against 10 KB/s
    // each), every 100 ms until stopped (each routed to its shard by the shard's starting
    // hash key).
    let traffic = Traffic::hot_shard(&kinesis, &stream, &shards, &hot);

    let hot_alone = || {
        let (ka, kb) = (
            a.coordinator().held_lease_keys(),
            b.coordinator().held_lease_keys(),
        );
        let (holder, other) = if ka.contains(&hot) {
            (ka, kb)
        } else {
            (kb, ka)
        };
        holder == vec![hot.clone()] && other.len() == 3
    };
    wait_until(
        "the hot shard alone on its worker, the other three on the other",
        hot_alone,
    )
    .await;
    let settled = (
        a.coordinator().held_lease_keys(),
        b.coordinator().held_lease_keys(),
    );
    // Stable: three more taker rounds (2.05 s each at a 1 s failover) move nothing.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        (
            a.coordinator().held_lease_keys(),
            b.coordinator().held_lease_keys()
        ),
        settled,
        "leases moved after balancing settled"
    );
    // The measured figures are on the leases, the hot one far above the others.
    let leases = leases(&stack, &app).await;
    let kbps = |key: &str| leases[key].throughput.map(|t| t.kbps()).unwrap_or(0.0);
    for (shard, _) in leases.iter().filter(|(k, _)| **k != hot) {
        assert!(
            kbps(&hot) > 4.0 * kbps(shard),
            "{hot}: {} against {shard}: {}",
            kbps(&hot),
            kbps(shard)
        );
    }

    let want: HashSet<String> = traffic.stop().await.into_iter().collect();
    wait_until("every record", || {
        let seen: HashSet<String> = rec
            .seen()
            .iter()
            .map(|s| String::from_utf8_lossy(&s.data).into_owned())
            .collect();
        want.is_subset(&seen)
    })
    .await;
    a.graceful_shutdown().await;
    b.graceful_shutdown().await;
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert!(want.len() > 1_000, "{} records sent", want.len());
}
