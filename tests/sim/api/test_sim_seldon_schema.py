"""Seldon objects against Seldon's CRD schemas, as the API server checks custom resources.

Schemas: SeldonIO/seldon-core v2.10.2 (commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce),
operator/config/crd/bases/mlops.seldon.io_{models,servers}.yaml, read at run time from
../shared/seldon-crds (never copied into the project). Behaviour: kubernetes/kubernetes
staging/src/k8s.io/apiextensions-apiserver (structural pruning, then kube-openapi validation; commit
008b3652959ca58af8be3fb5b6ecfe9ae7638282): unknown fields pruned (refused with fieldValidation=Strict),
wrong types, missing required fields and pattern mismatches answer 422.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from harness.sim.api import crdschema

Obj = dict[str, Any]
GROUP, VERSION = "mlops.seldon.io", "v1alpha1"
needs_crds = pytest.mark.skipif(crdschema.crd_dir() is None,
                                reason="Seldon CRD files not found: set HARNESS_SELDON_CRDS or provide "
                                       "../shared/seldon-crds")


def model(name: str, **spec: Any) -> Obj:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name},
            "spec": {"storageUri": "gs://seldon-models/iris", **spec}}


def server(name: str, **spec: Any) -> Obj:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Server", "metadata": {"name": name},
            "spec": {"serverConfig": "mlserver", **spec}}


def _without(obj: Obj, field: str) -> Obj:
    obj["spec"].pop(field)
    return obj


CASES: list[tuple[str, Obj, str]] = [
    ("model-without-storageUri", _without(model("m1"), "storageUri"), "spec.storageUri: Required value"),
    ("model-replicas-string", model("m2", replicas="two"),
     'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'),
    ("model-requirements-not-a-list", model("m3", requirements="gpu"),
     'spec.requirements: Invalid value: "string": spec.requirements in body must be of type array: "string"'),
    ("model-memory-not-a-quantity", model("m4", memory="lots"),
     'spec.memory: Invalid value: "lots": spec.memory in body should match'),
    ("model-memory-boolean", model("m5", memory=True),
     'spec.memory: Invalid value: "boolean": spec.memory in body must be of type integer,string: "boolean"'),
    ("server-without-serverConfig", _without(server("s1"), "serverConfig"), "spec.serverConfig: Required value"),
    ("server-replicas-string", server("s2", replicas="1"),
     'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'),
]


@needs_crds
@pytest.mark.parametrize(("case", "obj", "message"), CASES, ids=[c[0] for c in CASES])
def test_schema_violations_are_422(api_client: Any, case: str, obj: Obj, message: str) -> None:
    api = k8s.CustomObjectsApi(api_client)
    plural = "models" if obj["kind"] == "Model" else "servers"
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(GROUP, VERSION, "default", plural, obj)
    assert refused.value.status == 422, refused.value.body
    assert message in json.loads(refused.value.body)["message"]


@needs_crds
def test_unknown_fields_are_pruned_or_refused_when_strict(api_client: Any) -> None:
    api = k8s.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(GROUP, VERSION, "default", "models", model("strict", replica=2),
                                            field_validation="Strict")
    assert refused.value.status == 400
    assert 'unknown field "spec.replica"' in json.loads(refused.value.body)["message"]
    stored = api.create_namespaced_custom_object(GROUP, VERSION, "default", "models", model("pruned", replica=2))
    assert "replica" not in stored["spec"]


def test_without_crd_files_only_the_required_fields_are_checked(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_SELDON_CRDS", str(tmp_path / "absent"))
    crdschema.forget()
    try:
        assert crdschema.causes("Model", model("x", replicas="two")) == []
        assert crdschema.causes("Model", _without(model("y"), "storageUri")) == [
            ("FieldValueRequired", "spec.storageUri", "Required value")]
        assert crdschema.unknown_fields("Model", model("z", replica=2)) == []
    finally:
        monkeypatch.undo()
        crdschema.forget()
