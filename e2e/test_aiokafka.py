"""aiokafka (asyncio client) produce/consume round trip with a consumer group."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from floe_e2e import create_topic, unique_name

N = 500
PARTITIONS = 3


async def roundtrip(bootstrap: str, topic: str, group: str, codec: str | None):
    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=codec,
        request_timeout_ms=15000,
        linger_ms=5,
    )
    await asyncio.wait_for(prod.start(), 30)
    try:
        sent = {}
        batch = []
        for i in range(N):
            fut = await prod.send(
                topic,
                value=f"aio-{i}".encode(),
                key=f"k{i}".encode(),
                partition=i % PARTITIONS,
                headers=[("n", str(i).encode())],
            )
            batch.append((i, fut))
        for i, fut in batch:
            md = await asyncio.wait_for(fut, 60)
            sent[i] = (md.partition, md.offset)
        # plus one send_and_wait
        md = await asyncio.wait_for(prod.send_and_wait(topic, b"last", partition=0), 30)
        sent[N] = (md.partition, md.offset)
    finally:
        await asyncio.wait_for(prod.stop(), 30)

    for i in range(N):
        assert sent[i] == (i % PARTITIONS, i // PARTITIONS), (i, sent[i])
    assert sent[N] == (0, (N + PARTITIONS - 1) // PARTITIONS)

    cons = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        request_timeout_ms=15000,
    )
    await asyncio.wait_for(cons.start(), 30)
    try:
        got = []
        while len(got) < N + 1:
            batches = await asyncio.wait_for(cons.getmany(timeout_ms=1000), 30)
            for recs in batches.values():
                got.extend(recs)
        # nothing beyond
        batches = await asyncio.wait_for(cons.getmany(timeout_ms=1500), 30)
        got.extend(r for recs in batches.values() for r in recs)
        assert len(got) == N + 1, f"received {len(got)} records, expected {N + 1}"
        for r in got:
            if r.value == b"last":
                assert (r.partition, r.offset) == sent[N]
                continue
            i = int(r.value.decode()[4:])
            assert (r.partition, r.offset) == sent[i], (i, r.partition, r.offset)
            assert r.key == f"k{i}".encode()
            assert list(r.headers) == [("n", str(i).encode())], r.headers
        await asyncio.wait_for(cons.commit(), 30)
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await asyncio.wait_for(cons.end_offsets(tps), 30)
        for tp in tps:
            committed = await asyncio.wait_for(cons.committed(tp), 30)
            assert committed == ends[tp], (tp, committed, ends[tp])
        assert sum(ends.values()) == N + 1, ends
    finally:
        await asyncio.wait_for(cons.stop(), 30)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("codec", [None, "gzip"])
def test_aiokafka_roundtrip(floe, codec):
    topic = unique_name(f"aio-{codec or 'none'}")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)
    asyncio.run(asyncio.wait_for(roundtrip(floe.bootstrap, topic, unique_name("aio-g"), codec), 150))
