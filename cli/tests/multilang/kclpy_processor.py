"""A record processor written against amazon-kclpy's v3 API, for the multilang tests.

Every call is appended as one JSON line to the file named by ML_EVENTS (one write per
line, so lines of several children never mix): initialize (with the child's pid and the
sequence number it resumes after), each record, checkpoints and their errors, and the
shard's end. It checkpoints after every batch, at the shard end and on shutdown.
"""

import base64
import json
import os
import sys

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


def event(**fields):
    fields["pid"] = os.getpid()
    with open(os.environ["ML_EVENTS"], "a") as f:
        f.write(json.dumps(fields) + "\n")


class Processor(processor.RecordProcessorBase):
    def __init__(self):
        self.shard = None

    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        event(event="initialize", shard=self.shard,
              sequence_number=initialize_input.sequence_number,
              sub_sequence_number=initialize_input.sub_sequence_number)
        # Libraries print to stdout: the host skips what is not a message.
        print("initialized " + self.shard)
        sys.stdout.flush()

    def checkpoint(self, checkpointer, what):
        try:
            checkpointer.checkpoint()
            event(event="checkpoint", shard=self.shard, at=what)
        except kcl.CheckpointError as e:
            event(event="checkpoint_error", shard=self.shard, at=what, error=e.value)

    def process_records(self, process_records_input):
        for r in process_records_input.records:
            event(event="record", shard=self.shard, data=r.binary_data.decode(),
                  sequence_number=r.sequence_number,
                  sub_sequence_number=r.sub_sequence_number,
                  partition_key=r.partition_key,
                  arrival_ms=r.timestamp_millis)
        sys.stderr.write("processed %d records\n" % len(process_records_input.records))
        sys.stderr.flush()
        self.checkpoint(process_records_input.checkpointer, "batch")

    def lease_lost(self, lease_lost_input):
        event(event="lease_lost", shard=self.shard)

    def shard_ended(self, shard_ended_input):
        event(event="shard_ended", shard=self.shard)
        self.checkpoint(shard_ended_input.checkpointer, "shard_end")

    def shutdown_requested(self, shutdown_requested_input):
        event(event="shutdown_requested", shard=self.shard)
        self.checkpoint(shutdown_requested_input.checkpointer, "shutdown")


if __name__ == "__main__":
    kcl.KCLProcess(Processor()).run()
