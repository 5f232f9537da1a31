"""One MLServer fork-server daemon per test run (registered once by tests/conftest.py's `pytest_plugins`).

Each process that starts MLServers would otherwise import MLServer in its own fork server (seconds of
CPU each): the worker's in-process sims, every `sim up` and `pytest suites/` a test starts. The daemon
(harness/localserver/forkdaemon.py) is started once, imports MLServer on first use, and its socket is
named in `HARNESS_MLSERVER_FORK_SOCKET` in this worker's environment, so the worker and every
subprocess it starts get a session of it. Under xdist the controller starts the one daemon before it
starts its workers, which inherit the socket's name: the workers then pay MLServer's import once between
them instead of once each (about 3 CPU-seconds per worker). Tests of process lifetimes that look for MLServers among a
subprocess's descendants start that subprocess with `without_fork_daemon()`: those MLServers are then
its own children, as they are for a user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.localserver import forkserver
from harness.localserver.forkdaemon import ForkDaemon
from harness.localserver.forkserver import ForkServerError

# The pid of the controller's daemon, for the workers' fixture (the socket's path is in SOCKET_ENV).
_CONTROLLER_DAEMON_PID = "HARNESS_TESTS_FORK_DAEMON_PID"


@dataclass(frozen=True)
class DaemonInUse:
    """The daemon this test process's MLServers come from: its own, or the xdist controller's."""

    pid: int
    path: Path


def without_fork_daemon(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a subprocess that must start its own fork server."""
    out = dict(os.environ if env is None else env)
    out.pop(forkserver.SOCKET_ENV, None)
    return out


def _start(folder: Path) -> ForkDaemon | None:
    try:
        return ForkDaemon(folder / "fork.sock", folder / "daemon.log")
    except ForkServerError as exc:  # each process then starts its own fork server, as without the daemon
        warnings.warn(str(exc), stacklevel=2)
        return None


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller: one daemon for all its workers, named in the environment they inherit
    (xdist starts them at session start, after this)."""
    if (hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)
            or not forkserver.enabled() or os.environ.get(forkserver.SOCKET_ENV)):
        return
    folder = Path(tempfile.mkdtemp(prefix="harness-fork-"))
    daemon = _start(folder)
    if daemon is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    os.environ[forkserver.SOCKET_ENV] = str(daemon.path)
    os.environ[_CONTROLLER_DAEMON_PID] = str(daemon.pid)

    def stop() -> None:
        os.environ.pop(forkserver.SOCKET_ENV, None)
        os.environ.pop(_CONTROLLER_DAEMON_PID, None)
        try:
            daemon.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    config.add_cleanup(stop)


@pytest.fixture(scope="session", autouse=True)
def mlserver_fork_daemon() -> Iterator[DaemonInUse | None]:
    """The daemon in use: this process's own, or the xdist controller's; None where fork servers are off
    or a daemon other than these is named (that of a pytest that started this one)."""
    if not forkserver.enabled():
        yield None
        return
    if os.environ.get(forkserver.SOCKET_ENV):
        pid = os.environ.get(_CONTROLLER_DAEMON_PID, "")
        yield DaemonInUse(int(pid), Path(os.environ[forkserver.SOCKET_ENV])) if pid.isdigit() else None
        return
    # A short folder of its own: a UNIX socket's path has at most 107 bytes, and the socket is private.
    folder = Path(tempfile.mkdtemp(prefix="harness-fork-"))
    try:
        daemon = _start(folder)
        if daemon is None:
            yield None
            return
        with daemon:
            os.environ[forkserver.SOCKET_ENV] = str(daemon.path)
            try:
                yield DaemonInUse(daemon.pid, daemon.path)
            finally:
                os.environ.pop(forkserver.SOCKET_ENV, None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
