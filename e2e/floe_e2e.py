"""Shared helpers for the Floe e2e tests (confluent-kafka based).

Every helper has a deadline: nothing here can block forever.
"""

from __future__ import annotations

import os
import re
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# How many messages the big produce/consume test moves per codec.
BIG_N = int(os.environ.get("FLOE_E2E_MESSAGES", "100000"))


def unique_name(prefix: str) -> str:
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", prefix)[:80]
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000, "log_level": 3})


def producer(bootstrap: str, **extra) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 10000,
        "message.timeout.ms": 60000,
        "linger.ms": 5,
    }
    conf.update(extra)
    return Producer(conf)


def consumer(bootstrap: str, group: str, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Consumer(conf)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def topic_partitions(bootstrap: str, topic: str, timeout: float = 10) -> dict:
    """partition id -> PartitionMetadata, or {} if the topic is unknown."""
    md = admin_client(bootstrap).list_topics(topic=topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return dict(t.partitions)


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict | None = None) -> None:
    """CreateTopics via confluent-kafka AdminClient, then wait until Metadata shows it with leaders."""
    admin = admin_client(bootstrap)
    futs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=15,
        request_timeout=20,
    )
    futs[topic].result(timeout=30)

    def ready():
        parts = topic_partitions(bootstrap, topic)
        return len(parts) == partitions and all(p.leader >= 0 and p.error is None for p in parts.values())

    wait_for(ready, 30, f"topic {topic} with {partitions} partitions and leaders in Metadata")


def produce_and_flush(p: Producer, timeout: float = 120) -> None:
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after flush({timeout})"


class DeliveryLog:
    """Collects delivery reports: index -> (partition, offset), plus failures."""

    def __init__(self):
        self.ok: dict[int, tuple[int, int]] = {}
        self.failed: dict[int, str] = {}

    def callback(self, index: int):
        def cb(err, msg):
            if err is not None:
                self.failed[index] = str(err)
            else:
                self.ok[index] = (msg.partition(), msg.offset())

        return cb


def consume_range(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    timeout: float = 120,
    start: int = OFFSET_BEGINNING,
    group: str | None = None,
    **extra,
) -> dict[int, list]:
    """Read every partition from `start` up to its current high watermark.

    Uses assign() (no group protocol).  Returns partition -> list of
    (offset, key, value, headers) in the order received.
    """
    c = consumer(bootstrap, group or unique_name("e2e-reader"), **extra)
    try:
        high, low = {}, {}
        for p in partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            low[p], high[p] = lo, hi
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        out: dict[int, list] = {p: [] for p in partitions}
        nxt: dict[int, int] = {p: -1 for p in partitions}
        deadline = time.monotonic() + timeout

        def done():
            return all(low[p] >= high[p] or nxt[p] >= high[p] for p in partitions)

        while not done():
            if time.monotonic() > deadline:
                got = {p: len(v) for p, v in out.items()}
                raise AssertionError(
                    f"timed out reading {topic}: high watermarks {high}, next offsets {nxt}, received {got}"
                )
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                out[m.partition()].append((m.offset(), m.key(), m.value(), m.headers()))
                nxt[m.partition()] = m.offset() + 1
        return out
    finally:
        c.close()


def assert_contiguous(records_by_partition: dict[int, list], start: dict[int, int] | None = None) -> None:
    """Offsets of each partition are start..start+n-1, in order, no repeats."""
    for p, recs in records_by_partition.items():
        offs = [r[0] for r in recs]
        first = (start or {}).get(p, 0)
        expected = list(range(first, first + len(offs)))
        if offs != expected:
            bad = next(i for i, (a, b) in enumerate(zip(offs + [None], expected + [None])) if a != b)
            raise AssertionError(
                f"partition {p}: offsets not contiguous from {first}: at position {bad} "
                f"got {offs[max(0, bad - 3):bad + 3]} expected {expected[max(0, bad - 3):bad + 3]} "
                f"(received {len(offs)})"
            )


def require_tool(present: bool, reason: str) -> None:
    """Skip when an external tool is missing, unless FLOE_E2E_REQUIRE_ALL=1 (scripts/test sets it)."""
    import pytest

    if present:
        return
    if os.environ.get("FLOE_E2E_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (FLOE_E2E_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(reason)
