"""Real Kafka clients for the operator's local end-to-end test
(operator/tests/local_processes.rs), built from e2e/cluster.py:

- creates TOPIC with PARTITIONS partitions (confluent-kafka AdminClient);
- an idempotent producer (ProduceLoad: acks=all, every delivery report kept)
  writing to every partition, and a consumer group of two members
  (GroupConsumerLoad: subscribe(), commit after every batch);
- prints `RUNNING` once every partition took an ack and the group consumes,
  then `PROGRESS acked=<n> delivered=<n> failed=<n>` every second;
- on `stop` (or EOF) on stdin: stops the producer, lets the group catch up,
  reads every partition from offset 0 (consume_all) and runs check_data
  (every acknowledged record exactly once per partition, at its offset, in
  order) and check_group; writes the acks to ACKS_FILE (JSON lines) and ends
  with `RESULT ok <summary>` or `RESULT failed <problems>` (exit 0 / 1).

Usage: kafka_clients.py BOOTSTRAP TOPIC PARTITIONS ACKS_FILE
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "e2e"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import (  # noqa: E402
    GroupConsumerLoad,
    ProduceLoad,
    check_data,
    check_group,
    consume_all,
    first_ack_after,
    wait_until,
)


def say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    bootstrap, topic, partitions, acks_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=15, request_timeout=20)[topic].result(timeout=30)
    load = ProduceLoad(bootstrap, topic, partitions, interval=0.004).start()
    group = GroupConsumerLoad(bootstrap, topic, f"{topic}-group", members=2).start()
    stop = threading.Event()
    try:
        wait_until(lambda: all(first_ack_after(load.snapshot(), 0, p) for p in range(partitions)), 60,
                   "acks on every partition")
        wait_until(lambda: len(group.snapshot()) > 0, 60, "the group to consume")
        say("RUNNING")

        def progress():
            while not stop.wait(1.0):
                say(f"PROGRESS acked={len(load.acks)} delivered={len(group.records)} failed={len(load.failed)}")

        threading.Thread(target=progress, daemon=True).start()
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    finally:
        stop.set()
        load.close()
    say(f"producer: {load.summary()}")
    acks = load.acks
    with open(acks_file, "w") as f:
        for a in acks:
            f.write(json.dumps({"partition": a.partition, "offset": a.offset, "value": a.value.decode()}) + "\n")
    problems = []
    acked = {a.value for a in acks}
    try:
        wait_until(lambda: acked <= group.values() or f"{len(acked - group.values())} not yet delivered", 60,
                   "the group to receive every acknowledged record", interval=0.2)
    except AssertionError as e:
        problems.append(str(e))
    finally:
        group.stop()
    say(group.summary())
    if load.fatal_errors():
        problems.append(f"idempotent producer hit fatal errors: {load.fatal_errors()}")
    if load.failed:
        problems.append(f"{len(load.failed)} deliveries failed, first: {load.failed[:5]}")
    if load.unflushed:
        problems.append(f"{load.unflushed} messages undelivered after flush")
    try:
        consumed = consume_all(bootstrap, topic, partitions)
        say(check_data(acks, consumed))
        say(check_group(acks, group, consumed))
    except AssertionError as e:
        problems.append(str(e))
    if problems:
        say("RESULT failed " + " | ".join(problems).replace("\n", " "))
        return 1
    say(f"RESULT ok {len(acks)} acknowledged records, each consumed once at its offset")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no waiting on librdkafka's background threads
