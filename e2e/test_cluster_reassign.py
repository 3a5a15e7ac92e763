"""Partition moves under load against a real cluster: 3 `floe controller` + 3 `floe broker`
processes (object WAL, objects on the local filesystem), real clients running the whole time:

- an idempotent confluent-kafka producer (ProduceLoad, acks=all) writing to every partition;
- a consumer group of two confluent-kafka consumers (subscribe(), eager rebalancing,
  enable.auto.commit=False, a synchronous commit after every batch: at-least-once).

Meanwhile:
1. single partitions are moved back and forth with `floe admin reassign`, and
   `floe admin move --from A --to B --count 1` twice (there and back);
2. broker 3 is drained (`floe admin drain 3`: it leads nothing, its state is
   "draining"), then stopped with SIGTERM (must exit 0);
3. broker 4 joins, `floe admin rebalance` gives it partitions, Metadata shows it
   leading them and the producer's acks land on them (records under broker 4's
   leader epoch);
4. broker 1 is killed with SIGKILL: its partitions take produce elsewhere
   within lease + grace (+ slack).

At the end:
- producer: no failed delivery, no fatal error, nothing unflushed;
- exactly-once per partition (check_data on a fresh assign() read from offset
  0): every acked record present once, at its acked offset; offsets 0..n-1;
  leader epochs never decrease;
- the group (check_group): every acked record delivered to the group at least
  once, each delivery is the record the log holds at that offset, and per
  member / assignment session / partition offsets strictly increase.
  Redeliveries are allowed (at-least-once) but only across sessions: a member
  that gets a partition resumes from the last committed offset, which may be
  behind what the previous owner had delivered when its commit did not get
  through (NOT_COORDINATOR while the coordinator moved with the live brokers).

TIMING lines (run with -s): per-move unavailability seen by the producer
(longest wait between consecutive acks on the moved partition around the
move, and the time from the request to the first ack written under the new
leader epoch), the drain, the SIGTERM exit, broker 4 start -> first acked
produce on a partition it leads, and the SIGKILL failover.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import NewTopic

from cluster import (  # noqa: F401  (make_cluster is a fixture)
    GroupConsumerLoad,
    ProduceLoad,
    ack_gap_around,
    ack_gap_stats,
    check_data,
    check_group,
    consume_all,
    epochs_of,
    find_coordinator,
    first_ack_after,
    floe_admin,
    make_cluster,
    partition_leaders,
    wait_until,
)
from floe_e2e import admin_client, unique_name

LEASE_MS = 2000
GRACE_MS = 500
PARTITIONS = 6
# A move that blocks the producer for longer than a lease + grace failover is a bug.
MOVE_UNAVAILABLE_MAX_S = 5.0
SLACK_S = 3.0


def timing(msg: str) -> None:
    print(f"TIMING {msg}", flush=True)


def live(cluster):
    return [b for b in cluster.brokers.values() if b.is_running()]


def leaders(cluster, topic: str, via=None) -> dict[int, tuple[int, int]]:
    """partition -> (leader, epoch) as one running broker (`via`, or the first) reports it."""
    b = via or live(cluster)[0]
    return partition_leaders(b.bootstrap, topic)


def wait_agreed(cluster, topic: str, pred, timeout: float, what: str) -> dict[int, tuple[int, int]]:
    """Waits until every running broker's Metadata is the same and pred(view) holds; returns the view."""
    out = {}

    def ok():
        views = [partition_leaders(b.bootstrap, topic) for b in live(cluster)]
        if any(v != views[0] for v in views) or len(views[0]) != PARTITIONS:
            return views
        if not pred(views[0]):
            return views[0]
        out.update(views[0])
        return True

    wait_until(ok, timeout, what)
    return out


class Moves:
    """Runs moves while the producer writes and records what each did to it."""

    def __init__(self, cluster, topic: str, load: ProduceLoad):
        self.cluster, self.topic, self.load = cluster, topic, load
        self.done: list[dict] = []

    def run(self, label: str, *args: str, expect=None) -> dict:
        """`floe admin ARGS`; then waits until every broker's Metadata agrees and
        expect(before, view) holds (the moves are visible), and for acks on the
        moved partitions."""
        before = leaders(self.cluster, self.topic)
        t_req = time.monotonic()
        res = floe_admin(self.cluster, *args, timeout=60)
        t_done = time.monotonic()
        assert res.get("pending") == 0 and res.get("moved") == res.get("requested"), f"{label}: {args} -> {res}"
        live_ids = {b.node_id for b in live(self.cluster)}
        after = wait_agreed(self.cluster, self.topic,
                            lambda v: all(l in live_ids for l, _ in v.values()) and (expect is None or expect(before, v)),
                            15, f"{label}: every broker's Metadata agreeing and showing the move")
        moved = sorted(p for p in after if after[p][0] != before[p][0])
        for p in moved:
            assert after[p][1] > before[p][1], f"{label}: partition {p} moved without a higher epoch: {before[p]} -> {after[p]}"
        # the producer gets through on every moved partition afterwards
        wait_until(lambda: all(first_ack_after(self.load.snapshot(), t_done, p) for p in moved), 20,
                   f"{label}: acks on moved partitions {moved} after the move")
        acks = self.load.snapshot()
        gaps = {p: ack_gap_around(acks, p, t_req, t_done) for p in moved}
        rec = dict(label=label, args=args, result=res, before=before, after=after, moved=moved,
                   t_req=t_req, t_done=t_done, gaps=gaps)
        self.done.append(rec)
        timing(f"{label}: `floe admin {' '.join(args)}` -> {res}; moved {moved} "
               f"({', '.join(f'p{p}: {before[p][0]}->{after[p][0]} epoch {before[p][1]}->{after[p][1]}' for p in moved)}); "
               f"tool {1000 * (t_done - t_req):.0f} ms; longest wait between acks on the moved partition(s): "
               f"{', '.join(f'p{p}: {1000 * g:.0f} ms' if g is not None else f'p{p}: n/a' for p, g in gaps.items())}")
        return rec


@pytest.mark.timeout(240)
def test_reassign_drain_join_kill_under_load(make_cluster):
    t_test = time.monotonic()
    cluster = make_cluster(brokers=3, wal_mode="object", lease_ms=LEASE_MS, grace_ms=GRACE_MS)
    topic = unique_name("reassign")
    admin = admin_client(cluster.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        operation_timeout=15, request_timeout=20)[topic].result(timeout=30)
    start = wait_agreed(cluster, topic, lambda v: {l for l, _ in v.values()} == {1, 2, 3}, 30,
                        "the new topic's partitions spread over brokers 1, 2, 3")
    print(f"leaders at the start: {start}", flush=True)

    # A group whose coordinator is broker 3 (drained and stopped below): the
    # group has to move to another coordinator and resume from the committed
    # offsets held by the controllers.
    for _ in range(200):
        group_id = unique_name("reassign-group")
        if find_coordinator(cluster.broker(1).bootstrap, group_id) == (0, 3):
            break
    else:
        raise AssertionError("no group id hashed to broker 3 in 200 tries")
    load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS, interval=0.003).start()
    group = GroupConsumerLoad(cluster.bootstrap, topic, group_id, members=2).start()
    moves = Moves(cluster, topic, load)
    try:
        wait_until(lambda: all(first_ack_after(load.snapshot(), 0, p) for p in range(PARTITIONS)), 30,
                   "acks on every partition")
        wait_until(lambda: len({p for _, _, _, ps in group.assignments for p in ps}) == PARTITIONS
                   and len(group.snapshot()) > 0, 30, "the group to be assigned every partition and consume")
        time.sleep(1)

        # 1. back and forth, one partition at a time, then `move --count 1` there and back
        cur = leaders(cluster, topic)
        plan = []
        for p, k in ((0, 0), (1, 0), (0, 1)):
            home = cur[p][0]
            other = [b for b in (1, 2, 3) if b != home][k]
            plan += [(p, other), (p, home)]
        for i, (p, dest) in enumerate(plan):
            moves.run(f"reassign#{i + 1}", "reassign", f"{topic}:{p}={dest}",
                      expect=lambda before, v, p=p, dest=dest: v[p][0] == dest)
            time.sleep(0.5)

        def count(v, b):
            return sum(1 for l, _ in v.values() if l == b)

        for i, (src, dst) in enumerate(((2, 3), (3, 2))):
            rec = moves.run(f"move#{i + 1}", "move", "--from", str(src), "--to", str(dst), "--count", "1",
                            expect=lambda before, v, src=src: count(v, src) == count(before, src) - 1)
            assert len(rec["moved"]) == 1 and all(rec["after"][p][0] == dst for p in rec["moved"]), rec
            time.sleep(0.5)
        # a multi-partition reassign in one request: two partitions led by different brokers to broker 1
        cur = leaders(cluster, topic)
        two = [next(p for p in sorted(cur) if cur[p][0] == 2), next(p for p in sorted(cur) if cur[p][0] == 3)]
        rec = moves.run("reassign-2", "reassign", *(f"{topic}:{p}=1" for p in two),
                        expect=lambda before, v: all(v[p][0] == 1 for p in two))
        assert all(rec["after"][p][0] == 1 for p in two), rec
        time.sleep(0.5)
        rec = moves.run("rebalance-3", "rebalance",
                        expect=lambda before, v: max(count(v, b) for b in (1, 2, 3)) - min(count(v, b) for b in (1, 2, 3)) <= 1)
        counts = {b: count(rec["after"], b) for b in (1, 2, 3)}
        assert max(counts.values()) - min(counts.values()) <= 1, f"rebalance left uneven leaders: {counts}"
        for r in moves.done:
            for p, g in r["gaps"].items():
                assert g is not None and g <= MOVE_UNAVAILABLE_MAX_S, (
                    f"{r['label']}: the producer waited {g} s on partition {p} (> {MOVE_UNAVAILABLE_MAX_S} s)")

        # 2. drain broker 3, then SIGTERM it
        b3 = cluster.broker(3)
        rec = moves.run("drain-3", "drain", "3", expect=lambda before, v: count(v, 3) == 0)
        drain_s = rec["t_done"] - rec["t_req"]
        assert all(l != 3 for l, _ in rec["after"].values()), f"broker 3 still leads after the drain: {rec['after']}"
        st = floe_admin(cluster, "status")
        b3_state = next(b for b in st["brokers"] if b["id"] == 3)
        assert b3_state["state"] == "draining" and b3_state["leads"] == 0, st
        timing(f"drain: `floe admin drain 3` moved {rec['result'].get('moved')} partitions in "
               f"{rec['result'].get('elapsed_ms'):.0f} ms (tool {1000 * drain_s:.0f} ms wall); status: {b3_state}")
        time.sleep(0.5)
        t_term = time.monotonic()
        b3.stop()  # asserts exit code 0
        t_exit = time.monotonic()
        timing(f"drain: drained broker 3 exited 0 {t_exit - t_term:.2f} s after SIGTERM")
        # Observation (not asserted): how long FindCoordinator still names the
        # stopped broker (until its lease lapses and the controller fences it).
        t_coord = wait_until(lambda: find_coordinator(cluster.broker(2).bootstrap, group_id)[1] not in (3, -1),
                             (LEASE_MS + GRACE_MS) / 1000 + 10, "FindCoordinator to stop naming broker 3", interval=0.02)
        timing(f"drain: FindCoordinator named the stopped broker 3 as the group's coordinator for "
               f"{t_coord - t_exit:.2f} s after it exited (lease {LEASE_MS / 1000} s + grace {GRACE_MS / 1000} s); "
               f"now broker {find_coordinator(cluster.broker(2).bootstrap, group_id)[1]}")
        after_stop = wait_agreed(cluster, topic, lambda v: all(l in (1, 2) for l, _ in v.values()), 15,
                                 "leaders among brokers 1, 2 after broker 3 stopped")
        t_mark = time.monotonic()
        wait_until(lambda: all(first_ack_after(load.snapshot(), t_mark, p) for p in range(PARTITIONS)), 20,
                   "acks on every partition after broker 3 stopped")
        print(f"leaders after broker 3 stopped: {after_stop}", flush=True)

        # 3. broker 4 joins, rebalance gives it partitions, it takes produce
        t_spawn = time.monotonic()
        b4 = cluster.add_broker(node_id=4, wait=False)
        b4.wait_ready()
        t_ready = time.monotonic()
        rec = moves.run("rebalance-join", "rebalance", expect=lambda before, v: count(v, 4) > 0)
        b4_parts = sorted(p for p, (l, _) in rec["after"].items() if l == 4)
        assert b4_parts, f"rebalance gave broker 4 nothing: {rec['after']}"
        b4_epochs = {p: rec["after"][p][1] for p in b4_parts}
        b4_view = partition_leaders(b4.bootstrap, topic)
        assert all(b4_view[p][0] == 4 for p in b4_parts), f"broker 4's own Metadata: {b4_view}"
        first = min((first_ack_after(load.snapshot(), rec["t_done"], p) for p in b4_parts), key=lambda a: a.at)
        timing(f"join: broker 4 ready {t_ready - t_spawn:.2f} s after spawn; rebalance done "
               f"{rec['t_done'] - t_spawn:.2f} s after spawn, broker 4 leads {b4_parts}; first ack on one of them "
               f"{first.at - t_spawn:.2f} s after spawn (partition {first.partition} offset {first.offset})")
        time.sleep(1)

        # 4. SIGKILL broker 1
        b1 = cluster.broker(1)
        cur = wait_agreed(cluster, topic, lambda v: True, 10, "agreed Metadata before the kill")
        b1_parts = sorted(p for p, (l, _) in cur.items() if l == 1)
        assert b1_parts, f"broker 1 leads nothing before the kill: {cur}"
        t_kill = time.monotonic()
        b1.kill()
        t_guard = t_kill + 0.2  # responses broker 1 sent before dying arrive within this
        wait_until(lambda: all(first_ack_after(load.snapshot(), t_guard, p) for p in b1_parts),
                   (LEASE_MS + GRACE_MS) / 1000 + 20, f"acks on {b1_parts} after the SIGKILL of broker 1")
        per = {p: first_ack_after(load.snapshot(), t_guard, p).at - t_kill for p in b1_parts}
        failover = max(per.values())
        after_kill = wait_agreed(cluster, topic, lambda v: all(l in (2, 4) for l, _ in v.values()), 15,
                                 "leaders among brokers 2, 4 after the kill")
        timing(f"kill: partitions {b1_parts} of broker 1 accepted produce elsewhere {failover:.2f} s after SIGKILL "
               f"(per partition {', '.join(f'{p}: {s:.2f}' for p, s in per.items())}; lease {LEASE_MS / 1000} s + "
               f"grace {GRACE_MS / 1000} s); leaders now {after_kill}")
        assert all(after_kill[p][1] > cur[p][1] for p in b1_parts), (cur, after_kill)
        assert failover <= (LEASE_MS + GRACE_MS) / 1000 + SLACK_S, f"failover took {failover:.2f} s"
        time.sleep(2)
    finally:
        load.close()
    print(f"producer: {load.summary()}", flush=True)
    acks = load.acks

    # the group catches up with everything acknowledged, then stops
    acked_values = {a.value for a in acks}
    try:
        t_wait = time.monotonic()
        wait_until(lambda: acked_values <= group.values() or
                   f"{len(acked_values - group.values())} acked records not yet delivered", 60,
                   "the group to receive every acknowledged record", interval=0.2)
        print(f"group caught up {time.monotonic() - t_wait:.2f} s after the producer stopped", flush=True)
    finally:
        group.stop()
    print(group.summary(), flush=True)
    for at, m, s, ps in group.assignments:
        print(f"  group: +{at - t_test:6.2f} s member {m} session {s} assigned {ps}", flush=True)

    assert not load.fatal_errors(), f"idempotent producer hit fatal errors: {load.fatal_errors()}"
    assert not load.failed, f"{len(load.failed)} deliveries failed, first: {load.failed[:5]}"
    assert load.unflushed == 0, f"{load.unflushed} messages undelivered after flush"
    consumed = consume_all(cluster.bootstrap, topic, PARTITIONS)
    print(check_data(acks, consumed), flush=True)
    print(check_group(acks, group, consumed), flush=True)

    # records landed on broker 4: acked records written under broker 4's leader epoch
    epoch_of = epochs_of(consumed, acks)
    if any(epoch_of.get(a.value) not in (None, -1) for a in acks):
        on_b4 = [a for a in acks if a.partition in b4_epochs and epoch_of.get(a.value) == b4_epochs[a.partition]]
        assert on_b4, f"no acked record on {b4_parts} carries broker 4's leader epochs {b4_epochs}"
        first4 = min(on_b4, key=lambda a: a.at)
        timing(f"join: {len(on_b4)} acked records written by broker 4 (epochs {b4_epochs}); the first acked "
               f"{first4.at - t_spawn:.2f} s after broker 4 was spawned")
        # per move: request -> first ack written under the new leader epoch
        for r in moves.done:
            parts = []
            for p in r["moved"]:
                ep = r["after"][p][1]
                new = [a for a in acks if a.partition == p and a.at > r["t_req"] and (epoch_of.get(a.value) or -1) >= ep]
                parts.append(f"p{p}: {1000 * (min(a.at for a in new) - r['t_req']):.0f} ms" if new else f"p{p}: none")
            timing(f"{r['label']}: request -> first ack under the new epoch: {', '.join(parts)}")
    else:
        print("epoch checks skipped: the consumer saw no leader epochs in the record batches", flush=True)
    windows = [(r["t_req"] - 0.5, r["t_done"] + 1.5) for r in moves.done] + [(t_kill - 0.5, t_kill + failover + 1)]
    timing(f"baseline: wait between consecutive acks on a partition outside moves/failover: {ack_gap_stats(acks, windows)}")
    timing(f"total test wall time {time.monotonic() - t_test:.1f} s")
