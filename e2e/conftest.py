"""Fixtures for the Floe end-to-end suite.

The `floe` fixture starts `floe local` (controller + broker in one process) on
a free loopback port with a fresh data directory, waits until a Metadata round
trip works, and hands the test a `FloeProcess` handle.  The process is always
stopped at the end, and the test fails if the broker died unexpectedly or did
not exit cleanly on SIGTERM.

Binary: $FLOE_BIN, else ${CARGO_TARGET_DIR:-<repo>/target}/debug/floe.
Optional: FLOE_E2E_OBJECT_STORE / FLOE_E2E_WAL_MODE are passed to the broker as
--object-store / --wal-mode, so the same suite can run against S3 or the
object-store WAL; RUST_LOG is passed through.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

READY_TIMEOUT_S = float(os.environ.get("FLOE_E2E_READY_TIMEOUT", "60"))
STOP_TIMEOUT_S = float(os.environ.get("FLOE_E2E_STOP_TIMEOUT", "30"))

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Every FloeProcess alive in this pytest process, so that nothing outlives it.
_LIVE: "set[FloeProcess]" = set()


# Shared with the multi-process harness (which scripts/local-cluster also
# imports without pytest).
from cluster import _set_pdeathsig, floe_binary, free_port  # noqa: E402


class FloeDied(AssertionError):
    pass


class FloeProcess:
    """Handle on one `floe local` broker (same data dir and port across restarts)."""

    def __init__(self, binary: Path, workdir: Path, extra_args=()):
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "floe.stderr.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_file = None
        # Exit codes of runs that we ended on purpose, and problems found.
        self.unexpected_exit: str | None = None

    # -- public API -------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "local",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--metrics-listen",
            "127.0.0.1:0",
        ]
        # suite-wide choices from the environment, unless the test sets them itself
        for flag, var in (("--object-store", "FLOE_E2E_OBJECT_STORE"), ("--wal-mode", "FLOE_E2E_WAL_MODE")):
            if os.environ.get(var) and flag not in self.extra_args:
                cmd += [flag, os.environ[var]]
        return cmd + self.extra_args

    def start(self, wait: bool = True) -> None:
        """Start the broker (same data dir and port) and wait until it answers Metadata."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("floe is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        env.setdefault("NO_COLOR", "1")  # plain logs in the stderr file
        self.starts += 1
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._log_file.write(
            f"\n===== e2e: start #{self.starts}: {' '.join(self.command())}\n".encode()
        )
        # PR_SET_PDEATHSIG follows the *thread* that forked, so only use it
        # from the main thread (where pytest runs the test body).
        on_main = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.workdir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if on_main else None,
        )
        _LIVE.add(self)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        # 1. the port accepts TCP connections
        while True:
            self._check_alive("while starting")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"floe did not accept connections on {self.bootstrap} within {timeout}s\n"
                    + self.stderr_tail()
                )
            time.sleep(0.05)
        # 2. a Metadata round trip works and names broker 1
        from confluent_kafka.admin import AdminClient

        last_err = None
        while True:
            self._check_alive("while waiting for Metadata")
            try:
                admin = AdminClient(
                    {
                        "bootstrap.servers": self.bootstrap,
                        "socket.timeout.ms": 5000,
                        "log_level": 3,
                    }
                )
                md = admin.list_topics(timeout=5)
                if md.brokers:
                    return
                last_err = "Metadata response listed no brokers"
            except Exception as e:  # KafkaException on timeout / transport error
                last_err = repr(e)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"floe on {self.bootstrap} never answered Metadata within {timeout}s "
                    f"(last error: {last_err})\n" + self.stderr_tail()
                )
            time.sleep(0.2)

    def stop(self, timeout: float = STOP_TIMEOUT_S, check_exit_code: bool = True) -> int | None:
        """SIGTERM and wait; asserts a clean (0) exit unless told otherwise."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is not None:
            code = proc.returncode
            self._closed()
            raise FloeDied(
                f"floe had already exited (code {code}) before it was stopped\n" + self.stderr_tail()
            )
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            self._closed()
            raise AssertionError(
                f"floe did not exit within {timeout}s of SIGTERM (killed it)\n" + self.stderr_tail()
            )
        self._closed()
        if check_exit_code and code != 0:
            raise AssertionError(
                f"floe exited with code {code} on SIGTERM (expected 0)\n" + self.stderr_tail()
            )
        return code

    def restart(self) -> None:
        """Graceful restart: SIGTERM, wait for exit 0, start again with the same data dir and port."""
        self.stop()
        self.start()

    def kill9(self) -> None:
        """Crash the broker with SIGKILL (no flush). Call .start() to bring it back."""
        if self.proc is None:
            raise RuntimeError("floe is not running")
        self._check_alive("before kill -9")
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._closed()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, lines: int = 80) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no floe stderr captured)"
        text = _ANSI.sub("", data.decode("utf-8", errors="replace")).splitlines()
        tail = "\n".join(text[-lines:])
        return f"----- last {min(lines, len(text))} lines of floe stderr ({self.log_path}) -----\n{tail}"

    # -- internals --------------------------------------------------------

    def _check_alive(self, when: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self._closed()
            msg = f"floe exited unexpectedly (code {code}) {when}"
            self.unexpected_exit = msg
            raise FloeDied(msg + "\n" + self.stderr_tail())

    def _closed(self) -> None:
        self.proc = None
        _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _force_kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._closed()


@pytest.fixture
def floe(request, tmp_path):
    """A running single-node Floe broker, fresh data dir, free loopback port."""
    binary = floe_binary()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(
            f"floe binary not found at {binary}: build it with "
            "`cargo build -p floe-broker --bin floe` or set FLOE_BIN"
        )
    extra = []
    marker = request.node.get_closest_marker("floe_args")
    if marker is not None:
        extra = [str(a) for a in marker.args]
    broker = FloeProcess(binary, tmp_path, extra)
    request.node._floe = broker  # for the failure report hook below
    try:
        broker.start()
    except BaseException:
        broker._force_kill()
        raise
    yield broker
    # Let clients the test dropped close while the broker still answers (less noise).
    gc.collect()
    # Teardown: the broker must still be alive (unless the test stopped it on
    # purpose and did not bring it back) and must exit 0 on SIGTERM.
    try:
        if broker.proc is not None:
            if broker.proc.poll() is not None:
                code = broker.proc.returncode
                broker._closed()
                pytest.fail(
                    f"floe died during the test (exit code {code})\n" + broker.stderr_tail(),
                    pytrace=False,
                )
            broker.stop()
    finally:
        broker._force_kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    broker = getattr(item, "_floe", None)
    if broker is not None and rep.failed:
        rep.sections.append(("floe stderr", broker.stderr_tail(120)))


def pytest_sessionfinish(session, exitstatus):
    for broker in list(_LIVE):
        broker._force_kill()
