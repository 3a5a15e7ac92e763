"""Kafka's own reassignment API (AlterPartitionReassignments and
ListPartitionReassignments) from kafkajs against a 3-controller, 2-broker
cluster: e2e/kafkajs/reassign.js moves every partition to the other broker
and checks that nothing written before or after the move is lost or
reordered, and that a two-replica assignment is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster import make_cluster  # noqa: F401  (fixture)
from floe_e2e import require_tool, unique_name

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")


@pytest.mark.timeout(180)
def test_kafkajs_reassigns_partitions(make_cluster):
    require_tool(NODE is not None, "node is not installed")
    require_tool((HERE / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run `npm ci --prefix e2e`")
    cluster = make_cluster(brokers=2, wal_mode="object")
    env = dict(os.environ, KAFKAJS_E2E_TIMEOUT_MS="90000", KAFKAJS_NO_PARTITIONER_WARNING="1")
    cmd = [NODE, str(HERE / "kafkajs" / "reassign.js"), cluster.bootstrap, unique_name("reassign")]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=env)
    print(res.stdout)
    assert res.returncode == 0, (
        f"reassign.js exited {res.returncode}\n--- stdout ---\n{res.stdout[-4000:]}\n"
        f"--- stderr ---\n{res.stderr[-6000:]}"
    )
    assert "[kafkajs-e2e] OK" in res.stdout
