"""The Triton stand-in (harness/sim/triton.py) against the real tritonserver, request by request.

The sim serves Triton Servers on simulated GPUs with the stand-in, because a real Triton cannot start a
KIND_GPU instance here. This test sends the same requests to both (one CPU model, the add/sub model
that both load from one folder) and fails on any difference in the answers' shape: HTTP and gRPC
inference, model metadata and config, metrics families and labels, repository load/unload, and the
error codes and bodies.

One known version difference is mapped, not ignored: the stand-in answers as Triton 2.32.0 (the
23.03 image of Seldon 2.10.2's ServerConfig), which sent HTTP 400 for every error; the real server is
2.51.0, which maps Triton's error codes to 404/500/503/501 since triton-inference-server/server
commit 7b7ef51ce (PR #6713, first released in v2.42.0; `HttpCodeFromError` in src/http_server.cc,
absent at tag v2.32.0).
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from harness.gpu.triton import parse_metrics
from harness.localserver.triton_models import ADD_SUB_CONFIG, write_add_sub_model
from harness.localserver.tritonserver import TritonServerProcess
from harness.sim.triton_process import TritonStandInProcess

pytestmark = pytest.mark.slow

A = list(range(16))
B = [1] * 16
# Families the harness reads (the GPU proof's metrics view and its criterion): each must exist in both
# with the same label names. Host families (nv_cpu_*, nv_pinned_memory_*) are outside the stand-in.
READ_FAMILIES = ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                 "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_gpu_utilization", "nv_gpu_memory_used_bytes")


def as_in_2_32(status: int) -> int:
    """An HTTP status as Triton 2.32 would send it: every error was 400 before `HttpCodeFromError`."""
    return 400 if status >= 400 else status


def shape_of(value: Any) -> Any:
    """The structure of a JSON document: keys and value types, list items' shapes as a set."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return ["list", sorted({json.dumps(shape_of(v), sort_keys=True) for v in value})]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory, add_sub_dir: Path) -> Iterator[TritonStandInProcess]:
    server = TritonStandInProcess(tmp_path_factory.mktemp("stand-in"))
    server.start(timeout=60)
    try:
        server.load_model("simple", add_sub_dir, timeout=60)
        yield server
    finally:
        server.stop()


def _call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else None


def _both(real: TritonServerProcess, stand: TritonStandInProcess, method: str, path: str,
          body: Any = None) -> tuple[tuple[int, Any], tuple[int, Any]]:
    return _call(real.http_port, method, path, body), _call(stand.http_port, method, path, body)


def _tensor(name: str, data: list[Any], datatype: str = "INT32", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [1, len(data)], "data": data}


def assert_same_answer(real: tuple[int, Any], stand: tuple[int, Any], *, exact: bool = False) -> None:
    assert as_in_2_32(real[0]) == stand[0], (real, stand)
    if real[0] >= 400:
        assert shape_of(real[1]) == shape_of(stand[1]) == {"error": "str"}, (real, stand)
    elif exact:
        assert real[1] == stand[1]
    else:
        assert shape_of(real[1]) == shape_of(stand[1]), (real, stand)


def test_server_metadata_has_the_real_shape(real_triton: TritonServerProcess, stand_in: TritonStandInProcess) -> None:
    real, stand = _both(real_triton, stand_in, "GET", "/v2")
    assert_same_answer(real, stand)
    assert "simulated" in stand[1]["name"]  # the stand-in says what it is


@pytest.mark.parametrize("path", ["/v2/models/simple", "/v2/models/simple/ready",
                                  "/v2/models/nope", "/v2/models/nope/ready"])
def test_metadata_and_readiness_answer_alike(real_triton: TritonServerProcess, stand_in: TritonStandInProcess,
                                             path: str) -> None:
    real, stand = _both(real_triton, stand_in, "GET", path)
    assert_same_answer(real, stand, exact=real[0] == 200)


def test_model_config_has_the_real_shape_and_values(real_triton: TritonServerProcess,
                                                    stand_in: TritonStandInProcess) -> None:
    real, stand = _both(real_triton, stand_in, "GET", "/v2/models/simple/config")
    assert_same_answer(real, stand)
    for key in ("name", "backend", "max_batch_size", "input", "output", "version_policy", "default_model_filename"):
        assert real[1][key] == stand[1][key], key
    assert [(g["kind"], g["count"], g["gpus"]) for g in real[1]["instance_group"]] == \
        [(g["kind"], g["count"], g["gpus"]) for g in stand[1]["instance_group"]]


@pytest.mark.parametrize("inputs", [
    [_tensor("INPUT0", A), _tensor("INPUT1", B)],  # good
    [_tensor("INPUT0", A)],  # one input missing
    [_tensor("INPUT0", [float(x) for x in A], "FP32"), _tensor("INPUT1", B)],  # wrong datatype
    [_tensor("INPUT0", A[:8]), _tensor("INPUT1", B[:8])],  # wrong shape
    [_tensor("INPUT0", A), _tensor("INPUT1", B), _tensor("INPUT2", B)],  # an input the model lacks
], ids=["good", "missing", "datatype", "shape", "extra"])
def test_http_json_inference_answers_alike(real_triton: TritonServerProcess, stand_in: TritonStandInProcess,
                                           inputs: list[dict[str, Any]]) -> None:
    real, stand = _both(real_triton, stand_in, "POST", "/v2/models/simple/infer", {"inputs": inputs})
    assert_same_answer(real, stand, exact=real[0] == 200)


def test_unknown_model_infer_and_config_answer_alike(real_triton: TritonServerProcess,
                                                     stand_in: TritonStandInProcess) -> None:
    for method, path, body in (("POST", "/v2/models/nope/infer", {"inputs": []}),
                               ("GET", "/v2/models/nope/config", None)):
        real, stand = _both(real_triton, stand_in, method, path, body)
        assert real[0] == 404  # 2.51 maps NOT_FOUND; 2.32 sent 400
        assert_same_answer(real, stand)
        assert real[1] == stand[1]  # Triton's own words


def test_binary_http_and_grpc_inference_give_the_same_tensors(real_triton: TritonServerProcess,
                                                              stand_in: TritonStandInProcess) -> None:
    a = np.array([A], dtype=np.int32)
    b = np.array([B], dtype=np.int32)
    results = []
    for server in (real_triton, stand_in):
        client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            inputs = [triton_http.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            inputs[0].set_data_from_numpy(a)  # binary tensors, tritonclient's default
            inputs[1].set_data_from_numpy(b)
            http_result = client.infer("simple", inputs)
        finally:
            client.close()
        gclient = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            ginputs = [triton_grpc.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            ginputs[0].set_data_from_numpy(a)
            ginputs[1].set_data_from_numpy(b)
            grpc_result = gclient.infer("simple", ginputs)
            with pytest.raises(InferenceServerException) as missing:
                gclient.infer("nope", ginputs)
            meta = gclient.get_model_metadata("simple", as_json=True)
            ready = gclient.is_model_ready("simple")
        finally:
            gclient.close()
        results.append((
            {n: (http_result.as_numpy(n).dtype.str, http_result.as_numpy(n).tolist()) for n in ("OUTPUT0", "OUTPUT1")},
            {n: (grpc_result.as_numpy(n).dtype.str, grpc_result.as_numpy(n).tolist()) for n in ("OUTPUT0", "OUTPUT1")},
            grpc_result.get_response(as_json=True)["model_name"],
            missing.value.status(), meta["inputs"], meta["outputs"], ready,
        ))
    assert results[0] == results[1]
    assert results[0][0]["OUTPUT0"][1] == [[x + 1 for x in A]]


def test_repository_load_and_unload_answer_alike(real_triton: TritonServerProcess, stand_in: TritonStandInProcess,
                                                 tmp_path: Path) -> None:
    gpu_only = write_add_sub_model(tmp_path / "gpu", ADD_SUB_CONFIG + "instance_group [ { kind: KIND_GPU } ]\n")
    for server in (real_triton, stand_in):
        for name, source in (("extra", tmp_path / "extra"), ("gpu-only", gpu_only)):
            if not source.exists():
                write_add_sub_model(source)
            target = server.repository_dir / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
            (target / "config.pbtxt").write_text(
                (target / "config.pbtxt").read_text().replace('name: "simple"', f'name: "{name}"'))
    steps = [("POST", "/v2/repository/models/extra/load"), ("GET", "/v2/models/extra/ready"),
             ("POST", "/v2/repository/models/extra/unload"), ("POST", "/v2/repository/models/extra/unload"),
             ("POST", "/v2/repository/models/missing/load"), ("POST", "/v2/repository/models/gpu-only/load")]
    try:
        for method, path in steps:
            real, stand = _both(real_triton, stand_in, method, path, {})
            assert_same_answer(real, stand, exact=real[0] == 200)
        # Triton's refusal of a GPU instance without a GPU, word for word.
        assert real[1] == stand[1]
        assert "has kind KIND_GPU but no GPUs are available" in real[1]["error"]
        # The failed model stays UNAVAILABLE, and with strict readiness the server is not ready (both).
        real, stand = _both(real_triton, stand_in, "GET", "/v2/health/ready")
        assert real[0] == stand[0] == 400, (real, stand)
    finally:
        for server in (real_triton, stand_in):
            for name in ("extra", "gpu-only"):
                shutil.rmtree(server.repository_dir / name, ignore_errors=True)


def _families(text: str) -> dict[str, set[tuple[str, ...]]]:
    out: dict[str, set[tuple[str, ...]]] = {}
    for name, labels, _ in parse_metrics(text):
        out.setdefault(name, set()).add(tuple(sorted(labels)))
    return out


def test_metrics_families_and_labels_match(real_triton: TritonServerProcess, stand_in: TritonStandInProcess) -> None:
    for server in (real_triton, stand_in):  # at least one execution counted on each
        body = {"inputs": [_tensor("INPUT0", A), _tensor("INPUT1", B)]}
        status, answer = _call(server.http_port, "POST", "/v2/models/simple/infer", body)
        assert status == 200, answer  # a failed call is never what the scrape below waits for
    # Real Triton's counter can move after its answer went out: a scrape right after the answer read
    # nv_inference_exec_count 0 once on a busy machine (the xdist phase). So each server is scraped
    # until it has counted the execution, within a deadline.
    texts = [_scrape_until_counted(server.metrics_port, "simple") for server in (real_triton, stand_in)]
    real, stand = (_families(t) for t in texts)
    assert {f: real.get(f) for f in READ_FAMILIES} == {f: stand.get(f) for f in READ_FAMILIES}
    assert real["nv_inference_count"] == {("model", "version")}


def _scrape_until_counted(port: int, model: str, timeout_s: float = 30.0) -> str:
    """/metrics once `nv_inference_exec_count` counts an execution of `model`; fails at the deadline
    with the last count seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        counts = {labels.get("model"): value for name, labels, value in parse_metrics(text)
                  if name == "nv_inference_exec_count"}
        if counts.get(model, 0) >= 1:
            return text
        assert time.monotonic() < deadline, f"port {port}: {model} not counted after {timeout_s:g} s: {counts}"
        time.sleep(0.1)


def test_the_repository_index_is_refused_by_name_not_answered_with_a_404(real_triton: TritonServerProcess,
                                                                           stand_in: TritonStandInProcess) -> None:
    """Real Triton lists its repository (POST /v2/repository/index, the model repository extension); the
    stand-in does not model the listing and says so, with 501, instead of a 404 that reads as no such API."""
    (real_status, real_body), (stand_status, stand_body) = _both(real_triton, stand_in, "POST",
                                                                 "/v2/repository/index", {})
    assert real_status == 200 and any(entry.get("name") == "simple" for entry in real_body), real_body
    assert stand_status == 501 and "does not model the repository index" in stand_body["error"], stand_body
