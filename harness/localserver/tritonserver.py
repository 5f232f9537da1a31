"""A real Triton Inference Server on loopback, from PyPI's `nvidia-pytriton` wheel (the `sim` extra).

The wheel (pinned `nvidia-pytriton==0.7.0`) ships Triton 2.51.0 as `pytriton/tritonserver/bin/tritonserver`
with the python backend (`backends/python`), one python backend stub per Python version
(`python_backend_stubs/<X.Y>/triton_python_backend_stub`) and its shared libraries (libcudart, libdcgm,
libtritonserver, ...) in the sibling folder `nvidia_pytriton.libs/`. On a machine without a GPU it
serves models whose instances run on the CPU (KIND_CPU) and refuses a KIND_GPU instance group with
`instance group ... has kind KIND_GPU but no GPUs are available` (HTTP 400 from the repository API).

Public API (kept stable; other branches use it):

- `find_tritonserver() -> TritonInstall`: where the wheel put the binary, its libraries, the python
  backend and the stub for this interpreter's Python version. Raises `TritonServerError` (one line,
  saying how to install it) when the wheel is missing or incomplete. `tritonserver_available()` is
  the same as a bool, for skips.
- `TritonServerProcess(workdir, *, log_path=None, http_port=0, grpc_port=0, metrics_port=0,
  extra_args=())`: one server on 127.0.0.1 in explicit model-control mode (models are loaded only
  through the repository API, as Seldon's agent loads them). Port 0 means a free port chosen at
  start. Methods and attributes:
    - `start(timeout=60.0)`: builds a run-private backend directory under `workdir` (the python
      backend files and the stub for this Python, never touching site-packages), starts the server in
      its own process group and waits, within `timeout`, until `GET /v2/health/ready` answers 200;
      raises `TritonServerError` with the log tail if it exits or the deadline passes.
    - `http_port`, `grpc_port`, `metrics_port`, `http_url`, `grpc_address`, `metrics_url`
      (`http://127.0.0.1:<port>/metrics`), `repository_dir`, `log_path`, `log_tail(lines)`.
    - `server_pid() -> int | None`: the PID of the real `tritonserver` process (its `/proc/<pid>/exe`
      is `TritonInstall.binary`), for tests that assert a real server runs.
    - `load_model(name, model_dir, timeout=60.0)`: copies `model_dir` (a Triton model folder:
      `config.pbtxt` and version folders) into the repository as `name`, rewriting the config's `name:`
      the way Seldon's agent does, and loads it through `POST /v2/repository/models/<name>/load`.
      A refusal raises `TritonServerError` whose message is Triton's own `error` text.
    - `unload_model(name, timeout=30.0)`, `model_ready(name)`.
    - `stop(timeout=10.0)`: SIGTERM to the process group, SIGKILL after `timeout`, and a wait until no
      process of the group is left. Also a context manager (`with TritonServerProcess(...) as t:`).
- `TRITON_VERSION`: the server version the pinned wheel reports (`GET /v2` → `version`).

The python backend's stub embeds Python and ignores `PYTHON*` environment variables; it finds its
`site-packages` by looking up `python3` on `PATH` (a venv's `pyvenv.cfg`), so the server runs with
this interpreter's `bin/` first on `PATH`: python-backend models then import numpy from the same
environment as the harness. The server is started through a small supervisor
(`python -m harness.localserver.tritonserver`) that dies with the harness (harness/lifeline.py) and
takes the server with it: a C++ binary cannot watch its parent itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from harness.errors import HarnessError
from harness.lifeline import child_env, die_with_parent
from harness.localserver.process import HOST, _request, free_port, group_members, wait_group_gone

TRITON_VERSION = "2.51.0"
WHEEL = "nvidia-pytriton==0.7.0"
_POLL_S = 0.05
_LOG_TAIL_LINES = 30
_STUB = "triton_python_backend_stub"
_BACKEND_LIB = "libtriton_python.so"
_BACKEND_UTILS = "triton_python_backend_utils.py"


class TritonServerError(HarnessError):
    """tritonserver is not installed, did not start, died, or refused a repository request."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the nvidia-pytriton wheel put Triton's parts."""

    root: Path  # .../pytriton/tritonserver
    binary: Path
    libs_dir: Path  # .../nvidia_pytriton.libs
    python_backend_dir: Path
    stub: Path  # the python backend stub for this interpreter's Python version


def _pytriton_dir() -> Path | None:
    # find_spec, not import: importing pytriton pulls in its own logging set-up and client.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_tritonserver() -> TritonInstall:
    """The installed wheel's Triton, or a one-line `TritonServerError` naming what is missing."""
    package = _pytriton_dir()
    if package is None:
        raise TritonServerError(f"tritonserver: the Python package {WHEEL} is not installed "
                                "(it is in the `sim` extra: pip install -e '.[sim]')")
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        root=root,
        binary=root / "bin" / "tritonserver",
        libs_dir=package.parent / "nvidia_pytriton.libs",
        python_backend_dir=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / _STUB,
    )
    for path in (install.binary, install.libs_dir, install.python_backend_dir / _BACKEND_LIB, install.stub):
        if not path.exists():
            raise TritonServerError(f"tritonserver: {path} is missing; expected the layout of {WHEEL} "
                                    f"(python {version})")
    return install


def tritonserver_available() -> bool:
    try:
        find_tritonserver()
    except TritonServerError:
        return False
    return True


def build_backend_dir(install: TritonInstall, target: Path) -> Path:
    """A run-private `--backend-directory`: `python/` with the backend library, its utils module and the
    stub for this Python (Triton looks for the stub beside the backend library)."""
    python_dir = target / "python"
    if python_dir.exists():
        shutil.rmtree(python_dir)
    python_dir.mkdir(parents=True)
    (python_dir / _BACKEND_LIB).symlink_to(install.python_backend_dir / _BACKEND_LIB)
    shutil.copy2(install.python_backend_dir / _BACKEND_UTILS, python_dir / _BACKEND_UTILS)
    shutil.copy2(install.stub, python_dir / _STUB)
    return target


def server_env(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the wheel's libraries on `LD_LIBRARY_PATH` and this interpreter's
    `bin/` first on `PATH` (the stub's embedded Python finds its site-packages from there)."""
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(install.libs_dir), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


def supervisor_command(install: TritonInstall, repository_dir: Path, backend_dir: Path, *, http_port: int,
                       grpc_port: int, metrics_port: int, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The command line that runs tritonserver under this module's supervisor, on 127.0.0.1 only, in
    explicit model-control mode (models come and go through the repository API, as Seldon's agent does)."""
    return [
        sys.executable, "-m", "harness.localserver.tritonserver", str(install.binary),
        f"--model-repository={repository_dir}", f"--backend-directory={backend_dir}",
        "--model-control-mode=explicit",
        f"--http-address={HOST}", f"--http-port={http_port}",
        f"--grpc-address={HOST}", f"--grpc-port={grpc_port}",
        f"--metrics-address={HOST}", f"--metrics-port={metrics_port}",
        # Seconds a stop waits for in-flight requests; below the harness's own stop timeouts.
        "--exit-timeout-secs=5", *extra_args,
    ]


def binary_pid(install: TritonInstall, pgid: int) -> int | None:
    """The PID of the real tritonserver binary in process group `pgid`, or None."""
    binary = install.binary.resolve()
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            if Path(os.readlink(f"/proc/{pid}/exe")) == binary:
                return pid
    return None


def rewrite_model_name(config_text: str, name: str) -> str:
    """The config with its `name:` set to `name` (Seldon's agent serves a model under its own name)."""
    text, count = re.subn(r'(?m)^name:\s*"[^"]*"', f'name: "{name}"', config_text)
    return text if count else f'name: "{name}"\n' + text


def error_text(body: bytes) -> str:
    """Triton's `{"error": "..."}` message, or the start of the body when it is not that shape."""
    try:
        value = json.loads(body)
    except ValueError:
        return body[:300].decode(errors="replace")
    return str(value.get("error") or "") if isinstance(value, dict) else str(value)[:300]


class TritonServerProcess:
    """One real tritonserver on 127.0.0.1 in explicit model-control mode (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        log_path: Path | None = None,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.log_path = Path(log_path) if log_path is not None else self.workdir / "tritonserver.log"
        self.repository_dir = self.workdir / "repository"
        self.backend_dir = self.workdir / "backends"
        self._want = (http_port, grpc_port, metrics_port)
        self.http_port, self.grpc_port, self.metrics_port = self._want
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._install: TritonInstall | None = None
        self._log_offset = 0

    # --- addresses and state ---------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """The supervisor's PID (the process group's leader)."""
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def server_pid(self) -> int | None:
        """The PID of the real tritonserver binary in this server's process group."""
        if self._proc is None or self._install is None:
            return None
        return binary_pid(self._install, self._proc.pid)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- life cycle --------------------------------------------------------------------------
    def _command(self, install: TritonInstall) -> list[str]:
        return supervisor_command(install, self.repository_dir, self.backend_dir, http_port=self.http_port,
                                  grpc_port=self.grpc_port, metrics_port=self.metrics_port,
                                  extra_args=self.extra_args)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it is ready (or raise with the log tail)."""
        if self.is_alive():
            raise TritonServerError(f"tritonserver already running (pid {self.pid})")
        install = find_tritonserver()
        self._install = install
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repository_dir.mkdir(parents=True, exist_ok=True)
        build_backend_dir(install, self.backend_dir)
        deadline = time.monotonic() + timeout
        # A kernel-chosen free port can be taken before Triton binds it: try again, but only when
        # every port was ours to choose (a fixed port will not free itself).
        attempts = 3 if not any(self._want) else 1
        for attempt in range(attempts):
            self._pick_ports()
            self._spawn(install)
            try:
                self._wait_ready(deadline)
                return
            except TritonServerError:
                in_use = "address already in use" in self.log_tail(200).lower()
                self.stop()
                if not (in_use and attempt + 1 < attempts):
                    raise

    def _pick_ports(self) -> None:
        chosen: list[int] = []
        for want in self._want:
            port = want or free_port()
            while port in chosen:
                port = free_port()
            chosen.append(port)
        self.http_port, self.grpc_port, self.metrics_port = chosen

    def _spawn(self, install: TritonInstall) -> None:
        env = server_env(install, child_env())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(self._command(install), cwd=self.workdir, env=env,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    def _pause_or_exit(self) -> None:
        assert self._proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self._proc.wait(timeout=_POLL_S)
            raise TritonServerError(f"tritonserver exited with code {code} (log {self.log_path}):\n{self.log_tail()}")

    def _started_services(self) -> bool:
        """Triton's log says it bound all three ports itself. Without this, a readiness answer could come
        from another process on a fixed port while this server is failing to bind it."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)  # this start's lines only, not an earlier run's
                text = log.read().decode(errors="replace")
        except OSError:
            return False
        return all(f"{service} at {HOST}:{port}" in text for service, port in (
            ("Started GRPCInferenceService", self.grpc_port), ("Started HTTPService", self.http_port),
            ("Started Metrics Service", self.metrics_port)))

    def _wait_ready(self, deadline: float) -> None:
        last = "no answer yet"
        while True:
            try:
                status, _ = _request(self.http_port, "GET", "/v2/health/ready", timeout=2.0)
                if status == 200 and self._started_services():
                    return
                last = f"HTTP {status}" if status != 200 else "ready, but its log does not show all three ports bound"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise TritonServerError(f"tritonserver not ready on {self.http_url} before the deadline "
                                        f"(last: {last}; log {self.log_path}):\n{self.log_tail()}")
            self._pause_or_exit()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`; never leaves a process behind."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the supervisor leads the group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            if not wait_group_gone(pgid, timeout):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        self._proc = None
        left = wait_group_gone(pgid, timeout)
        if left:
            raise TritonServerError(f"tritonserver process group {pgid} still has live processes {left} after SIGKILL")

    def __enter__(self) -> TritonServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- repository ----------------------------------------------------------------------------
    def model_ready(self, name: str, timeout: float = 2.0) -> bool:
        try:
            status, _ = _request(self.http_port, "GET", f"/v2/models/{name}/ready", timeout=timeout)
        except OSError:
            return False
        return status == 200

    def load_model(self, name: str, model_dir: Path, timeout: float = 60.0) -> None:
        """Place `model_dir` in the repository as `name` and load it (Triton's error text on refusal)."""
        if not self.is_alive():
            raise TritonServerError(f"tritonserver is not running; cannot load model {name!r}")
        target = self.repository_dir / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target)
        config = target / "config.pbtxt"
        if config.is_file():
            config.write_text(rewrite_model_name(config.read_text(encoding="utf-8"), name), encoding="utf-8")
        try:
            status, body = _request(self.http_port, "POST", f"/v2/repository/models/{name}/load",
                                    timeout=max(1.0, timeout), body=b"")
        except OSError as exc:
            raise TritonServerError(f"loading model {name!r}: {exc}\n{self.log_tail()}") from None
        if status != 200:
            raise TritonServerError(error_text(body) or f"loading model {name!r}: HTTP {status}")

    def unload_model(self, name: str, timeout: float = 30.0) -> None:
        """Unload `name` and remove it from the repository folder."""
        try:
            status, body = _request(self.http_port, "POST", f"/v2/repository/models/{name}/unload",
                                    timeout=timeout, body=b"")
        except OSError as exc:
            raise TritonServerError(f"unloading model {name!r}: {exc}") from None
        if status != 200:
            raise TritonServerError(error_text(body) or f"unloading model {name!r}: HTTP {status}")
        shutil.rmtree(self.repository_dir / name, ignore_errors=True)


def _supervise(argv: list[str]) -> int:
    """Run tritonserver as a child and end it when this process is told to stop or loses its parent."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    die_with_parent()  # SIGTERM to this process when the harness is gone: forwarded above
    # As long as the server lives: Triton stops within --exit-timeout-secs of a forwarded SIGTERM, and
    # the harness's stop() SIGKILLs the whole group after its own timeout.
    return child.wait()


if __name__ == "__main__":
    sys.exit(_supervise(sys.argv[1:]))
