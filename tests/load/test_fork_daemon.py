"""The MLServer fork-server daemon (harness/localserver/forkdaemon.py): processes share its preload, and
every lifetime guarantee of the plain fork server holds (a SIGKILLed client leaves no MLServer, a
session serves one client, the daemon dies with the process that started it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.localserver import forkserver
from harness.localserver.forkserver import ForkServer, ForkServerError
from tests.kit.fork_daemon import DaemonInUse
from tests.kit.simproc import ROOT, alive, first_line, gone_within


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def daemon(mlserver_fork_daemon: DaemonInUse | None) -> DaemonInUse:
    if mlserver_fork_daemon is None:
        pytest.skip("no fork-server daemon in this session (HARNESS_MLSERVER_FORK=0, or not Linux)")
    return mlserver_fork_daemon


# A client that starts one MLServer through the daemon its environment names, says which, and waits.
CLIENT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from harness.localserver import MLServerProcess, forkserver
    server = MLServerProcess(Path(sys.argv[1]), models_dir=Path(sys.argv[1]) / "none")
    server.start(timeout=90)
    session = forkserver.shared_server()
    print(json.dumps({"mlserver": server.pid, "session": session.server_pid}), flush=True)
    sys.stdin.read()
""")


def test_a_sigkilled_client_leaves_no_mlserver(daemon: DaemonInUse, tmp_path: Path) -> None:
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # the daemon's socket is in its environment
    pids: list[int] = []
    try:
        started = json.loads(first_line(client, timeout=120))
        pids = [started["mlserver"], started["session"]]
        # Served by the daemon (not a fork server of its own): the MLServer is no descendant of the client.
        assert _parent(started["session"]) == daemon.pid and _parent(started["mlserver"]) == started["session"]
        assert alive(started["mlserver"])
        client.kill()  # SIGKILL: no handler, no atexit; only the kernel closes its connection
        client.wait(10)
        assert gone_within(pids, 30) == [], "the MLServer or its session outlived the SIGKILLed client"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_clients_get_sessions_of_their_own(daemon: DaemonInUse, tmp_path: Path) -> None:
    first, second = ForkServer.connect(daemon.path), ForkServer.connect(daemon.path)
    try:
        assert first.server_pid != second.server_pid
        assert _parent(first.server_pid) == _parent(second.server_pid) == daemon.pid
        child = first.spawn(["mlserver", "--version"], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "v.log")
        assert child.wait(60) == 0 and "mlserver, version" in (tmp_path / "v.log").read_text()
        assert second.returncode(child.pid) is None  # the other session never saw it
        first.close()
        assert gone_within([first.server_pid], 10) == [], "a session outlived the end of its connection"
        assert second.alive
        again = second.spawn(["mlserver", "--version"], env=dict(os.environ), cwd=tmp_path,
                             log_path=tmp_path / "w.log")
        assert again.wait(60) == 0
    finally:
        first.close()
        second.close()


def test_a_client_of_another_installation_is_refused_and_starts_its_own(
        daemon: DaemonInUse, monkeypatch: pytest.MonkeyPatch) -> None:
    other = {**forkserver.identity(), "source": "/elsewhere/harness"}
    with pytest.raises(ForkServerError, match=r"refused.*source: the client has '/elsewhere/harness'"):
        ForkServer.connect(daemon.path, hello=other)
    # shared_server() then falls back to a fork server of its own (a stand-in: the real one costs seconds
    # of CPU to import MLServer, and tests/sim's `sim up` tests run it).
    started: list[_OwnForkServer] = []

    def start_child(cls: type[ForkServer]) -> _OwnForkServer:
        started.append(_OwnForkServer())
        return started[-1]

    monkeypatch.setattr(forkserver, "identity", lambda: other)
    monkeypatch.setattr(forkserver, "_servers", {})
    monkeypatch.setattr(ForkServer, "start_child", classmethod(start_child))
    server = forkserver.shared_server()
    assert started and server is started[0]
    assert forkserver.shared_server() is server and len(started) == 1  # kept: no second try per MLServer


class _OwnForkServer:
    alive = True

    def close(self) -> None:
        pass


DAEMON_PARENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from harness.localserver.forkdaemon import ForkDaemon
    daemon = ForkDaemon(Path(sys.argv[1]))
    print(daemon.pid, flush=True)
    sys.stdin.read()
""")


def test_the_daemon_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    path = tmp_path / "fork.sock"
    parent = subprocess.Popen([sys.executable, "-c", DAEMON_PARENT, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    pid = 0
    try:
        pid = int(first_line(parent, timeout=60))
        assert alive(pid) and path.is_socket()
        parent.kill()  # SIGKILL: nothing stops the daemon but its own watch
        parent.wait(10)
        assert gone_within([pid], 15) == [], "the daemon outlived the process that started it"
        assert not path.exists(), "the daemon left its socket behind"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
