"""Broker behaviours that no single client test pins down: Fetch long poll, auto-create off."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_END, KafkaError, TopicPartition

from floe_e2e import consumer, create_topic, produce_and_flush, producer, topic_partitions, unique_name


@pytest.mark.timeout(120)
def test_fetch_long_poll_wakes_up_on_produce(floe):
    """A caught-up consumer with a long fetch.wait.max.ms gets a new record promptly."""
    topic = unique_name("longpoll")
    create_topic(floe.bootstrap, topic, partitions=1)
    c = consumer(floe.bootstrap, unique_name("lp"), **{"fetch.wait.max.ms": 10000, "fetch.min.bytes": 1})
    p = producer(floe.bootstrap, **{"linger.ms": 0})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        # let the consumer reach the (empty) end and park a long-poll Fetch
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            assert m is None or m.error(), f"unexpected record {m.value()!r}"
        latencies = []
        for i in range(3):
            t0 = time.monotonic()
            p.produce(topic, value=f"ping-{i}".encode(), partition=0)
            produce_and_flush(p, 30)
            got = None
            while time.monotonic() - t0 < 30:
                m = c.poll(0.05)
                if m is not None and not m.error():
                    got = m
                    break
            assert got is not None, f"ping-{i} never arrived"
            assert got.value() == f"ping-{i}".encode() and got.offset() == i
            latencies.append(round(time.monotonic() - t0, 3))
            time.sleep(1.0)  # consumer parks another long poll
        # With fetch.wait.max.ms=10000 a broker that ignores fetch.min.bytes would answer after ~10 s.
        print(f"long-poll latencies: {latencies}")
        assert max(latencies) < 5.0, f"long-poll Fetch did not wake up on produce: latencies {latencies}"
    finally:
        c.close()


@pytest.mark.timeout(120)
@pytest.mark.floe_args("--auto-create-topics", "false")
def test_auto_create_disabled(floe):
    topic = unique_name("noauto")
    p = producer(floe.bootstrap, **{"message.timeout.ms": 5000})
    errors = []
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT), errors[0]
    assert topic_partitions(floe.bootstrap, topic) == {}, "topic was auto-created although disabled"

    # explicit CreateTopics still works
    create_topic(floe.bootstrap, topic, partitions=2)
    assert len(topic_partitions(floe.bootstrap, topic)) == 2


@pytest.mark.timeout(120)
@pytest.mark.floe_args("--num-partitions", "3")
def test_num_partitions_default_for_auto_create(floe):
    topic = unique_name("auto3")
    p = producer(floe.bootstrap)
    delivered = []
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: delivered.append(err))
    produce_and_flush(p, 30)
    assert delivered == [None], delivered
    assert sorted(topic_partitions(floe.bootstrap, topic)) == [0, 1, 2]
