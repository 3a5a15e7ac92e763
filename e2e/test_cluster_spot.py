"""A spot interruption without Kubernetes: 3 controllers and 3 `floe broker`
processes; broker 3 polls an instance metadata service (a loopback stand-in
serving IMDSv2 tokens and `spot/instance-action`, which moto does not serve).
While an idempotent producer writes to every partition, the stand-in starts
answering a two-minute termination notice: broker 3 must drain (every
partition it led handed to brokers 1 and 2, no data copied), exit 0 on its
own, and lose nothing. The time from the notice to "drained and exited" is
printed as a TIMING line (see it with -s)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka.admin import NewTopic

from cluster import ProduceLoad, check_data, consume_all, make_cluster, metadata  # noqa: F401
from floe_e2e import admin_client, unique_name

PARTITIONS = 6


class Imds:
    """IMDSv2 on loopback: PUT /latest/api/token, then GETs with the token."""

    def __init__(self):
        self.notice: str | None = None
        self.polls = 0
        imds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real service

            def log_message(self, *a):
                pass

            def reply(self, status: int, body: bytes = b"") -> None:
                # Not send_error: it closes the connection, the real service keeps it.
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                if self.path != "/latest/api/token":
                    return self.reply(404)
                body = b"e2e-token"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") != "e2e-token":
                    return self.reply(401)
                imds.polls += 1
                if self.path == "/latest/meta-data/spot/instance-action" and imds.notice:
                    return self.reply(200, imds.notice.encode())
                self.reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def interrupt(self) -> None:
        at = datetime.now(timezone.utc) + timedelta(minutes=2)
        self.notice = json.dumps({"action": "terminate", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.timeout(180)
def test_a_spot_interruption_notice_drains_the_broker_and_loses_nothing(make_cluster):
    imds = Imds()
    try:
        cluster = make_cluster(brokers=2, wal_mode="object")
        doomed = cluster.add_broker(
            node_id=3, extra_args=["--imds-endpoint", imds.endpoint, "--imds-poll-ms", "200"]
        )
        topic = unique_name("spot")
        admin = admin_client(cluster.bootstrap)  # kept alive until the future resolves
        admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]
        )[topic].result(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            leaders = {p: i.leader for p, i in metadata(cluster.bootstrap, [topic]).topics.get(topic, {}).items()}
            if len(leaders) == PARTITIONS and all(l in (1, 2, 3) for l in leaders.values()):
                break
            assert time.monotonic() < deadline, f"no leaders for {topic}: {leaders}"
            time.sleep(0.1)
        on_doomed = sorted(p for p, l in leaders.items() if l == doomed.node_id)
        assert on_doomed, f"broker 3 leads nothing: {leaders}"

        load = ProduceLoad(cluster.bootstrap, topic, PARTITIONS).start()
        time.sleep(2)
        assert imds.polls > 0, "broker 3 never polled the metadata service"
        t_notice = time.monotonic()
        imds.interrupt()
        code = doomed.proc.wait(timeout=60)
        t_exit = time.monotonic()
        assert code == 0, f"broker 3 exited {code} after the notice\n{doomed.log_tail()}"
        doomed.proc = None
        survivors = [b for b in cluster.brokers.values() if b.node_id != 3]
        # The hand-offs committed before broker 3 exited; a survivor's copy of
        # the metadata follows within milliseconds (well inside the lease +
        # grace after which a fence would move anything left behind).
        deadline = time.monotonic() + 1.0
        while True:
            after = {p: i.leader for p, i in metadata(survivors[0].bootstrap, [topic]).topics[topic].items()}
            if all(after[p] in (1, 2) for p in range(PARTITIONS)) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert all(after[p] in (1, 2) for p in range(PARTITIONS)), after
        log = doomed.log_text()
        assert "this machine is being interrupted" in log and "drained" in log, log[-3000:]
        print(f"TIMING spot: notice -> broker 3 drained {len(on_doomed)} partitions and exited 0 "
              f"in {t_exit - t_notice:.2f} s (two-minute warning)", flush=True)
        time.sleep(1)
        load.stop(flush_timeout=60)
        assert not load.fatal_errors(), load.fatal_errors()
        assert not load.failed, load.failed[:5]
        assert load.unflushed == 0
        consumed = consume_all(survivors[0].bootstrap, topic, PARTITIONS)
        print(check_data(load.acks, consumed), flush=True)
        del cluster.brokers[3]  # stopped on its own; the fixture checks the rest
    finally:
        imds.close()
