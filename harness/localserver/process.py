"""Run MLServer as a child process on loopback, in its own process group."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.errors import HarnessError
from harness.lifeline import child_env
from harness.localserver import forkserver
from harness.localserver.iris import IMPLEMENTATION, MODEL_FILE, SETTINGS_FILE

HOST = "127.0.0.1"
# How often the readiness waits look again; the pause is a bounded wait on the child's exit,
# so an early crash is noticed at once instead of at the deadline.
_POLL_S = 0.05
_LOG_TAIL_LINES = 30
# MLServer has no `__main__`; this runs its console entry point with the same interpreter.
# die_with_parent: SIGTERM (MLServer's own graceful stop, which also ends its workers) when the
# harness process is gone, even after a SIGKILL of pytest or `sim up` (harness/lifeline.py).
_LAUNCH = ("import sys; from harness.lifeline import die_with_parent; die_with_parent(); "
           "from mlserver.cli import main; sys.argv[0] = 'mlserver'; sys.exit(main())")


class MLServerError(HarnessError):
    """MLServer did not start, died, or refused a repository request. The message has the log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _request(port: int, method: str, path: str, timeout: float, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) PIDs in process group `pgid`, read from /proc."""
    members: list[int] = []
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return members
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; the fields follow the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """Wait until no live process is left in group `pgid`; return those still alive at the deadline.

    The members are not our children, so `waitpid` cannot be used; a pidfd becomes readable
    when its process exits, which gives a real wait without polling.
    """
    deadline = time.monotonic() + timeout
    for _ in range(1000):  # bounded: each round waits for at least one member to go
        members = group_members(pgid)
        remaining = deadline - time.monotonic()
        if not members or remaining <= 0:
            return members
        try:
            fd = os.pidfd_open(members[0])
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], remaining)
        finally:
            os.close(fd)
    return group_members(pgid)


class MLServerProcess:
    """One MLServer on 127.0.0.1.

    `models_dir` holds model folders (each with a `model-settings.json`); they are linked into the
    server's own repository folder under `workdir` and loaded at start. More models can be loaded
    and unloaded later through the repository API (`load_model`, `unload_model`).
    """

    # What the messages call the server, and the error they raise (a subclass runs another server).
    SERVER = "MLServer"
    ERROR: type[MLServerError] = MLServerError

    def __init__(
        self,
        workdir: Path,
        *,
        models_dir: Path | None = None,
        http_port: int = 0,
        grpc_port: int = 0,
        parallel_workers: int = 0,
        log_path: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self._want_http = http_port
        self._want_grpc = grpc_port
        self.parallel_workers = parallel_workers
        self.log_path = Path(log_path) if log_path is not None else self.workdir / "mlserver.log"
        self.repository_dir = self.workdir / "repository"
        self.http_port = http_port
        self.grpc_port = grpc_port
        self._proc: forkserver.ChildProcess | None = None

    # --- properties ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- lifecycle ---------------------------------------------------------------------------
    def _write_settings(self) -> None:
        settings: dict[str, Any] = {
            "host": HOST,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "parallel_workers": self.parallel_workers,
            # No metrics server: one port fewer to collide on, and nothing here scrapes it.
            "metrics_endpoint": None,
            "metrics_dir": str(self.workdir / "metrics"),
            "environments_dir": str(self.workdir / "envs"),
            "load_models_at_startup": True,
            "debug": False,
        }
        (self.repository_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")

    def _link_models(self) -> None:
        if self.models_dir is None or not self.models_dir.is_dir():
            return
        for child in sorted(self.models_dir.iterdir()):
            if not (child / SETTINGS_FILE).is_file():
                continue
            link = self.repository_dir / child.name
            if link.is_symlink() or link.exists():
                continue
            link.symlink_to(child.resolve(), target_is_directory=True)

    def start(self, timeout: float = 60.0) -> None:
        """Start MLServer and wait until `/v2/health/ready` answers 200 (or raise with the log tail)."""
        if self.is_alive():
            raise self.ERROR(f"{self.SERVER} already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repository_dir.mkdir(parents=True, exist_ok=True)
        self._link_models()
        deadline = time.monotonic() + timeout
        # A kernel-chosen free port can be taken before MLServer binds it; try again a few times,
        # but only when every port was ours to choose (a fixed port will not free itself).
        attempts = 3 if (self._want_http == 0 and self._want_grpc == 0) else 1
        for attempt in range(attempts):
            self.http_port = self._want_http or free_port()
            self.grpc_port = self._want_grpc or free_port()
            while self.grpc_port == self.http_port:
                self.grpc_port = free_port()
            self._write_settings()
            self._spawn()
            try:
                self._wait_ready(deadline)
                return
            except MLServerError:
                in_use = "address already in use" in self.log_tail(200).lower()
                self.stop(timeout=10)
                if not (in_use and attempt + 1 < attempts):
                    raise

    def _spawn(self) -> None:
        env = child_env({k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")})
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        server = forkserver.shared_server()
        if server is not None:
            # The same entry point, forked from a process that has MLServer imported already.
            try:
                self._proc = server.spawn(["mlserver", "start", str(self.repository_dir)], env=env,
                                          cwd=self.workdir, log_path=self.log_path)
                return
            except forkserver.ForkServerError:
                pass  # a plain child below
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, "start", str(self.repository_dir)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _pause_or_exit(self) -> None:
        """Wait one poll interval for the child to exit; raise if it did."""
        assert self._proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self._proc.wait(timeout=_POLL_S)
            raise self.ERROR(
                f"{self.SERVER} exited with code {code} (log {self.log_path}):\n{self.log_tail()}"
            )

    def _wait_ready(self, deadline: float) -> None:
        last = "no answer yet"
        while True:
            try:
                status, _ = _request(self.http_port, "GET", "/v2/health/ready", timeout=2.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            except http.client.HTTPException as exc:
                # Something else answers on the port (seen: another process's gRPC server holding a kernel-
                # chosen port for a moment, its HTTP/2 bytes a bad status line): ours is not up, and when
                # it exits because the port is taken, `start` tries new ports.
                last = f"not an HTTP answer from port {self.http_port} ({type(exc).__name__}: {str(exc)[:60]!r})"
            if time.monotonic() >= deadline:
                raise self.ERROR(
                    f"{self.SERVER} not ready on {self.http_url} before the deadline (last: {last}; "
                    f"log {self.log_path}):\n{self.log_tail()}"
                )
            self._pause_or_exit()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`; never leaves children behind."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session made the child its group's leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        # Inference workers may outlive the parent; the group kill reaches them either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        self._proc = None
        left = wait_group_gone(pgid, timeout)
        if left:
            raise self.ERROR(f"{self.SERVER} process group {pgid} still has live processes {left} after SIGKILL")

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole process group at once (a crash, for fault injection) and reap the parent,
        so `is_alive()` is False on return. The object can be started again afterwards."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        wait_group_gone(proc.pid, timeout)

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` for the MLServer parent to exit; its exit code, or None if still running."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> MLServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- repository ----------------------------------------------------------------------------
    def model_ready(self, name: str, timeout: float = 2.0) -> bool:
        try:
            status, _ = _request(self.http_port, "GET", f"/v2/models/{name}/ready", timeout=timeout)
        except OSError:
            return False
        return status == 200

    def _settings_for(self, name: str, model_dir: Path) -> dict[str, Any]:
        source = model_dir / SETTINGS_FILE
        settings: dict[str, Any]
        if source.is_file():
            try:
                settings = json.loads(source.read_text())
            except ValueError as exc:
                raise MLServerError(f"{source}: not valid JSON ({exc})") from None
        else:
            settings = {"implementation": IMPLEMENTATION, "parameters": {"uri": f"./{MODEL_FILE}"}}
        params = dict(settings.get("parameters") or {})
        uri = params.get("uri")
        # The settings are written elsewhere, so a relative model URI must become absolute.
        if isinstance(uri, str) and "://" not in uri and not os.path.isabs(uri):
            params["uri"] = str((model_dir / uri).resolve())
        settings["parameters"] = params
        settings["name"] = name
        return settings

    def load_model(self, name: str, model_dir: Path, timeout: float = 60.0) -> None:
        """Register `model_dir` as model `name`, load it and wait until it reports ready."""
        if not self.is_alive():
            raise MLServerError(f"MLServer is not running; cannot load model {name!r}")
        deadline = time.monotonic() + timeout
        target = self.repository_dir / name
        if target.is_symlink():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        settings = self._settings_for(name, Path(model_dir))
        (target / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        # Seldon's agent downloads the whole artifact folder beside the settings, and MLServer imports
        # a custom runtime from that folder: the folder's other files are linked in, as they would be there.
        for entry in Path(model_dir).iterdir():
            link = target / entry.name
            if entry.name == SETTINGS_FILE or entry.name == "__pycache__":
                continue
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                continue
            link.symlink_to(entry.resolve())
        try:
            status, body = _request(
                self.http_port, "POST", f"/v2/repository/models/{name}/load", timeout=max(1.0, timeout), body=b""
            )
        except OSError as exc:
            raise MLServerError(f"loading model {name!r}: {exc}\n{self.log_tail()}") from None
        if status != 200:
            raise MLServerError(
                f"loading model {name!r}: HTTP {status} {body[:300]!r}\n{self.log_tail()}"
            )
        while not self.model_ready(name):
            if time.monotonic() >= deadline:
                raise MLServerError(f"model {name!r} not ready before the deadline\n{self.log_tail()}")
            self._pause_or_exit()

    def unload_model(self, name: str, timeout: float = 30.0) -> None:
        """Unload model `name` and remove it from the repository folder so a restart skips it."""
        try:
            status, body = _request(
                self.http_port, "POST", f"/v2/repository/models/{name}/unload", timeout=timeout, body=b""
            )
        except OSError as exc:
            raise MLServerError(f"unloading model {name!r}: {exc}") from None
        if status != 200:
            raise MLServerError(f"unloading model {name!r}: HTTP {status} {body[:300]!r}")
        target = self.repository_dir / name
        if target.is_symlink():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
