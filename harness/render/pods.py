"""Least-privilege pod settings and the CPU-only "intruder" pod of the negative placement tests."""

from __future__ import annotations

from typing import Any

from harness.config import Profile
from harness.render.labels import object_meta
from harness.render.placement import pool_selector

INTRUDER_IMAGE = "registry.k8s.io/pause:3.10"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# A numeric, non-root user: runAsNonRoot can only be verified by the kubelet for numeric ids.
RUN_AS_USER = 1000


def restricted_pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def hostname_selector(node_name: str) -> dict[str, str]:
    # A selector, not spec.nodeName: nodeName bypasses the scheduler and with it the taint check.
    return {HOSTNAME_LABEL: node_name}


def intruder_pod(
    profile: Profile, name: str, namespace: str, node_name: str | None = None, *, run_id: str | None = None
) -> dict[str, Any]:
    """CPU-only pod aimed at the GPU pool by nodeSelector with no toleration: only the taint keeps it off."""
    selector = pool_selector(profile)
    if node_name is not None:
        selector.update(hostname_selector(node_name))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": object_meta(name, namespace, run_id, "intruder"),
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": restricted_pod_security(),
            "nodeSelector": selector,
            "containers": [
                {
                    "name": "pause",
                    "image": INTRUDER_IMAGE,
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"memory": "16Mi"},
                    },
                    "securityContext": restricted_container_security(),
                }
            ],
        },
    }
