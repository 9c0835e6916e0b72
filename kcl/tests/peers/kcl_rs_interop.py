"""The kcl-rs side of the interop test (kcl/tests/kcl_rs_interop.rs).

Runs one ``kcl_rs.Scheduler`` worker (polling every 200 ms, TRIM_HORIZON for shards
without a checkpoint) as application APP on STREAM. Every ``process_records`` call
writes each record's data to OUTPUT, one line per record, flushed, then checkpoints
(at the last record of the batch). Once it has processed EXPECTED distinct records, or
on SIGTERM, or when stdin closes (the test went away), it calls ``Scheduler.shutdown()``
(kcl-rs 0.1.4 then ends each processor with ``lease_lost``, not ``shutdown_requested``,
and leaves ``leaseOwner`` set). Lifecycle events go to stderr, with seconds since start.
The first shard sync of kcl-rs completes only after one shard-sync interval: it is set to
2 s here (default 60 s). Endpoints, region and credentials come from the environment
(``AWS_ENDPOINT_URL_KINESIS``, ``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), as for any AWS SDK application.

Exit status: 0 after a graceful shutdown; 1 if a checkpoint failed.

Usage: python kcl_rs_interop.py STREAM APP WORKER OUTPUT EXPECTED
"""

import os
import signal
import sys
import threading
import time

import kcl_rs

# Callbacks for different shards run on different native threads.
_LOCK = threading.Lock()
_SEEN = set()
_FAILED = []
_STOP = threading.Event()
_OUT = None
_EXPECTED = 0
_T0 = time.monotonic()
SHARD_SYNC_MILLIS = 2000


def _log(message: str) -> None:
    elapsed = time.monotonic() - _T0
    print("kcl-rs interop %7.3fs: %s" % (elapsed, message), file=sys.stderr, flush=True)


class InteropProcessor(kcl_rs.RecordProcessorBase):
    """Writes every record's data, then checkpoints the batch."""

    def __init__(self):
        self.shard = None
        self.records = 0

    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        _log(
            "initialize %s at %s/%s"
            % (self.shard, initialize_input.sequence_number, initialize_input.sub_sequence_number)
        )

    def _checkpoint(self, checkpointer, when: str) -> None:
        try:
            checkpointer.checkpoint()
        except kcl_rs.CheckpointError as e:
            _log("checkpoint %s on %s failed: %s" % (when, self.shard, e.value))
            with _LOCK:
                _FAILED.append(e.value)

    def process_records(self, process_records_input):
        records = process_records_input.records
        if records:
            if not self.records:
                _log("first records on %s" % self.shard)
            self.records += len(records)
            with _LOCK:
                for record in records:
                    _OUT.write(record.data + b"\n")
                _OUT.flush()
        self._checkpoint(process_records_input.checkpointer, "after a batch")
        # Counted once checkpointed: reaching EXPECTED means every record is checkpointed.
        if records:
            with _LOCK:
                _SEEN.update(record.data for record in records)
                if len(_SEEN) >= _EXPECTED:
                    _STOP.set()

    def lease_lost(self, lease_lost_input):
        _log("lease lost on %s" % self.shard)

    def shard_ended(self, shard_ended_input):
        _log("shard ended: %s" % self.shard)
        self._checkpoint(shard_ended_input.checkpointer, "at shard end")

    def shutdown_requested(self, shutdown_requested_input):
        _log("shutdown requested on %s" % self.shard)
        self._checkpoint(shutdown_requested_input.checkpointer, "at shutdown")


def main() -> int:
    global _OUT, _EXPECTED
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    stream, app, worker, output, expected = sys.argv[1:]
    _EXPECTED = int(expected)
    _OUT = open(output, "ab")
    signal.signal(signal.SIGTERM, lambda *_: _STOP.set())

    def watch_stdin():
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader makes
        # the interpreter abort at exit.
        while os.read(0, 4096):
            pass
        _STOP.set()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    scheduler = kcl_rs.Scheduler(
        stream_name=stream,
        application_name=app,
        record_processor_factory=InteropProcessor,
        worker_identifier=worker,
        region=os.environ.get("AWS_REGION", "us-east-1"),
        initial_position="TRIM_HORIZON",
        retrieval_mode="POLLING",
        idle_time_between_reads_millis=200,
        shard_sync_interval_millis=SHARD_SYNC_MILLIS,
    )
    scheduler.start()
    _log("started %s" % worker)
    # A timed wait keeps the main thread running Python code, so the SIGTERM handler runs.
    while not _STOP.wait(0.2):
        pass
    _log("%d distinct records of %d; shutting down" % (len(_SEEN), _EXPECTED))
    scheduler.shutdown()
    _OUT.close()
    _log("shut down")
    return 1 if _FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
