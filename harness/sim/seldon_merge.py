"""Pure rules of the simulated Seldon operator: default ServerConfigs, the Server pod-spec merge and
the StatefulSet a Server becomes.

Behaviour reimplemented from Seldon Core 2's documented rules (design B1), not from its code:
a ServerConfig is a whole pod template; a Server's `spec.podSpec` is merged over it with
tolerations and volumes appended, nodeSelector merged key by key, affinity replaced, containers
merged by name (resource maps key by key) and every other field overridden when the Server sets it.
"""

from __future__ import annotations

import copy
from typing import Any

from harness.config import DEFAULT_CAPABILITIES
from harness.k8s.quantity import quantity_or_zero
from harness.k8s.seldon import (
    CAPABILITIES_ENV,
    EXTRA_CAPABILITIES_ENV,
    config_capabilities,
    merge_pod_spec,
    server_capabilities,
)
from harness.k8s.seldon_api import SELDON_API, SERVER_NAME_LABEL, server_pod_selector

Obj = dict[str, Any]

SERVER_HTTP_PORT = 9000
SERVER_GRPC_PORT = 9500
SERVER_TYPES = ("mlserver", "triton")
# The agent learns its capabilities from these variables (the ServerConfig ships the defaults; the
# operator writes the Server's overrides into the agent container).

_SERVER_IMAGES = {
    "mlserver": "seldonio/mlserver:1.7.1",
    "triton": "nvcr.io/nvidia/tritonserver:23.03-py3",
}


def _server_container(kind: str) -> Obj:
    if kind == "mlserver":
        start: Obj = {
            "env": [
                {"name": "MLSERVER_HTTP_PORT", "value": str(SERVER_HTTP_PORT)},
                {"name": "MLSERVER_GRPC_PORT", "value": str(SERVER_GRPC_PORT)},
                {"name": "MLSERVER_MODELS_DIR", "value": "/mnt/agent/models"},
                {"name": "MLSERVER_MODEL_PARALLEL_WORKERS", "value": "1"},
                {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"},
            ],
        }
    else:
        # Triton's image needs a shell start (Seldon issue 5029).
        start = {
            "command": ["/bin/bash", "-c"],
            "args": [
                "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 /opt/tritonserver/bin/tritonserver "
                f"--model-repository=/mnt/agent/models --http-port={SERVER_HTTP_PORT} "
                f"--grpc-port={SERVER_GRPC_PORT} --model-control-mode=explicit --log-verbose=1"
            ],
        }
    return {
        "name": kind,
        "image": _SERVER_IMAGES[kind],
        "imagePullPolicy": "IfNotPresent",
        **start,
        "ports": [
            {"name": "server-http", "containerPort": SERVER_HTTP_PORT, "protocol": "TCP"},
            {"name": "server-grpc", "containerPort": SERVER_GRPC_PORT, "protocol": "TCP"},
        ],
        # The chart sets a memory limit equal to the request: a Server asking for more memory must raise both.
        "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"runAsUser": 1000},
        "readinessProbe": {"httpGet": {"path": "/v2/health/live", "port": "server-http"}},
        "volumeMounts": [{"name": f"{kind}-models", "mountPath": "/mnt/agent", "readOnly": False}],
    }


def default_server_config(kind: str, namespace: str, version: str) -> Obj:
    """One of the two ServerConfigs Seldon installs (`mlserver`, `triton`), complete as shipped."""
    if kind not in SERVER_TYPES:
        raise ValueError(f"unknown server type {kind!r}")
    tag = version
    capabilities = ",".join(DEFAULT_CAPABILITIES[kind])
    rclone = {
        "name": "rclone",
        "image": f"seldonio/seldon-rclone:{tag}",
        "imagePullPolicy": "IfNotPresent",
        "args": ["rcd", "--rc-no-auth", "--config=/rclone/rclone.conf", "--rc-addr=0.0.0.0:5572"],
        "ports": [{"name": "rclone", "containerPort": 5572, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "100M"}},
        "securityContext": {"runAsUser": 1000},
        "volumeMounts": [{"name": f"{kind}-models", "mountPath": "/mnt/agent"}],
    }
    agent = {
        "name": "agent",
        "image": f"seldonio/seldon-agent:{tag}",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--tracing-config-path=/mnt/tracing/tracing.json"],
        "command": ["/bin/agent"],
        "env": [
            {"name": "SELDON_SERVER_HTTP_PORT", "value": str(SERVER_HTTP_PORT)},
            {"name": "SELDON_SERVER_GRPC_PORT", "value": str(SERVER_GRPC_PORT)},
            {"name": "SELDON_SERVER_TYPE", "value": kind},
            {"name": CAPABILITIES_ENV, "value": capabilities},
            {"name": "SELDON_SCHEDULER_HOST", "value": "seldon-scheduler"},
            {"name": "SELDON_SCHEDULER_PORT", "value": "9005"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "ports": [
            {"name": "metrics", "containerPort": 9006, "protocol": "TCP"},
            {"name": "drainer", "containerPort": 9007, "protocol": "TCP"},
            {"name": "agent-http", "containerPort": 9001, "protocol": "TCP"},
            {"name": "agent-grpc", "containerPort": 9501, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}},
        "securityContext": {"runAsUser": 1000},
        "volumeMounts": [{"name": f"{kind}-models", "mountPath": "/mnt/agent"}],
    }
    return {
        "apiVersion": SELDON_API,
        "kind": "ServerConfig",
        "metadata": {"name": kind, "namespace": namespace},
        "spec": {
            "podSpec": {
                "terminationGracePeriodSeconds": 120,
                "serviceAccountName": "seldon-server",
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                "containers": [rclone, agent, _server_container(kind)],
            },
            "volumeClaimTemplates": [
                {
                    "name": f"{kind}-models",
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }


# --- server type and capabilities ------------------------------------------------------------

def server_type(pod_spec: Obj) -> str | None:
    """`mlserver` or `triton` from the inference container's name; None when neither is there."""
    names = {c.get("name") for c in pod_spec.get("containers") or []}
    for kind in SERVER_TYPES:
        if kind in names:
            return kind
    return None


def announced_capabilities(server: Obj, pod_spec: Obj) -> list[str]:
    """What the Server's agents announce (`harness.k8s.seldon.server_capabilities` over the config's
    list, or Seldon's defaults for the server type when the ServerConfig's agent does not say)."""
    base = config_capabilities(pod_spec)
    if base is None:
        kind = server_type(pod_spec)
        base = list(DEFAULT_CAPABILITIES[kind]) if kind else []
    # the agent splits its capability variables on "," and trims each (scheduler/cmd/agent/cli/cli.go)
    return [c.strip() for c in server_capabilities(server.get("spec") or {}, base)]


def _set_agent_env(pod_spec: Obj, name: str, value: str) -> None:
    for container in pod_spec.get("containers") or []:
        if container.get("name") != "agent":
            continue
        env = [e for e in container.get("env") or [] if e.get("name") != name]
        env.append({"name": name, "value": value})
        container["env"] = env


# --- the StatefulSet -------------------------------------------------------------------------

def server_labels(server_name: str) -> dict[str, str]:
    return {
        SERVER_NAME_LABEL: server_name,
        "app.kubernetes.io/name": "seldon-server",
        "app.kubernetes.io/managed-by": "seldon-core",
    }


def server_selector(server_name: str) -> str:
    """The label selector string Seldon writes into Server `status.selector`."""
    return server_pod_selector(server_name)


def server_memory_bytes(pod_spec: Obj) -> int:
    """Memory request of the inference container (what Seldon's agent announces as capacity)."""
    kind = server_type(pod_spec)
    for container in pod_spec.get("containers") or []:
        if container.get("name") == kind:
            requests = (container.get("resources") or {}).get("requests") or {}
            limits = (container.get("resources") or {}).get("limits") or {}
            value = requests.get("memory", limits.get("memory"))
            return int(quantity_or_zero(value)) if value is not None else 0
    return 0


def build_statefulset(server: Obj, server_config: Obj) -> Obj:
    """The StatefulSet the operator applies for `server`, built from `server_config`."""
    meta = server["metadata"]
    spec = server.get("spec") or {}
    name = meta["name"]
    config_spec = server_config.get("spec") or {}
    pod_spec = merge_pod_spec(config_spec.get("podSpec") or {}, spec.get("podSpec"))
    if spec.get("capabilities"):
        _set_agent_env(pod_spec, CAPABILITIES_ENV, ",".join(str(c) for c in spec["capabilities"]))
    elif spec.get("extraCapabilities"):
        _set_agent_env(pod_spec, EXTRA_CAPABILITIES_ENV, ",".join(str(c) for c in spec["extraCapabilities"]))
    labels = server_labels(name)
    replicas = spec.get("replicas")
    sts: Obj = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", "default"),
            "labels": dict(labels),
            "ownerReferences": [
                {
                    "apiVersion": SELDON_API,
                    "kind": "Server",
                    "name": name,
                    "uid": meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 1 if replicas is None else int(replicas),
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {SERVER_NAME_LABEL: name}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {}},
                "spec": pod_spec,
            },
        },
    }
    claims = config_spec.get("volumeClaimTemplates")
    if claims:
        sts["spec"]["volumeClaimTemplates"] = [
            {"metadata": {"name": c.get("name", "")}, "spec": copy.deepcopy(c.get("spec") or {})}
            for c in claims
        ]
    return sts
