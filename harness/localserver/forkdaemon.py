"""One preloaded MLServer fork server that several processes share, over a UNIX socket.

Every process that starts MLServers starts its own fork server (harness/localserver/forkserver.py),
which pays the MLServer import once per process. A test session starts many such processes (`sim up`,
`pytest suites/`), so the harness's own tests start one daemon per pytest worker and name its socket
in `HARNESS_MLSERVER_FORK_SOCKET`; the processes they start inherit it and connect there.

Lifetimes, as with the plain fork server:
- the daemon dies with the process that started it (its stdin closes, or its parent changes) and then
  ends its sessions and removes its socket;
- each connection gets a session, a fork of the daemon that forks this client's MLServers, reaps them
  and reports their exit codes exactly as the plain fork server does; it ends when the client closes
  the connection, when the client process exits (a pidfd, so even SIGKILL is seen at once, and a
  fork of the client that still holds the connection does not keep it) or when the daemon is gone;
- the MLServers die with their session through the lifeline they have always had.

The daemon imports MLServer on its first connection, not at start: a pytest worker that never starts
an MLServer pays only for an idle interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path

from harness.lifeline import child_env, expected_parent
from harness.localserver.forkserver import ForkServerError, identity, preload, send, serve_requests

HELLO_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.5  # how often the daemon looks at its parent (as the fork server does)
_HELLO_MAX = 65536
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# "mlserver fork server" in the command line, as the plain fork server's: process listings tell them apart.
_MAIN = "import sys; from harness.localserver.forkdaemon import main; main(sys.argv[1])  # mlserver fork server daemon"


def refusal(hello: object, peer_uid: int) -> str | None:
    """Why a client that said `hello` (and connected as `peer_uid`) may not be served; None if it may."""
    if peer_uid != os.getuid():
        return f"the client runs as uid {peer_uid}, the daemon as {os.getuid()}"
    if not isinstance(hello, dict) or not isinstance(hello.get("hello"), dict):
        return "the first line was not a hello"
    mine = identity()
    theirs = hello["hello"]
    different = sorted(k for k in mine if theirs.get(k) != mine[k])
    if different:
        return "; ".join(f"{k}: the client has {theirs.get(k)!r}, the daemon {mine[k]!r}" for k in different)
    return None


def _read_hello(conn: socket.socket) -> tuple[object, bytes]:
    """The first line from the client (parsed) and what came after it, within HELLO_TIMEOUT_S."""
    deadline = time.monotonic() + HELLO_TIMEOUT_S
    data = b""
    while b"\n" not in data and len(data) < _HELLO_MAX:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, b""
        conn.settimeout(left)
        try:
            chunk = conn.recv(4096)
        except (TimeoutError, OSError):
            return None, b""
        if not chunk:
            return None, b""
        data += chunk
    line, _, rest = data.partition(b"\n")
    try:
        return json.loads(line), rest
    except ValueError:
        return None, b""


def _session(conn: socket.socket, daemon: int) -> None:
    """In a fork of the daemon: serve the client on `conn` until it is gone."""
    pid, uid, _ = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    hello, rest = _read_hello(conn)
    conn.settimeout(None)
    fd = conn.fileno()
    why = refusal(hello, uid)
    if why is not None:
        with contextlib.suppress(OSError):
            send(fd, {"refused": why})
        return
    try:
        client = os.pidfd_open(pid)
    except OSError:  # the client has already exited
        return
    serve_requests(fd, fd, daemon, client=client, pending=rest)


def _start_session(conn: socket.socket, listener: socket.socket, wakeup: tuple[int, int]) -> int:
    """Fork a session for `conn`; in the daemon, return its pid."""
    daemon = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for fd in wakeup:
            os.close(fd)
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the daemon ends its sessions with SIGTERM
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the daemon's stdin is its lifeline, not the session's
        os.close(devnull)
        _session(conn, daemon)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _reap(sessions: set[int]) -> None:
    for pid in list(sessions):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        sessions.discard(pid)


def _end_sessions(sessions: set[int], wakeup_read: int) -> None:
    """SIGTERM every session and reap it; SIGKILL what is left at the deadline."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while sessions and time.monotonic() < deadline:
            with contextlib.suppress(InterruptedError):
                select.select([wakeup_read], [], [], max(0.0, min(_POLL_S, deadline - time.monotonic())))
            with contextlib.suppress(BlockingIOError):
                os.read(wakeup_read, 512)
            _reap(sessions)
        if not sessions:
            return


def main(path: str) -> None:
    """The daemon: listen on `path`, fork a session per connection, until the parent is gone."""
    parent = expected_parent()
    stopping: list[int] = []
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the process that started us stops us
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sessions: set[int] = set()
    preloaded = False
    try:
        listener.bind(path)
        listener.listen(64)  # one daemon may serve every xdist worker and the processes they start
        sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        while not stopping and os.getppid() == parent:
            try:
                readable, _, _ = select.select([listener.fileno(), read_fd, 0], [], [], _POLL_S)
            except InterruptedError:
                continue
            if read_fd in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(read_fd, 512)
            _reap(sessions)
            if 0 in readable and not os.read(0, 512):
                return  # the process that started us closed our stdin, or is gone
            if listener.fileno() in readable:
                conn, _ = listener.accept()
                if not preloaded:  # once, before the first session: every later fork shares it
                    preload()
                    preloaded = True
                with conn:
                    sessions.add(_start_session(conn, listener, (read_fd, write_fd)))
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        _end_sessions(sessions, read_fd)


class ForkDaemon:
    """A fork-server daemon that this process starts and that dies with it."""

    def __init__(self, path: Path, log_path: Path | None = None) -> None:
        self.path = path
        env = child_env({k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")})
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(log_path.open("ab")) if log_path is not None else subprocess.DEVNULL
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _MAIN, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, env=env, start_new_session=True,  # Ctrl-C reaches the harness, which stops us
            )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], START_TIMEOUT_S)
        line = self._proc.stdout.readline() if ready else b""
        try:
            self.pid = int(json.loads(line)["pid"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise ForkServerError(f"the MLServer fork-server daemon did not start within {START_TIMEOUT_S:g}s: "
                                  f"{line.decode(errors='replace').strip() or 'no ready line'}") from None

    def stop(self, timeout: float = STOP_TIMEOUT_S * 2) -> int:
        """Close the daemon's stdin and wait for it to end its sessions and exit; its exit code."""
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait(timeout=timeout)
        finally:
            if self._proc.stdout is not None:
                self._proc.stdout.close()

    def __enter__(self) -> ForkDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
