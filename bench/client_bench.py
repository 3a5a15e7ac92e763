#!/usr/bin/env python3
"""Produce/consume benchmark through a real Kafka client (librdkafka via
confluent-kafka). Prints ONE line of JSON, so runs can be compared side by side
with any Kafka-compatible broker on the same machine.

Usage:
  bench/client_bench.py                      # starts target/release/floe local on a temp dir
  bench/client_bench.py --bootstrap HOST:PORT  # benchmark an already running broker

Measures: produce throughput (MB/s, msgs/s) with acks=all and idempotence,
per-message produce latency p50/p99 (delivery callback time minus produce
time, at a bounded in-flight rate), and consume throughput from the start.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_floe(binary, wal_mode):
    port = free_port()
    data = tempfile.mkdtemp(prefix="floe-bench-")
    log = open(os.path.join(data, "floe.log"), "w")
    proc = subprocess.Popen(
        [binary, "local", "--data-dir", os.path.join(data, "d"), "--listen", f"127.0.0.1:{port}", "--metrics-listen", "127.0.0.1:0",
         "--wal-mode", wal_mode],
        stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"127.0.0.1:{port}", data
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("floe did not start; see " + os.path.join(data, "floe.log"))


def pct(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--binary", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "floe"))
    ap.add_argument("--wal-mode", default="volume", choices=["volume", "object"])
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--latency-messages", type=int, default=5_000)
    ap.add_argument("--compression", default="none")
    args = ap.parse_args()

    proc = data = None
    bootstrap = args.bootstrap
    if not bootstrap:
        proc, bootstrap, data = start_floe(args.binary, args.wal_mode)
    try:
        topic = "bench-" + uuid.uuid4().hex[:8]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)

        payload = os.urandom(args.size)
        conf = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                "linger.ms": 5, "batch.size": 1_000_000, "compression.type": args.compression,
                "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576}
        p = Producer(conf)
        failures = []

        def on_delivery(err, _msg):
            if err:
                failures.append(err)

        start = time.perf_counter()
        for i in range(args.messages):
            while True:
                try:
                    p.produce(topic, payload, partition=i % args.partitions, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 1000 == 0:
                p.poll(0)
        p.flush(120)
        produce_s = time.perf_counter() - start
        if failures:
            sys.exit(f"{len(failures)} deliveries failed, first: {failures[0]}")

        # Latency: one message in flight at a time, like a request/response producer.
        lat = []
        lp = Producer({**conf, "linger.ms": 0})
        for i in range(args.latency_messages):
            t0 = time.perf_counter()
            done = []
            lp.produce(topic, payload, partition=i % args.partitions,
                       on_delivery=lambda err, m, t0=t0: done.append((err, time.perf_counter() - t0)))
            while not done:
                lp.poll(0.001)
            if done[0][0]:
                sys.exit(f"latency delivery failed: {done[0][0]}")
            lat.append(done[0][1] * 1000.0)
        lp.flush(30)
        lat.sort()

        total = args.messages + args.latency_messages
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + topic,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
        c.subscribe([topic])
        got = 0
        first = None
        deadline = time.time() + 300
        while got < total and time.time() < deadline:
            for m in c.consume(10000, 1.0):
                if m.error():
                    continue
                if first is None:
                    first = time.perf_counter()
                got += 1
        consume_s = time.perf_counter() - (first or time.perf_counter())
        c.close()
        if got < total:
            sys.exit(f"consumed {got} of {total}")

        mb = args.messages * args.size / 1e6
        print(json.dumps({
            "broker": "floe" if proc else bootstrap, "client": "librdkafka (confluent-kafka)",
            "wal_mode": args.wal_mode if proc else None, "acks": "all", "idempotent": True,
            "messages": args.messages, "message_bytes": args.size, "partitions": args.partitions,
            "compression": args.compression,
            "produce_mb_s": round(mb / produce_s, 1), "produce_msgs_s": round(args.messages / produce_s),
            "produce_latency_ms_p50": round(pct(lat, 50), 3), "produce_latency_ms_p99": round(pct(lat, 99), 3),
            "consume_mb_s": round(total * args.size / 1e6 / consume_s, 1) if consume_s > 0 else None,
            "consume_msgs_s": round(total / consume_s) if consume_s > 0 else None,
        }))
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
