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
     produce load and gets SIGKILL; time until every one of its partitions
     acknowledges produce elsewhere (with the lease/grace used).
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from cluster import (  # noqa: E402
    Cluster,
    ProduceLoad,
    ack_gap_around,
    ack_gap_stats,
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
                t_req = time.monotonic()
                r = floe_admin(cluster, "reassign", f"{small}:{p}={dest}", timeout=60)
                t_done = time.monotonic()
                assert r.get("moved") == 1 and r.get("pending") == 0, r
                after = wait_leaders(cluster, small, lambda v: v[p][0] == dest, 15, f"partition {p} on broker {dest}")
                moves.append(dict(p=p, dest=dest, t_req=t_req, t_done=t_done, epoch=after[p][1],
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

        import threading

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

        # (d) new broker: spawn -> first served produce
        t_spawn = time.monotonic()
        b4 = cluster.add_broker(node_id=4, wait=False)
        wait_until(lambda: http_get(b4.health, "/readyz", timeout=0.5)[0] == 200, 60, "broker 4 /readyz", interval=0.01)
        t_ready = time.monotonic()
        r = floe_admin(cluster, "reassign", f"{small}:0=4", timeout=60)
        t_reassigned = time.monotonic()
        assert r.get("moved") == 1, r
        pr = Producer({"bootstrap.servers": b4.bootstrap, "enable.idempotence": True, "linger.ms": 0,
                       "log_level": 3, "retry.backoff.ms": 20, "message.timeout.ms": 30000})
        got = []
        pr.produce(small, value=b"first", partition=0, on_delivery=lambda e, m: got.append((e, time.monotonic(), m.offset())))
        pr.flush(30)
        del pr
        assert got and got[0][0] is None, got
        t_ack = got[0][1]
        res["new_broker"] = dict(spawn_to_ready_ms=ms(t_ready - t_spawn), spawn_to_reassigned_ms=ms(t_reassigned - t_spawn),
                                 spawn_to_first_ack_ms=ms(t_ack - t_spawn))
        log(f"run {run}: new broker: {res['new_broker']}")

        # (e) crash failover of broker 4 leading the whole small topic
        r = floe_admin(cluster, "reassign", f"{small}:*=4", timeout=60)
        wait_leaders(cluster, small, lambda v: all(l == 4 for l, _ in v.values()), 30, "small topic on broker 4")
        load = ProduceLoad(cluster.bootstrap, small, P, interval=0.002, **args.pconf).start()
        try:
            t = time.monotonic()
            wait_until(lambda: all(first_ack_after(load.snapshot(), t, p) for p in range(P)), 30, "acks from broker 4")
            time.sleep(1.0)
            t_kill = time.monotonic()
            b4.kill()
            guard = t_kill + 0.2
            wait_until(lambda: all(first_ack_after(load.snapshot(), guard, p) for p in range(P)),
                       (args.lease_ms + args.grace_ms) / 1000 + 30, "acks after the SIGKILL", interval=0.01)
            per = [first_ack_after(load.snapshot(), guard, p).at - t_kill for p in range(P)]
        finally:
            load.stop()
        assert not load.failed and not load.fatal_errors() and load.unflushed == 0, load.summary()
        res["crash_failover"] = dict(partitions=P, max_ms=ms(max(per)), min_ms=ms(min(per)))
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
                    help="extra librdkafka setting for the load producers of a and e (repeat), "
                         "e.g. retry.backoff.max.ms=100")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, objects)")
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
            "target_ms": TARGETS["new_broker_serving_ms"],
        },
        "crash_failover_ms": {
            "what": "SIGKILL -> every partition of the killed broker acknowledged elsewhere",
            "partitions": args.small_partitions,
            "max_median": median(per_run("crash_failover", "max_ms")),
            "per_run_max": per_run("crash_failover", "max_ms"),
            "lease_plus_grace_ms": args.lease_ms + args.grace_ms,
        },
    }
    problems = [p for r in runs for p in r.get("teardown_problems", [])]
    if problems:
        out["teardown_problems"] = problems
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
