"""A MultiLang child speaking the protocol by hand (no library) that misbehaves on purpose,
for the multilang tests. Each start counts itself in the file ML_STATE, and start n, at its
first processRecords:
  1: answers with a status for another action;
  2: hangs (the host's timeoutInSeconds gives it up);
  3: exits without answering;
  4 and later: behaves, appending each record to ML_EVENTS and checkpointing.
"""

import base64
import json
import os
import sys
import time


def start_number():
    path = os.environ["ML_STATE"]
    n = int(open(path).read() or "0") + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


def send(obj):
    # Other output on stdout is skipped by the host.
    sys.stdout.write("not a message\n" + json.dumps({"no": "action"}) + "\n")
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    n = start_number()
    shard = None
    for line in sys.stdin:
        msg = json.loads(line)
        action = msg["action"]
        if action == "initialize":
            shard = msg["shardId"]
        elif action == "processRecords":
            if n == 1:
                send({"action": "status", "responseFor": "initialize"})
                continue
            if n == 2:
                time.sleep(60)
            if n == 3:
                sys.exit(3)
            with open(os.environ["ML_EVENTS"], "a") as f:
                for r in msg["records"]:
                    data = base64.b64decode(r["data"]).decode()
                    f.write(json.dumps({"event": "record", "shard": shard, "data": data,
                                        "pid": os.getpid()}) + "\n")
            send({"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None})
            answer = json.loads(sys.stdin.readline())
            if answer["action"] != "checkpoint" or answer.get("error"):
                sys.stderr.write("checkpoint failed: %r\n" % answer)
        elif action in ("shardEnded", "shutdownRequested"):
            send({"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None})
            sys.stdin.readline()
        send({"action": "status", "responseFor": action})


if __name__ == "__main__":
    main()
