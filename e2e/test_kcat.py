"""kcat (Debian package, built on librdkafka 2.0.2) against Floe."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from floe_e2e import CODECS, create_topic, require_tool, unique_name

KCAT = shutil.which("kcat") or shutil.which("kafkacat")

N_LINES = 1000


def kcat(bootstrap: str, *args: str, stdin: bytes | None = None, timeout: float = 90) -> str:
    require_tool(KCAT is not None, "kcat is not installed (scripts/test installs it)")
    cmd = [KCAT, "-b", bootstrap, "-X", "socket.timeout.ms=10000", "-m", "15", *args]
    try:
        res = subprocess.run(
            cmd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"{' '.join(cmd)} timed out after {timeout}s\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}"
        ) from None
    assert res.returncode == 0, (
        f"{' '.join(cmd)} exited {res.returncode}\nstdout: {res.stdout[-2000:]!r}\n"
        f"stderr: {res.stderr[-4000:]!r}"
    )
    return res.stdout.decode("utf-8", errors="replace")


def line(i: int) -> str:
    # compressible, index-derived, varying length; no ':' in the value
    return f"line-{i:05d}-" + "x" * (i % 40)


def test_kcat_metadata(floe):
    topic = unique_name("kcat-md")
    create_topic(floe.bootstrap, topic, partitions=3)

    out = kcat(floe.bootstrap, "-L", "-t", topic)
    assert re.search(r"^\s*1 brokers:", out, re.M), out
    assert re.search(rf"broker 1 at 127\.0\.0\.1:{floe.port}\b", out), out
    assert f'topic "{topic}" with 3 partitions:' in out, out
    for p in range(3):
        assert re.search(rf"partition {p}, leader 1, replicas: 1, isrs: 1", out), out

    md = json.loads(kcat(floe.bootstrap, "-L", "-J", "-t", topic))
    assert [b["id"] for b in md["brokers"]] == [1], md
    assert md["brokers"][0]["name"] == f"127.0.0.1:{floe.port}", md
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, md
    assert "error" not in topics[topic] or not topics[topic]["error"], topics[topic]
    assert sorted(p["partition"] for p in topics[topic]["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 1 for p in topics[topic]["partitions"]), topics[topic]


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_consume(floe, codec):
    topic = unique_name(f"kcat-{codec}")
    create_topic(floe.bootstrap, topic, partitions=1)

    payload = "".join(f"k{i}:{line(i)}\n" for i in range(N_LINES)).encode()
    args = ["-P", "-t", topic, "-p", "0", "-K", ":"]
    if codec != "none":
        args += ["-z", codec]
    kcat(floe.bootstrap, *args, stdin=payload)

    out = kcat(floe.bootstrap, "-C", "-t", topic, "-e", "-q", "-o", "beginning", "-f", "%o %k %s\n")
    lines = out.splitlines()
    assert len(lines) == N_LINES, f"expected {N_LINES} records, got {len(lines)}: first {lines[:3]} last {lines[-3:]}"
    for i, got in enumerate(lines):
        assert got == f"{i} k{i} {line(i)}", f"record {i}: got {got!r}"

    # Also the spec'd plain format, reading from an offset in the middle.
    out = kcat(floe.bootstrap, "-C", "-t", topic, "-e", "-q", "-o", "500", "-f", "%o %s\n")
    lines = out.splitlines()
    assert lines == [f"{i} {line(i)}" for i in range(500, N_LINES)], (lines[:3], lines[-3:])


def test_kcat_auto_create_topic(floe):
    # --auto-create-topics defaults to true and --num-partitions to 1.
    topic = unique_name("kcat-auto")
    payload = "".join(f"{line(i)}\n" for i in range(10)).encode()
    kcat(floe.bootstrap, "-P", "-t", topic, stdin=payload)

    out = kcat(floe.bootstrap, "-L", "-t", topic)
    assert f'topic "{topic}" with 1 partitions:' in out, out

    out = kcat(floe.bootstrap, "-C", "-t", topic, "-e", "-q", "-o", "beginning", "-f", "%p %o %s\n")
    assert out.splitlines() == [f"0 {i} {line(i)}" for i in range(10)], out
