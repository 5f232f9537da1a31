"""One MLServer fork-server daemon per pytest worker (registered once by tests/conftest.py's `pytest_plugins`).

Each process that starts MLServers would otherwise import MLServer in its own fork server (seconds of
CPU each): the worker's in-process sims, every `sim up` and `pytest suites/` a test starts. The daemon
(harness/localserver/forkdaemon.py) is started once, imports MLServer on first use, and its socket is
named in `HARNESS_MLSERVER_FORK_SOCKET` in this worker's environment, so the worker and every
subprocess it starts get a session of it. Tests of process lifetimes that look for MLServers among a
subprocess's descendants start that subprocess with `without_fork_daemon()`: those MLServers are then
its own children, as they are for a user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.localserver import forkserver
from harness.localserver.forkdaemon import ForkDaemon
from harness.localserver.forkserver import ForkServerError


def without_fork_daemon(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a subprocess that must start its own fork server."""
    out = dict(os.environ if env is None else env)
    out.pop(forkserver.SOCKET_ENV, None)
    return out


@pytest.fixture(scope="session", autouse=True)
def mlserver_fork_daemon() -> Iterator[ForkDaemon | None]:
    """This worker's daemon (None where fork servers are off or another daemon is named already)."""
    if not forkserver.enabled() or os.environ.get(forkserver.SOCKET_ENV):
        yield None
        return
    # A short folder of its own: a UNIX socket's path has at most 107 bytes, and the socket is private.
    folder = Path(tempfile.mkdtemp(prefix="harness-fork-"))
    try:
        try:
            daemon = ForkDaemon(folder / "fork.sock", folder / "daemon.log")
        except ForkServerError as exc:  # each process then starts its own fork server, as without the daemon
            warnings.warn(str(exc), stacklevel=1)
            yield None
            return
        with daemon:
            os.environ[forkserver.SOCKET_ENV] = str(daemon.path)
            try:
                yield daemon
            finally:
                os.environ.pop(forkserver.SOCKET_ENV, None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
