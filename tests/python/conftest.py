"""Fixtures: a real `strata serve` process on a free loopback port, and clients for it.

The binary comes from $STRATA_BIN (scripts/test-python.sh sets it). Each server gets its own
temporary data directory (or, with STRATA_TEST_STORE=postgres, its own schema of the
PostgreSQL database at $STRATA_TEST_POSTGRES_URL, dropped with psql at teardown), is started
with `--port 0`, and is ready once it prints

    strata serve: ready on 127.0.0.1:PORT, [::1]:PORT

on stdout. Servers are stopped with SIGTERM (then SIGKILL) at teardown, and are tied to the
life of the pytest process (PR_SET_PDEATHSIG) so that none outlives the run.
"""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import hashlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

# Before grpc loads: its fork handlers can abort the server child between fork and exec.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from kurrentdbclient import KurrentDBClient  # noqa: E402

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Whole-test limit (setup, call, teardown): a server that stops answering fails the test
# instead of hanging the run. Reads in kurrentdbclient have no deadline of their own.
TEST_TIMEOUT = float(os.environ.get("STRATA_TEST_TIMEOUT", "90"))
POSTGRES_URL = os.environ.get(
    "STRATA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"
)
USE_POSTGRES = os.environ.get("STRATA_TEST_STORE") == "postgres"
READY_RE = re.compile(r"^strata serve: ready on 127\.0\.0\.1:(\d+), \[::1\]:(\d+)$")

_live_servers: set[StrataServer] = set()
_schemas: set[str] = set()
_RUN_ID = uuid.uuid4().hex
_serial = itertools.count()


def strata_bin() -> str:
    path = os.environ.get("STRATA_BIN")
    if not path:
        pytest.fail("STRATA_BIN is not set (run scripts/test-python.sh)", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"STRATA_BIN is not an executable file: {path}", pytrace=False)
    return path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class StrataServer:
    """One `strata serve` process."""

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_lines: list[str] = []
        self._ready = threading.Event()
        self._stderr_path = data_dir.parent / f"{data_dir.name}.{next(_serial)}.stderr"
        # One schema per data directory, so a server restarted "on the same data" finds it.
        digest = hashlib.sha256(f"{_RUN_ID}{data_dir}".encode()).hexdigest()[:32]
        self.schema = f"strata_test_{digest}" if USE_POSTGRES else None
        if self.schema is not None:
            _schemas.add(self.schema)

    def _store_args(self) -> list[str]:
        if self.schema is not None:
            return ["--store", POSTGRES_URL, "--store-schema", self.schema]
        # Small segments: every server preallocates two, and a run starts dozens.
        return ["--data-dir", str(self.data_dir), "--segment-size-mib", "32"]


    @property
    def args(self) -> list[str]:
        return [
            strata_bin(),
            "serve",
            *self._store_args(),
            "--port",
            "0",
            # --dev serves TLS with users and ACLs instead (test_security.py).
            *(() if "--dev" in self.extra_args else ("--insecure",)),
            *self.extra_args,
        ]

    def stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:  # drains stdout for the whole life of the process
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            match = READY_RE.match(line)
            if match and not self._ready.is_set():
                v4, v6 = int(match.group(1)), int(match.group(2))
                if v4 == v6:
                    self.port = v4
                self._ready.set()
        self._ready.set()  # EOF: wake the waiter, which then sees the exit

    def start(self) -> StrataServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=_die_with_parent,
            )
        _live_servers.add(self)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        if not self._ready.wait(READY_TIMEOUT) or self.port is None:
            rc = self.proc.poll()
            self.stop()
            state = f"exited with status {rc}" if rc is not None else "still running"
            pytest.fail(
                f"strata serve did not print a valid ready line within {READY_TIMEOUT}s "
                f"({state}).\ncommand: {' '.join(self.args)}\n"
                f"stdout: {self.stdout_lines!r}\nstderr:\n{self.stderr()}",
                pytrace=False,
            )
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _live_servers.discard(self)
        return proc.returncode

    def client(self, host: str = "localhost") -> KurrentDBClient:
        assert self.port is not None
        return KurrentDBClient(uri=f"kurrentdb://{host}:{self.port}?tls=false")


class StrataTestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    def on_alarm(signum, frame):
        raise StrataTestTimeout(f"{item.nodeid} took longer than {TEST_TIMEOUT}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    # Last resort if the alarm cannot interrupt: dump stacks and exit (servers die with us).
    faulthandler.dump_traceback_later(TEST_TIMEOUT * 2 + STOP_TIMEOUT, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live_servers):
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    _drop_schemas()


def _drop_schemas() -> None:
    """Drops the PostgreSQL schemas of this run (servers are stopped by now)."""
    for schema in sorted(_schemas):
        try:
            subprocess.run(
                ["psql", POSTGRES_URL, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                check=False,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"cannot drop test schema {schema}: {error}", file=sys.stderr)
    _schemas.clear()


def _new_server(tmp_path_factory: pytest.TempPathFactory) -> StrataServer:
    base = tmp_path_factory.mktemp("strata")
    return StrataServer(base / "data")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One server per test module."""
    srv = _new_server(tmp_path_factory).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: StrataServer):
    """A client of the module's server, through `localhost` (resolves to ::1 and 127.0.0.1)."""
    c = server.client("localhost")
    yield c
    c.close()


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory):
    """A server of its own, for tests that need to know everything in $all."""
    srv = _new_server(tmp_path_factory).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_client(fresh_server: StrataServer):
    c = fresh_server.client("localhost")
    yield c
    c.close()


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory):
    """Starts servers on demand (e.g. on an existing data directory); stops them all after."""
    started: list[StrataServer] = []

    def make(data_dir: Path | None = None, extra_args: tuple[str, ...] = ()) -> StrataServer:
        if data_dir is None:
            data_dir = tmp_path_factory.mktemp("strata") / "data"
        srv = StrataServer(data_dir, extra_args)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def stream_name() -> str:
    return f"py-{uuid.uuid4()}"


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
