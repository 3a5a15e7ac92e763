"""kafka-python (pure-Python client) round trip: producer, group consumer, commits, offset lookups."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from floe_e2e import create_topic, unique_name

N = 300
PARTITIONS = 2


def kp_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=15000,
        max_block_ms=30000,
        client_id="e2e-kafka-python-producer",
    )


def kp_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        client_id="e2e-kafka-python-consumer",
    )


def poll_n(c: KafkaConsumer, n: int, timeout: float, settle: float = 1.0) -> list:
    """Poll until n records arrived (then `settle` more seconds to catch extras)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} records after {timeout}s"
        for recs in c.poll(timeout_ms=500).values():
            out.extend(recs)
    end = time.monotonic() + settle
    while time.monotonic() < end:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
    return out


@pytest.mark.timeout(240)
def test_kafka_python_roundtrip_group_commit_offsets(floe):
    topic = unique_name("kp")
    group = unique_name("kp-g")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    base = (int(time.time()) - 3600) * 1000  # 10 ms between records

    prod = kp_producer(floe.bootstrap)
    try:
        futures = [
            prod.send(
                topic,
                value=f"value-{i}".encode(),
                key=f"key-{i}".encode(),
                headers=[("idx", str(i).encode())],
                partition=i % PARTITIONS,
                timestamp_ms=base + i * 10,
            )
            for i in range(N)
        ]
        prod.flush(timeout=60)
        metas = [f.get(timeout=30) for f in futures]
    finally:
        prod.close(timeout=10)
    for i, md in enumerate(metas):
        assert (md.partition, md.offset) == (i % PARTITIONS, i // PARTITIONS), (i, md)

    c = kp_consumer(floe.bootstrap, topic, group)
    try:
        recs = poll_n(c, N, 90)
        assert len(recs) == N, f"got {len(recs)} records, expected {N}"
        for r in recs:
            i = int(r.value.decode().removeprefix("value-"))
            assert (r.partition, r.offset) == (i % PARTITIONS, i // PARTITIONS), r
            assert r.key == f"key-{i}".encode()
            assert r.timestamp == base + i * 10, r
            assert list(r.headers) == [("idx", str(i).encode())], r.headers
        assert sorted(int(r.value[6:]) for r in recs) == list(range(N))

        c.commit()
        for tp in tps:
            assert c.committed(tp, timeout_ms=15000) == N // PARTITIONS, tp

        assert c.beginning_offsets(tps, timeout_ms=15000) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps, timeout_ms=15000) == {tp: N // PARTITIONS for tp in tps}

        # first record with timestamp >= base+1000 is i=100 on p0 and i=101 on p1: offset 50 on both
        found = c.offsets_for_times({tp: base + 1000 for tp in tps}, timeout_ms=15000)
        for tp in tps:
            assert found[tp] is not None, found
            assert found[tp].offset == 50, found
            assert found[tp].timestamp == base + (100 + tp.partition) * 10, found
        # past the last record: None
        found = c.offsets_for_times({tps[0]: base + N * 10 + 60_000}, timeout_ms=15000)
        assert found[tps[0]] is None, found
    finally:
        c.close(autocommit=False, timeout_ms=10000)

    # A new member of the group resumes at the committed offsets.
    c2 = kp_consumer(floe.bootstrap, topic, group)
    try:
        early = []
        deadline = time.monotonic() + 60
        while c2.assignment() != set(tps):
            assert time.monotonic() < deadline, f"new member never got {tps}: {c2.assignment()}"
            for recs in c2.poll(timeout_ms=500).values():
                early.extend(recs)
        early += poll_n(c2, 0, 10, settle=2)
        assert early == [], f"committed records were delivered again: {early[:5]}"
        prod = kp_producer(floe.bootstrap)
        try:
            for i in range(N, N + 10):
                prod.send(topic, value=f"value-{i}".encode(), partition=i % PARTITIONS)
            prod.flush(timeout=60)
        finally:
            prod.close(timeout=10)
        recs = poll_n(c2, 10, 60)
        assert sorted(r.value for r in recs) == sorted(f"value-{i}".encode() for i in range(N, N + 10))
    finally:
        c2.close(autocommit=False, timeout_ms=10000)
