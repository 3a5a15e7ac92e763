"""Automatic balancing with real processes and a real client.

Three controllers (checking the balance every second, cool-down 3 s) and
three brokers; an idempotent producer writes to every partition of a topic
whose partitions were all moved to broker 1 by hand. The controller leader
must spread them out by itself, no earlier than the cool-down after that
move, then leave them alone; at the end every acknowledged record was
consumed exactly once per partition, in offset order.
"""

from __future__ import annotations

import time

from confluent_kafka.admin import NewTopic

from cluster import (  # noqa: F401  (make_cluster is a fixture)
    ProduceLoad,
    check_data,
    consume_all,
    first_ack_after,
    floe_admin,
    make_cluster,
    partition_leaders,
    wait_until,
)
from floe_e2e import admin_client, unique_name

PARTITIONS = 6
INTERVAL_S = 1
COOLDOWN_S = 3


def counts(view: dict[int, tuple[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for leader, _ in view.values():
        out[leader] = out.get(leader, 0) + 1
    return out


def test_controllers_rebalance_by_themselves_after_the_cooldown(make_cluster):
    cluster = make_cluster(
        brokers=3,
        controller_args=["--rebalance-interval-s", str(INTERVAL_S), "--rebalance-cooldown-s", str(COOLDOWN_S)],
    )
    topic = unique_name("balance")
    admin = admin_client(cluster.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        operation_timeout=15, request_timeout=20)[topic].result(timeout=30)
    via = cluster.broker(1).bootstrap
    wait_until(lambda: len(partition_leaders(via, topic)) == PARTITIONS, 30, "the topic's metadata")

    load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS, interval=0.003).start()
    try:
        wait_until(lambda: all(first_ack_after(load.snapshot(), 0, p) for p in range(PARTITIONS)), 30,
                   "acks on every partition")
        # Everything onto broker 1, by hand.
        res = floe_admin(cluster, "reassign", f"{topic}:*=1", timeout=60)
        t_moved = time.monotonic()
        assert res.get("pending") == 0, res
        piled = partition_leaders(via, topic)
        assert counts(piled) == {1: PARTITIONS}, piled

        # The leader spreads them out by itself, after the cool-down.
        def spread():
            now = counts(partition_leaders(via, topic))
            return now == {1: 2, 2: 2, 3: 2} or now

        t_balanced = wait_until(spread, 30, "an automatic rebalance to 2 + 2 + 2", interval=0.1)
        balanced = partition_leaders(via, topic)
        print(f"TIMING rebalanced by the controllers {t_balanced - t_moved:.2f} s after the hand-made move "
              f"(cool-down {COOLDOWN_S} s, checked every {INTERVAL_S} s): {balanced}", flush=True)
        assert t_balanced - t_moved >= COOLDOWN_S - 0.5, "rebalanced inside the cool-down"
        for p in range(PARTITIONS):
            if balanced[p][0] != 1:
                assert balanced[p][1] > piled[p][1], (piled, balanced)

        # Balanced: two more cool-downs pass and nothing moves.
        time.sleep(2 * COOLDOWN_S + INTERVAL_S)
        assert partition_leaders(via, topic) == balanced, "moved again after balancing"
        wait_until(lambda: all(first_ack_after(load.snapshot(), t_balanced, p) for p in range(PARTITIONS)), 20,
                   "acks on every partition after the rebalance")
    finally:
        load.close()
    print(f"producer: {load.summary()}", flush=True)
    assert not load.fatal_errors(), f"idempotent producer hit fatal errors: {load.fatal_errors()}"
    assert not load.failed, f"{len(load.failed)} deliveries failed, first: {load.failed[:5]}"
    assert load.unflushed == 0, f"{load.unflushed} messages undelivered after flush"
    consumed = consume_all(cluster.bootstrap, topic, PARTITIONS)
    print(check_data(load.acks, consumed), flush=True)
