"""The multilang benchmark's record processor, written against amazon-kclpy's v3 API.

It does nothing with the records but count them, and checkpoints after every batch. For
the bench it writes one line to stderr per batch, after the checkpoint (the host forwards
it as "[shardId] ..."):

    MLBENCH <records> <unix ns at entry> <unix ns after the checkpoint>
"""

import sys
import time

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class Processor(processor.RecordProcessorBase):
    def __init__(self):
        self.count = 0

    def initialize(self, initialize_input):
        pass

    def process_records(self, process_records_input):
        entered = time.time_ns()
        n = len(process_records_input.records)
        self.count += n
        try:
            process_records_input.checkpointer.checkpoint()
        except kcl.CheckpointError as e:
            sys.stderr.write("MLBENCH-ERROR checkpoint: %s\n" % e.value)
        sys.stderr.write("MLBENCH %d %d %d\n" % (n, entered, time.time_ns()))
        sys.stderr.flush()

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(Processor()).run()
