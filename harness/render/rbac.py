"""The RoleBinding a run puts into each namespace it creates (manifests/rbac/README.md).

Pods, pod logs and ConfigMaps are granted only there: the shipped ClusterRole
`seldon-gpu-harness-run-namespace` is bound cluster-wide to nobody, and the run binds it to the
harness's ServiceAccount inside its own per-test namespace right after creating it. So the identity
cannot read another namespace's pod logs or ConfigMaps, nor create pods there.
"""

from __future__ import annotations

from typing import Any

from harness.render.labels import labels_for_run

RUN_NAMESPACE_ROLE = "seldon-gpu-harness-run-namespace"
BINDING_NAME = "seldon-gpu-harness-run"
SERVICE_ACCOUNT = ("seldon-gpu-harness", "seldon-gpu-harness")  # namespace, name (harness-rbac.yaml)


def run_namespace_binding(namespace: str, run_id: str) -> dict[str, Any]:
    sa_namespace, sa_name = SERVICE_ACCOUNT
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": BINDING_NAME, "namespace": namespace, "labels": labels_for_run(run_id)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RUN_NAMESPACE_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}],
    }


def access_review(namespace: str, verb: str, resource: str) -> dict[str, Any]:
    """Can this identity `verb` `resource` in `namespace`? (a SelfSubjectAccessReview to create)."""
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {"generateName": "harness-access-"},  # unnamed for the API; the client wants one
            "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource}}}
