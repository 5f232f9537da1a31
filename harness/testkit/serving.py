"""What the suites ask of a served model, the way a real cluster allows it (I/O at the edge).

- `infer_tritonclient`: one inference with tritonclient's own HTTP or gRPC client through the Seldon
  mesh (`Seldon-Model` header on HTTP, lowercase `seldon-model` metadata on gRPC).
- `triton_config_via_pod`: Triton's model config through the API server's pod proxy to the Triton
  container (port 9000), under the name Seldon's agent loaded it as (`served_name`, from Triton's
  metrics labels). Not through the mesh: Seldon 2.10.2's agent reverse proxy answers 400 to every
  path without `/infer` (SeldonIO/seldon-core v2.10.2 scheduler/pkg/agent/rproxy.go).
  (`triton_config` is the mesh request, kept for showing that refusal.)
- `triton_metrics`: Triton's Prometheus metrics through the API server's pod proxy (port 8002).
- `attribute`: which Server, pod, node and GPU UUIDs serve a model, from the Model's status, the
  Server's pods and Triton's metrics labels; never from anything only the simulated cluster has.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from harness.config import Model, Profile
from harness.gpu.triton import gpu_sample
from harness.k8s.seldon_api import SELDON_API, server_pod_selector

# Triton's metrics port in Seldon 2.10.2's `triton` ServerConfig (container port `server-metrics`).
TRITON_METRICS_PORT = 8002
# The server's HTTP port in Seldon 2.10.2's ServerConfigs (container port `server-http`).
SERVER_HTTP_PORT = 9000

_NUMPY_TYPES = {"FP32": "float32", "FP64": "float64", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
                "INT8": "int8", "INT16": "int16", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
                "UINT64": "uint64"}


class ServingError(Exception):
    """A request to a served model failed; the message names the model, protocol and cause."""


def _host_port(endpoint: str) -> str:
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    return f"{parts.hostname}:{parts.port or 80}"


def infer_tritonclient(endpoint: str, model: Model, protocol: str, *, binary: bool,
                       timeout: float) -> dict[str, Any]:
    """One inference of `model.request_inputs` with tritonclient; returns `model_name` and `outputs`
    ({name: {"datatype", "shape", "data"}}). `binary`: Triton's binary tensors on HTTP (tritonclient's
    default; MLServer answers 422 to them, so pass False for MLServer)."""
    import numpy as np

    tensors = model.request_inputs
    if not tensors:
        raise ServingError(f"model {model.name} has no input in the profile (models[].input or inputs)")
    target = _host_port(endpoint)
    try:
        if protocol == "http":
            import tritonclient.http as client_http

            http_client = client_http.InferenceServerClient(url=target, network_timeout=timeout,
                                                            connection_timeout=timeout)
            try:
                inputs = []
                for t in tensors:
                    item = client_http.InferInput(t.name, list(t.shape), t.datatype)
                    item.set_data_from_numpy(np.array(t.data, dtype=_NUMPY_TYPES[t.datatype]).reshape(t.shape),
                                             binary_data=binary)
                    inputs.append(item)
                outputs = [client_http.InferRequestedOutput(o.name, binary_data=binary) for o in model.expected]
                http_result = http_client.infer(model.name, inputs, outputs=outputs or None,
                                                headers={"Seldon-Model": model.name}, timeout=int(timeout * 1e6))
            finally:
                http_client.close()
            response = http_result.get_response()
            names = [o["name"] for o in response.get("outputs") or []]
            arrays = {n: http_result.as_numpy(n) for n in names}
        else:
            import tritonclient.grpc as client_grpc

            grpc_client = client_grpc.InferenceServerClient(url=target)
            try:
                inputs_g = []
                for t in tensors:
                    item_g = client_grpc.InferInput(t.name, list(t.shape), t.datatype)
                    item_g.set_data_from_numpy(np.array(t.data, dtype=_NUMPY_TYPES[t.datatype]).reshape(t.shape))
                    inputs_g.append(item_g)
                outputs_g = [client_grpc.InferRequestedOutput(o.name) for o in model.expected]
                grpc_result = grpc_client.infer(model.name, inputs_g, outputs=outputs_g or None,
                                                headers={"seldon-model": model.name}, client_timeout=timeout)
            finally:
                grpc_client.close()
            response_pb = grpc_result.get_response()
            response = {"model_name": response_pb.model_name}
            names = [o.name for o in response_pb.outputs]
            arrays = {n: grpc_result.as_numpy(n) for n in names}
    except ServingError:
        raise
    except Exception as exc:  # tritonclient raises its own exception types for every failure
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ServingError(f"model {model.name} over {protocol} (tritonclient): {first}") from None
    out = {n: {"shape": list(a.shape) if a is not None else None,
               "data": a.reshape(-1).tolist() if a is not None else None} for n, a in arrays.items()}
    return {"model_name": str(response.get("model_name") or ""), "outputs": out}


def compare_outputs(model: Model, response: dict[str, Any]) -> list[str]:
    """Differences between the response and `model.expected` (empty when it answers correctly)."""
    problems = []
    outputs = response.get("outputs") or {}
    for want in model.expected:
        got = outputs.get(want.name)
        if got is None:
            problems.append(f"no output named {want.name!r} (got {sorted(outputs)})")
            continue
        if list(got.get("data") or []) != list(want.data):
            problems.append(f"{want.name}: expected {list(want.data)}, got {got.get('data')}")
        elif got.get("shape") is not None and list(got["shape"]) != list(want.shape):
            problems.append(f"{want.name}: expected shape {list(want.shape)}, got {got['shape']}")
    return problems


def triton_config(endpoint: str, model: str, timeout: float) -> dict[str, Any]:
    """GET /v2/models/<model>/config through the mesh; raises ServingError with the answer. A real Seldon
    2.10.2 mesh answers 400 (the agent forwards only inference): read it with `triton_config_via_pod`."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", f"/v2/models/{model}/config", headers={"Seldon-Model": model})
        answer = conn.getresponse()
        body = answer.read()
    except OSError as exc:
        raise ServingError(f"model {model}: config request failed: {exc}") from None
    finally:
        conn.close()
    if answer.status != 200:
        raise ServingError(f"model {model}: config: HTTP {answer.status} {body[:200].decode(errors='replace')}")
    try:
        doc: dict[str, Any] = json.loads(body)
    except ValueError:
        raise ServingError(f"model {model}: config is not JSON") from None
    return doc


def served_name(metrics_text: str, model: str) -> str | None:
    """The name Triton serves `model` under (Seldon's agent loads `<model>_<version>`), from the model
    labels of Triton's per-model metrics; the highest version when several are loaded."""
    from harness.gpu.triton import parse_metrics

    names = {labels.get("model", "") for name, labels, _ in parse_metrics(metrics_text)
             if name.startswith("nv_inference_")}
    prefix = f"{model}_"
    versions = sorted((int(n[len(prefix):]), n) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())
    if versions:
        return versions[-1][1]
    return model if model in names else None


def triton_config_via_pod(kube: Any, namespace: str, pod: str, name: str) -> dict[str, Any]:
    """GET /v2/models/<name>/config on the Triton container through the API server's pod proxy."""
    try:
        text: str = kube.pod_proxy_get(namespace, pod, SERVER_HTTP_PORT, f"v2/models/{name}/config")
    except Exception as exc:  # KubeApiError and connection failures alike: the caller records the reason
        raise ServingError(f"pod {namespace}/{pod}: model {name} config on port {SERVER_HTTP_PORT}: "
                           f"{(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ServingError(f"pod {namespace}/{pod}: model {name} config is not JSON") from None
    if not isinstance(doc, dict):
        raise ServingError(f"pod {namespace}/{pod}: model {name} config is not a JSON object")
    return doc


def triton_metrics(kube: Any, namespace: str, pod: str) -> str:
    """Triton's metrics text through the API server's pod proxy (needs `get` on `pods/proxy`)."""
    try:
        text: str = kube.pod_proxy_get(namespace, pod, TRITON_METRICS_PORT, "metrics")
    except Exception as exc:  # KubeApiError and connection failures alike: the caller records the reason
        raise ServingError(f"pod {namespace}/{pod}: metrics on port {TRITON_METRICS_PORT}: "
                           f"{(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    return text


@dataclass
class Attribution:
    """Who served a model: found through the API and the server's own endpoints."""

    server: str | None = None
    pods: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    gpu_uuids: list[str] = field(default_factory=list)
    gpu_source: str = "none"  # "triton-metrics", or why no GPU could be named
    server_config: str | None = None


def attribute(kube: Any, profile: Profile, model: Model) -> Attribution:
    """Server from the Model's `status.selector`, its pods and nodes from the API, GPU UUIDs from
    Triton's metrics labels (the GPUs Triton sees are the ones allocated to its container).
    MLServer has no GPU endpoint; its GPUs are left unnamed with the reason."""
    namespace = profile.seldon.namespace
    live = kube.get(SELDON_API, "Model", model.name, namespace) or {}
    selector = str((live.get("status") or {}).get("selector") or "")
    if not selector.startswith("server="):
        return Attribution(gpu_source="the Model names no server (status.selector unset)")
    server = selector.split("=", 1)[1]
    found = Attribution(server=server)
    live_server = kube.get(SELDON_API, "Server", server, namespace) or {}
    found.server_config = (live_server.get("spec") or {}).get("serverConfig")
    # A pod being deleted (an old replica after a rollout) serves nothing: leave it out.
    pods = [p for p in kube.list("v1", "Pod", namespace, label_selector=server_pod_selector(server))
            if not (p.get("metadata") or {}).get("deletionTimestamp")]
    found.pods = sorted(p["metadata"]["name"] for p in pods)
    found.nodes = sorted({str((p.get("spec") or {}).get("nodeName")) for p in pods
                          if (p.get("spec") or {}).get("nodeName")})
    triton = [p for p in pods if any(c.get("name") == "triton" for c in (p.get("spec") or {}).get("containers") or [])]
    if not triton:
        found.gpu_source = "not observable: only Triton servers report their GPUs (metrics gpu_uuid labels)"
        return found
    uuids: set[str] = set()
    problems = []
    for pod in triton:
        try:
            uuids |= set(gpu_sample(triton_metrics(kube, namespace, pod["metadata"]["name"])).uuids)
        except ServingError as exc:
            problems.append(str(exc))
    found.gpu_uuids = sorted(uuids)
    found.gpu_source = "triton-metrics" if uuids else ("; ".join(problems) or "Triton reports no GPU")
    return found
