"""The kcl-rs side of the consumer latency benchmark (kcl/benches/latency.rs).

Runs one ``kcl_rs.Scheduler`` worker (TRIM_HORIZON, every other setting at kcl-rs's
default) on the stream named by ``LATENCY_BENCH_STREAM`` for the application
``LATENCY_BENCH_APP``, and reports each ``process_records`` call on stdout as one line,
the same line the bench's own consumer writes:

    B <process ns> <seq>:<send ns> <seq>:<send ns> ...

``<process ns>`` is ``time.time_ns()`` on entering ``process_records``; every record's
data starts with ``b"<send ns> <seq> "`` (written by the bench's producer). Each batch is
checkpointed after it is reported. The worker shuts down gracefully on SIGTERM or when
stdin closes (the bench went away). Endpoints, region and credentials come from the
environment (``AWS_ENDPOINT_URL_KINESIS``, ``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), as for any AWS SDK application.

Usage: python kcl_rs_latency.py POLLING|FANOUT
"""

import os
import signal
import sys
import threading
import time

import kcl_rs

# Callbacks for different shards run on different native threads: one line at a time.
_OUT_LOCK = threading.Lock()


def _emit(line: bytes) -> None:
    with _OUT_LOCK:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


class LatencyProcessor(kcl_rs.RecordProcessorBase):
    """Reports every batch's process time and its records' send times, then checkpoints."""

    def initialize(self, initialize_input):
        pass

    def process_records(self, process_records_input):
        now = time.time_ns()
        records = process_records_input.records
        if records:
            parts = [b"B %d" % now]
            for record in records:
                fields = record.data.split(b" ", 2)
                if len(fields) < 3:
                    print("record without a send time: %r" % record.data[:40], file=sys.stderr)
                    continue
                parts.append(fields[1] + b":" + fields[0])
            _emit(b" ".join(parts) + b"\n")
        try:
            process_records_input.checkpointer.checkpoint()
        except kcl_rs.CheckpointError as e:
            print("checkpoint failed: %s" % e.value, file=sys.stderr)

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
    if len(sys.argv) != 2 or sys.argv[1] not in ("POLLING", "FANOUT"):
        print(__doc__, file=sys.stderr)
        return 2
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
        stream_name=os.environ["LATENCY_BENCH_STREAM"],
        application_name=os.environ["LATENCY_BENCH_APP"],
        record_processor_factory=LatencyProcessor,
        worker_identifier="latency-bench-%d" % os.getpid(),
        region=os.environ.get("AWS_REGION", "us-east-1"),
        initial_position="TRIM_HORIZON",
        retrieval_mode=sys.argv[1],
    )
    scheduler.start()
    # A timed wait keeps the main thread running Python code, so the SIGTERM handler runs.
    while not stop.wait(0.2):
        pass
    scheduler.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
