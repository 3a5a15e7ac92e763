"""Durability: what the broker acknowledged survives kill -9 (and a graceful restart)."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from floe_e2e import (
    DeliveryLog,
    assert_contiguous,
    consume_range,
    consumer,
    create_topic,
    produce_and_flush,
    producer,
    unique_name,
)

PARTITIONS = 3
N = 20_000


def produce_acked(bootstrap: str, topic: str, start: int, n: int) -> DeliveryLog:
    log = DeliveryLog()
    p = producer(bootstrap, acks="all", **{"compression.type": "lz4"})
    for i in range(start, start + n):
        while True:
            try:
                p.produce(topic, value=f"msg-{i}".encode(), on_delivery=log.callback(i))
                break
            except BufferError:
                p.poll(0.1)
    produce_and_flush(p, 120)
    assert not log.failed, f"{len(log.failed)} failed deliveries, e.g. {list(log.failed.items())[:5]}"
    return log


def verify_exactly_once(bootstrap: str, topic: str, acked: dict[int, tuple[int, int]]):
    recs = consume_range(bootstrap, topic, list(range(PARTITIONS)), timeout=180)
    assert_contiguous(recs)
    where: dict[int, tuple[int, int]] = {}
    for part, rs in recs.items():
        for off, _k, value, _h in rs:
            i = int(value.decode()[4:])
            assert i not in where, f"msg-{i} twice: {where[i]} and {(part, off)}"
            where[i] = (part, off)
    missing = sorted(set(acked) - set(where))
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:10]}"
    for i, pos in acked.items():
        assert where[i] == pos, f"msg-{i} acknowledged at {pos}, read at {where[i]}"
    assert len(where) == len(acked), f"{len(where) - len(acked)} unacknowledged extra messages"


@pytest.mark.timeout(360)
@pytest.mark.parametrize(
    "wal_mode",
    [
        pytest.param("volume", marks=pytest.mark.floe_args("--wal-mode", "volume")),
        pytest.param("object", marks=pytest.mark.floe_args("--wal-mode", "object")),
    ],
)
def test_acked_data_and_offsets_survive_kill9(floe, wal_mode):
    topic = unique_name("dur")
    group = unique_name("dur-g")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)

    log = produce_acked(floe.bootstrap, topic, 0, N)

    # commit an offset for the group (acknowledged by OffsetCommit)
    c = consumer(floe.bootstrap, group)
    try:
        c.commit(offsets=[TopicPartition(topic, p, 7 + p) for p in range(PARTITIONS)], asynchronous=False)
    finally:
        c.close()

    floe.kill9()
    floe.start()

    verify_exactly_once(floe.bootstrap, topic, log.ok)

    c = consumer(floe.bootstrap, group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
        assert {tp.partition: tp.offset for tp in got} == {p: 7 + p for p in range(PARTITIONS)}, got
    finally:
        c.close()

    # the log continues at the right offsets after recovery
    log2 = produce_acked(floe.bootstrap, topic, N, 3000)
    acked = dict(log.ok)
    acked.update(log2.ok)
    verify_exactly_once(floe.bootstrap, topic, acked)

    # and a second crash right after writing loses nothing either
    floe.kill9()
    floe.start()
    verify_exactly_once(floe.bootstrap, topic, acked)


@pytest.mark.timeout(300)
def test_data_survives_graceful_restart(floe):
    topic = unique_name("dur-term")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)
    log = produce_acked(floe.bootstrap, topic, 0, 5000)
    floe.restart()
    verify_exactly_once(floe.bootstrap, topic, log.ok)
    floe.restart()  # restart again without new writes: nothing changes
    verify_exactly_once(floe.bootstrap, topic, log.ok)
