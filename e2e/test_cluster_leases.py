"""Broker leases against a real controller quorum: 3 `floe controller` + 2 `floe broker` processes.

a. object WAL: a broker cut off from the controllers (FaultProxy) loses its
   partitions to the other broker with bumped leader epochs, within lease +
   grace (+ slack); the idempotent producer carries on; nothing acknowledged
   is lost, duplicated or moved; the cut broker comes back after the heal.
b. object WAL: SIGKILL of a broker; time until its partitions take produce
   on the other broker.
c. volume WAL: a cut broker stops acknowledging once its lease runs out, keeps
   its partitions, and leads them again after the heal.

Every test prints its measured times on lines starting with "TIMING" (see
them with -s).  Consumers use assign() only (no group protocol).
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import NewTopic

from cluster import (  # noqa: F401  (make_cluster is a fixture)
    AdminFailed,
    ProduceLoad,
    check_data,
    consume_all,
    epochs_of,
    floe_admin,
    make_cluster,
    metadata,
)
from floe_e2e import admin_client, unique_name

LEASE_MS = 2000
GRACE_MS = 500
PARTITIONS = 4
# How late past lease + grace the move may be observed on the surviving broker.
SLACK_S = 3.0


def timing(msg: str) -> None:
    print(f"TIMING {msg}", flush=True)


def create_spread_topic(cluster, name: str, partitions: int = PARTITIONS) -> dict[int, int]:
    """CreateTopics through AdminClient; waits until every broker's Metadata shows a leader
    (and the same one) for every partition. Returns partition -> leader epoch."""
    admin = admin_client(cluster.bootstrap)
    futs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                               operation_timeout=15, request_timeout=20)
    futs[name].result(timeout=30)
    deadline = time.monotonic() + 30
    last = None
    while True:
        views = {b.node_id: metadata(b.bootstrap, [name]).topics.get(name, {}) for b in cluster.brokers.values()}
        leaders = {nid: {p: i.leader for p, i in v.items()} for nid, v in views.items()}
        first = next(iter(views.values()))
        if (all(len(v) == partitions for v in views.values())
                and all(i.leader in cluster.brokers and i.error == 0 for v in views.values() for i in v.values())
                and len({tuple(sorted(l.items())) for l in leaders.values()}) == 1):
            leader_of = {p: i.leader for p, i in first.items()}
            assert set(leader_of.values()) == set(cluster.brokers), (
                f"partitions of a new topic not spread over the live brokers {sorted(cluster.brokers)}: {leader_of}")
            return {p: i.leader_epoch for p, i in first.items()}
        last = leaders
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name}: no agreed leaders for {partitions} partitions in 30 s: {last}")
        time.sleep(0.1)


def leaders_seen_by(broker, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (leader, leader epoch) in Metadata asked of exactly this broker."""
    return {p: (i.leader, i.leader_epoch) for p, i in metadata(broker.bootstrap, [topic]).topics.get(topic, {}).items()}


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as e:  # the broker may refuse a connection during the fault
            last = repr(e)
            time.sleep(interval)
            continue
        if last is True:
            return time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")


def first_ack_after(load: ProduceLoad, t: float, partition: int):
    for a in load.snapshot():
        if a.partition == partition and a.at > t:
            return a
    return None


def stop_and_check(load: ProduceLoad, bootstrap: str, topic: str) -> dict:
    load.stop(flush_timeout=60)
    print(f"producer: {load.summary()}", flush=True)
    fatal = load.fatal_errors()
    assert not fatal, f"idempotent producer hit fatal errors: {fatal}"
    assert not load.failed, f"{len(load.failed)} deliveries failed, first: {load.failed[:5]}"
    assert load.unflushed == 0, f"{load.unflushed} messages undelivered after flush"
    consumed = consume_all(bootstrap, topic, PARTITIONS)
    print(check_data(load.acks, consumed), flush=True)
    return consumed


# --------------------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("cut_mode", ["blackhole", "refuse"])
def test_object_mode_cut_broker_loses_partitions(make_cluster, cut_mode):
    cluster = make_cluster(brokers=2, wal_mode="object", lease_ms=LEASE_MS, grace_ms=GRACE_MS)
    topic = unique_name("lease-cut")
    epochs0 = create_spread_topic(cluster, topic)
    before = leaders_seen_by(cluster.broker(1), topic)
    a, b = cluster.broker(1), cluster.broker(2)
    a_parts = sorted(p for p, (l, _) in before.items() if l == a.node_id)
    print(f"leaders before: {before}; broker {a.node_id} leads {a_parts}", flush=True)

    load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS).start()
    try:
        wait_until(lambda: all(first_ack_after(load, 0, p) for p in range(PARTITIONS)), 20,
                   "acks on every partition before the cut")
        time.sleep(1)

        t_cut = time.monotonic()
        cluster.cut(a, mode=cut_mode)

        def moved():
            seen = leaders_seen_by(b, topic)
            return all(seen[p][0] == b.node_id for p in range(PARTITIONS)) and all(
                seen[p][1] > epochs0[p] for p in a_parts) or seen

        t_moved = wait_until(moved, LEASE_MS / 1000 + GRACE_MS / 1000 + 15, "all partitions led by the surviving broker")
        after = leaders_seen_by(b, topic)
        move_s = t_moved - t_cut
        timing(f"object-cut[{cut_mode}]: partitions of broker {a.node_id} observed on broker {b.node_id} after {move_s:.2f} s "
               f"(lease {LEASE_MS / 1000} s + grace {GRACE_MS / 1000} s); leaders now {after}")
        assert move_s <= (LEASE_MS + GRACE_MS) / 1000 + SLACK_S, (
            f"partitions moved only after {move_s:.2f}s (> lease + grace + {SLACK_S}s)")
        a_ready_during_cut = a.ready()

        # The producer carries on against B on every partition A led.
        wait_until(lambda: all(first_ack_after(load, t_moved, p) for p in a_parts), 20,
                   f"acks on {a_parts} from broker {b.node_id} after the move")
        t_resumed = max(first_ack_after(load, t_moved, p).at for p in a_parts)
        timing(f"object-cut[{cut_mode}]: producer acknowledged on all moved partitions {t_resumed - t_cut:.2f} s after the cut")
        time.sleep(2)
    finally:
        load.close()
    consumed = stop_and_check(load, b.bootstrap, topic)

    # "A acknowledged nothing after the move" is what the data check above
    # shows: an ack A gave without a commit, or for an offset B reused, would
    # be a missing or misplaced message.  Ack *times* prove nothing by
    # themselves: a batch A committed just before the cut but could not
    # confirm is retried to B, which answers it from the idempotence state
    # with A's offset (a record under the old epoch, acknowledged late).  So
    # old-epoch acks after the move are only counted here; along each
    # partition the epochs must not decrease (checked by check_data).
    epoch_of = epochs_of(consumed, load.acks)
    known = [x for x in load.acks if x.partition in a_parts and epoch_of.get(x.value) not in (None, -1)]
    if known:
        old_late = [x for x in known if epoch_of[x.value] <= epochs0[x.partition] and x.at > t_moved]
        new_epoch = [x for x in known if epoch_of[x.value] > epochs0[x.partition]]
        print(f"epochs on {a_parts}: {len(known) - len(new_epoch)} records under the old epoch, "
              f"{len(new_epoch)} under the new one; {len(old_late)} old-epoch records acknowledged "
              f"after the move was observed (retries answered by the new leader)", flush=True)
        assert new_epoch, f"no record on {a_parts} was written under the new leader epoch"
    else:
        print("epoch check skipped: the consumer saw no leader epochs in the record batches")

    # Heal: A registers again and becomes ready.
    t_heal = time.monotonic()
    cluster.heal(a)
    a.wait_ready(timeout=30)
    timing(f"object-cut[{cut_mode}]: broker {a.node_id} ready again {time.monotonic() - t_heal:.2f} s after the heal")
    # ...and its metadata mirror catches up: it reports B as the leader too.
    t_agree = wait_until(lambda: leaders_seen_by(a, topic) == leaders_seen_by(b, topic) or leaders_seen_by(a, topic),
                         15, f"broker {a.node_id}'s Metadata to agree with broker {b.node_id}'s")
    timing(f"object-cut[{cut_mode}]: broker {a.node_id}'s Metadata agrees with broker {b.node_id}'s "
           f"{t_agree - t_heal:.2f} s after the heal")
    assert not a_ready_during_cut, f"broker {a.node_id} still answered /readyz 200 after its partitions moved"


@pytest.mark.timeout(180)
def test_object_mode_sigkill_failover(make_cluster):
    cluster = make_cluster(brokers=2, wal_mode="object", lease_ms=LEASE_MS, grace_ms=GRACE_MS)
    topic = unique_name("lease-kill")
    epochs0 = create_spread_topic(cluster, topic)
    a, b = cluster.broker(1), cluster.broker(2)
    before = leaders_seen_by(b, topic)
    a_parts = sorted(p for p, (l, _) in before.items() if l == a.node_id)
    print(f"leaders before: {before}; broker {a.node_id} leads {a_parts}", flush=True)

    load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS).start()
    wait_until(lambda: all(first_ack_after(load, 0, p) for p in range(PARTITIONS)), 20,
               "acks on every partition before the kill")
    time.sleep(1)
    t_kill = time.monotonic()
    a.kill()
    # Responses A wrote before it died reach the producer within milliseconds;
    # after 0.2 s an ack on A's partitions can only come from the new leader.
    t_guard = t_kill + 0.2
    wait_until(lambda: all(first_ack_after(load, t_guard, p) for p in a_parts),
               (LEASE_MS + GRACE_MS) / 1000 + 20, f"acks on {a_parts} after the kill")
    per = {p: first_ack_after(load, t_guard, p).at - t_kill for p in a_parts}
    failover = max(per.values())
    after = leaders_seen_by(b, topic)
    timing(f"object-kill: partitions {a_parts} accepted produce on broker {b.node_id} "
           f"{failover:.2f} s after SIGKILL (per partition {', '.join(f'{p}: {s:.2f}' for p, s in per.items())}); "
           f"leaders now {after}")
    assert all(after[p][0] == b.node_id and after[p][1] > epochs0[p] for p in a_parts), after
    time.sleep(1)
    consumed = stop_and_check(load, b.bootstrap, topic)
    epoch_of = epochs_of(consumed, load.acks)
    if any(epoch_of.get(x.value) not in (None, -1) for x in load.acks):
        first_new = {}
        for x in sorted(load.acks, key=lambda x: x.at):
            if x.partition in a_parts and epoch_of[x.value] > epochs0[x.partition]:
                first_new.setdefault(x.partition, x.at - t_kill)
        timing(f"object-kill: first ack written under the new leader epoch, by partition: "
               f"{ {p: round(s, 2) for p, s in first_new.items()} }")
    assert failover <= (LEASE_MS + GRACE_MS) / 1000 + SLACK_S, (
        f"failover took {failover:.2f}s > lease + grace + {SLACK_S}s")

    # A comes back (fresh registration) and the cluster ends with both brokers.
    t_start = time.monotonic()
    a.start()
    timing(f"object-kill: restarted broker {a.node_id} ready in {time.monotonic() - t_start:.2f} s")


@pytest.mark.timeout(180)
def test_volume_mode_cut_broker_stops_acknowledging(make_cluster):
    cluster = make_cluster(brokers=2, wal_mode="volume", lease_ms=LEASE_MS, grace_ms=GRACE_MS)
    topic = unique_name("lease-volume")
    epochs0 = create_spread_topic(cluster, topic)
    a, b = cluster.broker(1), cluster.broker(2)
    before = leaders_seen_by(b, topic)
    a_parts = sorted(p for p, (l, _) in before.items() if l == a.node_id)
    b_parts = sorted(set(range(PARTITIONS)) - set(a_parts))
    print(f"leaders before: {before}; broker {a.node_id} leads {a_parts}", flush=True)

    load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS).start()
    wait_until(lambda: all(first_ack_after(load, 0, p) for p in range(PARTITIONS)), 20,
               "acks on every partition before the cut")
    time.sleep(1)
    t_cut = time.monotonic()
    cluster.cut(a)

    # A's own lease runs out at most one lease after the cut.
    t_unready = a.wait_not_ready(LEASE_MS / 1000 + SLACK_S)
    timing(f"volume-cut: broker {a.node_id} /readyz not ready {t_unready - t_cut:.2f} s after the cut")
    time.sleep(max(0.0, t_cut + (LEASE_MS + GRACE_MS) / 1000 + 2.5 - time.monotonic()))
    t_heal = time.monotonic()
    during = leaders_seen_by(b, topic)
    last_a_ack = max((x.at for x in load.snapshot() if x.partition in a_parts and x.at <= t_heal), default=None)
    # Nothing acknowledged on A's partitions once A's lease ran out (0.5 s
    # slack for the response to reach the producer).
    late = [x for x in load.snapshot() if x.partition in a_parts and t_cut + LEASE_MS / 1000 + 0.5 < x.at <= t_heal]
    b_acks = [x for x in load.snapshot() if x.partition in b_parts and t_cut < x.at <= t_heal]
    timing(f"volume-cut: last ack on {a_parts} {(last_a_ack - t_cut) if last_a_ack else float('nan'):.2f} s after the cut "
           f"(lease {LEASE_MS / 1000} s); {len(b_acks)} acks on {b_parts} meanwhile; leaders seen by broker "
           f"{b.node_id}: {during}")

    cluster.heal(a)
    a.wait_ready(timeout=30)
    t_ready = time.monotonic()
    timing(f"volume-cut: broker {a.node_id} ready again {t_ready - t_heal:.2f} s after the heal")
    wait_until(lambda: all(first_ack_after(load, t_heal, p) for p in a_parts), 30,
               f"acks on {a_parts} after the heal")
    resumed = max(first_ack_after(load, t_heal, p).at for p in a_parts) - t_heal
    timing(f"volume-cut: produce on {a_parts} acknowledged again {resumed:.2f} s after the heal")
    after = leaders_seen_by(b, topic)
    time.sleep(1)
    consumed = stop_and_check(load, b.bootstrap, topic)
    epoch_of = epochs_of(consumed, load.acks)
    if any(epoch_of.get(x.value) not in (None, -1) for x in load.acks):
        print(f"leader epochs seen on {a_parts}: "
              f"{ {p: sorted({epoch_of[x.value] for x in load.acks if x.partition == p}) for p in a_parts} }")

    assert not late, (f"{len(late)} acks on {a_parts} after broker {a.node_id}'s lease ran out "
                      f"(cut at 0, lease {LEASE_MS / 1000} s): first at {late[0].at - t_cut:.2f} s")
    assert b_acks, f"no acks on broker {b.node_id}'s partitions {b_parts} during the cut"
    assert all(after[p][0] == a.node_id for p in a_parts), (
        f"after the heal broker {a.node_id} does not lead {a_parts} again: {after}")
    assert all(during[p][0] != b.node_id for p in a_parts), (
        f"volume mode: A's partitions were given to broker {b.node_id} during the cut: {during}")


@pytest.mark.timeout(180)
def test_volume_mode_give_up_on_a_lost_broker(make_cluster):
    """A volume-WAL broker that never comes back: its partitions stay with it
    (fenced) until `floe admin give-up B --accept-data-loss` moves them to the
    live broker under a new epoch, opening from what it uploaded. Here every
    acknowledged record was uploaded before the kill, so nothing is lost; the
    broker coming back later with its old volume disturbs nothing."""
    cluster = make_cluster(brokers=2, wal_mode="volume", lease_ms=LEASE_MS, grace_ms=GRACE_MS,
                           broker_args=["--upload-interval-ms", "200"])
    topic = unique_name("give-up")
    epochs0 = create_spread_topic(cluster, topic)
    a, b = cluster.broker(1), cluster.broker(2)
    a_parts = sorted(p for p, (l, _) in leaders_seen_by(b, topic).items() if l == a.node_id)
    assert a_parts, "broker 1 leads no partition"

    load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS).start()
    wait_until(lambda: all(first_ack_after(load, 0, p) for p in range(PARTITIONS)), 20, "acks everywhere")
    time.sleep(1)
    load.stop(flush_timeout=30)
    assert not load.failed and load.unflushed == 0, load.summary()
    time.sleep(1.5)  # every acknowledged record uploaded (200 ms upload interval)
    a.kill()
    time.sleep((LEASE_MS + GRACE_MS) / 1000 + 1.0)
    during = leaders_seen_by(b, topic)
    assert all(during[p][0] != b.node_id for p in a_parts), f"moved without being asked: {during}"

    with pytest.raises(AdminFailed, match="accept-data-loss"):
        floe_admin(cluster, "give-up", str(a.node_id))
    t = time.monotonic()
    r = floe_admin(cluster, "give-up", str(a.node_id), "--accept-data-loss")
    assert r["outcome"] == f"BrokerFenced {{ moved: {len(a_parts)} }}", r
    after = {}
    wait_until(lambda: (after.update(leaders_seen_by(b, topic)) or True)
               and all(after[p][0] == b.node_id and after[p][1] > epochs0[p] for p in a_parts),
               15, f"partitions {a_parts} on broker {b.node_id}")
    timing(f"give-up: partitions {a_parts} led by broker {b.node_id} {time.monotonic() - t:.2f} s after the command")

    # They take produce again, after everything acknowledged before.
    from confluent_kafka import Producer

    pr = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "log_level": 3})
    errors = []
    for p in a_parts:
        pr.produce(topic, value=f"after-{p}".encode(), partition=p,
                   on_delivery=lambda e, m: e and errors.append(str(e)))
    assert pr.flush(30) == 0 and not errors, errors
    consumed = consume_all(b.bootstrap, topic, PARTITIONS)
    whole = {p: [r.value for r in recs] for p, recs in consumed.items()}
    later = {r.value for recs in consumed.values() for r in recs if r.value.startswith(b"after-")}
    assert later == {f"after-{p}".encode() for p in a_parts}, later
    for recs in consumed.values():
        recs[:] = [r for r in recs if not r.value.startswith(b"after-")]
    print(check_data(load.acks, consumed), flush=True)

    # The old broker returns with its volume: it leads nothing it lost, and
    # the topic reads the same.
    a.start()
    time.sleep(1)
    again = consume_all(b.bootstrap, topic, PARTITIONS)
    assert {p: [r.value for r in recs] for p, recs in again.items()} == whole
    assert all(leaders_seen_by(b, topic)[p][0] == b.node_id for p in a_parts)
