"""A Triton stand-in for the simulated cluster: a local process that behaves like Triton at its edges.

The simulated cluster has no GPU and no Triton binary, so Triton-type Server pods are backed by this
process instead. It speaks what the harness and Seldon's agent use of Triton, and nothing more:
- the Open Inference Protocol on HTTP (JSON, and Triton's binary-tensor extension that tritonclient
  uses by default) and on gRPC (`inference.GRPCInferenceService`, messages from tritonclient);
- Triton's model repository API in explicit mode (`/v2/repository/models/<m>/load|unload`), reading
  `config.pbtxt` with Triton's own protobuf schema, and the model-config endpoint
  (`/v2/models/<m>/config`) with the instance groups completed the way Triton completes them
  (no group: one instance per visible GPU, or KIND_CPU when there is none);
- Prometheus metrics on their own port (Triton's 8002): `nv_gpu_utilization`,
  `nv_gpu_memory_used_bytes` labelled with `gpu_uuid`, and per-model inference counters.

Which GPUs it has is what a container has: the UUIDs in `NVIDIA_VISIBLE_DEVICES` set by the
(simulated) device plugin. A model whose instance group says KIND_GPU fails to load without one,
with Triton's wording. Loaded GPU instances hold simulated device memory, written to a state file
that the simulated NVML reads, so a node-level NVML view shows this process on exactly its GPUs.

What it cannot do, it refuses: it executes only models that carry a `standin.json` naming the
operation (the sim's local copies of the Seldon Triton samples do); anything else fails to load
with a message saying so. It identifies itself as simulated in its server metadata.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SERVER_NAME = "triton (simulated stand-in)"
# The Triton release Seldon 2.10.2's default ServerConfig runs (nvcr.io/nvidia/tritonserver:23.03-py3).
SERVER_VERSION = "2.32.0"
STANDIN_FILE = "standin.json"
# Device memory a loaded GPU instance holds in the simulation: plainly "in use" for NVML and metrics.
INSTANCE_GPU_MEMORY_BYTES = 384 * 2**20
# nv_gpu_utilization is a rate over a recent window; this is the window.
UTILIZATION_WINDOW_S = 1.0

_TYPE_TO_DATATYPE = {
    "TYPE_BOOL": "BOOL", "TYPE_UINT8": "UINT8", "TYPE_UINT16": "UINT16", "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64", "TYPE_INT8": "INT8", "TYPE_INT16": "INT16", "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64", "TYPE_FP32": "FP32", "TYPE_FP64": "FP64", "TYPE_STRING": "BYTES",
}
_STRUCT = {"INT32": "i", "INT64": "q", "FP32": "f", "FP64": "d", "INT8": "b", "INT16": "h", "UINT8": "B",
           "UINT16": "H", "UINT32": "I", "UINT64": "Q", "BOOL": "?"}
_GRPC_CONTENTS = {"INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents",
                  "FP64": "fp64_contents", "BOOL": "bool_contents", "UINT32": "uint_contents",
                  "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents",
                  "UINT8": "uint_contents", "UINT16": "uint_contents"}


# One request tensor: (datatype, shape, flat data).
Tensor = tuple[str, list[int], list[Any]]


class TritonError(Exception):
    """A request Triton would refuse. `status` is the HTTP code: Triton 2.32 answered every error with
    400 over HTTP; its gRPC frontend mapped Triton's error code (`code`: INVALID_ARG, NOT_FOUND, ...)
    to the gRPC status (triton-inference-server/server v2.32.0 src/grpc_server.cc)."""

    def __init__(self, message: str, status: int = 400, code: str = "INVALID_ARG") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def visible_gpus(env: dict[str, str]) -> list[str]:
    """The GPU UUIDs a container sees from `NVIDIA_VISIBLE_DEVICES` (`void`/`none`/unset: none)."""
    raw = env.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if raw in ("", "void", "none"):
        return []
    return [u.strip() for u in raw.split(",") if u.strip()]


def complete_instance_groups(config: Any, gpus: int) -> None:
    """Fill in `config.instance_group` the way Triton does, or raise `TritonError` like its load.

    No group (or KIND_AUTO): one instance on every visible GPU, else one on the CPU. KIND_GPU without
    `gpus`: every visible GPU; with none visible, the load fails.
    """
    from tritonclient.grpc import model_config_pb2 as mc

    group_cls = mc.ModelInstanceGroup
    if not config.instance_group:
        config.instance_group.add()
    for i, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{i}"
        if group.count == 0:
            group.count = 1
        if group.kind == group_cls.KIND_AUTO:
            group.kind = group_cls.KIND_GPU if gpus else group_cls.KIND_CPU
        if group.kind == group_cls.KIND_GPU:
            if gpus == 0:
                raise TritonError(f"instance group {group.name} of model {config.name} has kind KIND_GPU "
                                  "but no GPUs are available")
            if not group.gpus:
                group.gpus.extend(range(gpus))
            bad = [g for g in group.gpus if g < 0 or g >= gpus]
            if bad:
                raise TritonError(f"instance group {group.name} of model {config.name} specifies invalid or "
                                  f"unsupported gpu id {bad[0]}. GPUs with at least the minimum required CUDA "
                                  f"compute compatibility of 6.0 are: {' '.join(str(g) for g in range(gpus))}")


# The file a version folder must hold, by backend or platform, when the config names none (Triton's
# model_config_utils fills default_model_filename this way).
_DEFAULT_FILENAMES = {"python": "model.py", "onnxruntime": "model.onnx", "onnxruntime_onnx": "model.onnx",
                      "tensorflow_graphdef": "model.graphdef", "tensorflow_savedmodel": "model.savedmodel",
                      "tensorrt_plan": "model.plan", "pytorch_libtorch": "model.pt"}


def normalize_config(config: Any) -> None:
    """The defaults Triton writes into a loaded model's config (what `/config` then shows): the latest
    version only, pinned input/output memory, and the backend's default model file name."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if not config.optimization.HasField("input_pinned_memory"):
        config.optimization.input_pinned_memory.enable = True
    if not config.optimization.HasField("output_pinned_memory"):
        config.optimization.output_pinned_memory.enable = True
    if not config.default_model_filename:
        config.default_model_filename = _DEFAULT_FILENAMES.get(config.platform or config.backend, "")


def config_to_json(config: Any) -> dict[str, Any]:
    """The model config as Triton's HTTP endpoint shows it (proto field names, numbers as numbers)."""
    from google.protobuf import json_format  # type: ignore[import-untyped]

    # Triton prints every field of the config, defaults included (tests/sim/seldon/test_triton_differential.py).
    data: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True,
                                                     always_print_fields_with_no_presence=True)

    def numbers(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: numbers(v) for k, v in value.items()}
        if isinstance(value, list):
            return [numbers(v) for v in value]
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        return value

    out: dict[str, Any] = numbers(data)
    return out


@dataclass
class LoadedModel:
    name: str
    config: Any  # model_config_pb2.ModelConfig, instance groups completed
    operation: str
    gpu_indices: list[int]
    success: int = 0
    failure: int = 0
    exec_ns: int = 0

    @property
    def inputs(self) -> list[tuple[str, str, list[int]]]:
        return [(i.name, _TYPE_TO_DATATYPE.get(_enum_name(i.data_type), "?"), list(i.dims)) for i in self.config.input]

    @property
    def outputs(self) -> list[tuple[str, str, list[int]]]:
        return [(o.name, _TYPE_TO_DATATYPE.get(_enum_name(o.data_type), "?"), list(o.dims)) for o in self.config.output]


def _enum_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2 as mc

    name: str = mc.DataType.Name(value)
    return name


# Operations the stand-in can execute, by the name in a model's standin.json. Each takes the
# model's inputs in config order and returns its outputs in config order.
def _add_sub(values: list[list[Any]]) -> list[list[Any]]:
    if len(values) != 2:
        raise TritonError("add_sub needs two inputs")
    a, b = values
    return [[x + y for x, y in zip(a, b, strict=True)], [x - y for x, y in zip(a, b, strict=True)]]


# The real mnist-onnx sample's answer to an all-zero image, as Seldon's own integration test states it
# (SeldonIO/seldon-core v2.10.2 tests/integration/godog/steps/model_steps.go, "mnist-onnx").
MNIST_ZERO_OUTPUT = [-0.04485602676868439, 0.007791661191731691, 0.06810081750154495, 0.02999374084174633,
                     -0.1264096349477768, 0.14021874964237213, -0.055284902453422546, -0.04938381537795067,
                     0.08432205021381378, -0.05454041436314583]


def _mnist_zero(values: list[list[Any]]) -> list[list[Any]]:
    """The stand-in has no network weights: it answers the one input whose real answer is known and
    refuses any other rather than make one up."""
    if len(values) != 1 or any(v != 0 for v in values[0]):
        raise TritonError("the simulated Triton stand-in has no mnist-onnx weights: it answers only an "
                          "all-zero image (the real model's answer to it is known)")
    return [list(MNIST_ZERO_OUTPUT)]


OPERATIONS: dict[str, Callable[[list[list[Any]]], list[list[Any]]]] = {"add_sub": _add_sub,
                                                                          "mnist_zero": _mnist_zero}


@dataclass
class Server:
    """The stand-in's state: the repository, the loaded models and the GPU accounting."""

    repository: Path
    gpus: list[str]
    gpu_state: Path | None = None
    models: dict[str, LoadedModel] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)  # gpu index -> (end, seconds)
    unavailable: set[str] = field(default_factory=set)  # models whose load failed validation

    # --- repository --------------------------------------------------------------------------
    def load(self, name: str) -> None:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2 as mc

        folder = self.repository / name
        config_file = folder / "config.pbtxt"
        if not config_file.is_file():
            raise TritonError(f"failed to load '{name}', failed to poll from model repository: "
                              f"no config.pbtxt in {folder}")
        try:
            config = text_format.Parse(config_file.read_text(encoding="utf-8"), mc.ModelConfig())
        except text_format.ParseError as exc:
            raise TritonError(f"failed to load '{name}': failed to read text proto from {config_file}: {exc}") \
                from None
        if config.name and config.name != name:
            raise TritonError(f"failed to load '{name}': model name in config.pbtxt ({config.name}) "
                              f"does not match the directory name")
        config.name = name
        normalize_config(config)
        try:
            complete_instance_groups(config, len(self.gpus))
        except TritonError as exc:
            # How Triton's repository manager reports a version that failed validation at load. The model
            # stays in the repository as UNAVAILABLE (an unload does not clear it), so the server is not
            # ready any more (strict readiness, Triton's default) until the model loads.
            with self.lock:
                self.unavailable.add(name)
            raise TritonError(f"load failed for model '{name}': version 1 is at UNAVAILABLE state: "
                              f"Invalid argument: {exc};\n") from None
        spec_file = folder / STANDIN_FILE
        try:
            operation = str(json.loads(spec_file.read_text(encoding="utf-8"))["operation"])
        except (OSError, ValueError, KeyError, TypeError):
            raise TritonError(f"failed to load '{name}': the simulated Triton stand-in executes only models "
                              f"with a {STANDIN_FILE} naming their operation (the sim's copies of the Seldon "
                              "Triton samples); this model has none") from None
        if operation not in OPERATIONS:
            raise TritonError(f"failed to load '{name}': unknown stand-in operation {operation!r}")
        from tritonclient.grpc import model_config_pb2

        gpu_kind = model_config_pb2.ModelInstanceGroup.KIND_GPU
        indices = sorted({g for group in config.instance_group if group.kind == gpu_kind for g in group.gpus})
        with self.lock:
            self.models[name] = LoadedModel(name, config, operation, indices)
            self.unavailable.discard(name)
        self._write_gpu_state()

    def ready(self) -> bool:
        """Triton's strict readiness: no model of the repository is UNAVAILABLE."""
        with self.lock:
            return not self.unavailable

    def unload(self, name: str) -> None:
        # Unloading a model that is not loaded succeeds, as on the real server (explicit mode).
        with self.lock:
            self.models.pop(name, None)
        self._write_gpu_state()

    def model(self, name: str) -> LoadedModel:
        with self.lock:
            model = self.models.get(name)
        if model is None:
            raise TritonError(f"Request for unknown model: '{name}' is not found", 400, "NOT_FOUND")
        return model

    # --- GPU accounting ----------------------------------------------------------------------
    def memory_used(self) -> dict[str, int]:
        used = dict.fromkeys(self.gpus, 0)
        with self.lock:
            for model in self.models.values():
                for index in model.gpu_indices:
                    used[self.gpus[index]] += INSTANCE_GPU_MEMORY_BYTES
        return used

    def _write_gpu_state(self) -> None:
        if self.gpu_state is None:
            return
        state = {"pid": os.getpid(), "gpus": {u: b for u, b in self.memory_used().items() if b}}
        tmp = self.gpu_state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.gpu_state)

    def utilization(self) -> dict[str, float]:
        now = time.monotonic()
        out: dict[str, float] = {}
        with self.lock:
            for index, uuid in enumerate(self.gpus):
                window = self.busy.get(index) or deque()
                while window and window[0][0] < now - UTILIZATION_WINDOW_S:
                    window.popleft()
                out[uuid] = min(1.0, sum(s for _, s in window) / UTILIZATION_WINDOW_S)
        return out

    # --- inference ---------------------------------------------------------------------------
    def infer(self, name: str, inputs: dict[str, Tensor]) -> list[tuple[str, str, list[int], list[Any]]]:
        """Run one request: `inputs` by name -> (datatype, shape, flat data). Outputs in config order."""
        model = self.model(name)
        batch = model.config.max_batch_size
        ordered: list[list[Any]] = []
        shape_out: list[int] = []
        for in_name, datatype, dims in model.inputs:
            if in_name not in inputs:
                raise TritonError(f"[request id: <id_unknown>] expected {len(model.inputs)} inputs but got "
                                  f"{len(inputs)} inputs for model '{name}'. Got input(s) {sorted(inputs)}, "
                                  f"but missing required input(s) ['{in_name}']")
            got_type, shape, data = inputs[in_name]
            if got_type != datatype:
                raise TritonError(f"[request id: <id_unknown>] inference input '{in_name}' data-type is "
                                  f"'{got_type}', but model '{name}' expects '{datatype}'")
            wanted = ([shape[0]] if batch > 0 and shape else []) + dims
            if batch > 0 and (not shape or shape[0] < 1 or shape[0] > batch):
                raise TritonError(f"[request id: <id_unknown>] inference request batch-size must be <= {batch} "
                                  f"for '{name}'")
            if shape != wanted:
                raise TritonError(f"[request id: <id_unknown>] unexpected shape for input '{in_name}' for model "
                                  f"'{name}'. Expected {wanted}, got {shape}")
            ordered.append(data)
            shape_out = shape
        unknown = sorted(set(inputs) - {i[0] for i in model.inputs})
        if unknown:
            raise TritonError(f"[request id: <id_unknown>] unexpected inference input '{unknown[0]}' for model "
                              f"'{name}'")
        start = time.perf_counter()
        values = OPERATIONS[model.operation](ordered)
        seconds = time.perf_counter() - start
        with self.lock:
            model.success += 1
            model.exec_ns += int(seconds * 1e9)
            end = time.monotonic()
            for index in model.gpu_indices:
                self.busy.setdefault(index, deque(maxlen=100_000)).append((end, seconds))
        # Each output has its configured dims, behind the request's batch dimension when the model batches.
        lead = shape_out[:1] if batch > 0 else []
        return [(o[0], o[1], lead + o[2], v) for o, v in zip(model.outputs, values, strict=True)]

    # --- documents ---------------------------------------------------------------------------
    def metadata(self, name: str) -> dict[str, Any]:
        model = self.model(name)
        batch = model.config.max_batch_size

        def shape(dims: list[int]) -> list[int]:
            return ([-1] if batch > 0 else []) + dims

        return {"name": name, "versions": ["1"], "platform": model.config.platform or model.config.backend,
                "inputs": [{"name": n, "datatype": d, "shape": shape(s)} for n, d, s in model.inputs],
                "outputs": [{"name": n, "datatype": d, "shape": shape(s)} for n, d, s in model.outputs]}

    def metrics_text(self) -> str:
        with self.lock:
            models = list(self.models.values())
        lines: list[str] = []
        # Per-model families, one sample per model and device as Triton writes them: a model's
        # instances on a GPU are counted under that GPU's `gpu_uuid` label, CPU instances without one.
        for family, kind, help_text, count in (
            ("nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes",
             lambda m: m.success),
            ("nv_inference_count", "counter", "Number of inferences performed", lambda m: m.success),
            ("nv_inference_exec_count", "counter", "Number of model executions performed", lambda m: m.success),
            ("nv_inference_request_duration_us", "counter", "Cumulative inference request duration in microseconds",
             lambda m: m.exec_ns // 1000),
            ("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds",
             lambda m: 0),
            ("nv_inference_compute_infer_duration_us", "counter",
             "Cumulative compute inference duration in microseconds", lambda m: m.exec_ns // 1000),
        ):
            lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
            for m in models:
                share = len(m.gpu_indices) or 1
                for device in [self.gpus[i] for i in m.gpu_indices] or [""]:
                    labels = (f'gpu_uuid="{device}",' if device else "") + f'model="{m.name}",version="1"'
                    lines.append(f"{family}{{{labels}}} {int(count(m)) // share}")
        lines += ["# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)", "# TYPE nv_gpu_utilization gauge"]
        for uuid, value in self.utilization().items():
            lines.append(f'nv_gpu_utilization{{gpu_uuid="{uuid}"}} {value:.6f}')
        lines += ["# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes",
                  "# TYPE nv_gpu_memory_used_bytes gauge"]
        for uuid, used in self.memory_used().items():
            lines.append(f'nv_gpu_memory_used_bytes{{gpu_uuid="{uuid}"}} {used}')
        return "\n".join(lines) + "\n"


# --- HTTP ---------------------------------------------------------------------------------------

_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?(/ready|/config|/infer|/stats)?$")
_REPO = re.compile(r"^/v2/repository/models/([^/]+)/(load|unload)$")


def _decode_http_inputs(doc: dict[str, Any], binary: bytes) -> dict[str, tuple[str, list[int], list[Any]]]:
    out: dict[str, tuple[str, list[int], list[Any]]] = {}
    offset = 0
    for tensor in doc.get("inputs") or []:
        name, datatype, shape = str(tensor.get("name")), str(tensor.get("datatype")), list(tensor.get("shape") or [])
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            fmt = _STRUCT.get(datatype)
            if fmt is None:
                raise TritonError(f"binary data for input '{name}' of type {datatype} is not supported here")
            raw = binary[offset: offset + int(size)]
            offset += int(size)
            data = list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))
        else:
            data = _flatten(tensor.get("data"))
        out[name] = (datatype, [int(d) for d in shape], data)
    return out


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        flat: list[Any] = []
        for v in value:
            flat.extend(_flatten(v) if isinstance(v, list) else [v])
        return flat
    return [] if value is None else [value]


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this each response waits ~40 ms on Nagle and
        # the client's delayed ACK, which Triton (C++, one write) does not.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode())

    def _error(self, exc: TritonError) -> None:
        self._json(exc.status, {"error": str(exc)})

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        try:
            if path == "/v2/health/live":
                self._send(200, b"", "text/plain")
            elif path == "/v2/health/ready":
                self._send(200 if state.ready() else 400, b"", "text/plain")
            elif path == "/v2":
                self._json(200, {"name": SERVER_NAME, "version": SERVER_VERSION,
                                 "extensions": ["classification", "sequence", "model_repository",
                                                "model_configuration", "binary_tensor_data", "statistics"]})
            elif path == "/metrics":
                self._send(200, state.metrics_text().encode(), "text/plain; charset=utf-8; version=0.0.4")
            else:
                match = _PATH.match(path)
                if match is None:
                    raise TritonError("Not Found", 404)
                name, tail = match.group(1), match.group(2)
                if tail == "/ready":
                    state.model(name)
                    self._send(200, b"", "text/plain")
                elif tail == "/config":
                    self._json(200, config_to_json(state.model(name).config))
                elif tail is None:
                    self._json(200, state.metadata(name))
                else:
                    raise TritonError("Not Found", 404)
        except TritonError as exc:
            self._error(exc)

    def do_POST(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            if path == "/v2/repository/index":
                # Real Triton lists its repository here; the stand-in does not model that listing, and a
                # 404 would read as "no such API" to a client that relies on it.
                raise TritonError("the Triton stand-in does not model the repository index (POST "
                                  "/v2/repository/index); a CPU Server with server_config triton runs the real "
                                  "tritonserver, which does", 501)
            repo = _REPO.match(path)
            if repo is not None:
                (state.load if repo.group(2) == "load" else state.unload)(repo.group(1))
                self._send(200, b"", "text/plain")
                return
            match = _PATH.match(path)
            if match is None or match.group(2) != "/infer":
                raise TritonError("Not Found", 404)
            self._infer(state, match.group(1), body)
        except TritonError as exc:
            self._error(exc)

    def _infer(self, state: Server, name: str, body: bytes) -> None:
        header_len = self.headers.get("Inference-Header-Content-Length")
        split = int(header_len) if header_len is not None else len(body)
        try:
            doc = json.loads(body[:split] or b"{}")
        except ValueError:
            raise TritonError("failed to parse the request JSON buffer") from None
        inputs = _decode_http_inputs(doc, body[split:])
        results = state.infer(name, inputs)
        wanted = {o.get("name"): o for o in doc.get("outputs") or []}
        if wanted:
            results = [r for r in results if r[0] in wanted]
        binary_default = bool((doc.get("parameters") or {}).get("binary_data_output", False))
        outputs: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for out_name, datatype, shape, data in results:
            params = (wanted.get(out_name) or {}).get("parameters") or {}
            entry: dict[str, Any] = {"name": out_name, "datatype": datatype, "shape": shape}
            if params.get("binary_data", binary_default) and datatype in _STRUCT:
                blob = struct.pack(f"<{len(data)}{_STRUCT[datatype]}", *data)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = data
            outputs.append(entry)
        response: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": outputs}
        if doc.get("id"):
            response["id"] = doc["id"]
        head = json.dumps(response).encode()
        if blobs:
            self._send(200, head + b"".join(blobs), "application/octet-stream",
                       {"Inference-Header-Content-Length": str(len(head))})
        else:
            self._json(200, response)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: Server) -> None:
        super().__init__(address, _Http)
        self.state = state


class _MetricsHandler(_Http):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._error(TritonError("Not Found", 404))
            return
        self._send(200, self.server.state.metrics_text().encode(), "text/plain; charset=utf-8; version=0.0.4")


# --- gRPC ---------------------------------------------------------------------------------------

def grpc_handler(state: Server) -> Any:
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    status_for = {"INVALID_ARG": grpc.StatusCode.INVALID_ARGUMENT, "NOT_FOUND": grpc.StatusCode.NOT_FOUND}

    def guard(func: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return func(request)
            except TritonError as exc:
                context.abort(status_for.get(exc.code, grpc.StatusCode.INTERNAL), str(exc))
                raise AssertionError("unreachable") from None
        return call

    def infer(request: Any) -> Any:
        inputs: dict[str, tuple[str, list[int], list[Any]]] = {}
        for i, tensor in enumerate(request.inputs):
            if request.raw_input_contents:
                fmt = _STRUCT.get(tensor.datatype)
                if fmt is None:
                    raise TritonError(f"raw data for input '{tensor.name}' of type {tensor.datatype} is not supported")
                raw = request.raw_input_contents[i]
                data = list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))
            else:
                data = list(getattr(tensor.contents, _GRPC_CONTENTS.get(tensor.datatype, "fp32_contents")))
            inputs[tensor.name] = (tensor.datatype, list(tensor.shape), data)
        results = state.infer(request.model_name, inputs)
        wanted = {o.name for o in request.outputs}
        reply = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for out_name, datatype, shape, data in results:
            if wanted and out_name not in wanted:
                continue
            reply.outputs.add(name=out_name, datatype=datatype, shape=shape)
            reply.raw_output_contents.append(struct.pack(f"<{len(data)}{_STRUCT[datatype]}", *data))
        return reply

    def metadata(request: Any) -> Any:
        doc = state.metadata(request.name)
        reply = pb.ModelMetadataResponse(name=doc["name"], versions=doc["versions"], platform=doc["platform"])
        for t in doc["inputs"]:
            reply.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for t in doc["outputs"]:
            reply.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return reply

    def load(request: Any) -> Any:
        state.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    def unload(request: Any) -> Any:
        state.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def ready(request: Any) -> Any:
        with state.lock:
            return pb.ModelReadyResponse(ready=request.name in state.models)

    methods: dict[str, tuple[Any, Callable[[Any], Any]]] = {
        "ServerLive": (pb.ServerLiveRequest, lambda r: pb.ServerLiveResponse(live=True)),
        "ServerReady": (pb.ServerReadyRequest, lambda r: pb.ServerReadyResponse(ready=state.ready())),
        "ServerMetadata": (pb.ServerMetadataRequest,
                           lambda r: pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION)),
        "ModelReady": (pb.ModelReadyRequest, ready),
        "ModelMetadata": (pb.ModelMetadataRequest, metadata),
        "ModelConfig": (pb.ModelConfigRequest, lambda r: pb.ModelConfigResponse(config=state.model(r.name).config)),
        "ModelInfer": (pb.ModelInferRequest, infer),
        "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, load),
        "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, unload),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(guard(func), request_deserializer=cls.FromString,
                                                  response_serializer=lambda m: m.SerializeToString())
        for name, (cls, func) in methods.items()
    }
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point; readiness is `/v2/health/ready` on the HTTP port."""
    import grpc

    from harness.heap import freeze_startup_heap
    from harness.lifeline import die_with_parent

    # The sim that started this stand-in may be SIGKILLed (no handler runs there): go with it.
    die_with_parent()

    parser = argparse.ArgumentParser(prog="python -m harness.sim.triton")
    parser.add_argument("--model-repository", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--gpu-state", default=None, help="file the simulated NVML reads this process's GPU use from")
    args = parser.parse_args(argv)
    state = Server(Path(args.model_repository), visible_gpus(dict(os.environ)),
                   Path(args.gpu_state) if args.gpu_state else None)
    state._write_gpu_state()
    # SIGTERM (the pod going away) unwinds through `finally`, which removes the GPU state file.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    grpc_server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="triton-grpc"))
    grpc_server.add_generic_rpc_handlers((grpc_handler(state),))
    if grpc_server.add_insecure_port(f"{HOST}:{args.grpc_port}") == 0:
        sys.stderr.write(f"failed to bind gRPC port {args.grpc_port}: address already in use\n")
        return 1
    try:
        http_server = _HttpServer((HOST, args.http_port), state)
        metrics_server = _HttpServer((HOST, args.metrics_port), state)
    except OSError as exc:
        sys.stderr.write(f"failed to bind HTTP port: address already in use ({exc})\n")
        return 1
    metrics_server.RequestHandlerClass = _MetricsHandler
    grpc_server.start()
    freeze_startup_heap()
    threading.Thread(target=metrics_server.serve_forever, name="triton-metrics", daemon=True).start()
    sys.stderr.write(f"{SERVER_NAME} {SERVER_VERSION}: GPUs {state.gpus or 'none'}; HTTP {args.http_port}, "
                     f"gRPC {args.grpc_port}, metrics {args.metrics_port}\n")
    sys.stderr.flush()
    try:
        http_server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        grpc_server.stop(grace=None)
        metrics_server.shutdown()
        if state.gpu_state is not None:
            with contextlib.suppress(OSError):
                state.gpu_state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
