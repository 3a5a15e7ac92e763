"""DeleteRecords via confluent-kafka AdminClient.delete_records."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AdminClient

from floe_e2e import admin_client, consume_range, consumer, create_topic, produce_and_flush, producer, unique_name

pytestmark = pytest.mark.skipif(
    not hasattr(AdminClient, "delete_records"),
    reason="this confluent-kafka has no AdminClient.delete_records",
)

N = 100
CUT = 40


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    c = consumer(bootstrap, unique_name("wm"))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=15)
    finally:
        c.close()


@pytest.mark.timeout(180)
def test_delete_records_moves_low_watermark(floe):
    topic = unique_name("delrec")
    create_topic(floe.bootstrap, topic, partitions=1)
    p = producer(floe.bootstrap, acks="all")
    for i in range(N):
        p.produce(topic, value=f"msg-{i}".encode(), partition=0)
    produce_and_flush(p, 60)
    assert watermarks(floe.bootstrap, topic) == (0, N)

    admin = admin_client(floe.bootstrap)
    tp = TopicPartition(topic, 0, CUT)
    res = admin.delete_records([tp], request_timeout=15, operation_timeout=15)
    (fut,) = res.values()
    deleted = fut.result(timeout=30)
    assert deleted.low_watermark == CUT

    assert watermarks(floe.bootstrap, topic) == (CUT, N)

    def check_reads():
        recs = consume_range(floe.bootstrap, topic, [0], timeout=60, start=OFFSET_BEGINNING)[0]
        assert [r[0] for r in recs] == list(range(CUT, N)), [r[0] for r in recs][:5]
        assert [r[2] for r in recs] == [f"msg-{i}".encode() for i in range(CUT, N)]

    check_reads()

    # a group with no committed offset and auto.offset.reset=earliest starts at the new low watermark
    c = consumer(floe.bootstrap, unique_name("delrec-g"))
    try:
        c.subscribe([topic])
        first = None
        for _ in range(120):
            m = c.poll(0.5)
            if m is not None and not m.error():
                first = m
                break
        assert first is not None, "group consumer received nothing"
        assert (first.offset(), first.value()) == (CUT, f"msg-{CUT}".encode())
    finally:
        c.close()

    # deleting below the current low watermark does not move it back
    tp = TopicPartition(topic, 0, 10)
    (fut,) = admin.delete_records([tp], request_timeout=15).values()
    assert fut.result(timeout=30).low_watermark == CUT

    # deleting past the high watermark is refused (OFFSET_OUT_OF_RANGE)
    tp = TopicPartition(topic, 0, N + 5)
    (fut,) = admin.delete_records([tp], request_timeout=15).values()
    with pytest.raises(Exception):
        fut.result(timeout=30)

    # the new low watermark is durable
    floe.restart()
    assert watermarks(floe.bootstrap, topic) == (CUT, N)
    check_reads()
