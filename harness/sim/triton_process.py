"""Run a Triton Server pod's server as a child process, like a Triton container.

Two kinds: `TritonStandInProcess` runs the stand-in (`harness.sim.triton`) for pods with simulated
GPUs (a real Triton cannot start a KIND_GPU instance on this machine); `RealTritonProcess` runs the
real tritonserver from nvidia-pytriton (`harness.localserver.tritonserver`) for pods without a GPU,
whose models run on the CPU.

It reuses `MLServerProcess`'s life cycle (free ports, readiness on `/v2/health/ready`, process-group
stop and kill, log tail) and changes what is launched: the stand-in with the container's
`NVIDIA_VISIBLE_DEVICES`, a third port for metrics (Triton's 8002), and a model repository laid out
the way Seldon's agent lays it out for Triton (`<served name>/config.pbtxt` with the name rewritten).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.lifeline import child_env
from harness.localserver.process import MLServerError, MLServerProcess, _request, free_port
from harness.localserver.tritonserver import (
    TritonServerError,
    binary_pid,
    build_backend_dir,
    error_text,
    find_tritonserver,
    rewrite_model_name,
    server_env,
    supervisor_command,
)


class TritonStandInProcess(MLServerProcess):
    """One Triton stand-in on 127.0.0.1 seeing `gpus` (the pod's allocation)."""

    def __init__(self, workdir: Path, *, gpus: tuple[str, ...] = (), gpu_state: Path | None = None) -> None:
        super().__init__(workdir, parallel_workers=0, log_path=Path(workdir) / "triton.log")
        self.gpus = tuple(gpus)
        self.gpu_state = gpu_state
        self.metrics_port = 0

    def _write_settings(self) -> None:
        # No settings file: Triton takes its ports on the command line. Pick the metrics port here,
        # where the parent picks the other two.
        self.metrics_port = free_port()
        while self.metrics_port in (self.http_port, self.grpc_port):
            self.metrics_port = free_port()

    def _link_models(self) -> None:
        """Models are placed by `load_model`; nothing is preloaded (explicit model control)."""

    def _spawn(self) -> None:
        # child_env: the stand-in watches this process and stops when it dies, even by SIGKILL.
        env = child_env({k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")})
        env["PYTHONUNBUFFERED"] = "1"
        # What the device plugin's Allocate gives the container; "void" when it has no GPU.
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(self.gpus) if self.gpus else "void"
        args = [sys.executable, "-m", "harness.sim.triton", "--model-repository", str(self.repository_dir),
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port)]
        if self.gpu_state is not None:
            self.gpu_state.parent.mkdir(parents=True, exist_ok=True)
            args += ["--gpu-state", str(self.gpu_state)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(args, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def load_model(self, name: str, model_dir: Path, timeout: float = 60.0) -> None:
        """Copy `model_dir` into the repository as `name` (config name rewritten, as Seldon's agent
        does) and load it through Triton's repository API; the error is Triton's message."""
        if not self.is_alive():
            raise MLServerError(f"Triton is not running; cannot load model {name!r}")
        target = self.repository_dir / name
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(model_dir, target)
        config = target / "config.pbtxt"
        if config.is_file():
            config.write_text(rewrite_model_name(config.read_text(encoding="utf-8"), name), encoding="utf-8")
        deadline = time.monotonic() + timeout
        try:
            status, body = _request(self.http_port, "POST", f"/v2/repository/models/{name}/load",
                                    timeout=max(1.0, deadline - time.monotonic()), body=b"")
        except OSError as exc:
            raise MLServerError(f"loading model {name!r}: {exc}\n{self.log_tail()}") from None
        if status != 200:
            raise MLServerError(error_text(body) or f"loading model {name!r}: HTTP {status}")


class RealTritonProcess(TritonStandInProcess):
    """The real tritonserver behind a Triton Server pod that has no GPU (its models run on the CPU).

    Same life cycle and repository handling as the stand-in (Seldon's agent loads models through
    Triton's repository API in explicit mode); what runs is nvidia-pytriton's binary, under the
    launcher's supervisor, with a run-private backend directory in the pod's work folder.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, gpus=())
        self.log_path = Path(workdir) / "tritonserver.log"

    def _spawn(self) -> None:
        try:
            install = find_tritonserver()
        except TritonServerError as exc:
            raise MLServerError(str(exc)) from None
        backend_dir = build_backend_dir(install, self.workdir / "backends")
        # No GPU in this container: what the device plugin leaves a pod that asked for none.
        env = server_env(install, child_env({k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}))
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
        args = supervisor_command(install, self.repository_dir, backend_dir, http_port=self.http_port,
                                  grpc_port=self.grpc_port, metrics_port=self.metrics_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(args, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def server_pid(self) -> int | None:
        """The real tritonserver binary's PID (tests assert that a real server runs)."""
        if self.pid is None:
            return None
        return binary_pid(find_tritonserver(), self.pid)
