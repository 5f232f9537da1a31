"""The real-Triton launcher (harness/localserver/tritonserver.py) against nvidia-pytriton's tritonserver."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest

from harness.localserver.process import group_members
from harness.localserver.triton_models import ADD_SUB_CONFIG, write_add_sub_model
from harness.localserver.tritonserver import (
    TRITON_VERSION,
    TritonServerError,
    TritonServerProcess,
    find_tritonserver,
    rewrite_model_name,
)

pytestmark = pytest.mark.slow


def _call(server: TritonServerProcess, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_runs_the_wheels_binary_with_a_private_backend_dir(real_triton: TritonServerProcess) -> None:
    install = find_tritonserver()
    pid = real_triton.server_pid()
    assert pid is not None
    assert Path(os.readlink(f"/proc/{pid}/exe")) == install.binary.resolve()
    status, meta = _call(real_triton, "GET", "/v2")
    assert status == 200 and isinstance(meta, dict)
    assert (meta["name"], meta["version"]) == ("triton", TRITON_VERSION)
    # The python backend runs from the run's own folder; site-packages stays as installed.
    stub = real_triton.backend_dir / "python" / "triton_python_backend_stub"
    assert stub.is_file() and stub.read_bytes() == install.stub.read_bytes()
    assert not (install.python_backend_dir / "triton_python_backend_stub").exists()


def test_serves_the_add_sub_model_on_loopback(real_triton: TritonServerProcess) -> None:
    a, b = list(range(16)), [1] * 16
    status, body = _call(real_triton, "POST", "/v2/models/simple/infer", {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": a},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": b}]})
    assert status == 200 and isinstance(body, dict)
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert outputs == {"OUTPUT0": [x + 1 for x in a], "OUTPUT1": [x - 1 for x in a]}
    assert real_triton.metrics_url.startswith("http://127.0.0.1:")


def test_refuses_a_gpu_instance_without_a_gpu_with_tritons_words(real_triton: TritonServerProcess,
                                                                  tmp_path: Path) -> None:
    folder = write_add_sub_model(tmp_path / "gpu", ADD_SUB_CONFIG + 'instance_group [ { kind: KIND_GPU } ]\n')
    with pytest.raises(TritonServerError, match="has kind KIND_GPU but no GPUs are available"):
        real_triton.load_model("on-gpu", folder, timeout=60)
    assert not real_triton.model_ready("on-gpu")


def test_stop_leaves_no_process_and_a_taken_port_reports_the_log(tmp_path: Path) -> None:
    server = TritonServerProcess(tmp_path / "a")
    server.start(timeout=90)
    pgid = server.pid
    assert pgid is not None and server.server_pid() in group_members(pgid)
    # A second server on the first one's fixed HTTP port cannot bind: it exits, and start says why.
    second = TritonServerProcess(tmp_path / "b", http_port=server.http_port)
    with pytest.raises(TritonServerError, match=r"exited with code|not ready"):
        second.start(timeout=60)
    assert second.pid is None
    server.stop(timeout=10)
    assert group_members(pgid) == []
    assert not server.is_alive()


def test_rewrite_model_name_as_seldons_agent_does() -> None:
    assert rewrite_model_name('name: "simple"\nbackend: "python"\n', "tfs").startswith('name: "tfs"\n')
    assert rewrite_model_name('backend: "python"\n', "tfs") == 'name: "tfs"\nbackend: "python"\n'


def test_the_default_profile_puts_a_model_on_a_gpu_less_triton_server() -> None:
    """`make e2e` exercises the real tritonserver: the sim backs a Triton Server without GPUs with it
    (tests/sim/seldon/test_sim_dataplane.py asserts the process), and the default profile has such a Server
    with a model that only it can take."""
    from harness.config import load_profile

    profile = load_profile(Path(__file__).parents[2] / "profiles" / "sim.yaml")
    cpu_tritons = [s for s in profile.servers if s.server_config == "triton" and not s.gpus]
    assert cpu_tritons
    offered = {s.name: set(s.extra_capabilities) | {"triton", "tensorflow", "onnx", "python"} for s in cpu_tritons}
    assert any(m.server in offered or any(set(m.requirements) <= caps for caps in offered.values())
               for m in profile.models)


def test_the_harness_reads_the_real_servers_answers(real_triton: TritonServerProcess) -> None:
    """Contract: the harness's Triton-facing parsers on the real server's own output (the load engine's
    answer checks over HTTP and gRPC, the config's instance groups, the metrics and the served name)."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    from harness.gpu.gpu_use import timed_scrape
    from harness.gpu.triton import gpu_instance_groups, parse_metrics
    from harness.load.answers import WRONG_ANSWER, Expected, check_grpc_answer, check_json_answer
    from harness.testkit.serving import served_name

    a = list(range(16))
    good = (Expected("OUTPUT0", tuple(x + 1 for x in a)), Expected("OUTPUT1", tuple(x - 1 for x in a)))
    conn = http.client.HTTPConnection("127.0.0.1", real_triton.http_port, timeout=30)
    try:
        conn.request("POST", "/v2/models/simple/infer", body=json.dumps({"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": a},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}),
            headers={"Content-Type": "application/json"})
        body = conn.getresponse().read()
    finally:
        conn.close()
    assert check_json_answer(body, "simple", good, compare=True) is None
    wrong = (good[0], Expected("OUTPUT1", (0,) * 16))
    assert check_json_answer(body, "simple", wrong, compare=True) == WRONG_ANSWER
    request = pb.ModelInferRequest(model_name="simple")
    for name, values in (("INPUT0", a), ("INPUT1", [1] * 16)):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents.extend(values)
    with grpc.insecure_channel(f"127.0.0.1:{real_triton.grpc_port}") as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(request.SerializeToString(),
                                                                              timeout=30)
    assert check_grpc_answer(raw, "simple", good, compare=True) is None
    status, config = _call(real_triton, "GET", "/v2/models/simple/config")
    assert status == 200 and isinstance(config, dict)
    assert gpu_instance_groups(config) == [("KIND_CPU", [])]
    conn = http.client.HTTPConnection("127.0.0.1", real_triton.metrics_port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    counts = [labels for name, labels, _ in parse_metrics(text) if name == "nv_inference_count"]
    assert {"model": "simple", "version": "1"} in counts
    assert served_name(text, "simple") == "simple"
    assert timed_scrape(text, 0.0).utilization == {}  # no GPU here: no GPU series, nothing to credit
