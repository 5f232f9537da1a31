"""Children die with their parent (issue 14 item 5): after SIGKILL of the parent (no handler runs)
a child that called `die_with_parent()` is gone within a deadline; `sim up` killed with SIGKILL leaves
no MLServer behind; `load` workers are started with the lifeline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.kit.fork_daemon import without_fork_daemon
from tests.kit.simproc import KUBECTL, SERVER_AND_MODEL, SIM_PROFILE, alive, descendants, first_line, gone_within

ROOT = Path(__file__).resolve().parents[2]

PARENT = textwrap.dedent("""
    import subprocess, sys
    from harness.lifeline import child_env
    child = subprocess.Popen([sys.executable, "-c",
        "from harness.lifeline import die_with_parent; die_with_parent(); import time; time.sleep(600)"],
        env=child_env(), start_new_session=True)
    print(child.pid, flush=True)
    sys.stdin.read()
""")


# A Triton Server beside the MLServer one: its (real) tritonserver is a child of `sim up` too.
TRITON_SERVER_AND_MODEL = """\
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: triton-cpu, namespace: seldon-mesh}
spec: {serverConfig: triton, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: tfsimple, namespace: seldon-mesh}
spec:
  storageUri: gs://seldon-models/triton/simple
  requirements: [tensorflow]
"""


def _reap(proc: subprocess.Popen[str], pids: list[int]) -> None:
    """After a failed assertion: kill the parent and whatever of its children is still alive."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_child_dies_after_sigkill_of_its_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()  # SIGKILL: no handler, no atexit, no process-group cleanup
        parent.wait(10)
        assert gone_within([child], 15) == [], "the child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_load_workers_are_started_with_the_lifeline() -> None:
    import inspect

    from harness.load import engine

    source = inspect.getsource(engine._worker_process)
    assert "die_with_parent(" in source and "pdeathsig=True" in source


@pytest.mark.slow
def test_sigkill_of_sim_up_leaves_no_mlserver(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    manifest = tmp_path / "iris.yaml"
    manifest.write_text(SERVER_AND_MODEL + TRITON_SERVER_AND_MODEL)
    # Its own fork server (as for a user): its MLServers are then among its descendants.
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sim", "up", "--profile", str(SIM_PROFILE),
                             "--kubeconfig", str(kubeconfig)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=without_fork_daemon())
    children: list[int] = []
    try:
        first_line(proc, timeout=30)
        run = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        ready = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "wait", "--for=condition=Ready",
                                "model/iris", "model/tfsimple", "-n", "seldon-mesh", "--timeout=150s"],
                               capture_output=True, text=True, timeout=170)
        assert ready.returncode == 0, ready.stderr
        children = sorted(descendants(proc.pid))
        commands = [(Path("/proc") / str(c) / "cmdline").read_bytes().decode(errors="replace")
                    for c in children if alive(c)]
        # The Triton Server has no GPU: the real tritonserver runs behind it, under the launcher's supervisor.
        assert any("mlserver" in c for c in commands) and any("harness.localserver.tritonserver" in c for c in commands)
        assert any("/bin/tritonserver" in c.split("\0")[0] for c in commands), commands
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert gone_within(children, 60) == [], "MLServer, tritonserver or another child outlived sim up"
    finally:
        _reap(proc, children)


class _Answer:
    """A stub Open Inference Protocol endpoint on 127.0.0.1 that answers every request."""

    def __init__(self) -> None:
        import http.server
        import threading

        body = b'{"model_name":"m","outputs":[{"name":"predict","datatype":"INT64","shape":[1,1],"data":[0]}]}'

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_load_workers_stop_when_load_is_killed(tmp_path: Path, sig: signal.Signals) -> None:
    stub = _Answer()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "load", "--endpoint", f"http://127.0.0.1:{stub.port}",
                             "--model", "m", "--rate", "40", "--duration", "60", "--warmup", "0", "--workers", "2",
                             "--json", str(tmp_path / "out.json")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
            workers = [c for c in descendants(proc.pid)
                       if b"multiprocessing" in (Path("/proc") / str(c) / "cmdline").read_bytes()
                       and b"resource_tracker" not in (Path("/proc") / str(c) / "cmdline").read_bytes()]
            time.sleep(0.2)  # polling /proc against a deadline
        assert len(workers) >= 2, f"load never started its workers: {proc.poll()}"
        proc.send_signal(sig)
        proc.communicate(timeout=30)
        assert gone_within(workers, 20) == [], f"load workers outlived `load` killed by {sig.name}"
    finally:
        _reap(proc, workers)
        stub.close()
