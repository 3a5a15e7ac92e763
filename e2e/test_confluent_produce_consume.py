"""confluent-kafka (librdkafka) bulk produce/consume with every compression codec."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from floe_e2e import (
    BIG_N,
    CODECS,
    DeliveryLog,
    assert_contiguous,
    consume_range,
    consumer,
    create_topic,
    produce_and_flush,
    producer,
    unique_name,
)

PARTITIONS = 4


def payload(i: int) -> bytes:
    return f"msg-{i}".encode()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_100k(floe, codec):
    n = BIG_N
    topic = unique_name(f"bulk-{codec}")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)

    log = DeliveryLog()
    p = producer(
        floe.bootstrap,
        **{
            "compression.type": codec,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200000,
        },
    )
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=payload(i), key=str(i % 97).encode(), on_delivery=log.callback(i))
                break
            except BufferError:
                p.poll(0.1)
        if i % 5000 == 0:
            p.poll(0)
    produce_and_flush(p, timeout=300)

    assert not log.failed, f"{len(log.failed)} deliveries failed, e.g. {list(log.failed.items())[:5]}"
    assert len(log.ok) == n

    # The offsets the broker acknowledged are 0..n_p-1 per partition.
    acked_by_part: dict[int, list[int]] = {}
    for i, (part, off) in log.ok.items():
        acked_by_part.setdefault(part, []).append(off)
    for part, offs in acked_by_part.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {part}: acknowledged offsets are not 0..n-1"

    # ListOffsets: watermarks match what was acknowledged.
    c = consumer(floe.bootstrap, unique_name("wm"))
    try:
        for part in range(PARTITIONS):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=15)
            assert (lo, hi) == (0, len(acked_by_part.get(part, []))), f"partition {part} watermarks"
    finally:
        c.close()

    recs = consume_range(floe.bootstrap, topic, list(range(PARTITIONS)), timeout=300)
    assert_contiguous(recs)
    seen: set[int] = set()
    for part, rs in recs.items():
        for off, key, value, _headers in rs:
            assert value.startswith(b"msg-"), (part, off, value)
            i = int(value[4:])
            assert i not in seen, f"duplicate message {i} at partition {part} offset {off}"
            seen.add(i)
            assert log.ok[i] == (part, off), f"msg-{i} acknowledged at {log.ok[i]} but read at {(part, off)}"
            assert key == str(i % 97).encode(), (i, key)
    assert len(seen) == n, f"read {len(seen)} distinct messages, expected {n}"
