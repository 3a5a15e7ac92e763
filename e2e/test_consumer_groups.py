"""Consumer groups with confluent-kafka: rebalance, leave, commit, resume after a broker restart."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from floe_e2e import admin_client, consumer, create_topic, produce_and_flush, producer, unique_name, wait_for

PARTITIONS = 4
PER_PART = 50


def produce_phase(bootstrap: str, topic: str, phase: int) -> set[bytes]:
    """PER_PART messages to each partition; returns the payloads."""
    p = producer(bootstrap, acks="all")
    values = set()
    for i in range(PER_PART):
        for part in range(PARTITIONS):
            v = f"phase{phase}-p{part}-{i}".encode()
            p.produce(topic, value=v, partition=part)
            values.add(v)
    produce_and_flush(p, timeout=60)
    return values


def poll_collect(consumers, sink: dict, seconds: float) -> None:
    """Poll every consumer in turn for `seconds`, appending (partition, offset, value) to sink[name]."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, c in consumers.items():
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            sink.setdefault(name, []).append((m.partition(), m.offset(), m.value()))


def poll_until(consumers, sink: dict, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            state = {n: sorted(tp.partition for tp in c.assignment()) for n, c in consumers.items()}
            counts = {n: len(v) for n, v in sink.items()}
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; assignments {state}, received {counts}")
        poll_collect(consumers, sink, 0.3)


def parts(c) -> set[int]:
    return {tp.partition for tp in c.assignment()}


@pytest.mark.timeout(420)
def test_group_rebalance_commit_and_resume_after_restart(floe):
    topic = unique_name("grp")
    group = unique_name("grp-g")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)
    all_parts = set(range(PARTITIONS))

    a = consumer(floe.bootstrap, group, **{"client.id": "consumer-a"})
    b = consumer(floe.bootstrap, group, **{"client.id": "consumer-b"})
    sink: dict[str, list] = {}
    closed = []
    try:
        a.subscribe([topic])
        poll_until({"a": a}, sink, lambda: parts(a) == all_parts, 60, "a alone to own all partitions")

        # b joins: the group rebalances and the partitions are shared.
        b.subscribe([topic])
        both = {"a": a, "b": b}

        def shared():
            pa, pb = parts(a), parts(b)
            return pa and pb and not (pa & pb) and (pa | pb) == all_parts

        poll_until(both, sink, shared, 90, "a and b to share the partitions")
        poll_collect(both, sink, 2)  # stays stable
        assert shared(), (parts(a), parts(b))
        assert not sink, f"nothing was produced yet, but received {sink}"
        pa, pb = parts(a), parts(b)

        # Phase 1: both consume their own partitions, then commit.
        phase1 = produce_phase(floe.bootstrap, topic, 1)
        poll_until(both, sink, lambda: sum(len(v) for v in sink.values()) >= len(phase1), 90, "phase 1 messages")
        poll_collect(both, sink, 1)
        got_a = sink.get("a", [])
        got_b = sink.get("b", [])
        assert {m[0] for m in got_a} <= pa and {m[0] for m in got_b} <= pb, "consumed outside own assignment"
        values = [m[2] for m in got_a + got_b]
        assert sorted(values) == sorted(phase1), "phase 1: missing or duplicated messages"
        for c in (a, b):
            c.commit(asynchronous=False)
        committed = a.committed([TopicPartition(topic, x) for x in pa], timeout=15)
        assert {tp.partition: tp.offset for tp in committed} == {x: PER_PART for x in pa}, committed

        # b leaves: a takes over every partition, and resumes from b's commits.
        b.close()
        closed.append(b)
        sink.clear()
        poll_until({"a": a}, sink, lambda: parts(a) == all_parts, 90, "a to own all partitions after b left")
        poll_collect({"a": a}, sink, 2)
        assert not sink, f"re-delivered already committed messages after b left: {sink.get('a', [])[:5]}"

        # Phase 2: a consumes everything, commits.
        phase2 = produce_phase(floe.bootstrap, topic, 2)
        poll_until({"a": a}, sink, lambda: len(sink.get("a", [])) >= len(phase2), 90, "phase 2 messages")
        poll_collect({"a": a}, sink, 1)
        assert sorted(m[2] for m in sink["a"]) == sorted(phase2), "phase 2: missing or duplicated messages"
        a.commit(asynchronous=False)

        # Phase 3 is produced but never consumed by a.
        phase3 = produce_phase(floe.bootstrap, topic, 3)
        a.close()
        closed.append(a)
    finally:
        for c in (a, b):
            if c not in closed:
                c.close()

    floe.restart()

    c = consumer(floe.bootstrap, group, **{"client.id": "consumer-c"})
    try:
        committed = c.committed([TopicPartition(topic, x) for x in range(PARTITIONS)], timeout=15)
        assert {tp.partition: tp.offset for tp in committed} == {x: 2 * PER_PART for x in range(PARTITIONS)}, (
            f"committed offsets after restart: {committed}"
        )
        c.subscribe([topic])
        sink = {}
        poll_until({"c": c}, sink, lambda: len(sink.get("c", [])) >= len(phase3), 120, "phase 3 after restart")
        poll_collect({"c": c}, sink, 3)
        got = sink["c"]
        assert sorted(m[2] for m in got) == sorted(phase3), (
            f"after restart expected exactly the {len(phase3)} uncommitted messages, got {len(got)}; "
            f"sample {got[:5]}"
        )
        assert all(off >= 2 * PER_PART for _p, off, _v in got), "re-delivered committed offsets"
    finally:
        c.close()


@pytest.mark.timeout(240)
def test_group_admin_list_describe_offsets_delete(floe):
    topic = unique_name("grp-admin")
    group = unique_name("grp-admin-g")
    create_topic(floe.bootstrap, topic, partitions=2)
    p = producer(floe.bootstrap)
    for i in range(20):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 2)
    produce_and_flush(p, 60)

    admin = admin_client(floe.bootstrap)
    c = consumer(floe.bootstrap, group)
    try:
        c.subscribe([topic])
        sink: dict = {}
        poll_until({"c": c}, sink, lambda: len(sink.get("c", [])) >= 20, 60, "20 messages")
        c.commit(asynchronous=False)

        listed = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        assert group in [g.group_id for g in listed.valid], (listed.valid, listed.errors)

        desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
        assert desc.group_id == group
        assert desc.state == ConsumerGroupState.STABLE, desc.state
        assert len(desc.members) == 1, desc.members
        assigned = {tp.partition for tp in desc.members[0].assignment.topic_partitions if tp.topic == topic}
        assert assigned == {0, 1}, desc.members[0].assignment.topic_partitions
        assert desc.coordinator.id == 1

        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
        res = admin.list_consumer_group_offsets([req], request_timeout=15)[group].result(timeout=30)
        assert {tp.partition: tp.offset for tp in res.topic_partitions} == {0: 10, 1: 10}
    finally:
        c.close()

    def empty():
        d = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
        return d.state == ConsumerGroupState.EMPTY

    wait_for(empty, 30, "group to become EMPTY after its only member left")
    admin.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
    listed = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
    assert group not in [g.group_id for g in listed.valid]
