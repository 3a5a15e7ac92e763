"""kafkajs (pure JavaScript client): e2e/kafkajs/roundtrip.js run under node."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from floe_e2e import require_tool, unique_name

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "kafkajs" / "roundtrip.js"
NODE = shutil.which("node")


@pytest.mark.timeout(200)
def test_kafkajs_roundtrip(floe):
    require_tool(NODE is not None, "node is not installed")
    require_tool((HERE / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run `npm ci --prefix e2e`")
    env = dict(os.environ, KAFKAJS_E2E_TIMEOUT_MS="120000", KAFKAJS_NO_PARTITIONER_WARNING="1")
    cmd = [NODE, str(SCRIPT), floe.bootstrap, unique_name("kafkajs"), unique_name("kafkajs-g")]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=150, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"kafkajs script hung past 150s\nstdout: {e.stdout}\nstderr: {e.stderr}")
    assert res.returncode == 0, (
        f"kafkajs round trip exited {res.returncode}\n--- stdout ---\n{res.stdout[-4000:]}\n"
        f"--- stderr ---\n{res.stderr[-6000:]}"
    )
    assert "[kafkajs-e2e] OK" in res.stdout, res.stdout
