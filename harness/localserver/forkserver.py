"""Start MLServers by forking one process that has already imported MLServer.

Importing MLServer and its scikit-learn runtime costs about 3 s of CPU, and the simulated cluster
starts one MLServer per Server replica: on a 2-core machine most of a deploy's CPU went to those
imports. The fork server imports them once; each MLServer is then a fork of it that runs the same
`mlserver start <repository>` entry point in its own session, with its own environment, working
directory and log, exactly as the plain child process did. What a model can import is unchanged
(the same interpreter and site-packages); only when the modules are read from disk differs.

`HARNESS_MLSERVER_FORK=0` turns it off (each MLServer is then a fresh `python -c` child again), and
any failure to start the fork server falls back to that as well.

Each process starts its own fork server (a child of it) on first use, unless
`HARNESS_MLSERVER_FORK_SOCKET` names the socket of a fork-server daemon (harness/localserver/forkdaemon.py,
which the harness's own tests start once per pytest worker so that the subprocesses they start share its
preload): then the process connects there, says who it is (interpreter and harness source: a daemon of
another installation would fork a different MLServer, so it refuses) and gets a session, a fork of the
daemon that serves this process alone and ends when the process exits or closes the connection. Any
failure to connect falls back to the process's own fork server.

Protocol (JSON lines): a daemon client first writes `{"hello": identity()}` and reads `{"refused"}` or
goes on as below. The client writes `{"argv", "env", "cwd", "log"}` per MLServer and reads `{"ready"}`
once, `{"pid"}` or `{"error"}` per request, and `{"exit", "code"}` whenever a forked child ends (the
server is its parent and reaps it; `code` follows `subprocess.Popen.returncode`: negative for a signal).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from harness.heap import freeze_startup_heap
from harness.lifeline import child_env, die_with_parent, expected_parent

ENABLE_ENV = "HARNESS_MLSERVER_FORK"
SOCKET_ENV = "HARNESS_MLSERVER_FORK_SOCKET"
# The modules every MLServer here needs; importing them is what the fork server saves.
PRELOAD = ("mlserver.cli", "mlserver_sklearn")
READY_TIMEOUT_S = 60.0
SPAWN_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
_PARENT_POLL_S = 0.5
# The word "mlserver" in the command line lets process listings (and tests) tell these apart.
_SERVE = "from harness.localserver.forkserver import serve; serve()  # mlserver fork server"


class ChildProcess(Protocol):
    """What MLServerProcess needs of its child: `subprocess.Popen` has it, and so does `ForkedChild`."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ForkServerError(RuntimeError):
    """The fork server could not be started or stopped answering."""


# --- the server side (runs in the fork server process) ------------------------------------------


def identity() -> dict[str, str]:
    """What a process must share with a fork-server daemon to be served by it: the interpreter and the
    harness source that the daemon preloaded (a fork runs the daemon's modules, not the client's)."""
    return {"executable": sys.executable, "source": str(Path(__file__).resolve().parents[1])}


def preload() -> None:
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(module)
    freeze_startup_heap()  # every fork shares the preloaded modules; none of them traverses (or copies) them


def send(fd: int, message: Mapping[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _run_child(request: Mapping[str, Any], own_fds: Iterable[int]) -> None:
    """In the forked child: become the MLServer that `request` describes. Never returns."""
    code = 1
    try:
        os.setsid()  # its own session and process group, like start_new_session=True
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        for fd in set(own_fds) - {0, 1, 2}:  # the server's wakeup pipe and connection (0-2 are replaced below)
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        # Unbuffered, as PYTHONUNBUFFERED=1 made the plain child: the log tail is read while it runs.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (lives as long as the process)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        die_with_parent(os.getppid())  # the fork server; it in turn watches the harness
        from mlserver.cli import main

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # whatever it was, it goes to the log and the exit code
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """The fork server's main loop: preload, then fork one MLServer per request until stdin ends
    or the parent is gone."""
    parent = expected_parent()
    preload()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops us; Ctrl-C is its to handle
    serve_requests(0, 1, parent)


def serve_requests(conn_in: int, conn_out: int, parent: int, *, client: int | None = None,
                   pending: bytes = b"") -> None:
    """Fork one MLServer per request line read from `conn_in`, answering on `conn_out`, until
    `conn_in` ends, `parent` is no longer this process's parent, or the pidfd `client` (a daemon
    session's client process) says that the client has exited."""
    # SIGCHLD wakes the loop through a pipe (raw fds: no Python object may close them in a child).
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    own_fds = [read_fd, write_fd, conn_in, conn_out, *([] if client is None else [client])]
    watched = [conn_in, read_fd, *([] if client is None else [client])]
    try:
        send(conn_out, {"ready": True, "pid": os.getpid()})
        while True:
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                _fork_one(line, conn_out, own_fds)
            try:
                readable, _, _ = select.select(watched, [], [], _PARENT_POLL_S)
            except InterruptedError:
                readable = []
            if read_fd in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(read_fd, 512)
            _reap(conn_out)
            if os.getppid() != parent or (client is not None and client in readable):
                return
            if conn_in not in readable:
                continue
            chunk = os.read(conn_in, 65536)
            if not chunk:
                return
            pending += chunk
    except OSError:  # the client is gone (a broken connection): nobody is left to serve
        return


def _fork_one(line: bytes, conn_out: int, own_fds: list[int]) -> None:
    try:
        request = json.loads(line)
        pid = os.fork()
    except (ValueError, OSError) as exc:
        send(conn_out, {"error": f"{type(exc).__name__}: {exc}"})
        return
    if pid == 0:
        _run_child(request, own_fds)
    send(conn_out, {"pid": pid})


def _reap(conn_out: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send(conn_out, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})  # negative for a signal, as Popen


# --- the client side (runs in the harness) ----------------------------------------------------------


class ForkedChild:
    """One MLServer forked by the fork server: `pid`, `poll()` and `wait()` as on `subprocess.Popen`."""

    def __init__(self, server: ForkServer, pid: int, argv: list[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = argv

    def poll(self) -> int | None:
        return self._server.returncode(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        code = self._server.wait_for(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code


class ForkServer:
    """The client of one fork server: a child of this process (`start_child`) or a session of a
    fork-server daemon (`connect`)."""

    def __init__(self, reader: IO[bytes], write: Callable[[bytes], None], *,
                 proc: subprocess.Popen[bytes] | None = None, conn: socket.socket | None = None) -> None:
        self._write = write
        self._reader = reader
        self._proc = proc
        self._conn = conn
        self._owner = os.getpid()
        self._lock = threading.Lock()  # one request at a time
        self._changed = threading.Condition()
        self._codes: dict[int, int] = {}
        self._replies: list[dict[str, Any]] = []
        self._closed = False
        threading.Thread(target=self._read, args=(reader,), name="mlserver-fork-server", daemon=True).start()
        reply = self._next_reply(READY_TIMEOUT_S)
        if not reply.get("ready"):
            self.close()
            raise ForkServerError(f"the MLServer fork server did not start: {reply}")
        self.server_pid = int(reply["pid"])

    @classmethod
    def start_child(cls) -> ForkServer:
        """Start a fork server as a child of this process."""
        env = child_env({k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")})
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches the harness, which stops the servers
        )
        assert proc.stdout is not None and proc.stdin is not None
        stdin = proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        return cls(proc.stdout, write, proc=proc)

    @classmethod
    def connect(cls, path: Path, hello: Mapping[str, str] | None = None) -> ForkServer:
        """A session of the fork-server daemon listening on `path` (ForkServerError if it refuses)."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(CONNECT_TIMEOUT_S)
            conn.connect(str(path))
            conn.sendall(json.dumps({"hello": dict(identity() if hello is None else hello)}).encode() + b"\n")
            conn.settimeout(None)
        except OSError as exc:
            conn.close()
            raise ForkServerError(f"no MLServer fork-server daemon on {path}: {exc}") from None
        return cls(conn.makefile("rb"), conn.sendall, conn=conn)

    def _read(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):  # a connection closed under the reader ends it
            for raw in stream:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                with self._changed:
                    if "exit" in message:
                        self._codes[int(message["exit"])] = int(message["code"])
                    else:
                        self._replies.append(message)
                    self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _next_reply(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return {"error": "the fork server exited" if self._closed else f"no answer within {timeout:g}s"}
                self._changed.wait(left)
            return self._replies.pop(0)

    @property
    def alive(self) -> bool:
        return not self._closed and (self._proc is None or self._proc.poll() is None)

    def spawn(self, argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> ForkedChild:
        request = {"argv": argv, "env": dict(env), "cwd": str(cwd), "log": str(log_path)}
        with self._lock:
            try:
                self._write(json.dumps(request).encode() + b"\n")
            except OSError as exc:
                raise ForkServerError(f"the MLServer fork server is gone: {exc}") from None
            reply = self._next_reply(SPAWN_TIMEOUT_S)
        if "pid" not in reply:
            raise ForkServerError(f"the MLServer fork server could not start MLServer: {reply.get('error')}")
        return ForkedChild(self, int(reply["pid"]), argv)

    def returncode(self, pid: int) -> int | None:
        with self._changed:
            if pid in self._codes:
                return self._codes[pid]
            if self._closed and not Path(f"/proc/{pid}").exists():
                return -signal.SIGKILL  # its parent is gone and so is it; the real status is lost
            return None

    def wait_for(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                code = self.returncode(pid)
                if code is not None:
                    return code
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                # After the server is gone no message will wake us: look again at intervals.
                self._changed.wait(min(left, _PARENT_POLL_S) if left is not None else _PARENT_POLL_S)

    def close(self, timeout: float = 10.0) -> None:
        """End the fork server or the daemon session (its MLServers, if any are left, follow through
        their lifelines)."""
        if self._conn is not None:
            if os.getpid() == self._owner:  # a fork of this process shares the connection: it only lets go
                with contextlib.suppress(OSError):
                    self._conn.shutdown(socket.SHUT_WR)  # the session sees the end of its input and ends
                deadline = time.monotonic() + timeout
                with self._changed:
                    while not self._closed and time.monotonic() < deadline:
                        self._changed.wait(deadline - time.monotonic())
            if self._closed:  # the reader is done with it
                self._reader.close()
            self._conn.close()
            return
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=timeout)


# One fork server per process and socket setting ("" for the process's own child).
_servers: dict[tuple[int, str], ForkServer] = {}
_server_lock = threading.Lock()
_disabled = False


def enabled() -> bool:
    return os.environ.get(ENABLE_ENV, "1") != "0" and sys.platform.startswith("linux") and not _disabled


def shared_server() -> ForkServer | None:
    """This process's fork server, started (or connected to the daemon) on first use; None where it is
    off or cannot start."""
    global _disabled
    if not enabled():
        return None
    daemon = os.environ.get(SOCKET_ENV, "")
    key = (os.getpid(), daemon)
    with _server_lock:
        server = _servers.get(key)
        if server is not None and server.alive:
            return server
        server = None
        if daemon:
            with contextlib.suppress(ForkServerError, OSError):
                server = ForkServer.connect(Path(daemon))
        if server is None:  # no daemon, or it refused: this process's own fork server
            own = _servers.get((os.getpid(), ""))
            if own is not None and own.alive:
                _servers[key] = own
                return own
            try:
                server = ForkServer.start_child()
            except (ForkServerError, OSError):
                _disabled = True  # fall back to plain children for the rest of this process
                return None
            _servers[(os.getpid(), "")] = server
        _servers[key] = server
        atexit.register(server.close)
        return server
