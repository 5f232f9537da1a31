"""Issue 26 item 4: manifests/rbac/README.md says exactly what each role can and cannot do, and each
of its sentences is proven here against the YAML (a sentence without a proof fails, and so does a
proof whose sentence was edited away)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.render.rbac import BINDING_NAME, RUN_NAMESPACE_ROLE, SERVICE_ACCOUNT, run_namespace_binding

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac"
FILES = ("harness-rbac.yaml", "admission.yaml", "nodes-destructive.yaml", "fake-gpus.yaml")
Doc = dict[str, Any]
DOCS: list[tuple[str, Doc]] = [(f, d) for f in FILES for d in yaml.safe_load_all((RBAC / f).read_text()) if d]
SA = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT[1], "namespace": SERVICE_ACCOUNT[0]}


def role(name: str, kind: str = "ClusterRole") -> Doc:
    return next(d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name)


def roles() -> list[Doc]:
    return [d for _, d in DOCS if d["kind"] in ("Role", "ClusterRole")]


def bound_cluster_wide() -> list[Doc]:
    """ClusterRoles that a ClusterRoleBinding grants in every namespace."""
    names = {d["roleRef"]["name"] for _, d in DOCS if d["kind"] == "ClusterRoleBinding"}
    return [role(n) for n in names]


def grants(doc: Doc, group: str, resource: str) -> set[str]:
    return {v for r in doc["rules"] if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def resources_of(doc: Doc) -> set[tuple[str, str]]:
    return {(g, res) for r in doc["rules"] for g in r["apiGroups"] for res in r["resources"]}


def where(doc: Doc) -> str | None:
    return doc["metadata"].get("namespace")


def policy(name: str) -> Doc:
    return next(d for _, d in DOCS if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] == name)


def policy_bound(name: str) -> bool:
    return any(d["kind"] == "ValidatingAdmissionPolicyBinding" and d["spec"]["policyName"] == name
               and d["spec"]["validationActions"] == ["Deny"] for _, d in DOCS)


def checks_labels(expression: str) -> bool:
    return "'harness.seldon.dev/run-id' in" in expression and "== 'seldon-gpu-harness'" in expression


def _read() -> bool:
    read = role("seldon-gpu-harness-read")
    wanted = {("", "nodes"), ("", "pods"), ("", "events"), ("", "namespaces"), ("apps", "deployments"),
              ("apps", "statefulsets"), ("apps", "daemonsets"), ("mlops.seldon.io", "servers"),
              ("mlops.seldon.io", "models"), ("mlops.seldon.io", "serverconfigs")}
    return all(grants(read, g, r) == {"get", "list", "watch"} for g, r in wanted) and read in bound_cluster_wide()


def _namespaces() -> bool:
    test = role("seldon-gpu-harness-test")
    p = policy("seldon-gpu-harness-own-namespaces")
    rule = p["spec"]["matchConstraints"]["resourceRules"][0]
    return (grants(test, "", "namespaces") == {"create", "delete"} and set(rule["operations"]) == {"CREATE", "DELETE"}
            and rule["resources"] == ["namespaces"] and checks_labels(p["spec"]["validations"][0]["expression"])
            and policy_bound("seldon-gpu-harness-own-namespaces"))


def _bindings() -> bool:
    test = role("seldon-gpu-harness-test")
    bind = [r for r in test["rules"] if "clusterroles" in r["resources"]]
    p = policy("seldon-gpu-harness-own-bindings")
    expressions = " ".join(v["expression"] for v in p["spec"]["validations"])
    return ("create" in grants(test, "rbac.authorization.k8s.io", "rolebindings")
            and bind == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                          "verbs": ["bind"], "resourceNames": [RUN_NAMESPACE_ROLE]}]
            and "namespaceObject" in expressions and checks_labels(expressions)
            and f"object.roleRef.name == '{RUN_NAMESPACE_ROLE}'" in expressions
            and policy_bound("seldon-gpu-harness-own-bindings"))


def _run_role_unbound() -> bool:
    binding = run_namespace_binding("x", "r")
    return (role(RUN_NAMESPACE_ROLE) not in bound_cluster_wide()
            and not any(d["kind"] == "RoleBinding" and d["roleRef"]["name"] == RUN_NAMESPACE_ROLE for _, d in DOCS)
            and binding["roleRef"]["name"] == RUN_NAMESPACE_ROLE and binding["subjects"] == [SA]
            and binding["metadata"]["name"] == BINDING_NAME)


def _namespaced(name: str, namespace: str, group: str, resource: str, verbs: set[str]) -> bool:
    doc = role(name, "Role")
    bound = any(d["kind"] == "RoleBinding" and d["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                                                 "kind": "Role", "name": name}
                and where(d) == namespace and SA in d["subjects"] for _, d in DOCS)
    return where(doc) == namespace and grants(doc, group, resource) == verbs and bound


def _nothing_else(name: str, only: set[tuple[str, str]]) -> bool:
    return resources_of(role(name)) == only


SENTENCES: dict[str, Callable[[], bool]] = {
    "`seldon-gpu-harness-read` can get, list and watch nodes, pods, events, namespaces, Deployments, StatefulSets, "
    "DaemonSets and Seldon Servers, Models and ServerConfigs, cluster-wide.": _read,
    "`seldon-gpu-harness-read` can get and list RuntimeClasses (for `gpu.runtime_class: detect`).":
        lambda: grants(role("seldon-gpu-harness-read"), "node.k8s.io", "runtimeclasses") == {"get", "list"},
    "`seldon-gpu-harness-read` can get CustomResourceDefinitions (is Seldon installed).":
        lambda: grants(role("seldon-gpu-harness-read"), "apiextensions.k8s.io", "customresourcedefinitions")
        == {"get"},
    "`seldon-gpu-harness-read` can only read: get, list and watch.":
        lambda: {v for r in role("seldon-gpu-harness-read")["rules"] for v in r["verbs"]} <= {"get", "list", "watch"},
    "No role here can read Secrets.": lambda: all(not grants(d, "", "secrets") for d in roles()),
    "No cluster-wide role can read pod logs or ConfigMaps.":
        lambda: all(not grants(d, "", "pods/log") and not grants(d, "", "configmaps") for d in bound_cluster_wide()),
    "No cluster-wide role can create or delete pods or ConfigMaps.":
        lambda: all(not (grants(d, "", r) & {"create", "delete", "update", "patch"})
                    for d in bound_cluster_wide() for r in ("pods", "configmaps")),
    "`seldon-gpu-harness-test` can create and delete namespaces; `admission.yaml` lets it create and delete only "
    "namespaces labelled with a harness run id and `app.kubernetes.io/managed-by: seldon-gpu-harness`.": _namespaces,
    "`seldon-gpu-harness-test` can create RoleBindings, and can bind only the ClusterRole "
    "`seldon-gpu-harness-run-namespace`; `admission.yaml` lets it do so only inside namespaces labelled as a "
    "harness run's.": _bindings,
    "`seldon-gpu-harness-run-namespace` is bound by no ClusterRoleBinding: the run binds it inside each namespace "
    "it creates.": _run_role_unbound,
    "`seldon-gpu-harness-run-namespace` can create and delete pods, get pod logs, and get, create and delete "
    "ConfigMaps.": lambda: (grants(role(RUN_NAMESPACE_ROLE), "", "pods") == {"create", "delete"}
                            and grants(role(RUN_NAMESPACE_ROLE), "", "pods/log") == {"get"}
                            and grants(role(RUN_NAMESPACE_ROLE), "", "configmaps") == {"get", "create", "delete"}
                            and _nothing_else(RUN_NAMESPACE_ROLE, {("", "pods"), ("", "pods/log"),
                                                                   ("", "configmaps")})),
    "`seldon-gpu-harness-dry-run` can create pods only in namespace `seldon-gpu-harness` (the server-side dry-run "
    "pod of the GPU-toleration admission check).":
        lambda: _namespaced("seldon-gpu-harness-dry-run", "seldon-gpu-harness", "", "pods", {"create"})
        and resources_of(role("seldon-gpu-harness-dry-run", "Role")) == {("", "pods")},
    "`seldon-gpu-harness` can create and delete Servers and Models only in `seldon-mesh`, and never patch or "
    "update them.": lambda: _namespaced("seldon-gpu-harness", "seldon-mesh", "mlops.seldon.io", "servers",
                                        {"create", "delete"})
        and grants(role("seldon-gpu-harness", "Role"), "mlops.seldon.io", "models") == {"create", "delete"}
        and all(not (grants(d, "mlops.seldon.io", r) & {"patch", "update"}) for d in roles()
                for r in ("servers", "models")),
    "`seldon-gpu-harness` can get `pods/proxy` only in `seldon-mesh` (Triton's metrics).":
        lambda: _namespaced("seldon-gpu-harness", "seldon-mesh", "", "pods/proxy", {"get"})
        and all(not grants(d, "", "pods/proxy") for d in roles() if d["kind"] == "ClusterRole"),
    "`seldon-gpu-harness-leases` can get, list, create, patch and delete Leases only in `default`.":
        lambda: _namespaced("seldon-gpu-harness-leases", "default", "coordination.k8s.io", "leases",
                            {"get", "list", "create", "patch", "delete"})
        and all(not grants(d, "coordination.k8s.io", "leases") for d in roles() if d["kind"] == "ClusterRole"),
    "No role of an ordinary run can change nodes.":
        lambda: all(not (grants(role(n), "", "nodes") & {"patch", "update", "delete"})
                    and not grants(role(n), "", "nodes/status")
                    for n in ("seldon-gpu-harness-read", "seldon-gpu-harness-test", RUN_NAMESPACE_ROLE)),
    "`seldon-gpu-harness-nodes` (`nodes-destructive.yaml`) can patch nodes, and nothing else.":
        lambda: role("seldon-gpu-harness-nodes")["rules"] == [{"apiGroups": [""], "resources": ["nodes"],
                                                                "verbs": ["patch"]}],
    "`seldon-gpu-harness-fake-gpus` (`fake-gpus.yaml`) can patch `nodes/status`, and nothing else.":
        lambda: role("seldon-gpu-harness-fake-gpus")["rules"] == [{"apiGroups": [""], "resources": ["nodes/status"],
                                                                    "verbs": ["patch"]}],
    "No role here uses a wildcard verb or resource.":
        lambda: all("*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
                    for d in roles() for r in d["rules"]),
}


def _proven_section() -> list[str]:
    text = (RBAC / "README.md").read_text()
    section = re.search(r"<!-- proven:begin -->\n(.*?)<!-- proven:end -->", text, re.S)
    assert section, "README.md lost its proven section"
    return [line[2:].strip() for line in section.group(1).splitlines() if line.startswith("- ")]


def test_every_sentence_has_a_proof_and_every_proof_a_sentence() -> None:
    assert sorted(_proven_section()) == sorted(SENTENCES)


@pytest.mark.parametrize("sentence", sorted(SENTENCES))
def test_each_sentence_holds(sentence: str) -> None:
    assert SENTENCES[sentence](), sentence


@pytest.mark.parametrize("name", FILES)
def test_manifests_are_valid_kubernetes(name: str) -> None:
    for file, doc in DOCS:
        if file == name:
            kubernetes_validate.validate(doc, "1.32", strict=True)
