"""The sim and existing providers through the same lifecycle interface, against the simulated cluster;
the mesh address and admission detection; `existing` never changes nodes and never deletes the cluster."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.config import Profile, load_profile, parse_profile
from harness.errors import HarnessError, UsageError
from harness.kube import Kube, NodeGuard
from harness.providers import ProviderOptions, get_provider
from harness.providers.common import adds_gpu_toleration, image_tag, mesh_from_service
from harness.providers.existing import ExistingProvider, missing_dedication

ROOT = Path(__file__).resolve().parents[2]
FAKEBIN = ROOT / "tests" / "fakebin"


def options(tmp_path: Path, kubeconfig: Path | None = None, keep: bool = False) -> ProviderOptions:
    return ProviderOptions(run_id="r1", keep_cluster=keep, workdir=tmp_path / "work", kubeconfig=kubeconfig,
                           tools=None, sim_mlserver=False)


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Kube]]:
    """The sim provider's whole lifecycle; tests in this module then use its cluster as an 'existing' one."""
    tmp = tmp_path_factory.mktemp("simprov")
    profile = load_profile(ROOT / "profiles" / "sim.yaml")
    provider = get_provider(profile, options(tmp))
    assert [f.ok for f in provider.preflight()] == [True]
    handle = provider.provision()
    assert handle.simulated and handle.provider == "sim" and handle.kubeconfig.is_file()
    kube = Kube.from_kubeconfig(handle.kubeconfig, handle.context, profile.timeouts)
    yield provider, kube
    provider.teardown()
    kube.close()


def sim_gpu_nodes(provider: Any) -> tuple[str, ...]:
    """One GPU node per GPU worker of profiles/sim.yaml, named the kind way (worker, worker2, ...)."""
    workers = sum(g.count for g in provider.profile.cluster.nodes.gpu_workers)
    return tuple(f"seldon-gpu-gpu-worker{i if i > 1 else ''}" for i in range(1, workers + 1))


def existing_profile(**changes: Any) -> Profile:
    data = load_profile(ROOT / "profiles" / "existing.yaml").model_dump(exclude={"source"})
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split(".")
        for key in path:
            target = target[key]
        target[last] = value
    return parse_profile(data, "existing-test.yaml")


def test_sim_provider_lifecycle(sim_run: tuple[Any, Kube]) -> None:
    provider, kube = sim_run
    assert provider.prepare_nodes(kube, NodeGuard(kube, "r1", install_signal_handlers=False)) == []
    provider.install_gpu_stack(kube)
    provider.install_seldon(kube)
    mesh = provider.mesh_endpoint(kube)
    assert mesh.http_url.startswith("http://127.0.0.1:") and mesh.grpc_target.startswith("127.0.0.1:")
    facts = provider.cluster_facts(kube)
    assert facts.simulated and facts.kubernetes_version.startswith("v1.")
    assert facts.gpu_nodes == sim_gpu_nodes(provider)
    assert facts.admission_source.startswith("detected") and facts.gpu_toleration_admission is False


def test_existing_preflight_reads_the_cluster(sim_run: tuple[Any, Kube], tmp_path: Path) -> None:
    provider, _ = sim_run
    ex = get_provider(existing_profile(), options(tmp_path, Path(provider.cluster.kubeconfig_path)))
    findings = {f.id: f for f in ex.preflight()}
    assert all(f.ok for f in findings.values()), findings
    assert "seldon-gpu-gpu-worker" in findings["cluster.gpu-nodes"].message
    assert findings["seldon.installed"].ok
    handle = ex.provision()
    assert handle.created is False and handle.simulated is False


def test_existing_preflight_failures(sim_run: tuple[Any, Kube], tmp_path: Path) -> None:
    provider, _ = sim_run
    kc = Path(provider.cluster.kubeconfig_path)
    have = len(sim_gpu_nodes(provider))
    groups = [{"count": have + 2, "gpus": 1}]
    ex = get_provider(existing_profile(**{"cluster.nodes.gpu_workers": groups}), options(tmp_path, kc))
    failed = {f.id: f.message for f in ex.preflight() if not f.ok}
    assert list(failed) == ["cluster.gpu-nodes"] and f"found {have} GPU node(s)" in failed["cluster.gpu-nodes"]
    assert f"the profile needs {have + 2}" in failed["cluster.gpu-nodes"]
    missing = get_provider(existing_profile(), options(tmp_path, tmp_path / "absent"))
    assert [(f.id, f.ok) for f in missing.preflight()] == [("cluster.kubeconfig", False)]
    with pytest.raises(UsageError, match="kubeconfig not found"):
        missing.provision()


def test_existing_reports_missing_dedication_and_never_changes_nodes(sim_run: tuple[Any, Kube],
                                                                     tmp_path: Path) -> None:
    provider, kube = sim_run
    before = copy.deepcopy(kube.list("v1", "Node"))
    other = existing_profile(**{"gpu.taint": {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}})
    ex = get_provider(other, options(tmp_path, Path(provider.cluster.kubeconfig_path)))
    guard = NodeGuard(kube, "r1", install_signal_handlers=False)
    problems = ex.prepare_nodes(kube, guard)
    assert problems == [f"GPU node {n} lacks the taint dedicated=gpu:NoSchedule: add it with `kubectl taint nodes "
                        f"{n} dedicated=gpu:NoSchedule` (the harness never changes it)"
                        for n in sim_gpu_nodes(provider)]
    assert guard.changes() == []
    after = kube.list("v1", "Node")
    strip = [(n["metadata"]["name"], n["metadata"].get("labels"), n["spec"].get("taints")) for n in before]
    assert strip == [(n["metadata"]["name"], n["metadata"].get("labels"), n["spec"].get("taints")) for n in after]
    assert ex.prepare_nodes(kube, guard) != [] and get_provider(
        existing_profile(), options(tmp_path, Path(provider.cluster.kubeconfig_path))).prepare_nodes(kube, guard) == []


def test_existing_mesh_facts_and_admission_from_profile(sim_run: tuple[Any, Kube], tmp_path: Path) -> None:
    provider, kube = sim_run
    kc = Path(provider.cluster.kubeconfig_path)
    ex = get_provider(existing_profile(**{"cluster.gpu_toleration_admission": "yes"}), options(tmp_path, kc))
    assert ex.mesh_endpoint(kube) == provider.mesh_endpoint(kube)
    facts = ex.cluster_facts(kube)
    # The sim's API server identifies itself, so even through the existing provider the facts say simulated.
    assert (facts.gpu_toleration_admission, facts.admission_source, facts.simulated) == (True, "profile", True)


def test_existing_installs_seldon_only_when_asked_and_removes_only_that(sim_run: tuple[Any, Kube], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    provider, kube = sim_run
    log = tmp_path / "calls.jsonl"
    py = tmp_path / "py"
    py.mkdir()
    (py / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    (py / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{py}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKEBIN_LOG", str(log))
    kc = Path(provider.cluster.kubeconfig_path)
    untouched = get_provider(existing_profile(), options(tmp_path, kc))
    untouched.install_gpu_stack(kube)
    untouched.install_seldon(kube)
    untouched.teardown()
    assert not log.exists()  # seldon.install false, device plugin off: no command at all

    ex = get_provider(existing_profile(**{"seldon.install": True, "cluster.context": "ctx"}), options(tmp_path, kc))
    assert isinstance(ex, ExistingProvider)
    ex.install_seldon(kube)
    ex.teardown()
    argv = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    # `helm install`, never `upgrade --install`: a release that is already there is refused by helm.
    assert [a[:3] for a in argv] == [["install", "seldon-core-v2-crds", "seldon-core-v2-crds"],
                                     ["install", "seldon-core-v2-setup", "seldon-core-v2-setup"],
                                     ["install", "seldon-core-v2-runtime", "seldon-core-v2-runtime"],
                                     ["uninstall", "seldon-core-v2-runtime", "--namespace"],
                                     ["uninstall", "seldon-core-v2-setup", "--namespace"],
                                     ["uninstall", "seldon-core-v2-crds", "--namespace"]]
    assert all(a[-4:] == ["--kubeconfig", str(kc), "--kube-context", "ctx"] for a in argv)


def test_mesh_from_service() -> None:
    svc: dict[str, Any] = {"spec": {"ports": [{"port": 80}]},
                           "status": {"loadBalancer": {"ingress": [{"ip": "10.1.2.3"}]}}}
    assert mesh_from_service(svc, "ns").http_url == "http://10.1.2.3:80"
    svc["status"]["loadBalancer"]["ingress"] = [{"hostname": "lb.example.com", "ports": [{"port": 8080}]}]
    mesh = mesh_from_service(svc, "ns")
    assert (mesh.http_url, mesh.grpc_target) == ("http://lb.example.com:8080", "lb.example.com:8080")
    svc["status"] = {}
    with pytest.raises(UsageError, match="Service ns/seldon-mesh has no LoadBalancer ingress"):
        mesh_from_service(svc, "ns")
    with pytest.raises(UsageError, match="not found: is Seldon Core 2 installed in namespace ns"):
        mesh_from_service(None, "ns")


def test_small_pure_helpers() -> None:
    assert image_tag("docker.io/seldonio/seldonv2-controller:2.10.2") == "2.10.2"
    assert image_tag("localhost:5000/controller") is None
    assert image_tag("repo/x:1.0@sha256:abc") == "1.0"
    assert adds_gpu_toleration({"spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}},
                               "nvidia.com/gpu")
    assert not adds_gpu_toleration({"spec": {}}, "nvidia.com/gpu")
    node = {"metadata": {"name": "g", "labels": {"pool": "infer-srv"}}, "spec": {"taints": []}, "status": {}}
    assert len(missing_dedication([node], existing_profile())) == 1


def test_mesh_without_load_balancer_fails_clearly_after_a_bounded_wait(sim_run: tuple[Any, Kube],
                                                                        tmp_path: Path) -> None:
    provider, kube = sim_run
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "no-lb"}})
    kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "seldon-mesh", "namespace": "no-lb"},
                "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {"app": "x"}}})
    profile = existing_profile(**{"seldon.namespace": "no-lb", "timeouts.pod_schedule_s": 0.5})
    ex = get_provider(profile, options(tmp_path, Path(provider.cluster.kubeconfig_path)))
    with pytest.raises(UsageError, match="Service no-lb/seldon-mesh has no LoadBalancer ingress"):
        ex.mesh_endpoint(kube)


class _ReadOnlyKube:
    """A cluster without Seldon: the preflight must say so, and how to fix it."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    def server_version(self) -> str:
        return "v1.31.4"

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        return self.nodes if kind == "Node" else []

    def get(self, *args: Any) -> None:
        return None


def test_existing_preflight_without_seldon(tmp_path: Path) -> None:
    gpu = {"metadata": {"name": "g1", "labels": {"nvidia.com/gpu.present": "true"}}, "status": {}}
    # profiles/existing.yaml expects two GPU nodes (one beside the GPU Server for the eviction test).
    gpu2 = {"metadata": {"name": "g2", "labels": {"nvidia.com/gpu.present": "true"}}, "status": {}}
    ex = ExistingProvider(existing_profile(), options(tmp_path, tmp_path / "kc"))
    findings = {f.id: f for f in ex._preflight(_ReadOnlyKube([gpu, gpu2]))}  # type: ignore[arg-type]
    assert findings["cluster.reachable"].message == "Kubernetes v1.31.4"
    assert findings["cluster.gpu-nodes"].ok and "g1" in findings["cluster.gpu-nodes"].message
    assert not findings["seldon.installed"].ok
    assert findings["seldon.installed"].message == (
        "Seldon Core 2 is not installed (no CRD servers.mlops.seldon.io): install it or set seldon.install: true "
        "in the profile")
    installing = ExistingProvider(existing_profile(**{"seldon.install": True}), options(tmp_path, tmp_path / "kc"))
    assert "seldon.installed" not in {f.id for f in installing._preflight(_ReadOnlyKube([gpu, gpu2]))}  # type: ignore[arg-type]


def test_existing_fake_gpus_go_through_the_guard_and_are_restored(sim_run: tuple[Any, Kube], tmp_path: Path) -> None:
    provider, kube = sim_run
    node = "seldon-gpu-worker"
    kube.patch("v1", "Node", node, None, {"metadata": {"labels": {"pool": "infer-srv"}}})
    try:
        ex = get_provider(existing_profile(**{"cluster.fake_gpus": True, "cluster.destructive": True}),
                          options(tmp_path, Path(provider.cluster.kubeconfig_path)))
        guard = NodeGuard(kube, "r-fake", install_signal_handlers=False)
        problems = ex.prepare_nodes(kube, guard)
        assert problems == [f"GPU node {node} lacks the taint seldon-gpu-srv=true:NoSchedule: add it with "
                            f"`kubectl taint nodes {node} seldon-gpu-srv=true:NoSchedule` "
                            f"(the harness never changes it)"]
        assert guard.changes() == [f"capacity nvidia.com/gpu on node {node}"]  # real GPU nodes left alone
        gpus = existing_profile().cluster.nodes.gpu_workers[0].gpus  # the profile's GPUs per worker
        assert (kube.get("v1", "Node", node) or {})["status"]["allocatable"]["nvidia.com/gpu"] == str(gpus)
        assert guard.restore_all() == []
        assert "nvidia.com/gpu" not in (kube.get("v1", "Node", node) or {})["status"]["allocatable"]
    finally:
        kube.patch("v1", "Node", node, None, {"metadata": {"labels": {"pool": None}}})


def test_simulated_marker_is_the_sims_build_metadata_only() -> None:
    from harness.providers.common import simulated_marker

    assert simulated_marker({"gitVersion": "v1.33.1+harness-sim"})
    for real in ("v1.32.2", "v1.27.3+k3s1", "v1.29.1-gke.1589018", "v1.30.0-eks-036c24b", "", "harness-sim"):
        assert simulated_marker({"gitVersion": real}) is None, real
    assert simulated_marker({}) is None


def test_existing_provider_against_the_sim_says_simulated(sim_run: tuple[Any, Kube], tmp_path: Path) -> None:
    """A kubeconfig that points at the sim does not make its evidence real: the API server says what it is."""
    provider, kube = sim_run
    ex = get_provider(existing_profile(), options(tmp_path, Path(provider.cluster.kubeconfig_path)))
    assert ex.provision().simulated is False  # the provider alone cannot know ...
    facts = ex.cluster_facts(kube)
    assert facts.simulated is True  # ... the API server tells it
    assert facts.simulated_reason is not None and "harness-sim" in facts.simulated_reason


def _fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "calls.jsonl"
    py = tmp_path / "py"
    py.mkdir(exist_ok=True)
    (py / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    (py / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{py}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKEBIN_LOG", str(log))
    return log


def test_install_true_on_a_cluster_that_has_seldon_is_a_preflight_failure(sim_run: tuple[Any, Kube],
                                                                        tmp_path: Path) -> None:
    provider, _ = sim_run
    ex = get_provider(existing_profile(**{"seldon.install": True}),
                      options(tmp_path, Path(provider.cluster.kubeconfig_path)))
    failed = {f.id: f.message for f in ex.preflight() if not f.ok}
    assert "seldon.preexisting" in failed, failed
    assert "already on this cluster (CRD servers.mlops.seldon.io" in failed["seldon.preexisting"]
    assert "set seldon.install: false" in failed["seldon.preexisting"]


def test_install_true_on_a_cluster_that_has_a_device_plugin_is_a_preflight_failure(
        sim_run: tuple[Any, Kube], tmp_path: Path) -> None:
    provider, kube = sim_run
    kc = Path(provider.cluster.kubeconfig_path)
    ex = get_provider(existing_profile(**{"gpu.device_plugin.install": True}), options(tmp_path, kc))
    failed = {f.id: f.message for f in ex.preflight() if not f.ok}
    # the sim's GPU nodes advertise nvidia.com/gpu, as only a registered device plugin makes them do
    assert "already advertise nvidia.com/gpu" in failed.get("gpu.device-plugin.preexisting", ""), failed
    kube.apply({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "nvidia-device-plugin-daemonset", "namespace": "kube-system"},
                "spec": {"selector": {"matchLabels": {"app": "dp"}}, "template": {
                    "metadata": {"labels": {"app": "dp"}},
                    "spec": {"nodeSelector": {"no-such": "node"},
                             "containers": [{"name": "dp", "image": "nvcr.io/nvidia/k8s-device-plugin"}]}}}})
    try:
        failed = {f.id: f.message for f in ex.preflight() if not f.ok}
        assert "DaemonSet kube-system/nvidia-device-plugin-daemonset" in failed["gpu.device-plugin.preexisting"]
    finally:
        kube.delete("apps/v1", "DaemonSet", "nvidia-device-plugin-daemonset", "kube-system")


def test_a_release_that_existed_before_the_run_is_never_upgraded_or_uninstalled(
        sim_run: tuple[Any, Kube], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preflight passed (the release appeared after it, or was invisible to it); helm then
    refuses `install` of a name in use, and teardown uninstalls nothing this run did not install."""
    provider, kube = sim_run
    log = _fake_helm(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKEBIN_FAIL", json.dumps(["helm install seldon-core-v2-setup"]))
    ex = get_provider(existing_profile(**{"seldon.install": True, "gpu.device_plugin.install": True}),
                      options(tmp_path, Path(provider.cluster.kubeconfig_path)))
    ex.install_gpu_stack(kube)
    with pytest.raises(HarnessError):
        ex.install_seldon(kube)
    ex.teardown()
    argv = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    assert not any(a[:1] == ["upgrade"] for a in argv), argv
    uninstalled = [a[1] for a in argv if a[0] == "uninstall"]
    # only what this run installed, newest first: never the setup release that was already there
    assert uninstalled == ["seldon-core-v2-crds", "nvidia-device-plugin"], argv
