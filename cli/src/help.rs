//! The text shown after the options in each subcommand's `--help`: examples, then the exit
//! statuses that subcommand can end with.
//!
//! ```text
//!  #[command(after_help = help::TAIL)] ─▶ kinesis-cat tail --help ─▶ options, "Examples:", "Exit status:"
//! ```
//!
//! Every subcommand has both sections (a unit test walks the whole command tree). The
//! statuses are those of [`crate::error`]: 0 done, 1 failed, 2 bad command line, 3 not
//! found, 4 configuration or access, 5 unreachable, 130 interrupted.

/// `kinesis-cat` itself.
pub const TOP: &str = "\
Examples:
  kinesis-cat local                                   # emulators on 127.0.0.1:4567 and :8000
  kinesis-cat stream create -s demo --shards 4
  seq 1 1000 | kinesis-cat produce -s demo
  kinesis-cat tail -s demo --from trim-horizon -e     # everything there is, then exit
  kinesis-cat consume -s demo -a demo-app -f '%p %o %s\\n'
  kinesis-cat --endpoint-url http://127.0.0.1:4566 stream list

AWS configuration: the standard chain (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...), with
--region, --profile and --endpoint-url over it; AWS_ENDPOINT_URL_KINESIS /
AWS_ENDPOINT_URL_DYNAMODB point each service elsewhere, such as the emulators `kinesis-cat
local` starts. Logs: RUST_LOG or -v/-vv/-vvv, on standard error.

Ctrl-C or SIGTERM stops gracefully (produce flushes, consume and multilang hand their leases
over); a second one exits at once with status 130.

Exit status:
  0    done (also after a graceful stop, or when the reader of standard output goes away)
  1    failed
  2    bad command line
  3    stream, shard, stream consumer or table not found
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted (a second signal, or the first while a `stream` command waits)";

/// `local`.
pub const LOCAL: &str = "\
Examples:
  kinesis-cat local                                   # Kinesis on :4567, DynamoDB on :8000
  kinesis-cat local --kinesis-port 0 --dynamodb-port 0
  kinesis-cat local --backend fidelity                # kinesis-local + dynalite from npm
  eval \"$(kinesis-cat local | head -3)\"               # (in another shell) the exports

Exit status:
  0    stopped by Ctrl-C or SIGTERM
  1    the emulators could not start (a port in use, npm missing for --backend fidelity)
  2    bad command line";

/// `stream`.
pub const STREAM: &str = "\
Examples:
  kinesis-cat stream create -s demo --shards 4
  kinesis-cat stream create -s events --on-demand
  kinesis-cat stream describe -s demo
  kinesis-cat stream update-shard-count -s demo --target 8
  kinesis-cat stream update-mode -s demo --mode on-demand
  kinesis-cat stream consumers list -s demo

Exit status:
  0    done
  1    a call was refused (e.g. a closed shard named for resharding) or a wait timed out
  2    bad command line
  3    the stream, shard or stream consumer does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the operation already sent goes ahead)";

/// `stream create`.
pub const STREAM_CREATE: &str = "\
Examples:
  kinesis-cat stream create -s demo                   # 1 shard, provisioned
  kinesis-cat stream create -s demo --shards 4
  kinesis-cat stream create -s events --on-demand     # capacity managed by Kinesis

Exit status:
  0    created and ACTIVE
  1    refused (e.g. ResourceInUseException: the stream exists) or not ACTIVE in --wait-secs
  2    bad command line
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the stream is still created)";

/// `stream describe`.
pub const STREAM_DESCRIBE: &str = "\
Examples:
  kinesis-cat stream describe -s demo
  kinesis-cat stream describe -s demo | awk '$2 == \"open\"'     # the open shards

Exit status:
  0    described
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable";

/// `stream list`.
pub const STREAM_LIST: &str = "\
Examples:
  kinesis-cat stream list
  kinesis-cat stream list | grep '^orders-'

Exit status:
  0    listed (nothing printed when there is no stream)
  4    no region, no credentials or access denied
  5    endpoint unreachable";

/// `stream split`.
pub const STREAM_SPLIT: &str = "\
Examples:
  kinesis-cat stream split -s demo --shard shardId-000000000000
  kinesis-cat stream split -s demo --shard shardId-000000000000 \\
      --at 85070591730234615865843651857942052864

Exit status:
  0    split and ACTIVE again
  1    refused (a closed shard, a busy stream) or not ACTIVE in --wait-secs
  2    bad command line
  3    the stream or shard does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the split goes ahead)";

/// `stream merge`.
pub const STREAM_MERGE: &str = "\
Examples:
  kinesis-cat stream merge -s demo --shard shardId-000000000002 --adjacent shardId-000000000003

Exit status:
  0    merged and ACTIVE again
  1    refused (closed or not adjacent shards, a busy stream) or not ACTIVE in --wait-secs
  2    bad command line
  3    the stream or a shard does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the merge goes ahead)";

/// `stream update-shard-count`.
pub const STREAM_UPDATE_SHARD_COUNT: &str = "\
Examples:
  kinesis-cat stream update-shard-count -s demo --target 8     # double 4 shards
  kinesis-cat stream update-shard-count -s demo --target 2 --wait-secs 900

Exit status:
  0    resharded and ACTIVE again
  1    refused (more than double or less than half the open shards, too many updates in
       24 h, an on-demand stream) or not ACTIVE in --wait-secs
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the update goes ahead)";

/// `stream update-mode`.
pub const STREAM_UPDATE_MODE: &str = "\
Examples:
  kinesis-cat stream update-mode -s demo --mode on-demand
  kinesis-cat stream update-mode -s demo --mode provisioned

Exit status:
  0    switched and ACTIVE again
  1    refused (e.g. more than two switches in 24 h) or not ACTIVE in --wait-secs
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the switch goes ahead)";

/// `stream delete`.
pub const STREAM_DELETE: &str = "\
Examples:
  kinesis-cat stream delete -s demo
  kinesis-cat stream delete -s demo --force           # also its fan-out consumers

Exit status:
  0    deletion started
  1    refused (e.g. registered consumers without --force)
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable";

/// `stream consumers`.
pub const CONSUMERS: &str = "\
Examples:
  kinesis-cat stream consumers register -s demo billing
  kinesis-cat stream consumers list -s demo
  kinesis-cat stream consumers deregister -s demo billing --wait

Exit status:
  0    done
  1    a call was refused or a wait ran out (--wait-secs)
  2    bad command line
  3    the stream or stream consumer does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting";

/// `stream consumers list`.
pub const CONSUMERS_LIST: &str = "\
Examples:
  kinesis-cat stream consumers list -s demo
  kinesis-cat stream consumers list -s demo | cut -f1,2          # names and statuses

Exit status:
  0    listed (nothing printed when none is registered)
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable";

/// `stream consumers register`.
pub const CONSUMERS_REGISTER: &str = "\
Examples:
  kinesis-cat stream consumers register -s demo billing          # prints the ARN
  ARN=$(kinesis-cat stream consumers register -s demo billing --wait-secs 60)

Exit status:
  0    registered (or already registered) and ACTIVE
  1    refused (e.g. 20 consumers already) or not ACTIVE in --wait-secs
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the registration goes ahead)";

/// `stream consumers deregister`.
pub const CONSUMERS_DEREGISTER: &str = "\
Examples:
  kinesis-cat stream consumers deregister -s demo billing
  kinesis-cat stream consumers deregister -s demo billing --wait

Exit status:
  0    deregistered (with --wait: gone)
  1    refused, or still there after --wait-secs
  2    bad command line
  3    the stream or the stream consumer does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  interrupted while waiting (the deregistration goes ahead)";

/// `produce`.
pub const PRODUCE: &str = "\
Examples:
  seq 1 100000 | kinesis-cat produce -s demo
  tail -F app.log | kinesis-cat produce -s logs -k web-1          # one key: ordered per shard
  kinesis-cat tail -s demo --from trim-horizon -e | kinesis-cat produce -s copy -i json
  kinesis-cat produce -s demo --metrics-addr 127.0.0.1:9464 < big.txt

Input (-i json): one object per line with \"partition_key\", \"data\" (UTF-8) or \"data_b64\"
(both: they must agree) and, optionally, \"explicit_hash_key\". The other fields that
consume and tail write (stream, shard_id, sequence_number, approximate_arrival_timestamp,
...) are accepted and ignored, so their output is input as it is; any other field is a
bad line.

Exit status:
  0    every line delivered
  1    some lines not delivered (bad lines, failed records; summarised on standard error)
  2    bad command line
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  a second Ctrl-C / SIGTERM";

/// `consume`.
pub const CONSUME: &str = "\
Examples:
  kinesis-cat consume -s demo -a demo-app                         # a worker; start several
  kinesis-cat consume -s demo -a demo-app --since 10m -o raw
  kinesis-cat consume -s demo -a demo-app -f '%T %p %o %k %s\\n'
  kinesis-cat consume -s demo -a demo-app --efo --batch-size 100 --batch-window 500ms
  kinesis-cat consume -s demo -a demo-app --exit-when-idle 5 --metrics-addr 127.0.0.1:9464
  kinesis-cat consume -s demo -a demo-app --balancing throughput  # every worker the same
  kinesis-cat consume -a multi-app --streams-file streams.txt --stream-tracker-interval 10s

A streams file lists one stream (name or ARN) per line, optionally with its start position
(`payments  latest`), # comments; it is read again at every poll, so that streams are added
and removed by editing it (replace it atomically: write another file, rename it over).

At the end a summary goes to standard error (records, shards, time, rate); on a terminal a
progress line too.

Exit status:
  0    stopped gracefully (Ctrl-C, SIGTERM, --exit-when-idle) or the reader of standard
       output went away
  1    failed (the lease table could not be used, a fan-out consumer not registered)
  2    bad command line, or a --streams-file that cannot be read or has a bad line
       (file:line: what is wrong)
  3    the stream does not exist (a stream of the file's first list, at start)
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  a second Ctrl-C / SIGTERM";

/// `tail`.
pub const TAIL: &str = "\
Examples:
  kinesis-cat tail -s demo                                        # new records, like tail -f
  kinesis-cat tail -s demo --from trim-horizon -e                 # everything, then exit
  kinesis-cat tail -s demo --since 5m -c 10                       # 10 records of the last 5 min
  kinesis-cat tail -s demo -f '%p\\t%o\\t%k\\t%S\\n'                   # shard, seq, key, size
  kinesis-cat tail -s demo --shard shardId-000000000001 --from at-sequence:4959...

Exit status:
  0    done: --exit-at-end or --count reached, --exit-when-idle, Ctrl-C / SIGTERM, or the
       reader of standard output went away
  2    bad command line
  3    the stream (or a --shard) does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable for --give-up-after-secs
  130  a second Ctrl-C / SIGTERM";

/// `leases`.
pub const LEASES: &str = "\
Examples:
  kinesis-cat leases -a demo-app
  kinesis-cat leases -a demo-app -s demo                          # with shard state and lag
  kinesis-cat leases -a demo-app -s demo --watch                  # every 2 s

Graceful handoffs:
  While a lease is being handed from one live worker to another (the Java KCL 3.x
  checkpointOwner: the owner column already shows the next owner, the previous one is
  still finishing), a last column \"handoff\" says \"from <previous owner>\" on that lease,
  and the workers table counts per worker the leases it is \"handing off\". Both columns
  appear only while a handoff is pending.

Exit status:
  0    shown (with --watch: stopped by Ctrl-C)
  2    bad command line
  3    the lease table or the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable";

/// `multilang`.
pub const MULTILANG: &str = "\
Examples:
  kinesis-cat multilang --properties app.properties
  PYTHONPATH=amazon_kclpy-3.2.0 kinesis-cat multilang --properties sample.properties

Exit status:
  0    stopped gracefully (Ctrl-C, SIGTERM)
  1    failed (the lease table could not be used)
  2    bad command line or a bad properties file (file:line: key = value: what is accepted)
  3    the stream does not exist
  4    no region, no credentials or access denied
  5    endpoint unreachable
  130  a second Ctrl-C / SIGTERM";
