"""Ownership on shared clusters (issue 14 items 1 and 3): create-only Servers and Models with no
check-then-write race, and evidence that copies only this run's objects from a shared namespace.

The simulated cluster (no MLServer processes) stands in for the shared cluster, reached over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import render
from harness.config import load_profile, parse_profile
from harness.errors import HarnessError
from harness.kube import Kube
from harness.kube.evidence import collect_evidence
from harness.lifecycle import ClusterSession, RunOptions
from harness.render.labels import RUN_ID_KEY

ROOT = Path(__file__).resolve().parents[2]
SELDON = "mlops.seldon.io/v1alpha1"
NS = "seldon-mesh"


def _session(sim: Any, kube: Kube, run_id: str, tmp_path: Path) -> ClusterSession:
    data = load_profile(ROOT / "profiles" / "sim.yaml").model_dump(exclude={"source"})
    data["cluster"] = {**data["cluster"], "provider": "existing", "kubeconfig": str(sim.kubeconfig_path)}
    data["seldon"] = {**data["seldon"], "install": False}
    data["gpu"]["device_plugin"] = {**data["gpu"]["device_plugin"], "install": False}
    profile = parse_profile(data, "own-existing")
    session = ClusterSession(profile, RunOptions(run_id=run_id, workdir=tmp_path / run_id))
    session.kube = kube
    return session


def _server_obj(session: ClusterSession, name: str) -> dict[str, Any]:
    server = session.profile.server(name)
    return render.server(session.profile, server, NS, run_id=session.options.run_id)


def _cleanup(kube: Kube, name: str) -> None:
    kube.delete(SELDON, "Server", name, NS, wait=True, timeout=30)


def test_a_second_run_racing_the_first_cannot_take_its_server(sim: Any, kube: Kube, tmp_path: Path) -> None:
    first = _session(sim, kube, "run-a", tmp_path)
    second = _session(sim, kube, "run-b", tmp_path)
    name = first.profile.servers[0].name
    first._create_owned(_server_obj(first, name))
    # The race: a check-then-write second run looked a moment before the first run's create landed
    # and saw nothing; its first GET answers that. Create-only does not depend on what it saw.
    real_get = kube.get
    seen: list[str] = []

    def get_racing(api_version: str, kind: str, obj_name: str, namespace: str | None = None) -> Any:
        if kind == "Server" and obj_name == name and not seen:
            seen.append(obj_name)
            return None
        return real_get(api_version, kind, obj_name, namespace)

    kube.get = get_racing  # type: ignore[method-assign]
    try:
        with pytest.raises(HarnessError, match=rf"Server {NS}/{name} already exists and belongs to"):
            second._create_owned(_server_obj(second, name))
    finally:
        kube.get = real_get  # type: ignore[method-assign]
    live = kube.get(SELDON, "Server", name, NS)
    assert live is not None
    assert live["metadata"]["labels"][RUN_ID_KEY] == "run-a", "the second run patched the first run's Server"
    _cleanup(kube, name)


def test_an_object_the_cluster_owners_made_is_never_patched(sim: Any, kube: Kube, tmp_path: Path) -> None:
    session = _session(sim, kube, "run-c", tmp_path)
    name = session.profile.servers[0].name
    theirs = _server_obj(session, name)
    theirs["metadata"]["labels"] = {"team": "theirs"}
    theirs["spec"]["replicas"] = 1
    kube.create(theirs)
    try:
        with pytest.raises(HarnessError, match="belongs to no harness run"):
            session._create_owned(_server_obj(session, name))
        live = kube.get(SELDON, "Server", name, NS)
        assert live is not None and live["metadata"]["labels"] == {"team": "theirs"}
    finally:
        _cleanup(kube, name)


def test_a_lost_create_of_our_own_is_taken_back(sim: Any, kube: Kube, tmp_path: Path) -> None:
    session = _session(sim, kube, "run-d", tmp_path)
    name = session.profile.servers[0].name
    kube.create(_server_obj(session, name))  # our create landed, but its answer was lost
    try:
        obj = session._create_owned(_server_obj(session, name))
        assert obj["metadata"]["labels"][RUN_ID_KEY] == "run-d"
    finally:
        _cleanup(kube, name)


def test_a_create_cut_short_by_an_interrupt_is_deleted_by_down_and_others_objects_never(
        sim: Any, kube: Kube, tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM while a create's answer is on its way: the Server exists, the run never
    heard so, and `down()` must still delete it. A refused create (someone else's object) stays."""
    session = _session(sim, kube, "run-e", tmp_path)
    ours, theirs = session.profile.servers[0].name, session.profile.servers[1].name
    owned = _server_obj(session, theirs)
    owned["metadata"]["labels"] = {"team": "theirs"}
    kube.create(owned)
    real_create = kube.create_only

    def create_then_interrupt(obj: dict[str, Any]) -> Any:
        real_create(obj)
        raise KeyboardInterrupt

    kube.create_only = create_then_interrupt  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            session._create_owned(_server_obj(session, ours))
    finally:
        kube.create_only = real_create  # type: ignore[method-assign]
    with pytest.raises(HarnessError, match="belongs to no harness run"):
        session._create_owned(_server_obj(session, theirs))
    try:
        assert kube.get(SELDON, "Server", ours, NS) is not None
        assert session.down() == []
        assert kube.get(SELDON, "Server", ours, NS) is None
        live = kube.get(SELDON, "Server", theirs, NS)
        assert live is not None and live["metadata"]["labels"] == {"team": "theirs"}
    finally:
        _cleanup(kube, theirs)
        _cleanup(kube, ours)


def test_evidence_on_a_shared_namespace_holds_only_this_runs_objects(kube: Kube, sim: Any, tmp_path: Path) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "own-test-ns"}})
    pods = {
        ("own-test-ns", "probe"): {},
        (NS, "other-team-app"): {"team": "other"},
        (NS, "ours-0"): {RUN_ID_KEY: "run-e"},
        (NS, "other-server-0"): {"seldon-server-name": "other-server"},
    }
    for (ns, name), labels in pods.items():
        kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                     "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
        kube.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.1", "namespace": ns},
                     "involvedObject": {"kind": "Pod", "name": name, "namespace": ns}, "reason": "Seen",
                     "message": f"event about {name}", "type": "Normal", "lastTimestamp": "2026-01-01T00:00:00Z"})
    kube.create({"apiVersion": SELDON, "kind": "Model",
                 "metadata": {"name": "other-model", "namespace": NS, "labels": {"team": "other"}},
                 "spec": {"storageUri": "gs://other/secret-model", "requirements": ["nothing-has-this"]}})
    try:
        out = tmp_path / "evidence"
        written = collect_evidence(kube, out, ["own-test-ns"], seldon_namespace=NS, only_run="run-e")
        every = "".join(p.read_text() for p in written)
        assert "event about probe" in every and "event about ours-0" in every
        assert (out / "pods" / "own-test-ns" / "probe" / "describe.yaml").exists()
        assert (out / "pods" / NS / "ours-0" / "describe.yaml").exists()
        for foreign in ("other-team-app", "other-server-0", "other-model", "gs://other/secret-model"):
            assert foreign not in every, foreign
        # Without a run scope (the run created the cluster or installed Seldon) everything is copied.
        full = collect_evidence(kube, tmp_path / "full", ["own-test-ns"], seldon_namespace=NS)
        assert "other-team-app" in "".join(p.read_text() for p in full)
    finally:
        for (ns, name) in pods:
            kube.delete("v1", "Pod", name, ns, wait=False)
        kube.delete(SELDON, "Model", "other-model", NS, wait=False)
        kube.delete("v1", "Namespace", "own-test-ns", wait=False)


def test_evidence_redacts_every_credential_shape(kube: Kube, sim: Any, tmp_path: Path) -> None:
    planted = {
        "S3_CREDS": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYpLaNtEd",
        "MIRROR": "https://b.s3.amazonaws.com/m?X-Amz-Signature=a1b2c3d4e5f6planted",
        "BLOB": "https://a.blob.core.windows.net/c/m?sv=2022&sig=Zm9vYmFyplantedSAS",
        "REPO": "https://plantedUriToken8c2f@host.example/r",
        "PROXY_AUTHORIZATION": "Basic cGxhbnRlZDpiYXNpYw==",
    }
    secrets = ["wJalrXUtnFEMI", "a1b2c3d4e5f6planted", "Zm9vYmFyplantedSAS", "plantedUriToken8c2f",
               "cGxhbnRlZDpiYXNpYw==", "plantedArgTokenX91kQ"]
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "own-shapes"}})
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": "own-shapes"},
                 "spec": {"containers": [{"name": "main", "image": "busybox",
                                          "args": ["--api-token", "plantedArgTokenX91kQ"],
                                          "env": [{"name": k, "value": v} for k, v in planted.items()]}]}})
    try:
        written = collect_evidence(kube, tmp_path / "ev", ["own-shapes"], seldon_namespace=NS, only_run="x")
        every = "".join(p.read_text() for p in written)
        assert "plantedArgTokenX91kQ" not in every and "--api-token" in every
        assert [s for s in secrets if s in every] == []
    finally:
        kube.delete("v1", "Namespace", "own-shapes", wait=False)
