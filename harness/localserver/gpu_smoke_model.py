"""The GPU smoke's model: tfsimple's add/sub for Triton's python backend, with work on its GPU instance.

The real tritonserver from nvidia-pytriton has only the python backend, and numpy computes on the host.
So each request also runs device work on the instance's GPU through the CUDA runtime the wheel ships
(`libcudart` in `nvidia_pytriton.libs/`, loaded with ctypes; its path comes in the config's
`parameters`): a few passes of `cudaMemset` over a device buffer and a synchronize. That makes the
instance's GPU busy for about a millisecond per request, which Triton's GPU utilization and its
compute-time counter (labelled with the GPU's UUID) both see. The instance group is KIND_GPU, so
without a GPU the model does not load at all.
"""

from __future__ import annotations

from pathlib import Path

from harness.localserver.triton_models import ADD_SUB_CONFIG

# Device work per request: PASSES memsets of BUFFER_BYTES (a few hundred microseconds on a data-centre GPU).
BUFFER_BYTES = 256 * 2**20
PASSES = 8

GPU_MODEL = '''"""tfsimple's add/sub with device work on the instance's GPU (harness/localserver/gpu_smoke_model.py)."""
import ctypes
import json

import numpy as np
import triton_python_backend_utils as pb_utils

BUFFER_BYTES = __BUFFER__
PASSES = __PASSES__


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.cudart = ctypes.CDLL(config["parameters"]["cudart"]["string_value"])
        self.device = int(args["model_instance_device_id"])
        self._check(self.cudart.cudaSetDevice(self.device), "cudaSetDevice")
        self.buffer = ctypes.c_void_p()
        self._check(self.cudart.cudaMalloc(ctypes.byref(self.buffer), ctypes.c_size_t(BUFFER_BYTES)), "cudaMalloc")

    def _check(self, code, call):
        if code != 0:
            raise pb_utils.TritonModelException(f"{call} returned CUDA error {code}")

    def execute(self, requests):
        self._check(self.cudart.cudaSetDevice(self.device), "cudaSetDevice")
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            for value in range(PASSES):
                self._check(self.cudart.cudaMemset(self.buffer, value, ctypes.c_size_t(BUFFER_BYTES)), "cudaMemset")
            self._check(self.cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", (a + b).astype(np.int32)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(np.int32)),
            ]))
        return responses

    def finalize(self):
        self.cudart.cudaFree(self.buffer)
'''.replace("__BUFFER__", str(BUFFER_BYTES)).replace("__PASSES__", str(PASSES))


def find_cudart(libs_dir: Path) -> Path | None:
    """The CUDA runtime the wheel ships (auditwheel renames it `libcudart-<hash>.so.<version>`)."""
    found = sorted(libs_dir.glob("libcudart*.so*"))
    return found[0] if found else None


def write_gpu_model(folder: Path, cudart: Path, gpu_index: int = 0) -> Path:
    """The smoke model in `folder`: add/sub config with one KIND_GPU instance on `gpu_index`."""
    folder = Path(folder)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    config = (ADD_SUB_CONFIG.replace('name: "simple"', 'name: "gpu-smoke"')
              + f"instance_group [ {{ kind: KIND_GPU gpus: [ {int(gpu_index)} ] }} ]\n"
              + f'parameters {{ key: "cudart" value: {{ string_value: "{cudart}" }} }}\n')
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    (folder / "1" / "model.py").write_text(GPU_MODEL, encoding="utf-8")
    return folder
