"""Multi-process Floe clusters for the e2e suite: controller quorum, brokers, fault proxies.

    ControllerQuorum   n `floe controller` processes (free loopback ports, data
                       dirs under one work dir, short broker leases), ready
                       once every /readyz answers 200.
    FaultProxy         a TCP proxy on 127.0.0.1 in front of one controller's
                       metadata port.  cut() closes live connections and
                       black-holes (or refuses) new ones, heal() undoes it;
                       both can target only the connections opened by given
                       processes (see below).
    BrokerProcess      one `floe broker` (start / stop = SIGTERM expecting
                       exit 0 / kill = SIGKILL / restart on the same Kafka
                       port, health port and data dir).
    Cluster            all of the above in one work dir; `cluster.cut(b)` /
                       `cluster.heal(b)` separate a broker from the quorum
                       while Kafka clients still reach it.
    make_cluster       pytest fixture: a factory of started clusters, torn
                       down (and checked) at the end of the test.

Why the proxies are shared and filter by process: a controller that does not
lead answers with a leader hint carrying the leader's *advertised* metadata
address, and the controller client follows it.  A proxy per broker would be
bypassed by the first hint.  So every controller advertises its proxy's
address (`--controllers` lists the proxies), every broker's `--controllers`
lists the same proxies, and a proxy finds out which process opened each
accepted connection (the peer's socket inode in /proc/net/tcp, looked up in
/proc/<pid>/fd of the brokers it knows).  Cutting broker A then means: every
proxy drops A's connections, and keeps holding (black-holing) or resetting
A's new ones, while the other brokers pass.

Every process gets PR_SET_PDEATHSIG (when started from the main thread), its
own log file (`<workdir>/<name>.log`, FLOE_LOG=$FLOE_E2E_LOG, default
"info,openraft=warn"), and is
killed at interpreter exit at the latest.  Also usable without pytest
(scripts/local-cluster uses it).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = float(os.environ.get("FLOE_E2E_READY_TIMEOUT", "60"))
STOP_TIMEOUT_S = float(os.environ.get("FLOE_E2E_STOP_TIMEOUT", "30"))
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def floe_binary() -> Path:
    explicit = os.environ.get("FLOE_BIN")
    if explicit:
        return Path(explicit).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or (REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "floe"


_PORTS_HANDED_OUT: set[int] = set()
_PORT_BASE: list[int] = []


def use_fixed_ports(base: int) -> None:
    """From now on free_port() hands out base, base+1, ... (scripts/local-cluster --base-port)."""
    _PORT_BASE[:] = [base]


def free_port() -> int:
    """A free loopback port, never the same one twice in this process."""
    if _PORT_BASE:
        port = _PORT_BASE[0]
        _PORT_BASE[0] += 1
        _PORTS_HANDED_OUT.add(port)
        return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port


def _set_pdeathsig():  # in the child, between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def http_get(addr: str, path: str, timeout: float = 1.0) -> tuple[int, str]:
    """(status, body) of GET http://addr/path; (0, error) when it did not answer."""
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:  # refused, timeout, reset
        return 0, repr(e)


# --------------------------------------------------------------------------
# processes


class ProcessDied(AssertionError):
    pass


_ALL_PROCESSES: "set[ManagedProcess]" = set()


class ManagedProcess:
    """A floe child process with a log file; base of controllers and brokers."""

    def __init__(self, name: str, workdir: Path, binary: Path | None = None):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary or floe_binary())
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.extra_env: dict[str, str] = {}
        self._log = None
        self.unexpected_exit: str | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        env.setdefault("NO_COLOR", "1")
        env["FLOE_LOG"] = os.environ.get("FLOE_E2E_LOG", "info,openraft=warn")
        env.update(self.extra_env)
        self.starts += 1
        cmd = self.command()
        self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(f"\n===== e2e {time.strftime('%H:%M:%S')}: start #{self.starts}: {' '.join(cmd)}\n".encode())
        on_main = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.workdir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # a Ctrl-C in a terminal reaches us, not them
            # PR_SET_PDEATHSIG follows the forking *thread*: only from the main one.
            preexec_fn=_set_pdeathsig if on_main else None,
        )
        _ALL_PROCESSES.add(self)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, when: str = "") -> None:
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self._closed()
            msg = f"{self.name} exited unexpectedly (code {code}) {when}".rstrip()
            self.unexpected_exit = msg
            raise ProcessDied(msg + "\n" + self.log_tail())

    def stop(self, timeout: float = STOP_TIMEOUT_S, check_exit_code: bool = True) -> int | None:
        """SIGTERM and wait; asserts exit code 0 unless told otherwise."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is not None:
            code = proc.returncode
            self._closed()
            raise ProcessDied(f"{self.name} had already exited (code {code}) before it was stopped\n" + self.log_tail())
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            self._closed()
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM (killed it)\n" + self.log_tail())
        self._closed()
        if check_exit_code and code != 0:
            raise AssertionError(f"{self.name} exited with code {code} on SIGTERM (expected 0)\n" + self.log_tail())
        return code

    def kill(self) -> None:
        """SIGKILL (no flush, no goodbye)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        self.check_alive("before kill -9")
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._closed()

    def force_kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._closed()

    def log_tail(self, lines: int = 60) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return f"(no log for {self.name})"
        text = _ANSI.sub("", data.decode("utf-8", errors="replace")).splitlines()
        tail = "\n".join(text[-lines:])
        return f"----- last {min(lines, len(text))} lines of {self.name} ({self.log_path}) -----\n{tail}"

    def log_text(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_bytes().decode("utf-8", errors="replace"))
        except OSError:
            return ""

    def _closed(self) -> None:
        self.proc = None
        _ALL_PROCESSES.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None


def _kill_everything_left():
    for p in list(_ALL_PROCESSES):
        p.force_kill()


atexit.register(_kill_everything_left)


class ControllerProcess(ManagedProcess):
    def __init__(self, quorum: "ControllerQuorum", node_id: int):
        super().__init__(f"controller-{node_id}", quorum.workdir, quorum.binary)
        self.quorum = quorum
        self.node_id = node_id
        self.raft = f"127.0.0.1:{free_port()}"
        self.metadata = f"127.0.0.1:{free_port()}"
        self.health = f"127.0.0.1:{free_port()}"
        self.data_dir = quorum.workdir / f"controller-{node_id}"

    def command(self) -> list[str]:
        q = self.quorum
        return [
            str(self.binary), "controller",
            "--id", str(self.node_id),
            "--raft-listen", self.raft,
            "--metadata-listen", self.metadata,
            "--raft-peers", ",".join(f"{c.node_id}={c.raft}" for c in q.controllers),
            "--controllers", ",".join(q.advertised_metadata()),
            "--data-dir", str(self.data_dir),
            "--health-listen", self.health,
            "--cluster", q.cluster_name,
            "--heartbeat-ms", str(q.heartbeat_ms),
            "--election-timeout-ms", str(q.election_timeout_ms),
            "--broker-lease-ms", str(q.lease_ms),
            "--broker-lease-grace-ms", str(q.grace_ms),
        ] + list(q.extra_args)

    def start(self) -> None:
        self.spawn()

    def ready(self) -> bool:
        return http_get(self.health, "/readyz")[0] == 200

    def metric(self, name: str) -> float | None:
        status, body = http_get(self.health, "/metrics")
        if status != 200:
            return None
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                try:
                    return float(line.rsplit(" ", 1)[1])
                except ValueError:
                    return None
        return None


class ControllerQuorum:
    """n controllers (ids 1..n) on loopback; lease/grace short by default."""

    def __init__(
        self,
        workdir: Path,
        n: int = 3,
        lease_ms: int = 2000,
        grace_ms: int = 500,
        binary: Path | None = None,
        cluster_name: str = "floe",
        heartbeat_ms: int = 100,
        election_timeout_ms: int = 500,
        proxies: bool = True,
        extra_args=(),
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary or floe_binary())
        self.lease_ms = lease_ms
        self.grace_ms = grace_ms
        self.cluster_name = cluster_name
        self.heartbeat_ms = heartbeat_ms
        self.election_timeout_ms = election_timeout_ms
        self.extra_args = list(extra_args)
        self.controllers = [ControllerProcess(self, i) for i in range(1, n + 1)]
        # One proxy per controller metadata port; controllers advertise it.
        self.proxies: list[FaultProxy] = (
            [FaultProxy(c.metadata, name=f"proxy-controller-{c.node_id}") for c in self.controllers] if proxies else []
        )

    def advertised_metadata(self) -> list[str]:
        """The metadata addresses brokers (and leader hints) use: the proxies if any."""
        if self.proxies:
            return [p.address for p in self.proxies]
        return [c.metadata for c in self.controllers]

    @property
    def controllers_arg(self) -> str:
        return ",".join(self.advertised_metadata())

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
        for p in self.proxies:
            p.start()
        for c in self.controllers:
            if not c.is_running():
                c.start()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            running = [c for c in self.controllers if c.proc is not None]
            for c in running:
                c.check_alive("while the quorum was starting")
            if running and all(c.ready() for c in running):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"controllers not ready (/readyz) within {timeout}s: "
                    + ", ".join(f"{c.name}={http_get(c.health, '/readyz')}" for c in running)
                    + "\n" + self.log_tails()
                )
            time.sleep(0.1)

    def leader(self) -> ControllerProcess | None:
        for c in self.controllers:
            if c.is_running() and c.metric("floe_controller_is_leader") == 1:
                return c
        return None

    def stop(self) -> list[str]:
        """SIGTERM every controller; returns the problems (non-zero exits, deaths)."""
        problems = []
        for c in self.controllers:
            try:
                if c.proc is not None:
                    c.stop()
            except AssertionError as e:
                problems.append(str(e))
            finally:
                c.force_kill()
        for p in self.proxies:
            p.close()
        return problems

    def force_kill(self) -> None:
        for c in self.controllers:
            c.force_kill()
        for p in self.proxies:
            p.close()

    def log_tails(self, lines: int = 25) -> str:
        return "\n".join(c.log_tail(lines) for c in self.controllers)


class BrokerProcess(ManagedProcess):
    """One `floe broker`; port, health port and data dir survive restarts."""

    def __init__(
        self,
        workdir: Path,
        node_id: int,
        controllers: str,
        object_store: str,
        wal_mode: str = "object",
        binary: Path | None = None,
        cluster_name: str | None = None,
        rack: str | None = None,
        extra_args=(),
    ):
        super().__init__(f"broker-{node_id}", workdir, binary)
        self.node_id = node_id
        self.host = "127.0.0.1"
        self.port = free_port()
        self.health = f"127.0.0.1:{free_port()}"
        self.controllers = controllers
        self.object_store = object_store
        self.wal_mode = wal_mode
        self.cluster_name = cluster_name
        self.rack = rack
        self.data_dir = self.workdir / f"broker-{node_id}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary), "broker",
            "--node-id", str(self.node_id),
            "--listen", self.bootstrap,
            "--controllers", self.controllers,
            "--object-store", self.object_store,
            "--wal-mode", self.wal_mode,
            "--data-dir", str(self.data_dir),
            "--health-listen", self.health,
        ]
        if self.cluster_name:
            cmd += ["--cluster", self.cluster_name]
        if self.rack:
            cmd += ["--rack", self.rack]
        return cmd + self.extra_args

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
        self.spawn()
        if wait:
            self.wait_ready(timeout)

    def ready(self) -> bool:
        """/readyz: registered with a valid lease."""
        return http_get(self.health, "/readyz")[0] == 200

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """/readyz answers 200, then a Metadata round trip lists this broker."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self.check_alive("while starting")
            last = http_get(self.health, "/readyz")
            if last[0] == 200:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready (/readyz {last}) within {timeout}s\n" + self.log_tail())
            time.sleep(0.1)
        while True:
            self.check_alive("while waiting for Metadata")
            try:
                md = metadata(self.bootstrap, [], timeout=3)
                if self.node_id in md.brokers:
                    return
                last = f"Metadata lists brokers {sorted(md.brokers)}, not {self.node_id}"
            except Exception as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never answered Metadata within {timeout}s ({last})\n" + self.log_tail())
            time.sleep(0.2)

    def wait_not_ready(self, timeout: float) -> float:
        """Waits for /readyz to stop answering 200; returns when (monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.ready():
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still ready after {timeout}s\n" + self.log_tail(20))
            time.sleep(0.05)

    def restart(self, wait: bool = True) -> None:
        """SIGTERM (expects exit 0), then start on the same ports and data dir."""
        self.stop()
        self.start(wait=wait)


# --------------------------------------------------------------------------
# fault proxy


def _socket_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Inode of the TCP socket whose local end is `local` and remote end `remote` (loopback IPv4)."""

    def enc(addr):
        ip, port = addr
        packed = socket.inet_aton(ip)
        return f"{struct.unpack('<I', packed)[0]:08X}:{port:04X}"

    want_l, want_r = enc(local), enc(remote)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[1] == want_l and cols[2] == want_r:
                    return int(cols[9])
    except OSError:
        pass
    return None


def _pid_owns_inode(pid: int, inode: int) -> bool:
    target = f"socket:[{inode}]"
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    upstream: socket.socket | None
    owner: str | None  # name of the process that opened it, if known
    held: bool = False  # black-holed: accepted, never forwarded
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class FaultProxy:
    """Threaded TCP proxy 127.0.0.1:<port> -> `target`.

    cut(names=None, mode="blackhole"): close the live connections (of the
    processes called `names`, or all), and from then on either hold new ones
    open without forwarding a byte ("blackhole": the client's requests time
    out) or reset them at once ("refuse").  heal(names=None) lets them through
    again (held connections are closed, so clients reconnect).

    Connection owners: `watch(name, pid_fn)` registers a process whose
    connections the proxy should recognise; pid_fn() gives its current pid
    (it changes on restart).
    """

    def __init__(self, target: str, port: int | None = None, name: str = "proxy"):
        host, p = target.rsplit(":", 1)
        self.target = (host, int(p))
        self.port = port or free_port()
        self.name = name
        self._owners: dict[str, callable] = {}
        self._cut: dict[str | None, str] = {}  # owner name (None = everyone) -> mode
        self._conns: set[_Conn] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.accepted = 0
        self.dropped = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def watch(self, name: str, pid_fn) -> None:
        with self._lock:
            self._owners[name] = pid_fn

    def start(self) -> None:
        if self._thread is not None:
            return
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(128)
        ls.settimeout(0.2)
        self._listener = ls
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            c.close()

    def cut(self, names=None, mode: str = "blackhole") -> None:
        assert mode in ("blackhole", "refuse"), mode
        keys = [None] if names is None else list(names)
        with self._lock:
            for k in keys:
                self._cut[k] = mode
            victims = [c for c in self._conns if names is None or c.owner in keys]
        for c in victims:
            c.close()
            with self._lock:
                self._conns.discard(c)

    def heal(self, names=None) -> None:
        keys = [None] if names is None else list(names)
        with self._lock:
            for k in keys:
                self._cut.pop(k, None)
            held = [c for c in self._conns if c.held and (names is None or c.owner in keys)]
        for c in held:
            c.close()
            with self._lock:
                self._conns.discard(c)

    def is_cut(self, owner: str | None) -> str | None:
        with self._lock:
            return self._cut.get(None) or (self._cut.get(owner) if owner else None)

    # -- internals --

    def _owner_of(self, peer) -> str | None:
        inode = _socket_inode(peer, ("127.0.0.1", self.port))
        if inode is None:
            return None
        with self._lock:
            owners = list(self._owners.items())
        for name, pid_fn in owners:
            pid = pid_fn()
            if pid and _pid_owns_inode(pid, inode):
                return name
        return None

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            owner = self._owner_of(peer) if self._owners else None
            mode = self.is_cut(owner)
            if mode == "refuse":
                self.dropped += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                client.close()
                continue
            if mode == "blackhole":
                self.dropped += 1
                with self._lock:
                    self._conns.add(_Conn(client, None, owner, held=True))
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            conn = _Conn(client, upstream, owner)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._pump, args=(conn,), name=f"{self.name}-pump", daemon=True).start()

    def _pump(self, conn: _Conn) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(conn.client, selectors.EVENT_READ, conn.upstream)
            sel.register(conn.upstream, selectors.EVENT_READ, conn.client)
            while not conn.closed:
                for key, _ in sel.select(timeout=0.5):
                    src, dst = key.fileobj, key.data
                    data = src.recv(65536)
                    if not data:
                        return
                    dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            sel.close()
            conn.close()
            with self._lock:
                self._conns.discard(conn)


# --------------------------------------------------------------------------
# the cluster


class Cluster:
    """A controller quorum (behind FaultProxies) and brokers sharing one object store."""

    def __init__(
        self,
        workdir: Path,
        controllers: int = 3,
        lease_ms: int = 2000,
        grace_ms: int = 500,
        wal_mode: str = "object",
        object_store: str | None = None,
        binary: Path | None = None,
        broker_args=(),
        controller_args=(),
        proxies: bool = True,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary or floe_binary())
        self.quorum = ControllerQuorum(
            self.workdir, n=controllers, lease_ms=lease_ms, grace_ms=grace_ms, binary=self.binary,
            extra_args=controller_args, proxies=proxies,
        )
        self.wal_mode = wal_mode
        self.object_store = object_store or (self.workdir / "objects").as_uri()
        if self.object_store.startswith("file://"):
            Path(self.object_store[len("file://"):]).mkdir(parents=True, exist_ok=True)
        self.broker_args = list(broker_args)
        self.brokers: dict[int, BrokerProcess] = {}

    @property
    def lease_s(self) -> float:
        return self.quorum.lease_ms / 1000

    @property
    def grace_s(self) -> float:
        return self.quorum.grace_ms / 1000

    def start(self, brokers: int = 0) -> "Cluster":
        self.quorum.start()
        for _ in range(brokers):
            self.add_broker(wait=False)
        for b in self.brokers.values():
            b.wait_ready()
        return self

    def add_broker(self, node_id: int | None = None, wait: bool = True, wal_mode: str | None = None,
                   extra_args=()) -> BrokerProcess:
        node_id = node_id if node_id is not None else (max(self.brokers, default=0) + 1)
        b = BrokerProcess(
            self.workdir, node_id, self.quorum.controllers_arg, self.object_store,
            wal_mode=wal_mode or self.wal_mode, binary=self.binary,
            extra_args=self.broker_args + list(extra_args),
        )
        self.brokers[node_id] = b
        for p in self.quorum.proxies:
            p.watch(b.name, lambda b=b: b.pid)
        b.start(wait=wait)
        return b

    def broker(self, node_id: int) -> BrokerProcess:
        return self.brokers[node_id]

    @property
    def bootstrap(self) -> str:
        running = [b.bootstrap for b in self.brokers.values() if b.is_running()]
        return ",".join(running or [b.bootstrap for b in self.brokers.values()])

    def cut(self, broker: BrokerProcess, mode: str = "blackhole") -> None:
        """Separate `broker` from every controller (Kafka clients still reach it)."""
        assert self.quorum.proxies, "a cluster started with proxies=False cannot cut brokers off"
        for p in self.quorum.proxies:
            p.cut([broker.name], mode=mode)

    def heal(self, broker: BrokerProcess) -> None:
        for p in self.quorum.proxies:
            p.heal([broker.name])

    def processes(self) -> list[ManagedProcess]:
        return list(self.quorum.controllers) + list(self.brokers.values())

    def check_alive(self) -> None:
        for p in self.processes():
            p.check_alive()

    def stop(self) -> list[str]:
        """SIGTERM brokers, then controllers; returns problems (deaths, bad exit codes)."""
        problems = []
        for b in self.brokers.values():
            if b.unexpected_exit:
                problems.append(b.unexpected_exit)
            try:
                if b.proc is not None:
                    b.stop()
            except AssertionError as e:
                problems.append(str(e))
            finally:
                b.force_kill()
        problems += self.quorum.stop()
        return problems

    def force_kill(self) -> None:
        for b in self.brokers.values():
            b.force_kill()
        self.quorum.force_kill()

    def stderr_tail(self, lines: int = 40) -> str:
        """Log tails of every process (the conftest failure hook calls this)."""
        procs = self.processes()
        per = max(15, lines // max(1, len(procs)))
        return "\n".join(p.log_tail(per) for p in procs)


# --------------------------------------------------------------------------
# a raw Metadata v7 request (confluent-kafka hides leader epochs)


@dataclass
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int
    error: int


@dataclass
class MetadataView:
    brokers: dict[int, tuple[str, int]]
    controller_id: int
    topics: dict[str, dict[int, PartitionInfo]]
    topic_errors: dict[str, int]


def _kstr(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, data: bytes):
        self.d, self.i = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.i)
        self.i += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.i:self.i + n].decode()
        self.i += n
        return s

    def int32s(self):
        return [self.take(">i") for _ in range(self.take(">i"))]


def metadata(bootstrap: str, topics: list[str] | None, timeout: float = 5) -> MetadataView:
    """Metadata v7 asked of exactly one broker (the first of `bootstrap`)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    body = struct.pack(">hhi", 3, 7, 1) + _kstr("floe-e2e")
    if topics is None:
        body += struct.pack(">i", -1)
    else:
        body += struct.pack(">i", len(topics)) + b"".join(_kstr(t) for t in topics)
    body += b"\x00"  # allow_auto_topic_creation = false
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)

        def recv_exact(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("connection closed during Metadata response")
                buf += chunk
            return buf

        size = struct.unpack(">i", recv_exact(4))[0]
        r = _Reader(recv_exact(size))
    corr = r.take(">i")
    assert corr == 1, corr
    r.take(">i")  # throttle
    brokers = {}
    for _ in range(r.take(">i")):
        nid = r.take(">i")
        h = r.string()
        p = r.take(">i")
        r.string()  # rack
        brokers[nid] = (h, p)
    r.string()  # cluster id
    controller_id = r.take(">i")
    out, errs = {}, {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")  # internal
        parts = {}
        for _ in range(r.take(">i")):
            perr = r.take(">h")
            pid = r.take(">i")
            leader = r.take(">i")
            epoch = r.take(">i")
            r.int32s()
            r.int32s()
            r.int32s()
            parts[pid] = PartitionInfo(pid, leader, epoch, perr)
        out[name] = parts
        errs[name] = err
    return MetadataView(brokers, controller_id, out, errs)


# --------------------------------------------------------------------------
# load and data checks


_OPEN_LOADS: "set[ProduceLoad]" = set()


@dataclass
class Ack:
    partition: int
    offset: int
    value: bytes
    at: float  # time.monotonic() when the delivery report arrived


class ProduceLoad:
    """Produces numbered messages (value b"<n>") round-robin over `partitions`
    from a background thread until stop(); records every delivery report."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, interval: float = 0.005, **conf):
        from confluent_kafka import Producer

        self.topic = topic
        self.partitions = partitions
        self.interval = interval
        c = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "socket.timeout.ms": 10000,
            "topic.metadata.refresh.interval.ms": 1000,
            "log_level": 3,
            "error_cb": self._on_error,
        }
        c.update(conf)
        self.producer = Producer(c)
        self.acks: list[Ack] = []
        self.failed: list[tuple[int, bytes, str, float]] = []
        self.errors: list[tuple[float, str, bool]] = []  # (when, error, fatal)
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="produce-load", daemon=True)
        self.unflushed = None
        self._flush_timeout = 60.0
        _OPEN_LOADS.add(self)

    def _on_error(self, err):
        self.errors.append((time.monotonic(), str(err), bool(err.fatal())))

    def _cb(self, err, msg):
        now = time.monotonic()
        with self._lock:
            if err is not None:
                self.failed.append((msg.partition(), msg.value(), str(err), now))
            else:
                self.acks.append(Ack(msg.partition(), msg.offset(), msg.value(), now))

    def start(self) -> "ProduceLoad":
        self._thread.start()
        return self

    def _run(self):
        i = 0
        while not self._stop.is_set():
            try:
                self.producer.produce(self.topic, value=str(i).encode(), key=str(i).encode(),
                                      partition=i % self.partitions, on_delivery=self._cb)
                i += 1
                self.sent = i
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.producer.poll(0)
            if self.interval:
                self._stop.wait(self.interval)
        self.unflushed = self.producer.flush(self._flush_timeout)
        self.producer = None  # close its connections now, not at garbage collection

    def stop(self, flush_timeout: float = 60) -> None:
        self._flush_timeout = flush_timeout
        self._stop.set()
        if not self._thread.is_alive() and self.unflushed is not None:
            return
        self._thread.join(flush_timeout + 10)
        _OPEN_LOADS.discard(self)
        assert not self._thread.is_alive(), "producer thread did not finish"

    def close(self, flush_timeout: float = 60) -> None:
        """stop() unless already stopped (for finally: blocks)."""
        if not self._stop.is_set():
            self.stop(flush_timeout)

    def snapshot(self) -> list[Ack]:
        with self._lock:
            return list(self.acks)

    def acks_after(self, t: float, partitions) -> list[Ack]:
        return [a for a in self.snapshot() if a.at > t and a.partition in partitions]

    def fatal_errors(self):
        return [e for e in self.errors if e[2]]

    def summary(self) -> str:
        return (f"sent={self.sent} acked={len(self.acks)} failed={len(self.failed)} "
                f"unflushed={self.unflushed} client_errors={len(self.errors)} fatal={len(self.fatal_errors())}")


@dataclass
class Record:
    offset: int
    value: bytes
    leader_epoch: int | None


def consume_all(bootstrap: str, topic: str, partitions: int, timeout: float = 60) -> dict[int, list[Record]]:
    """Every partition from offset 0 up to its high watermark, with assign() (no group)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"e2e-check-{os.getpid()}-{time.monotonic_ns()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "socket.timeout.ms": 10000,
        "log_level": 3,
    })
    try:
        high = {}
        for p in range(partitions):
            _, high[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = {p: [] for p in range(partitions)}
        nxt = {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while any(nxt[p] < high[p] for p in range(partitions)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: high watermarks {high}, next offsets {nxt}")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                ep = m.leader_epoch() if hasattr(m, "leader_epoch") else None
                out[m.partition()].append(Record(m.offset(), m.value(), ep))
                nxt[m.partition()] = m.offset() + 1
        return out
    finally:
        c.close()


def check_data(acks: list[Ack], consumed: dict[int, list[Record]]) -> str:
    """The data check: raises AssertionError listing what is wrong, else returns a summary.

    - offsets of each partition are 0, 1, 2, ... (strictly increasing, no gap, no reuse);
    - no value appears twice in the topic (no duplicate from a retry or a failover);
    - every acknowledged message is at its acknowledged partition and offset;
    - no offset was acknowledged for two different values;
    - leader epochs (where the consumer reports them) never decrease along a partition.
    """
    problems = []
    where: dict[bytes, tuple[int, int]] = {}
    for p, recs in consumed.items():
        offs = [r.offset for r in recs]
        if offs != list(range(len(offs))):
            bad = next(i for i, (a, b) in enumerate(zip(offs, range(len(offs)))) if a != b) if offs else 0
            problems.append(f"partition {p}: offsets not 0..{len(offs) - 1}: around #{bad}: {offs[max(0, bad - 3):bad + 3]}")
        last_ep = None
        for r in recs:
            if r.value in where:
                problems.append(f"value {r.value!r} twice: at {where[r.value]} and {(p, r.offset)}")
            where[r.value] = (p, r.offset)
            if r.leader_epoch is not None and r.leader_epoch >= 0:
                if last_ep is not None and r.leader_epoch < last_ep:
                    problems.append(f"partition {p} offset {r.offset}: leader epoch {r.leader_epoch} after {last_ep}")
                last_ep = r.leader_epoch
    seen: dict[tuple[int, int], bytes] = {}
    missing = moved = 0
    for a in acks:
        key = (a.partition, a.offset)
        if key in seen and seen[key] != a.value:
            problems.append(f"offset {key} acknowledged for {seen[key]!r} and for {a.value!r}")
        seen[key] = a.value
        got = where.get(a.value)
        if got is None:
            missing += 1
            if missing <= 10:
                problems.append(f"acknowledged {a.value!r} at {key} is missing")
        elif got != key:
            moved += 1
            if moved <= 10:
                problems.append(f"acknowledged {a.value!r} at {key} was read at {got}")
    if missing > 10 or moved > 10:
        problems.append(f"... {missing} acknowledged messages missing, {moved} at another offset in all")
    if problems:
        raise AssertionError("data check failed:\n  " + "\n  ".join(problems[:60]))
    total = sum(len(v) for v in consumed.values())
    return f"data check ok: {len(acks)} acknowledged, {total} consumed, {total - len(seen)} unacknowledged extra"


def epochs_of(consumed: dict[int, list[Record]], acks: list[Ack]) -> dict[bytes, int | None]:
    """value -> leader epoch of the batch it was read from."""
    return {r.value: r.leader_epoch for recs in consumed.values() for r in recs}


# --------------------------------------------------------------------------
# pytest fixture (imported by the test modules)

try:
    import pytest
except ImportError:  # scripts/local-cluster without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def make_cluster(request, tmp_path):
        """make_cluster(brokers=2, wal_mode="object", lease_ms=2000, grace_ms=500, ...) -> started Cluster.

        Log tails of every process appear in the report of a failed test (the
        conftest hook reads `item._floe`); at the end every broker and
        controller must still be alive and exit 0 on SIGTERM.
        """
        binary = floe_binary()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(f"floe binary not found at {binary}: build it or set FLOE_BIN")
        made: list[Cluster] = []

        def make(brokers: int = 2, **kw) -> Cluster:
            c = Cluster(tmp_path / f"cluster{len(made)}", binary=binary, **kw)
            made.append(c)
            request.node._floe = c  # the conftest failure hook prints c.stderr_tail()
            c.start(brokers=brokers)
            return c

        try:
            yield make
        finally:
            for load in list(_OPEN_LOADS):  # a test that failed half-way
                try:
                    load.close(flush_timeout=2)
                except AssertionError:
                    pass
            problems = []
            for c in made:
                try:
                    problems += c.stop()
                finally:
                    c.force_kill()
            if problems:
                pytest.fail("cluster teardown:\n" + "\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# partition moves (`floe admin`) and a consumer group under load
# (test_cluster_reassign.py, bench/reassign.py)


class AdminFailed(AssertionError):
    pass


def floe_admin(cluster: "Cluster | str", *args: str, timeout: float = 120.0, binary: Path | None = None,
               timeout_secs: int | None = None) -> dict:
    """`floe admin --controllers ... --json ARGS`: the parsed JSON line it prints.

    `cluster` is a Cluster or a comma-separated list of controller metadata
    addresses.  Raises AdminFailed (with stdout/stderr) on a non-zero exit,
    a timeout or output that is not one JSON object.
    """
    import json as _json

    if isinstance(cluster, Cluster):
        controllers, binary = cluster.quorum.controllers_arg, binary or cluster.binary
    else:
        controllers = cluster
    cmd = [str(binary or floe_binary()), "admin", "--controllers", controllers, "--json"]
    if timeout_secs is not None:
        cmd += ["--timeout-secs", str(timeout_secs)]
    cmd += [str(a) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    env.setdefault("NO_COLOR", "1")
    env["RUST_LIB_BACKTRACE"] = "0"  # errors as messages, even under RUST_BACKTRACE=1
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AdminFailed(f"`{' '.join(cmd)}` did not finish within {timeout}s; stderr: {e.stderr!r}") from None
    line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.strip().startswith("{")), None)
    if r.returncode != 0 or line is None:
        raise AdminFailed(f"`{' '.join(cmd)}` exited {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-3000:]}")
    try:
        return _json.loads(line)
    except ValueError:
        raise AdminFailed(f"`{' '.join(cmd)}` printed no JSON: {r.stdout[-2000:]!r}") from None


def partition_leaders(bootstrap: str, topic: str, timeout: float = 5) -> dict[int, tuple[int, int]]:
    """partition -> (leader, leader epoch), from Metadata asked of the first broker of `bootstrap`."""
    return {p: (i.leader, i.leader_epoch) for p, i in metadata(bootstrap, [topic], timeout).topics.get(topic, {}).items()}


def wait_until(pred, timeout: float, what: str, interval: float = 0.05) -> float:
    """Polls pred() until it returns True (exceptions count as "not yet"); returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as e:
            last = repr(e)
        if last is True:
            return time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")


def first_ack_after(acks: list[Ack], t: float, partition: int) -> Ack | None:
    """The first ack on `partition` that arrived after `t` (acks in arrival order)."""
    for a in acks:
        if a.partition == partition and a.at > t:
            return a
    return None


def ack_gap_around(acks: list[Ack], partition: int, t: float, until: float) -> float | None:
    """The longest wait between consecutive acks on `partition` from the last ack
    at or before `t` up to the first ack after `until`: the producer-visible
    unavailability of a move requested at `t` that the tool reported done at
    `until`.  None if there is no ack on either side."""
    times = [a.at for a in acks if a.partition == partition]
    before = [x for x in times if x <= t]
    after = [x for x in times if x > until]
    if not before or not after:
        return None
    window = [x for x in times if before[-1] <= x <= after[0]]
    return max(b - a for a, b in zip(window, window[1:]))


@dataclass
class GroupRecord:
    member: int
    session: int  # per member: incremented on every assignment (on_assign)
    partition: int
    offset: int
    value: bytes
    at: float


class GroupConsumerLoad:
    """`members` confluent-kafka consumers in one group (subscribe(), eager
    rebalancing, enable.auto.commit=False, a synchronous commit after every
    non-empty batch: at-least-once), each in its own thread, recording every
    record it gets with its assignment session."""

    def __init__(self, bootstrap: str, topic: str, group: str, members: int = 2, **conf):
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "socket.timeout.ms": 10000,
            "topic.metadata.refresh.interval.ms": 1000,
            "log_level": 3,
        }
        self.conf.update(conf)
        self.records: list[GroupRecord] = []
        self.assignments: list[tuple[float, int, int, list[int]]] = []  # (at, member, session, partitions)
        self.revocations: list[tuple[float, int, int, str]] = []  # (at, member, session, "revoke"|"lost")
        self.commit_errors: list[tuple[float, int, str]] = []
        self.consume_errors: list[tuple[float, int, str]] = []
        self.client_errors: list[tuple[float, int, str, bool]] = []
        self.commits = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(m,), name=f"group-member-{m}", daemon=True)
                         for m in range(members)]
        self.exceptions: list[str] = []

    def start(self) -> "GroupConsumerLoad":
        for t in self._threads:
            t.start()
        return self

    def _run(self, member: int) -> None:
        from confluent_kafka import Consumer, KafkaError, KafkaException

        session = [0]
        conf = dict(self.conf)
        conf["error_cb"] = lambda err: self.client_errors.append((time.monotonic(), member, str(err), bool(err.fatal())))
        conf["client.id"] = f"{self.group}-m{member}"

        def on_assign(consumer, parts):
            session[0] += 1
            with self._lock:
                self.assignments.append((time.monotonic(), member, session[0], sorted(p.partition for p in parts)))

        def on_revoke(consumer, parts):
            with self._lock:
                self.revocations.append((time.monotonic(), member, session[0], "revoke"))

        def on_lost(consumer, parts):
            with self._lock:
                self.revocations.append((time.monotonic(), member, session[0], "lost"))

        c = Consumer(conf)
        try:
            c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
            while not self._stop.is_set():
                msgs = c.consume(num_messages=1000, timeout=0.2)
                got = False
                now = time.monotonic()
                batch = []
                for m in msgs:
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            self.consume_errors.append((now, member, str(m.error())))
                        continue
                    batch.append(GroupRecord(member, session[0], m.partition(), m.offset(), m.value(), now))
                    got = True
                if batch:
                    with self._lock:
                        self.records.extend(batch)
                if got:
                    try:
                        c.commit(asynchronous=False)
                        self.commits += 1
                    except KafkaException as e:
                        self.commit_errors.append((time.monotonic(), member, str(e)))
        except Exception as e:  # recorded, the check fails on it
            import traceback
            self.exceptions.append(f"member {member}: {traceback.format_exc()}")
        finally:
            try:
                c.close()
            except Exception as e:
                self.exceptions.append(f"member {member}: close: {e!r}")

    def values(self) -> set[bytes]:
        with self._lock:
            return {r.value for r in self.records}

    def snapshot(self) -> list[GroupRecord]:
        with self._lock:
            return list(self.records)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a group consumer thread did not finish"

    def summary(self) -> str:
        recs = self.snapshot()
        uniq = len({(r.partition, r.offset) for r in recs})
        return (f"group {self.group}: {len(recs)} records delivered ({uniq} distinct offsets, "
                f"{len(recs) - uniq} redelivered), {len(self.assignments)} assignments, "
                f"{len(self.revocations)} revocations, {self.commits} commits, "
                f"{len(self.commit_errors)} commit errors, {len(self.consume_errors)} consume errors, "
                f"{len(self.client_errors)} client errors")


def check_group(acks: list[Ack], group: GroupConsumerLoad, consumed: dict[int, list[Record]] | None = None) -> str:
    """The consumer-group check (at-least-once): raises AssertionError listing what is wrong.

    - every acknowledged record was delivered to the group at least once;
    - every delivery is the record the log holds at that partition and offset
      (the acknowledged one, and the one `consumed` - consume_all() - read);
    - per member, assignment session and partition, offsets strictly increase
      (so a record delivered twice was delivered in two different sessions:
      a redelivery from the last committed offset after a rebalance);
    - no fatal client error and no exception in a member thread.
    Returns a summary with the number of redeliveries.
    """
    problems = list(group.exceptions)
    problems += [f"fatal client error (member {m}): {e}" for _, m, e, fatal in group.client_errors if fatal]
    recs = group.snapshot()
    acked_at = {(a.partition, a.offset): a.value for a in acks}
    log_at = {(p, r.offset): r.value for p, rs in (consumed or {}).items() for r in rs}
    delivered = {r.value for r in recs}
    missing = [a for a in acks if a.value not in delivered]
    if missing:
        problems.append(f"{len(missing)} acknowledged records never delivered to the group, first: "
                        + ", ".join(f"{a.value!r}@{a.partition}/{a.offset}" for a in missing[:10]))
    wrong = 0
    for r in recs:
        want = acked_at.get((r.partition, r.offset), log_at.get((r.partition, r.offset)))
        if want is not None and want != r.value:
            wrong += 1
            if wrong <= 10:
                problems.append(f"group got {r.value!r} at {r.partition}/{r.offset}, the log holds {want!r}")
    last: dict[tuple[int, int, int], int] = {}
    backwards = 0
    gaps = 0
    for r in recs:  # in delivery order per member (one thread appends per member)
        key = (r.member, r.session, r.partition)
        prev = last.get(key)
        if prev is not None and r.offset <= prev:
            backwards += 1
            if backwards <= 10:
                problems.append(f"member {r.member} session {r.session} partition {r.partition}: "
                                f"offset {r.offset} after {prev}")
        elif prev is not None and r.offset != prev + 1:
            gaps += 1
        last[key] = r.offset
    if problems:
        raise AssertionError("group check failed:\n  " + "\n  ".join(problems[:60]))
    uniq = len({(r.partition, r.offset) for r in recs})
    return (f"group check ok: all {len(acks)} acknowledged records delivered to the group; {len(recs)} deliveries, "
            f"{len(recs) - uniq} redeliveries (all across sessions), {gaps} in-session offset jumps, "
            f"{len({(r.member, r.session) for r in recs})} member sessions")


def find_coordinator(bootstrap: str, group: str, timeout: float = 5) -> tuple[int, int]:
    """(error code, node id) of a raw FindCoordinator v0 for `group`, asked of the first broker of `bootstrap`."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    body = struct.pack(">hhi", 10, 0, 1) + _kstr("floe-e2e") + _kstr(group)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during FindCoordinator response")
            buf += chunk
    corr, err, node = struct.unpack_from(">ihi", buf, 4)
    assert corr == 1, corr
    return err, node


def ack_gap_stats(acks: list[Ack], exclude: list[tuple[float, float]] = ()) -> dict:
    """Waits between consecutive acks on each partition, leaving out those that
    overlap a (start, end) window of `exclude`: the producer's baseline to
    compare a move's unavailability with.  p50/p99/max in ms."""
    by: dict[int, list[float]] = {}
    for a in acks:
        by.setdefault(a.partition, []).append(a.at)
    gaps = []
    for ts in by.values():
        for x, y in zip(ts, ts[1:]):
            if not any(x <= e and y >= s for s, e in exclude):
                gaps.append(y - x)
    gaps.sort()
    if not gaps:
        return {}

    def q(p):
        return round(1000 * gaps[min(len(gaps) - 1, int(p / 100 * (len(gaps) - 1) + 0.5))], 1)

    return {"p50_ms": q(50), "p99_ms": q(99), "max_ms": q(100), "n": len(gaps)}
