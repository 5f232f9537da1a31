"""Run a Triton Server pod's server as a child process, like a Triton container.

Two kinds: `TritonStandInProcess` runs the stand-in (`harness.sim.triton`) for pods with simulated
GPUs (a real Triton cannot start a KIND_GPU instance on this machine); `real_triton` gives the real
tritonserver from nvidia-pytriton (`harness.localserver.tritonserver`) for pods without a GPU, whose
models run on the CPU.

Both reuse `MLServerProcess`'s life cycle (free ports, readiness on `/v2/health/ready`, process-group
stop and kill, log tail) and changes what is launched: the stand-in with the container's
`NVIDIA_VISIBLE_DEVICES`, a third port for metrics (Triton's 8002), and a model repository laid out
the way Seldon's agent lays it out for Triton (`<served name>/config.pbtxt` with the name rewritten).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.lifeline import child_env
from harness.localserver.process import MLServerProcess
from harness.localserver.tritonserver import TritonServerProcess


class TritonStandInProcess(TritonServerProcess):
    """One Triton stand-in on 127.0.0.1 seeing `gpus` (the pod's allocation).

    The real server's launcher minus the binary: the same ports, life cycle and repository requests
    (`load_model` places the folder and asks Triton's repository API), a different process."""

    SERVER = "Triton stand-in"

    def __init__(self, workdir: Path, *, gpus: tuple[str, ...] = (), gpu_state: Path | None = None) -> None:
        super().__init__(workdir, log_path=Path(workdir) / "triton.log")
        self.gpus = tuple(gpus)
        self.gpu_state = gpu_state

    def start(self, timeout: float = 60.0) -> None:
        # No tritonserver to find and no backend directory to build.
        MLServerProcess.start(self, timeout)

    def _wait_ready(self, deadline: float) -> None:
        MLServerProcess._wait_ready(self, deadline)

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


def real_triton(workdir: Path) -> TritonServerProcess:
    """The real tritonserver for a Triton Server pod without a GPU (its models run on the CPU): the
    container sees no GPU, as the device plugin leaves a pod that asked for none."""
    return TritonServerProcess(workdir, env={"NVIDIA_VISIBLE_DEVICES": "void"})
