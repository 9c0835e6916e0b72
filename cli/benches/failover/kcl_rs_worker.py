"""The kcl-rs side of the failover benchmark (cli/benches/failover.rs).

Runs one ``kcl_rs.Scheduler`` worker on a stream for an application, under a worker id,
and prints one JSON line per record, with its shard, as ``kinesis-cat consume --output
json`` does (only the fields the bench reads):

    {"shard_id": "shardId-000000000003", "sequence_number": "4963..."}

Each batch is flushed, then checkpointed. Settings: ``TRIM_HORIZON``, ``POLLING`` with
``idle_time_between_reads_millis=200`` (``kinesis-cat consume``'s polling pause), and
``shard_sync_interval_millis=5000`` so that the worker starts in about 20 s instead of
waiting up to a minute for its first shard sync; the lease settings (failover time 10 s,
lease assignment) are kcl-rs's defaults. The worker shuts down gracefully on SIGTERM or
when stdin closes (the bench went away). Endpoints, region and credentials come from the
environment (``AWS_ENDPOINT_URL_KINESIS``, ``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``).

Usage: python kcl_rs_worker.py STREAM APPLICATION WORKER_ID
"""

import json
import os
import signal
import sys
import threading

import kcl_rs

# Callbacks for different shards run on different native threads: one batch at a time.
_OUT_LOCK = threading.Lock()


class PrintingProcessor(kcl_rs.RecordProcessorBase):
    """Prints one line per record with its shard, then checkpoints the batch."""

    def __init__(self):
        self.shard_id = None

    def initialize(self, initialize_input):
        self.shard_id = initialize_input.shard_id

    def process_records(self, process_records_input):
        records = process_records_input.records
        if records:
            lines = "".join(
                json.dumps({"shard_id": self.shard_id, "sequence_number": r.sequence_number})
                + "\n"
                for r in records
            )
            with _OUT_LOCK:
                sys.stdout.write(lines)
                sys.stdout.flush()
        try:
            process_records_input.checkpointer.checkpoint()
        except kcl_rs.CheckpointError as e:
            print("checkpoint of %s failed: %s" % (self.shard_id, e.value), file=sys.stderr)

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        try:
            shutdown_requested_input.checkpointer.checkpoint()
        except kcl_rs.CheckpointError as e:
            print("checkpoint at shutdown failed: %s" % e.value, file=sys.stderr)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    stream, application, worker_id = sys.argv[1:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin():
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader makes
        # the interpreter abort at exit.
        while os.read(0, 4096):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    scheduler = kcl_rs.Scheduler(
        stream_name=stream,
        application_name=application,
        record_processor_factory=PrintingProcessor,
        worker_identifier=worker_id,
        region=os.environ.get("AWS_REGION", "us-east-1"),
        initial_position="TRIM_HORIZON",
        retrieval_mode="POLLING",
        idle_time_between_reads_millis=200,
        shard_sync_interval_millis=5000,
    )
    scheduler.start()
    # A timed wait keeps the main thread running Python code, so the SIGTERM handler runs.
    while not stop.wait(0.2):
        pass
    scheduler.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
