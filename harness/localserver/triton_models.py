"""Triton models that the real tritonserver (harness/localserver/tritonserver.py) runs on this machine.

The wheel's Triton has only the python backend, so Seldon's Triton samples are written here as
python-backend models with the samples' exact inputs and outputs:
- `write_add_sub_model`: Seldon's tfsimple sample (`gs://seldon-models/triton/simple`, Triton's
  "simple" example): INT32 [16] `INPUT0`, `INPUT1` → `OUTPUT0` = sum, `OUTPUT1` = difference,
  batching up to 8 and no instance_group (Triton then places one instance per visible GPU, or a CPU
  instance where it sees none).
Each folder also carries `standin.json` naming the operation, so the sim's Triton stand-in
(harness/sim/triton.py) serves the same folder: one model, two servers, compared by the
differential test.
"""

from __future__ import annotations

from pathlib import Path

ADD_SUB_CONFIG = """name: "simple"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
"""

# Runs inside Triton's python backend stub (numpy and triton_python_backend_utils are its imports).
ADD_SUB_MODEL = '''"""tfsimple's computation: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", (a + b).astype(np.int32)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(np.int32)),
            ]))
        return responses
'''


def write_add_sub_model(folder: Path, config: str = ADD_SUB_CONFIG) -> Path:
    """Write the add/sub model into `folder` (config.pbtxt, 1/model.py, standin.json); returns it."""
    folder = Path(folder)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    (folder / "1" / "model.py").write_text(ADD_SUB_MODEL, encoding="utf-8")
    (folder / "standin.json").write_text('{"operation": "add_sub"}\n', encoding="utf-8")
    return folder
