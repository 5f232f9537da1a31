"""`make gpu-smoke` (harness/commands/gpu_smoke.py): its one-line stop without a GPU, its NVML-vs-nvidia-smi
comparison, and its GPU model, which the real tritonserver refuses to load where there is no GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.gpu_smoke import compare_with_smi, parse_nvidia_smi
from harness.gpu.result import parse_probe_output
from harness.localserver.gpu_smoke_model import find_cudart, write_gpu_model
from harness.localserver.tritonserver import TritonServerError, TritonServerProcess, find_tritonserver

ROOT = Path(__file__).resolve().parents[2]
H200 = ROOT / "tests" / "fixtures" / "nvml" / "synthetic-2xH200-550.54.15.json"
SMI = ("GPU-5a8f9c2e-1b3d-4e6f-8a0b-1c2d3e4f5a6b, NVIDIA H200\n"
       "GPU-0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f9, NVIDIA H200\n")


def test_without_a_gpu_it_stops_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(["make", "-s", "gpu-smoke", f"GPU_SMOKE_ARGS=--out {tmp_path / 'out'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-smoke: no NVIDIA GPU on this host ("), done.stdout
    assert not (tmp_path / "out").exists()
    strict = subprocess.run([sys.executable, "-m", "harness.commands.gpu_smoke", "--require-gpu"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert strict.returncode == 1 and len(strict.stdout.strip().splitlines()) == 1


def test_nvml_and_nvidia_smi_are_compared_by_uuid_and_name() -> None:
    inventory = parse_probe_output(H200.read_text(), str(H200))
    assert compare_with_smi(inventory, parse_nvidia_smi(SMI)) == []
    renamed = parse_nvidia_smi(SMI.replace("NVIDIA H200\n", "NVIDIA H200 NVL\n", 1))
    assert compare_with_smi(inventory, renamed) == [
        "GPU-5a8f9c2e-1b3d-4e6f-8a0b-1c2d3e4f5a6b: NVML names it 'NVIDIA H200', nvidia-smi 'NVIDIA H200 NVL'"]
    one = parse_nvidia_smi(SMI.splitlines()[0])
    assert "GPU UUIDs differ" in compare_with_smi(inventory, one)[0]


@pytest.mark.slow
def test_the_smoke_model_needs_a_gpu(real_triton: TritonServerProcess, tmp_path: Path) -> None:
    cudart = find_cudart(find_tritonserver().libs_dir)
    assert cudart is not None and cudart.is_file()
    folder = write_gpu_model(tmp_path / "gpu-smoke", cudart)
    assert 'kind: KIND_GPU gpus: [ 0 ]' in (folder / "config.pbtxt").read_text()
    # Triton's refusal of an instance on a GPU it does not have.
    with pytest.raises(TritonServerError, match="of model gpu-smoke specifies invalid or unsupported gpu id 0"):
        real_triton.load_model("gpu-smoke", folder, timeout=60)
