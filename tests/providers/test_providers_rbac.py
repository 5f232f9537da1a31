"""The shipped RBAC manifests are valid Kubernetes objects and grant what the harness uses, no more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((RBAC / name).read_text()) if d]


@pytest.mark.parametrize("name", ["harness-rbac.yaml", "fake-gpus.yaml", "nodes-destructive.yaml"])
def test_manifests_validate(name: str) -> None:
    for doc in docs(name):
        kubernetes_validate.validate(doc, "1.32", strict=True)


def rules(name: str, kind: str, metadata_name: str) -> list[dict[str, Any]]:
    doc = next(d for d in docs(name) if d["kind"] == kind and d["metadata"]["name"] == metadata_name)
    return list(doc["rules"])


def verbs_for(rule_list: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    out: set[str] = set()
    for r in rule_list:
        if group in r["apiGroups"] and resource in r["resources"]:
            out |= set(r["verbs"])
    return out


def test_least_privilege() -> None:
    read = rules("harness-rbac.yaml", "ClusterRole", "seldon-gpu-harness-read")
    test = rules("harness-rbac.yaml", "ClusterRole", "seldon-gpu-harness-test")
    for role in (read, test):
        assert verbs_for(role, "", "secrets") == set()
        assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role)
    # the read-only role reads, and nothing else
    assert {v for r in read for v in r["verbs"]} <= {"get", "list", "watch"}
    assert verbs_for(read, "", "nodes") == {"get", "list", "watch"}
    # no role of an ordinary run changes nodes: that is the destructive role's alone
    for role in (read, test):
        assert verbs_for(role, "", "nodes") & {"patch", "update"} == set()
        assert verbs_for(role, "", "nodes/status") == set()
    nodes = rules("nodes-destructive.yaml", "ClusterRole", "seldon-gpu-harness-nodes")
    assert verbs_for(nodes, "", "nodes") == {"patch"}
    fake = rules("fake-gpus.yaml", "ClusterRole", "seldon-gpu-harness-fake-gpus")
    assert verbs_for(fake, "", "nodes/status") == {"patch"}
    leases = rules("harness-rbac.yaml", "Role", "seldon-gpu-harness-leases")
    assert verbs_for(leases, "coordination.k8s.io", "leases") == {"get", "list", "create", "patch", "delete"}
    seldon = rules("harness-rbac.yaml", "Role", "seldon-gpu-harness")
    # create-only Servers and Models: no patch/update of objects the run did not create
    assert verbs_for(seldon, "mlops.seldon.io", "servers") == {"create", "delete"}
    assert verbs_for(read, "mlops.seldon.io", "serverconfigs") == {"get", "list", "watch"}
