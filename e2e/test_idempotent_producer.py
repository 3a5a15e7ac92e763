"""Idempotent producer (confluent-kafka, enable.idempotence=true) across broker restarts."""

from __future__ import annotations

import threading
import time

import pytest

from floe_e2e import DeliveryLog, assert_contiguous, consume_range, create_topic, producer, unique_name

PARTITIONS = 2
MAX_MESSAGES = 200_000
CHUNK = 50


class PacedProducer(threading.Thread):
    """Produces msg-{i} in small chunks until told to stop, then flushes."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.topic = topic
        self.log = DeliveryLog()
        self.errors: list[str] = []
        self.p = producer(
            bootstrap,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": 120000,
                "linger.ms": 5,
                "reconnect.backoff.ms": 100,
                "reconnect.backoff.max.ms": 1000,
                "error_cb": lambda err: self.errors.append(f"{err} fatal={err.fatal()}"),
            },
        )
        self.produced = 0
        self.stop_event = threading.Event()
        self.remaining: int | None = None
        self.exc: BaseException | None = None

    def run(self):
        try:
            while not self.stop_event.is_set() and self.produced < MAX_MESSAGES:
                for _ in range(CHUNK):
                    i = self.produced
                    try:
                        self.p.produce(self.topic, value=f"msg-{i}".encode(), on_delivery=self.log.callback(i))
                    except BufferError:
                        break
                    self.produced += 1
                self.p.poll(0.01)
            self.remaining = self.p.flush(150)
        except BaseException as e:  # surfaced by the test
            self.exc = e


def check_exactly_once(bootstrap: str, topic: str, prod: PacedProducer):
    assert prod.exc is None, f"producer thread failed: {prod.exc!r}"
    assert prod.remaining == 0, f"{prod.remaining} messages undelivered after flush"
    fatal = [e for e in prod.errors if "fatal=True" in e]
    assert not fatal, f"fatal producer errors: {fatal}"
    assert not prod.log.failed, f"{len(prod.log.failed)} deliveries failed, e.g. {list(prod.log.failed.items())[:5]}"
    assert len(prod.log.ok) == prod.produced

    recs = consume_range(bootstrap, topic, list(range(PARTITIONS)), timeout=180)
    assert_contiguous(recs)
    seen: dict[int, tuple[int, int]] = {}
    for part, rs in recs.items():
        last = -1
        for off, _k, value, _h in rs:
            i = int(value.decode().removeprefix("msg-"))
            assert i not in seen, f"duplicate msg-{i}: at {seen[i]} and {(part, off)}"
            seen[i] = (part, off)
            assert i > last, f"partition {part}: msg-{i} at offset {off} after msg-{last} (reordered)"
            last = i
    missing = sorted(set(prod.log.ok) - set(seen))
    assert not missing, f"{len(missing)} acknowledged messages missing, e.g. {missing[:10]}"
    extra = sorted(set(seen) - set(prod.log.ok))
    assert not extra, f"{len(extra)} messages present that were never acknowledged, e.g. {extra[:10]}"
    for i, where in seen.items():
        assert prod.log.ok[i] == where, f"msg-{i} acknowledged at {prod.log.ok[i]} but read at {where}"


def wait_acked(prod: PacedProducer, n: int, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while len(prod.log.ok) < n:
        assert prod.exc is None, repr(prod.exc)
        assert time.monotonic() < deadline, f"only {len(prod.log.ok)} acks after {timeout}s (want {n})"
        time.sleep(0.05)


@pytest.mark.timeout(420)
def test_idempotent_producer_survives_graceful_restart(floe):
    topic = unique_name("idem")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)
    prod = PacedProducer(floe.bootstrap, topic)
    prod.start()
    try:
        wait_acked(prod, 2000)
        produced_before, acked_before = prod.produced, len(prod.log.ok)
        floe.restart()  # SIGTERM while messages are in flight; same data dir and port
        acked_at_restart = len(prod.log.ok)
        assert produced_before > acked_before, "nothing was in flight when the broker was stopped"
        assert prod.produced > produced_before, "the producer made no progress while the broker restarted"
        wait_acked(prod, acked_at_restart + 2000, timeout=120)
    finally:
        prod.stop_event.set()
        prod.join(200)
    assert not prod.is_alive(), "producer thread did not finish"
    check_exactly_once(floe.bootstrap, topic, prod)


@pytest.mark.timeout(420)
def test_idempotent_producer_survives_kill9(floe):
    topic = unique_name("idem-kill")
    create_topic(floe.bootstrap, topic, partitions=PARTITIONS)
    prod = PacedProducer(floe.bootstrap, topic)
    prod.start()
    try:
        wait_acked(prod, 2000)
        produced_before, acked_before = prod.produced, len(prod.log.ok)
        floe.kill9()
        time.sleep(1)  # the producer keeps queueing and retrying meanwhile
        floe.start()
        acked_at_restart = len(prod.log.ok)
        assert produced_before > acked_before, "nothing was in flight when the broker was killed"
        assert prod.produced > produced_before, "the producer made no progress while the broker was down"
        wait_acked(prod, acked_at_restart + 2000, timeout=120)
    finally:
        prod.stop_event.set()
        prod.join(200)
    assert not prod.is_alive(), "producer thread did not finish"
    check_exactly_once(floe.bootstrap, topic, prod)
