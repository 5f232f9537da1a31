"""`make gpu-smoke`: the GPU proof on a host with an NVIDIA GPU and no Kubernetes, offline, in minutes.

    python -m harness.commands.gpu_smoke [--out DIR] [--require-gpu] [--window S]

1. NVML on the host (the probe's own collection code) compared with `nvidia-smi`: the same GPUs
   (UUIDs) with the same names.
2. The real tritonserver from nvidia-pytriton, on 127.0.0.1 with the host's GPUs, loads a model with
   a KIND_GPU instance on GPU 0 (harness/localserver/gpu_smoke_model.py) through its repository API.
3. The three-view proof against it (harness/gpu/triton.py): Triton's model config, NVML memory held on
   the GPU, and Triton's metrics judged over a sustained window (harness/gpu/gpu_use.py) while requests
   run.

Without a GPU it stops at once with one line saying so (exit 0; 1 with `--require-gpu`). Everything it
saw goes to `--out` (default `reports/gpu-smoke`): the NVML document, nvidia-smi's answer, the model
config and the metrics scrapes in the shape of tests/fixtures/triton_metrics, so a run on a real GPU
host can become test fixtures for the probe parser and the proof.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from harness.gpu.gpu_use import MIN_INTERVALS, TRITON_METRICS_INTERVAL_S, timed_scrape
from harness.gpu.host import host_inventory_with_reason
from harness.gpu.result import ProbeResult
from harness.gpu.triton import Views, check_triton_gpu_use, gpu_sample
from harness.localserver.gpu_smoke_model import find_cudart, write_gpu_model

SMI_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0
MODEL = "gpu-smoke"
_INPUT = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
                     {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}


def parse_nvidia_smi(text: str) -> dict[str, str]:
    """`nvidia-smi --query-gpu=uuid,name --format=csv,noheader` → {uuid: name}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        uuid, _, name = line.partition(",")
        if uuid.strip().startswith(("GPU-", "MIG-")):
            out[uuid.strip()] = name.strip()
    return out


def compare_with_smi(inventory: ProbeResult, smi: dict[str, str]) -> list[str]:
    """Where NVML through the probe's code and nvidia-smi disagree (empty: they agree)."""
    nvml = {d.uuid: d.name or "" for d in inventory.devices if d.uuid}
    problems = []
    if set(nvml) != set(smi):
        problems.append(f"GPU UUIDs differ: NVML {sorted(nvml)}, nvidia-smi {sorted(smi)}")
    problems += [f"{u}: NVML names it {nvml[u]!r}, nvidia-smi {smi[u]!r}" for u in sorted(set(nvml) & set(smi))
                 if nvml[u] != smi[u]]
    return problems


def _nvidia_smi() -> tuple[str | None, str]:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None, "nvidia-smi is not on PATH"
    try:
        done = subprocess.run([binary, "--query-gpu=uuid,name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=SMI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {SMI_TIMEOUT_S:g} s"
    if done.returncode != 0:
        return None, f"nvidia-smi exited {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}"
    return done.stdout, "ok"


def _get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _drive(port: int, seconds: float, failures: list[str]) -> int:
    """Requests back to back for `seconds` (a bounded loop); returns how many succeeded."""
    body = json.dumps(_INPUT).encode()
    deadline = time.monotonic() + seconds
    done = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(1_000_000):
            if time.monotonic() >= deadline:
                break
            conn.request("POST", f"/v2/models/{MODEL}/infer", body=body, headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            data = answer.read()
            if answer.status != 200:
                failures.append(f"HTTP {answer.status}: {data[:200].decode(errors='replace')}")
                break
            done += 1
    except OSError as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return done


def run(out: Path, window_s: float) -> int:
    from harness.localserver.tritonserver import TritonServerError, TritonServerProcess, find_tritonserver

    inventory, reason = host_inventory_with_reason()
    out.mkdir(parents=True, exist_ok=True)
    (out / "nvml-host.json").write_text(json.dumps(dict(inventory.raw), indent=1) if inventory else reason)
    smi_text, smi_note = _nvidia_smi()
    (out / "nvidia-smi.csv").write_text(smi_text or smi_note)
    assert inventory is not None
    problems = compare_with_smi(inventory, parse_nvidia_smi(smi_text)) if smi_text else [smi_note]
    print(f"gpu-smoke: NVML vs nvidia-smi: {'agree' if not problems else '; '.join(problems)}")

    install = find_tritonserver()
    cudart = find_cudart(install.libs_dir)
    if cudart is None:
        print(f"gpu-smoke: no libcudart in {install.libs_dir}; the smoke model cannot run device work")
        return 1
    gpu0 = sorted(inventory.devices, key=lambda d: d.index)[0]
    server = TritonServerProcess(out / "tritonserver")
    views = Views("gpu-smoke", "localhost", "localhost", MODEL)
    failures: list[str] = []
    try:
        server.start(timeout=START_TIMEOUT_S)
        server.load_model(MODEL, write_gpu_model(out / "model" / MODEL, cudart, gpu0.index), timeout=START_TIMEOUT_S)
        status, body = _get(server.http_port, f"/v2/models/{MODEL}/config")
        if status == 200:
            views.config = json.loads(body)
            (out / "model-config.json").write_text(json.dumps(views.config, indent=1))
        else:
            views.config_error = f"HTTP {status} {body[:200].decode(errors='replace')}"
        scrapes: list[dict[str, object]] = []
        stop = threading.Event()
        started = time.monotonic()

        def scrape() -> None:
            status, body = _get(server.metrics_port, "/metrics")
            text = body.decode(errors="replace")
            if status == 200:
                at = round(time.monotonic() - started, 3)
                scrapes.append({"at_s": at, "text": text})
                views.metrics = [*views.metrics, gpu_sample(text)]
                views.timed = [*views.timed, timed_scrape(text, at)]

        def sampler() -> None:
            for _ in range(100_000):  # bounded; ends with the window
                if stop.wait(0.5):
                    return
                scrape()

        scrape()
        thread = threading.Thread(target=sampler, name="gpu-smoke-metrics", daemon=True)
        thread.start()
        count = _drive(server.http_port, window_s, failures)
        stop.set()
        thread.join(10)
        scrape()
        held_inventory, _ = host_inventory_with_reason()
        if held_inventory is not None:
            views.nvml = {d.uuid: sum(p.used_memory_bytes or 0 for p in d.compute_processes or ())
                          for d in held_inventory.devices if d.uuid}
        uuids = sorted(set(gpu_sample(str(scrapes[-1]["text"])).uuids)) if scrapes else []
        (out / "triton-metrics.json").write_text(json.dumps(
            {"gpus": uuids, "interval_s": TRITON_METRICS_INTERVAL_S, "scrapes": scrapes}, indent=1))
        print(f"gpu-smoke: {count} request(s) in {window_s:g} s" + (f"; stopped: {failures[0]}" if failures else ""))
    except TritonServerError as exc:
        print(f"gpu-smoke: tritonserver: {str(exc).splitlines()[0]} (log {server.log_path})")
        return 1
    finally:
        server.stop()
    verdicts = check_triton_gpu_use(views)
    for verdict in verdicts:
        print(f"gpu-smoke: {'PASS' if verdict.ok else 'FAIL'} {verdict.id}: {verdict.reason}")
    print(f"gpu-smoke: outputs in {out}")
    return 0 if all(v.ok for v in verdicts) and not problems and not failures else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.commands.gpu_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/gpu-smoke"))
    parser.add_argument("--require-gpu", action="store_true", help="no GPU is a failure (exit 1), not a skip")
    parser.add_argument("--window", type=float, default=MIN_INTERVALS * TRITON_METRICS_INTERVAL_S + 4.0,
                        help="seconds of requests while Triton's metrics are judged")
    args = parser.parse_args(list(argv) if argv is not None else None)
    inventory, reason = host_inventory_with_reason()
    if inventory is None or not inventory.devices:
        why = reason if inventory is None else "NVML sees no GPU"
        print(f"gpu-smoke: no NVIDIA GPU on this host ({why.splitlines()[0]}); nothing to check"
              + ("" if not args.require_gpu else " and --require-gpu makes that a failure"))
        return 1 if args.require_gpu else 0
    return run(args.out, args.window)


if __name__ == "__main__":
    sys.exit(main())
