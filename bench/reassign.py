#!/usr/bin/env python3
"""Partition-move benchmark on a real multi-process cluster (e2e/cluster.py):
3 `floe controller` + 3 `floe broker` processes, object WAL, objects on the
local filesystem, real clients (confluent-kafka). Prints ONE line of JSON on
stdout; progress goes to stderr.

Reproduce (uses ${CARGO_TARGET_DIR:-target}/debug/floe or $FLOE_BIN; builds nothing):

    e2e/.venv/bin/python bench/reassign.py --runs 3
    e2e/.venv/bin/python bench/reassign.py --runs 1 --partitions 200 --moves 50   # quicker

Each run starts a fresh cluster and measures:
  a. producer-visible unavailability per moved partition: --moves single-partition
     `floe admin reassign` moves (round-robin over a --small-partitions topic,
     one move every --move-spacing-ms) while an idempotent producer writes to
     every partition; per move, the time from the request to the first ack of
     a record written under the new leader epoch (epochs read back afterwards),
     and the longest wait between consecutive acks on that partition around
     the move; p50/p99 over all moves of all runs, next to the producer's
     baseline wait between acks outside moves;
  b. `floe admin move --from 1 --to 2` of a --partitions topic that broker 1
     leads entirely (put there with `reassign TOPIC:*=1`), every partition
     holding a few records: the tool's elapsed_ms and the wall time;
  c. `floe admin drain 2` of broker 2, which now leads those partitions; then
     the SIGTERM drain of broker 3 (what it leads moves to broker 1) until it
     exits 0;
  d. a new broker process (4): from spawn to the first acknowledged produce
     it serves (spawn, wait for /readyz, `reassign SMALL:0=4`, a fresh
     idempotent producer bootstrapped on broker 4 produces to partition 0);
  e. object-mode crash failover: broker 4 leads the whole small topic under
     produce load and gets SIGKILL; time until the metadata names a live
     leader for every partition (the broker side), and until every one of
     its partitions acknowledges the load producer's records elsewhere
     (with the lease/grace used).
  f. volume-mode crash recovery (skip with --no-volume), on a separate
     cluster of 3 controllers + 2 brokers with `--wal-mode volume` and a long
     upload interval (--volume-upload-interval-ms, 5 s), so acknowledged
     records sit only in the broker's local WAL: an idempotent producer
     writes to a 4-partition topic for ~2 s, broker 1 gets SIGKILL while the
     producer keeps sending (its sends to broker 1's partitions wait and
     retry), and after --volume-pause-ms broker 1 restarts on the same data
     dir and ports; measured: restart -> /readyz, restart -> first ack on
     every partition it leads (max), kill -> first ack (the whole outage:
     by design the partitions stay with the dead broker in volume mode);
     also restart -> first acks of a probe producer that sends one record
     per partition once /readyz answers (warmed up on the other broker, short
     backoffs: no reconnect backoff behind it, unlike the load producer).
     Then the exactly-once data check (check_data over consume_all) shows
     that nothing acknowledged before the kill was lost.
Scalars are medians over --runs. Targets (from the reassignment issue) are
printed next to the numbers: <= 300 ms per partition at p99, 1,000
partitions moved in <= 2 s, a drain in <= 5 s, a new broker serving in <= 1 s.
Note the binary is usually a debug build: compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from cluster import (  # noqa: E402
    Ack,
    Cluster,
    ProduceLoad,
    ack_gap_around,
    ack_gap_stats,
    check_data,
    consume_all,
    epochs_of,
    first_ack_after,
    floe_admin,
    floe_binary,
    http_get,
    partition_leaders,
    wait_until,
)

TARGETS = {"move_p99_ms": 300, "move_1000_ms": 2000, "drain_ms": 5000, "new_broker_serving_ms": 1000}


def log(msg: str) -> None:
    print(f"[reassign-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def ms(x):
    return None if x is None else round(1000 * x, 1)


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 1) if xs else None


def create_topic(cluster: Cluster, name: str, partitions: int, timeout: float = 120) -> dict[int, tuple[int, int]]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, "socket.timeout.ms": 30000, "log_level": 3})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=60, request_timeout=90)[name].result(timeout=timeout)
    live = [b for b in cluster.brokers.values() if b.is_running()]
    out = {}

    def ready():
        views = [partition_leaders(b.bootstrap, name, timeout=30) for b in live]
        if any(len(v) != partitions or v != views[0] or any(l < 0 for l, _ in v.values()) for v in views):
            return f"{[len(v) for v in views]} partitions seen"
        out.update(views[0])
        return True

    wait_until(ready, timeout, f"topic {name} with {partitions} led partitions", interval=0.2)
    return out


def wait_leaders(cluster: Cluster, topic: str, pred, timeout: float, what: str) -> dict[int, tuple[int, int]]:
    out = {}

    def ok():
        live = [b for b in cluster.brokers.values() if b.is_running()]
        views = [partition_leaders(b.bootstrap, topic, timeout=30) for b in live]
        if any(v != views[0] for v in views) or not pred(views[0]):
            return "not yet"
        out.update(views[0])
        return True

    wait_until(ok, timeout, what, interval=0.05)
    return out


def one_run(run: int, args, workdir: Path) -> dict:
    res: dict = {}
    cluster = Cluster(workdir / f"run{run}", lease_ms=args.lease_ms, grace_ms=args.grace_ms, wal_mode="object",
                      proxies=False, broker_args=args.broker_arg)
    try:
        t0 = time.monotonic()
        cluster.start(brokers=3)
        log(f"run {run}: cluster up in {time.monotonic() - t0:.1f} s ({cluster.workdir})")

        # (a) single-partition moves under produce load
        small = f"small-{run}"
        P = args.small_partitions
        create_topic(cluster, small, P)
        load = ProduceLoad(cluster.bootstrap, small, P, interval=0.002, **args.pconf).start()
        moves = []
        try:
            wait_until(lambda: all(first_ack_after(load.snapshot(), 0, p) for p in range(P)), 30, "acks everywhere")
            time.sleep(1.0)
            brokers = [1, 2, 3]
            for i in range(args.moves):
                p = i % P
                cur = partition_leaders(cluster.broker(1).bootstrap, small)
                dest = brokers[(brokers.index(cur[p][0]) + 1 + (i // P) % 2) % 3]
                t_req, wall_req = time.monotonic(), time.time()
                r = floe_admin(cluster, "reassign", f"{small}:{p}={dest}", timeout=60)
                t_done = time.monotonic()
                assert r.get("moved") == 1 and r.get("pending") == 0, r
                after = wait_leaders(cluster, small, lambda v: v[p][0] == dest, 15, f"partition {p} on broker {dest}")
                moves.append(dict(p=p, dest=dest, t_req=t_req, t_done=t_done, wall_req=wall_req, epoch=after[p][1],
                                  tool_ms=r.get("elapsed_ms"), wall_ms=ms(t_done - t_req),
                                  visible_ms=ms(time.monotonic() - t_req)))
                time.sleep(max(0.0, args.move_spacing_ms / 1000 - (time.monotonic() - t_req)))
                if (i + 1) % 10 == 0:
                    log(f"run {run}: {i + 1}/{args.moves} moves")
            last = moves[-1]
            wait_until(lambda: first_ack_after(load.snapshot(), last["t_done"] + 0.5, last["p"]) is not None, 20, "acks after the last move")
        finally:
            load.stop()
        assert not load.failed and not load.fatal_errors() and load.unflushed == 0, load.summary()
        acks = load.acks
        consumed = consume_all(cluster.bootstrap, small, P)
        epoch_of = epochs_of(consumed, acks)
        unavail, gaps = [], []
        for m in moves:
            first = next((a for a in acks if a.partition == m["p"] and a.at > m["t_req"]
                          and (epoch_of.get(a.value) if epoch_of.get(a.value) is not None else -1) >= m["epoch"]), None)
            m["unavail_ms"] = ms(first.at - m["t_req"]) if first else None
            m["gap_ms"] = ms(ack_gap_around(acks, m["p"], m["t_req"], m["t_done"]))
            unavail.append(m["unavail_ms"])
            gaps.append(m["gap_ms"])
        res["moves"] = moves
        res["baseline_gap"] = ack_gap_stats(acks, [(m["t_req"] - 0.3, m["t_done"] + 1.0) for m in moves])
        log(f"run {run}: move unavailability p50 {pct([u for u in unavail if u is not None], 50)} ms "
            f"p99 {pct([u for u in unavail if u is not None], 99)} ms; baseline ack gap {res['baseline_gap']}")

        # (b) N partitions from broker 1 to broker 2
        big = f"big-{run}"
        N = args.partitions
        t = time.monotonic()
        create_topic(cluster, big, N, timeout=300)
        log(f"run {run}: created {N} partitions in {time.monotonic() - t:.1f} s")
        r = floe_admin(cluster, "reassign", f"{big}:*=1", timeout=300)
        res["reassign_all_to_1"] = r
        wait_leaders(cluster, big, lambda v: len(v) == N and all(l == 1 for l, _ in v.values()), 60, "all on broker 1")
        from confluent_kafka import Producer, TopicPartition

        # A few records in every partition. Many producers in parallel: the
        # broker answers the requests of one connection in order, and in
        # object mode each produce waits for its upload window (100 ms by
        # default), so one producer would take ~N x 100 ms here.
        t_prod = time.monotonic()
        fill_errors = []

        def fill(k):
            pr = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, "linger.ms": 50,
                           "log_level": 3, "message.timeout.ms": 120000})
            for p in range(k, N, args.fill_producers):
                for rep in range(args.records_per_partition):
                    pr.produce(big, value=b"x" * 100, key=f"{p}-{rep}".encode(), partition=p,
                               on_delivery=lambda e, m: e and fill_errors.append(str(e)))
                pr.poll(0)
            left = pr.flush(180)
            if left:
                fill_errors.append(f"{left} undelivered")

        th = [threading.Thread(target=fill, args=(k,)) for k in range(args.fill_producers)]
        for x in th:
            x.start()
        for x in th:
            x.join(240)
        assert not fill_errors, fill_errors[:5]
        log(f"run {run}: {args.records_per_partition} records in each of {N} partitions on broker 1 "
            f"({time.monotonic() - t_prod:.1f} s with {args.fill_producers} producers)")
        t = time.monotonic()
        r = floe_admin(cluster, "move", "--from", "1", "--to", "2", timeout=300)
        wall = time.monotonic() - t
        assert r.get("moved", 0) >= N and r.get("pending") == 0, r
        wait_leaders(cluster, big, lambda v: all(l == 2 for l, _ in v.values()), 60, "all on broker 2")
        visible = time.monotonic() - t
        # sanity: the new leader serves the moved data (high watermarks of a sample)
        from confluent_kafka import Consumer

        cons = Consumer({"bootstrap.servers": cluster.broker(2).bootstrap, "group.id": "bench-check", "log_level": 3})
        sample = list(range(0, N, max(1, N // 20)))
        highs = {p: cons.get_watermark_offsets(TopicPartition(big, p), timeout=15)[1] for p in sample}
        cons.close()
        assert all(h == args.records_per_partition for h in highs.values()), f"high watermarks after the move: {highs}"
        res["move_n"] = dict(partitions=r.get("moved"), tool_ms=r.get("elapsed_ms"), wall_ms=ms(wall),
                             visible_ms=ms(visible))
        log(f"run {run}: move {N}: {res['move_n']}")

        # (c) drain broker 2 (holds N), then SIGTERM-drain broker 3
        t = time.monotonic()
        r = floe_admin(cluster, "drain", "2", timeout=300)
        wall = time.monotonic() - t
        assert r.get("pending") == 0 and r.get("moved") == r.get("requested") and r.get("moved", 0) >= N, r
        wait_leaders(cluster, big, lambda v: all(l != 2 for l, _ in v.values()), 60, "nothing on broker 2")
        res["drain_n"] = dict(partitions=r.get("moved"), tool_ms=r.get("elapsed_ms"), wall_ms=ms(wall),
                              visible_ms=ms(time.monotonic() - t))
        log(f"run {run}: drain: {res['drain_n']}")
        b3_leads = sum(1 for t_ in (big, small) for l, _ in partition_leaders(cluster.broker(1).bootstrap, t_).values() if l == 3)
        t = time.monotonic()
        cluster.broker(3).stop()  # asserts exit 0
        res["sigterm_drain"] = dict(partitions=b3_leads, exit_ms=ms(time.monotonic() - t))
        log(f"run {run}: SIGTERM drain of broker 3 ({b3_leads} partitions): {res['sigterm_drain']}")
        wait_leaders(cluster, big, lambda v: all(l == 1 for l, _ in v.values()), 60, "all on broker 1")

        # (d) new broker: spawn -> first served produce. A producer already
        # warmed up (producer id, metadata) on broker 1 measures the broker
        # side; a brand-new one also pays librdkafka's idempotent start-up.
        warm = ProbeProducer(cluster.broker(1).bootstrap, small, 1, f"join-{run}")
        t_spawn = time.monotonic()
        b4 = cluster.add_broker(node_id=4, wait=False)
        wait_until(lambda: http_get(b4.health, "/readyz", timeout=0.5)[0] == 200, 60, "broker 4 /readyz", interval=0.01)
        t_ready = time.monotonic()
        r = floe_admin(cluster, "reassign", f"{small}:0=4", timeout=60)
        t_reassigned = time.monotonic()
        assert r.get("moved") == 1, r
        warm_acks = warm.send([0])
        assert len(warm_acks) == 1, f"probe producer: {warm.errors[:3]}"
        warm.close()
        pr = Producer({"bootstrap.servers": b4.bootstrap, "enable.idempotence": True, "linger.ms": 0,
                       "log_level": 3, "retry.backoff.ms": 20, "message.timeout.ms": 30000})
        got = []
        pr.produce(small, value=b"first", partition=0, on_delivery=lambda e, m: got.append((e, time.monotonic(), m.offset())))
        pr.flush(30)
        del pr
        assert got and got[0][0] is None, got
        t_ack = got[0][1]
        res["new_broker"] = dict(spawn_to_ready_ms=ms(t_ready - t_spawn), spawn_to_reassigned_ms=ms(t_reassigned - t_spawn),
                                 spawn_to_first_ack_ms=ms(warm_acks[0].at - t_spawn),
                                 spawn_to_first_ack_new_producer_ms=ms(t_ack - t_spawn))
        log(f"run {run}: new broker: {res['new_broker']}")

        # (e) crash failover of broker 4 leading the whole small topic
        r = floe_admin(cluster, "reassign", f"{small}:*=4", timeout=60)
        wait_leaders(cluster, small, lambda v: all(l == 4 for l, _ in v.values()), 30, "small topic on broker 4")
        load = ProduceLoad(cluster.bootstrap, small, P, interval=0.002, **args.pconf).start()
        try:
            t = time.monotonic()
            wait_until(lambda: all(first_ack_after(load.snapshot(), t, p) for p in range(P)), 30, "acks from broker 4")
            # A producer with short backoffs, warmed up before the kill: its acks
            # right after the metadata change are the broker side of "serving again".
            probe = ProbeProducer(cluster.broker(1).bootstrap, small, 0, f"failover-{run}")
            time.sleep(1.0)
            t_kill = time.monotonic()
            b4.kill()
            guard = t_kill + 0.2
            # the broker side: when the metadata names a live leader for every partition
            # (the new leader opens them as it applies the same change)
            t_meta = wait_until(
                lambda: all(l not in (4, -1) for l, _ in partition_leaders(cluster.broker(1).bootstrap, small).values()),
                (args.lease_ms + args.grace_ms) / 1000 + 30, "the metadata moving the partitions", interval=0.01)
            probe_acks = probe.send(range(P))
            assert len(probe_acks) == P, f"probe producer: {probe.errors[:3]}"
            probe.close()
            wait_until(lambda: all(first_ack_after(load.snapshot(), guard, p) for p in range(P)),
                       (args.lease_ms + args.grace_ms) / 1000 + 30, "acks after the SIGKILL", interval=0.01)
            per = [first_ack_after(load.snapshot(), guard, p).at - t_kill for p in range(P)]
        finally:
            load.stop()
        assert not load.failed and not load.fatal_errors() and load.unflushed == 0, load.summary()
        res["crash_failover"] = dict(partitions=P, max_ms=ms(max(per)), min_ms=ms(min(per)),
                                     metadata_ms=ms(t_meta - t_kill),
                                     probe_ms=ms(max(a.at for a in probe_acks) - t_kill))
        log(f"run {run}: crash failover: {res['crash_failover']}")
    finally:
        problems = []
        try:
            problems = cluster.stop()
        finally:
            cluster.force_kill()
        if problems:
            log(f"run {run}: teardown problems: {problems}")
            res["teardown_problems"] = [p.splitlines()[0] for p in problems]
    if args.volume:
        res["volume"] = volume_run(run, args, workdir)
    return res


def dir_stats(path: Path) -> dict:
    """files and bytes under `path` (recursively)."""
    files = [f for f in Path(path).rglob("*") if f.is_file()]
    return dict(files=len(files), bytes=sum(f.stat().st_size for f in files))


class ProbeProducer:
    """An idempotent producer with short backoffs, warmed up (producer id, metadata) on
    `warm_partition` of another broker before `send()` writes one record to each of `parts`:
    the time to those acks is the broker side of a recovery, without the reconnect backoff a
    producer that kept failing to connect carries, or librdkafka's 500 ms producer-id retry
    timer a brand-new producer hits when its first broker is not up. It refreshes its metadata
    every 100 ms, so a leader change reaches it within that."""

    def __init__(self, bootstrap: str, topic: str, warm_partition: int, tag: str):
        from confluent_kafka import Producer

        self.topic, self.tag = topic, tag
        self.acks: list[Ack] = []
        self.errors: list[str] = []
        self.pr = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0,
                            "log_level": 3, "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100,
                            "retry.backoff.ms": 10, "retry.backoff.max.ms": 100, "message.timeout.ms": 30000,
                            "topic.metadata.refresh.interval.ms": 100})
        self._send([warm_partition], "warm")

    def _cb(self, e, m):
        if e is None:
            self.acks.append(Ack(m.partition(), m.offset(), m.value(), time.monotonic()))
        else:
            self.errors.append(str(e))

    def _send(self, parts, what) -> list[Ack]:
        n = len(self.acks)
        for p in parts:
            self.pr.produce(self.topic, value=f"{self.tag}-{what}-{p}".encode(), partition=p, on_delivery=self._cb)
        left = self.pr.flush(35)
        if self.errors or left:
            log(f"probe producer ({what} on {parts}): errors {self.errors[:3]}, {left} undelivered")
        return self.acks[n:]

    def send(self, parts) -> list[Ack]:
        return self._send(parts, "probe")

    def close(self):
        self.pr = None


def volume_run(run: int, args, workdir: Path) -> dict:
    """(f) volume WAL mode: SIGKILL of a broker, restart on the same data dir, recovery times + data check."""
    P = 4
    upload_ms, pause_s = args.volume_upload_interval_ms, args.volume_pause_ms / 1000
    cluster = Cluster(workdir / f"volume{run}", lease_ms=args.lease_ms, grace_ms=args.grace_ms, wal_mode="volume",
                      proxies=False, broker_args=["--upload-interval-ms", str(upload_ms)])
    res: dict = {}
    try:
        t0 = time.monotonic()
        cluster.start(brokers=2)
        log(f"run {run}: volume cluster up in {time.monotonic() - t0:.1f} s ({cluster.workdir})")
        topic = f"volume-{run}"
        before = create_topic(cluster, topic, P)
        victim = cluster.broker(1)
        parts = sorted(p for p, (l, _) in before.items() if l == victim.node_id)
        if not parts:  # the topic went all to broker 2: crash that one instead
            victim = cluster.broker(2)
            parts = sorted(p for p, (l, _) in before.items() if l == victim.node_id)
        assert parts, f"no broker leads a partition of {topic}: {before}"
        log(f"run {run}: volume: broker {victim.node_id} leads {parts} (leaders {before})")
        objects = Path(cluster.object_store[len("file://"):]) if cluster.object_store.startswith("file://") else None
        load = ProduceLoad(cluster.bootstrap, topic, P, interval=0.002, **args.pconf).start()
        probe = None
        try:
            t = time.monotonic()
            wait_until(lambda: all(first_ack_after(load.snapshot(), t, p) for p in range(P)), 30, "volume: acks everywhere")
            time.sleep(2.0)
            objs_before_kill = dir_stats(objects) if objects else None
            wal_before_kill = dir_stats(victim.data_dir)
            t_kill = time.monotonic()
            victim.kill()
            guard = t_kill + 0.2  # responses already on the wire arrive within ms
            survivor = next(b for b in cluster.brokers.values() if b is not victim)
            probe = ProbeProducer(survivor.bootstrap, topic, next(p for p in range(P) if p not in parts), f"probe-{run}")
            time.sleep(max(0.0, t_kill + pause_s - time.monotonic()))
            acked_pre = [a for a in load.snapshot() if a.at <= guard and a.partition in parts]
            during = [a for a in load.snapshot() if guard < a.at and a.partition in parts]
            t_restart = time.monotonic()
            victim.spawn()  # same Kafka port, health port and data dir
            t_ready = wait_until(lambda: http_get(victim.health, "/readyz", timeout=0.5)[0] == 200, 60,
                                 f"broker {victim.node_id} /readyz after the restart", interval=0.01)
            probe_acks = probe.send(parts)
            wait_until(lambda: all(first_ack_after(load.snapshot(), t_restart, p) for p in parts), 60,
                       f"acks on {parts} after the restart", interval=0.01)
            snap = load.snapshot()
            first = {p: first_ack_after(snap, t_restart, p).at for p in parts}
            # broker 2's partitions kept taking produce during the outage
            other = [p for p in range(P) if p not in parts]
            other_during = [a for a in snap if a.partition in other and t_kill < a.at < t_restart]
            time.sleep(1.0)
        finally:
            load.stop()
            if probe is not None:
                probe.close()
        after = partition_leaders(cluster.broker(2).bootstrap if victim.node_id == 1 else cluster.broker(1).bootstrap, topic)
        res.update(
            broker=victim.node_id, partitions=parts, leaders_before=before, leaders_after=after,
            restart_to_ready_ms=ms(t_ready - t_restart),
            restart_to_first_ack_ms=ms(max(first.values()) - t_restart),
            restart_to_first_ack_per_partition_ms={p: ms(x - t_restart) for p, x in first.items()},
            kill_to_first_ack_ms=ms(max(first.values()) - t_kill),
            kill_to_restart_ms=ms(t_restart - t_kill),
            restart_to_probe_ack_ms=ms(max(a.at for a in probe_acks) - t_restart) if len(probe_acks) == len(parts) else None,
            acked_before_kill_on_its_partitions=len(acked_pre),
            acks_on_its_partitions_while_down=len(during),
            acks_on_other_partitions_while_down=len(other_during),
            wal_dir_at_kill=wal_before_kill, object_store_at_kill=objs_before_kill,
            producer=load.summary(),
            producer_errors=sorted({e for _, e, _ in load.errors})[:10],
        )
        ok = not load.failed and not load.fatal_errors() and load.unflushed == 0
        res["object_store_at_check"] = dir_stats(objects) if objects else None
        consumed = consume_all(cluster.bootstrap, topic, P)
        have = {r.value for recs in consumed.values() for r in recs}
        res["acked_before_kill_present"] = sum(1 for a in acked_pre if a.value in have)
        try:
            res["data_check"] = check_data(load.acks + probe.acks, consumed)
        except AssertionError as e:
            res["data_check"] = "FAILED: " + str(e)
            log(f"run {run}: volume: DATA CHECK FAILED:\n{e}")
        if not ok:
            res["producer_problem"] = f"{load.summary()}; failed {load.failed[:5]}; fatal {load.fatal_errors()[:5]}"
            log(f"run {run}: volume: producer problem: {res['producer_problem']}")
        log(f"run {run}: volume recovery: ready {res['restart_to_ready_ms']} ms, first ack "
            f"{res['restart_to_first_ack_ms']} ms after the restart, {res['kill_to_first_ack_ms']} ms after the kill; "
            f"{res['acked_before_kill_present']}/{len(acked_pre)} records acked before the kill present; {res['data_check']}")
    finally:
        problems = []
        try:
            problems = cluster.stop()
        finally:
            cluster.force_kill()
        if problems:
            log(f"run {run}: volume teardown problems: {problems}")
            res["teardown_problems"] = [p.splitlines()[0] for p in problems]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=1000, help="partitions of the topic moved/drained in b and c")
    ap.add_argument("--moves", type=int, default=50, help="single-partition moves per run in a")
    ap.add_argument("--small-partitions", type=int, default=8, help="partitions of the produced-to topic in a, d, e")
    ap.add_argument("--move-spacing-ms", type=int, default=400)
    ap.add_argument("--records-per-partition", type=int, default=3)
    ap.add_argument("--lease-ms", type=int, default=2000)
    ap.add_argument("--grace-ms", type=int, default=500)
    ap.add_argument("--fill-producers", type=int, default=16, help="parallel producers filling the big topic")
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra `floe broker` flag (repeat; e.g. --broker-arg=--upload-interval-ms --broker-arg=20)")
    ap.add_argument("--producer-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka setting for the load producers of a, e and f (repeat), "
                         "e.g. retry.backoff.max.ms=100")
    ap.add_argument("--no-volume", dest="volume", action="store_false",
                    help="skip f (volume WAL mode crash recovery on a separate 2-broker cluster)")
    ap.add_argument("--volume-upload-interval-ms", type=int, default=5000,
                    help="f: broker --upload-interval-ms, so acknowledged records stay only in the local WAL")
    ap.add_argument("--volume-pause-ms", type=int, default=1000, help="f: SIGKILL -> restart of the broker")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, objects)")
    ap.add_argument("--moves-json", metavar="PATH", help="write every single-partition move of a (times, gap, leader epoch) to PATH")
    args = ap.parse_args()
    args.pconf = dict(kv.split("=", 1) for kv in args.producer_conf)

    binary = floe_binary()
    if not binary.is_file():
        sys.exit(f"floe binary not found at {binary}: build it or set FLOE_BIN")
    mtime0 = binary.stat().st_mtime
    workdir = Path(tempfile.mkdtemp(prefix="floe-reassign-bench-"))
    log(f"binary {binary}, work dir {workdir}, {os.cpu_count()} cores")
    runs = []
    t_all = time.monotonic()
    try:
        for i in range(args.runs):
            runs.append(one_run(i, args, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    allmoves = [m for r in runs for m in r["moves"]]
    if args.moves_json:
        Path(args.moves_json).write_text(json.dumps(allmoves, indent=1))
    un = [m["unavail_ms"] for m in allmoves if m["unavail_ms"] is not None]
    gp = [m["gap_ms"] for m in allmoves if m["gap_ms"] is not None]
    tool = [round(m["tool_ms"], 1) for m in allmoves if m["tool_ms"] is not None]
    vis = [m["visible_ms"] for m in allmoves]

    def per_run(key, field):
        return [r[key][field] for r in runs]

    out = {
        "bench": "reassign",
        "binary": str(binary),
        "binary_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime0)),
        "binary_replaced_during_bench": binary.stat().st_mtime != mtime0,
        "build": "release" if "/release/" in str(binary) else "debug",
        "cores": os.cpu_count(),
        "cluster": "3 controllers + 3 brokers (4th joins), object WAL, file:// object store, one machine",
        "broker_args": args.broker_arg,
        "producer_conf": args.pconf,
        "lease_ms": args.lease_ms,
        "grace_ms": args.grace_ms,
        "runs": args.runs,
        "wall_s": round(time.monotonic() - t_all, 1),
        "move_unavailability_ms": {
            "what": "request -> first ack written under the new leader epoch, per single-partition move under load",
            "moves": len(allmoves), "measured": len(un),
            "p50": pct(un, 50), "p99": pct(un, 99), "max": max(un) if un else None,
            "target_p99": TARGETS["move_p99_ms"],
        },
        "move_ack_gap_ms": {
            "what": "longest wait between consecutive acks on the moved partition around the move",
            "p50": pct(gp, 50), "p99": pct(gp, 99), "max": max(gp) if gp else None,
        },
        "move_tool_elapsed_ms": {"what": "elapsed_ms of `floe admin reassign --json` (controller-side move)",
                                 "p50": pct(tool, 50), "p99": pct(tool, 99)},
        "move_visible_ms": {"what": "request -> every broker's Metadata shows the new leader (polled from Python)",
                            "p50": pct(vis, 50), "p99": pct(vis, 99)},
        "baseline_ack_gap_ms": {
            "what": "wait between consecutive acks on a partition away from moves (the producer's normal cadence)",
            "p50_median": median([r["baseline_gap"].get("p50_ms") for r in runs]),
            "p99_median": median([r["baseline_gap"].get("p99_ms") for r in runs]),
        },
        "move_partitions": {
            "partitions": median(per_run("move_n", "partitions")), "records_per_partition": args.records_per_partition,
            "tool_elapsed_ms": median(per_run("move_n", "tool_ms")), "wall_ms": median(per_run("move_n", "wall_ms")),
            "visible_in_metadata_ms": median(per_run("move_n", "visible_ms")),
            "per_run_tool_ms": [round(x, 1) for x in per_run("move_n", "tool_ms")],
            "target_ms_for_1000": TARGETS["move_1000_ms"],
        },
        "drain": {
            "partitions": median(per_run("drain_n", "partitions")),
            "tool_elapsed_ms": median(per_run("drain_n", "tool_ms")), "wall_ms": median(per_run("drain_n", "wall_ms")),
            "visible_in_metadata_ms": median(per_run("drain_n", "visible_ms")),
            "per_run_tool_ms": [round(x, 1) for x in per_run("drain_n", "tool_ms")],
            "target_ms": TARGETS["drain_ms"],
        },
        "sigterm_drain": {
            "what": "SIGTERM -> exit 0 of a broker that drains itself",
            "partitions": median(per_run("sigterm_drain", "partitions")),
            "exit_ms": median(per_run("sigterm_drain", "exit_ms")),
            "per_run_ms": per_run("sigterm_drain", "exit_ms"),
        },
        "new_broker_ms": {
            "spawn_to_ready": median(per_run("new_broker", "spawn_to_ready_ms")),
            "spawn_to_reassigned": median(per_run("new_broker", "spawn_to_reassigned_ms")),
            "spawn_to_first_ack": median(per_run("new_broker", "spawn_to_first_ack_ms")),
            "per_run_first_ack": per_run("new_broker", "spawn_to_first_ack_ms"),
            "first_ack": "a producer warmed up on another broker, sending once the move to the new broker is done",
            "spawn_to_first_ack_new_producer": median(per_run("new_broker", "spawn_to_first_ack_new_producer_ms")),
            "per_run_first_ack_new_producer": per_run("new_broker", "spawn_to_first_ack_new_producer_ms"),
            "new_producer": "a brand-new idempotent producer started after the move (adds librdkafka's start-up: "
                            "producer id, whose retry timer is 500 ms)",
            "target_ms": TARGETS["new_broker_serving_ms"],
        },
        "crash_failover_ms": {
            "what": "SIGKILL -> every partition of the killed broker acknowledged elsewhere",
            "partitions": args.small_partitions,
            "max_median": median(per_run("crash_failover", "max_ms")),
            "per_run_max": per_run("crash_failover", "max_ms"),
            "metadata_median": median(per_run("crash_failover", "metadata_ms")),
            "per_run_metadata": per_run("crash_failover", "metadata_ms"),
            "probe_median": median(per_run("crash_failover", "probe_ms")),
            "per_run_probe": per_run("crash_failover", "probe_ms"),
            "probe": "SIGKILL -> a short-backoff producer (warmed up before the kill) acknowledged on every "
                     "partition, sent once the metadata names live leaders: serving again elsewhere",
            "metadata": "SIGKILL -> the metadata (asked of a surviving broker) names a live leader for every "
                        "partition: the broker side; the acks above add the producer's backoffs",
            "lease_plus_grace_ms": args.lease_ms + args.grace_ms,
        },
    }
    if args.volume:
        vol = [r["volume"] for r in runs]

        def vper(field):
            return [v.get(field) for v in vol]

        out["volume_recovery_ms"] = {
            "what": "volume WAL: SIGKILL of broker 1 under idempotent produce load, restart on the same data dir "
                    "and ports after the pause; restart -> /readyz, restart -> first ack on every partition it "
                    "leads (max), kill -> first ack (the whole outage)",
            "note": "by design (volume mode) the killed broker's partitions stay with it and are unavailable for "
                    "the whole outage: acknowledged records may be only on its volume, so nothing moves them",
            "cluster": "3 controllers + 2 brokers, volume WAL, 4-partition topic",
            "upload_interval_ms": args.volume_upload_interval_ms, "lease_ms": args.lease_ms,
            "grace_ms": args.grace_ms, "pause_ms": args.volume_pause_ms,
            "restart_to_ready": median(vper("restart_to_ready_ms")),
            "restart_to_first_ack": median(vper("restart_to_first_ack_ms")),
            "kill_to_first_ack": median(vper("kill_to_first_ack_ms")),
            "per_run_restart_to_ready": vper("restart_to_ready_ms"),
            "per_run_restart_to_first_ack": vper("restart_to_first_ack_ms"),
            "per_run_kill_to_first_ack": vper("kill_to_first_ack_ms"),
            "restart_to_probe_ack": median(vper("restart_to_probe_ack_ms")),
            "per_run_restart_to_probe_ack": vper("restart_to_probe_ack_ms"),
            "probe_note": "restart_to_first_ack is what the load producer saw and includes librdkafka's "
                                   "reconnect backoff after the refused connects (reconnect.backoff.ms 100 doubling "
                                   "up to reconnect.backoff.max.ms 10000 unless set with --producer-conf); "
                                   "restart_to_probe_ack: /readyz, then one record per partition from a producer "
                                   "with short backoffs, warmed up on the other broker during the pause (the broker "
                                   "side; a brand-new idempotent producer adds librdkafka's 500 ms producer-id timer)",
            "per_run": [{k: v.get(k) for k in (
                "broker", "partitions", "restart_to_first_ack_per_partition_ms", "kill_to_restart_ms",
                "acked_before_kill_on_its_partitions", "acked_before_kill_present",
                "acks_on_its_partitions_while_down", "acks_on_other_partitions_while_down",
                "wal_dir_at_kill", "object_store_at_kill", "object_store_at_check", "leaders_before", "leaders_after",
                "producer", "producer_errors", "data_check", "producer_problem", "teardown_problems")
                if k in v} for v in vol],
            "data_ok": all(str(v.get("data_check", "")).startswith("data check ok")
                           and v.get("acked_before_kill_present") == v.get("acked_before_kill_on_its_partitions")
                           and "producer_problem" not in v for v in vol),
        }
    problems = [p for r in runs for p in r.get("teardown_problems", [])]
    if problems:
        out["teardown_problems"] = problems
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
