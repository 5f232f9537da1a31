"""Where a Model's `storageUri` comes from inside the simulated cluster (no internet).

The public Seldon iris samples map to a small iris sklearn model trained locally (once per user and
scikit-learn version, `harness.localserver.cached_iris`) and copied into the work directory; the
Seldon Triton tfsimple sample (`gs://seldon-models/triton/simple`) maps to a python-backend model with its
inputs and outputs that both the real tritonserver and the Triton stand-in (`harness.sim.triton`) serve;
the mnist-onnx sample maps to its completed config for the stand-in (`mnist_sample`);
`file://` URIs and plain local paths load as they are; everything else is refused with a message
saying it is not reachable from the simulated cluster (the Model goes ModelFailed).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from harness.localserver import cached_iris
from harness.localserver.triton_models import ADD_SUB_CONFIG, write_add_sub_model

# gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn, gs://seldon-models/mlserver/iris-sklearn, ...
_IRIS_SAMPLE = re.compile(r"^(gs|s3|https?)://(storage\.googleapis\.com/)?seldon-models/(.+/)?iris[-_]?sklearn/?$")
# gs://seldon-models/triton/simple (Seldon's tfsimple samples), with or without a trailing slash.
_TFSIMPLE_SAMPLE = re.compile(r"^(gs|s3|https?)://(storage\.googleapis\.com/)?seldon-models/triton/simple/?$")
# Seldon 2.10.2's mnist ONNX sample (samples/models/mnist-onnx.yaml at tag v2.10.2): the FP32 network
# the GPU lanes serve, because its kernels run on the GPU (tfsimple's INT32 add/sub does not).
_MNIST_SAMPLE = re.compile(
    r"^(gs|s3|https?)://(storage\.googleapis\.com/)?seldon-models/scv2/samples/triton_23-03/mnist-onnx/?$")
_TRAIN_LOCK = threading.Lock()

# What Triton's onnxruntime backend completes for the sample's model.onnx (ONNX model zoo mnist-12,
# samples/scripts/models/Makefile at v2.10.2; the bucket folder holds no config.pbtxt, so Seldon's agent
# writes one with the name only): a fixed [1, 1, 28, 28] input, no batching, no instance_group.
MNIST_CONFIG = """name: "mnist-onnx"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "Input3" data_type: TYPE_FP32 dims: [ 1, 1, 28, 28 ] } ]
output [ { name: "Plus214_Output_0" data_type: TYPE_FP32 dims: [ 1, 10 ] } ]
"""

# The sample's inputs and outputs, as Triton's "simple" example states them, written as a python-backend
# model (harness/localserver/triton_models.py): the real tritonserver here has only the python backend,
# and the stand-in serves the same folder by its standin.json.
TFSIMPLE_CONFIG = ADD_SUB_CONFIG


class ModelUnavailable(Exception):
    """The storageUri cannot be served here; `str()` is the one-line reason for the Model status."""


@dataclass(frozen=True)
class ModelSource:
    uri: str
    path: Path  # a folder with the model artifact (and usually a model-settings.json)
    sample: bool  # True when a public sample was replaced by the local copy


def is_iris_sample(uri: str) -> bool:
    return bool(_IRIS_SAMPLE.match(uri.strip()))


def iris_cache_dir(workdir: Path) -> Path:
    return Path(workdir) / "model-cache" / "iris-sklearn"


def resolve_storage_uri(uri: str, workdir: Path, *, train: bool = True) -> ModelSource:
    """The local folder that stands for `uri`, training the iris sample on first use (unless
    `train` is False: then only reachability is checked and the path may not exist yet).

    Raises `ModelUnavailable` for anything the simulated cluster cannot reach.
    """
    text = (uri or "").strip()
    if not text:
        raise ModelUnavailable("spec.storageUri is empty")
    # Without `train` nothing is written: the controller asks on every pass.
    if _MNIST_SAMPLE.match(text):
        folder = Path(workdir) / "model-cache" / "mnist-onnx"
        return ModelSource(text, mnist_sample(folder) if train else folder, sample=True)
    if _TFSIMPLE_SAMPLE.match(text):
        folder = Path(workdir) / "model-cache" / "tfsimple"
        return ModelSource(text, tfsimple_sample(folder) if train else folder, sample=True)
    if is_iris_sample(text):
        if not train:
            return ModelSource(text, iris_cache_dir(workdir), sample=True)
        with _TRAIN_LOCK:
            path = cached_iris(iris_cache_dir(workdir), name="iris")
        return ModelSource(text, path, sample=True)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
    elif parsed.scheme == "" and text.startswith("/"):
        local = Path(text)
    else:
        raise ModelUnavailable(
            f"storageUri {text} is not reachable from the simulated cluster (no internet); "
            "use a Seldon iris-sklearn, triton/simple or triton_23-03/mnist-onnx sample URI, a file:// URI "
            "or a local path"
        )
    if not local.is_dir():
        raise ModelUnavailable(f"storageUri {text}: {local} is not a folder on this machine")
    return ModelSource(text, local, sample=False)


def tfsimple_sample(folder: Path) -> Path:
    """Write the local stand-in of the tfsimple sample (config plus the stand-in's operation)."""
    with _TRAIN_LOCK:
        return write_add_sub_model(folder)


def mnist_sample(folder: Path) -> Path:
    """Write the Triton stand-in's copy of the mnist-onnx sample: its completed config and the stand-in
    operation. There are no weights here: the stand-in answers only the one input whose real answer is
    known (harness/sim/triton.py `mnist_zero`); the real tritonserver has no onnxruntime backend."""
    with _TRAIN_LOCK:
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(MNIST_CONFIG, encoding="utf-8")
        (folder / "standin.json").write_text('{"operation": "mnist_zero"}\n', encoding="utf-8")
    return folder
