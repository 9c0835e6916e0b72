"""The aiokpl side of the shard-limit bench (kpl/benches/shard_limit.rs).

Puts the bench's records (100 B of data, keys from a pool of 1,000,000) to one stream as
fast as aiokpl accepts them for WARMUP + MEASURE seconds, then stops putting, flushes and
waits for every outcome. Prints one JSON line on standard output:
  delivered_in_window  user records delivered during the MEASURE seconds
  window_secs          the window's length, measured
  cpu_secs_in_window   this process's user + system CPU during the window
  put, delivered, failed  totals over the whole run
  throttled_attempts   user-record attempts refused with ProvisionedThroughputExceeded
  failure              the first failure's error code and message, if any

Usage: python aiokpl_producer.py ENDPOINT STREAM AGGREGATION(0|1) WARMUP MEASURE OUTSTANDING
Outcomes are awaited in put order by one task (as the Rust side counts them), so the
count at a moment can trail by the time one record waits for a retry.
"""

import asyncio
import json
import resource
import sys
import time

from aiokpl import Config, Producer

THROTTLED = "ProvisionedThroughputExceededException"


def record(i: int) -> tuple[str, bytes]:
    key = f"user-{(i * 2654435761) % 1_000_000:08}"
    data = f"{i:012}".encode().ljust(100, b".")
    return key, data


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main() -> None:
    endpoint, stream, aggregation, warmup, measure, outstanding = sys.argv[1:7]
    config = Config(
        region="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        aggregation_enabled=aggregation == "1",
        max_outstanding_records=int(outstanding),
    )
    counts = {"put": 0, "delivered": 0, "failed": 0, "throttled_attempts": 0}
    first_failure = None
    queue: asyncio.Queue = asyncio.Queue()
    done = asyncio.Event()

    async def count() -> None:
        nonlocal first_failure
        while True:
            outcome = await queue.get()
            if outcome is None:
                return
            try:
                result = await outcome.wait()
            except Exception as e:  # a failed outcome
                counts["failed"] += 1
                first_failure = first_failure or repr(e)
                continue
            counts["throttled_attempts"] += sum(
                1 for a in result.attempts if a.error_code == THROTTLED
            )
            if result.success:
                counts["delivered"] += 1
            else:
                counts["failed"] += 1
                last = result.attempts[-1] if result.attempts else None
                first_failure = first_failure or (
                    f"{last.error_code}: {last.error_message}" if last else "no attempt"
                )

    window = {}

    async def clock() -> None:
        await asyncio.sleep(float(warmup))
        window["t0"], window["d0"], window["c0"] = time.monotonic(), counts["delivered"], cpu()
        await asyncio.sleep(float(measure))
        window["t1"], window["d1"], window["c1"] = time.monotonic(), counts["delivered"], cpu()
        done.set()

    async with Producer(config) as producer:
        counter = asyncio.create_task(count())
        ticker = asyncio.create_task(clock())
        i = 0
        while not done.is_set():
            key, data = record(i)
            outcome = await producer.put_record(stream=stream, partition_key=key, data=data)
            queue.put_nowait(outcome)
            counts["put"] += 1
            i += 1
        await ticker
        await producer.flush()
        queue.put_nowait(None)
        await counter
    print(
        json.dumps(
            {
                "delivered_in_window": window["d1"] - window["d0"],
                "window_secs": window["t1"] - window["t0"],
                "cpu_secs_in_window": window["c1"] - window["c0"],
                **counts,
                "failure": first_failure,
            }
        ),
        flush=True,
    )


asyncio.run(main())
