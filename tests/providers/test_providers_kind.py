"""Boundary tests of the kind provider: recording fake tools on PATH (tests/fakebin), a fake Kube.

The fakes log every call; the tests assert the exact commands, their order and their timeouts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness import render
from harness.config import Profile, load_profile, parse_profile
from harness.errors import UsageError
from harness.kube.tools import ToolError, ToolRunner
from harness.providers.images import pull_plans
from harness.providers.kind import (
    CONFIGURE_CONTAINERD,
    MASK_DRIVER_PARAMS,
    MIN_VERSIONS,
    NODE_IMAGE_KIND_RELEASE,
    NVKIND_COMMIT,
    RESTART_CONTAINERD,
    hidden_indices,
    hide_device_script,
    install_toolkit_script,
    needed_host_gpus,
    node_image_kind_floor,
)
from tests.kit.fake_tools import FAKEBIN, UUIDS, calls, provider, two_gpu_profile

ROOT = Path(__file__).resolve().parents[2]


class FakeKube:
    """Just what the provider calls; nodes advertise the GPUs it waits for."""

    def __init__(self, nodes: list[dict[str, Any]] | None = None) -> None:
        self.applied: list[dict[str, Any]] = []
        self.waits: list[str] = []
        self.nodes = {n["metadata"]["name"]: n for n in nodes or []}

    def apply(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        self.applied.append(obj)
        return obj

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.nodes.get(name)

    def wait_for_list(self, api_version: str, kind: str, namespace: str | None, predicate: Any, timeout: float,
                      what: str, label_selector: str | None = None, field_selector: str | None = None) -> Any:
        self.waits.append(what)
        items = list(self.nodes.values())
        assert predicate(items), f"predicate false for {what}"
        return items


def gpu_node(name: str, gpus: int, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "resourceVersion": "1"},
            "spec": {"taints": taints or []}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


# --- preflight ----------------------------------------------------------------------------------------------


def test_preflight_all_good(fake_env: Path, tmp_path: Path) -> None:
    findings = provider(tmp_path).preflight()
    assert [f.id for f in findings if not f.ok] == []
    assert {f.id for f in findings} >= {"tool.kind", "tool.helm", "tool.kubectl", "docker.daemon",
                                       "docker.default-runtime", "host.gpus", "host.nvidia-toolkit",
                                       "host.nvidia-ctk", "host.inotify.max_user_watches",
                                       "host.inotify.max_user_instances"}
    assert calls(fake_env) == [["kind", "version"], ["helm", "version", "--short"],
                               ["kubectl", "version", "--client", "--output", "json"],
                               ["docker", "info", "--format", "{{json .}}"],
                               ["docker", "image", "ls", "--digests", "--format", "{{json .}}"],
                               ["nvidia-ctk", "--version"]]


@pytest.mark.parametrize(
    ("env", "host_kw", "finding", "words"),
    [
        ({"FAKEBIN_DOCKER_DOWN": "1"}, {}, "docker.daemon", ["not reachable", "start Docker"]),
        ({"FAKEBIN_DOCKER_RUNTIME": "runc"}, {}, "docker.default-runtime",
         ["'runc'", "nvidia-ctk runtime configure --runtime=docker --set-as-default"]),
        ({"FAKEBIN_VERSION_KIND": "0.20.0"}, {}, "tool.kind", ["kind 0.20.0 is too old", ">= 0.27.0"]),
        ({"FAKEBIN_VERSION_HELM": "3.8.1"}, {}, "tool.helm", ["helm 3.8.1 is too old", ">= 3.12.0"]),
        ({"FAKEBIN_VERSION_KUBECTL": "1.25.0"}, {}, "tool.kubectl", ["kubectl 1.25.0 is too old"]),
        ({}, {"gpus": UUIDS[:1]}, "host.gpus", ["need 2 host GPU(s) but NVML sees 1"]),
        ({}, {"gpus": None, "reason": "NVMLError_LibraryNotFound"}, "host.gpus",
         ["NVMLError_LibraryNotFound", "kind-cpu"]),
        ({}, {"accept": False}, "host.nvidia-toolkit",
         ["accept-nvidia-visible-devices-as-volume-mounts is not true",
          "nvidia-ctk config --set accept-nvidia-visible-devices-as-volume-mounts=true --in-place"]),
        ({}, {"watches": 8192}, "host.inotify.max_user_watches",
         ["is 8192", "sudo sysctl fs.inotify.max_user_watches=524288"]),
        ({}, {"instances": 128}, "host.inotify.max_user_instances",
         ["is 128", "sudo sysctl fs.inotify.max_user_instances=8192"]),
    ],
)
def test_preflight_failure_messages(fake_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    env: dict[str, str], host_kw: dict[str, Any], finding: str,
                                    words: list[str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    findings = provider(tmp_path, **host_kw).preflight()
    failed = [f for f in findings if not f.ok]
    assert [f.id for f in failed] == [finding]
    for w in words:
        assert w in failed[0].message
    assert "\n" not in failed[0].message


def test_preflight_missing_tool_and_toolkit_file(fake_env: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    only = tmp_path / "bin"
    only.mkdir()
    for tool in ("docker", "kind", "kubectl", "nvidia-ctk"):  # helm missing
        (only / tool).symlink_to(FAKEBIN / tool)
    monkeypatch.setenv("PATH", f"{only}{os.pathsep}{tmp_path / 'py'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    p = provider(tmp_path)
    object.__setattr__(p.options.host, "nvidia_runtime_config", tmp_path / "absent.toml")
    failed = {f.id: f.message for f in p.preflight() if not f.ok}
    assert set(failed) == {"tool.helm", "host.nvidia-toolkit"}
    assert "helm not found on PATH" in failed["tool.helm"]
    assert "absent.toml not found" in failed["host.nvidia-toolkit"]


def test_preflight_kind_cpu_skips_gpu_checks(fake_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_DOCKER_RUNTIME", "runc")
    p = provider(tmp_path, profile=load_profile(ROOT / "profiles" / "kind-cpu.yaml"), gpus=None, accept=False)
    findings = p.preflight()
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert not any(f.id.startswith(("host.gpus", "host.nvidia", "docker.default-runtime")) for f in findings)


# --- the full kind-gpu sequence ------------------------------------------------------------------------------


def test_kind_gpu_two_workers_exact_sequence(fake_env: Path, tmp_path: Path) -> None:
    p = provider(tmp_path)
    work = tmp_path / "work"
    handle = p.provision()
    assert (handle.cluster_name, handle.context, handle.created, handle.simulated) == (
        "seldon-gpu-r1", "kind-seldon-gpu-r1", True, False)
    assert handle.kubeconfig == work / "kubeconfig" and handle.kubeconfig.is_file()
    kube = FakeKube([gpu_node("seldon-gpu-r1-worker2", 1, [{"key": "seldon-gpu-srv", "value": "true",
                                                            "effect": "NoSchedule"}]),
                     gpu_node("seldon-gpu-r1-worker3", 1, [{"key": "seldon-gpu-srv", "value": "true",
                                                            "effect": "NoSchedule"}])])
    assert p.prepare_nodes(kube, guard=None) == []  # type: ignore[arg-type]
    p.install_gpu_stack(kube)  # type: ignore[arg-type]
    p.install_seldon(kube)  # type: ignore[arg-type]
    p.teardown()

    kc = str(work / "kubeconfig")
    helm_tail = ["--kubeconfig", kc, "--kube-context", "kind-seldon-gpu-r1"]
    expected: list[list[str]] = [
        ["kind", "get", "clusters"],
        ["kind", "create", "cluster", "--name", "seldon-gpu-r1", "--config", str(work / "kind-cluster.yaml"),
         "--kubeconfig", kc, "--wait", "600s"],
        ["kind", "load", "docker-image", "harness/probe:dev", "--name", "seldon-gpu-r1"],
        ["docker", "info", "--format", "{{json .}}"],
    ]
    # Every image the run starts arrives before any pod needs it (tests/providers/test_providers_images.py has the
    # commands per Docker image store); here: one pull, save and load per image, GPU-only ones to GPU workers.
    loads = [c for c in calls(fake_env) if c[:3] == ["kind", "load", "image-archive"]]
    assert [c[3] for c in loads] == [str(work / "images" / "all-workers.tar"), str(work / "images" / "gpu-workers.tar")]
    assert loads[1][-2:] == ["--nodes", "seldon-gpu-r1-worker2,seldon-gpu-r1-worker3"]  # Triton, device plugin
    assert len([c for c in calls(fake_env) if c[:2] == ["docker", "pull"]]) == len(pull_plans(p.profile))
    expected += [c for c in calls(fake_env) if (c[0] == "docker" and c[1] in ("pull", "tag", "save"))
                 or c[:3] == ["kind", "load", "image-archive"]]
    hide = {"seldon-gpu-r1-worker2": 1, "seldon-gpu-r1-worker3": 0}  # each worker hides the other's GPU
    for node in ("seldon-gpu-r1-worker2", "seldon-gpu-r1-worker3"):
        expected += [
            ["docker", "exec", node, "bash", "-c", install_toolkit_script("1.17.8-1")],
            # nvkind's recipe: containerd configured from its file, the NVIDIA runtime NOT the default.
            ["docker", "exec", node, "nvidia-ctk", "runtime", "configure", "--runtime=containerd",
             "--config-source=file"],
            ["docker", "exec", node, "nvidia-ctk", "config", "--set",
             "accept-nvidia-visible-devices-as-volume-mounts=true", "--in-place"],
            ["docker", "exec", node, "systemctl", "restart", "containerd"],
            ["docker", "exec", node, "bash", "-c", MASK_DRIVER_PARAMS],
            ["docker", "exec", node, "bash", "-c", hide_device_script(hide[node])],
        ]
    expected.append(["helm", "upgrade", "--install", "nvidia-device-plugin", "nvidia-device-plugin", "--repo",
                     "https://nvidia.github.io/k8s-device-plugin", "--version", "0.17.1", "--namespace",
                     "nvidia-device-plugin", "--create-namespace", "--values",
                     str(work / "helm" / "device-plugin-values.yaml"), "--wait", "--timeout", "600s", *helm_tail])
    for chart, values in (("seldon-core-v2-crds", None), ("seldon-core-v2-setup", "seldon-setup-values.yaml"),
                          ("seldon-core-v2-runtime", "seldon-runtime-values.yaml")):
        expected.append(["helm", "upgrade", "--install", chart, chart, "--repo", "https://seldonio.github.io/helm-charts/",
                         "--version", "2.10.2", "--namespace", "seldon-mesh", "--create-namespace",
                         *(["--values", str(work / "helm" / values)] if values else []),
                         "--wait", "--timeout", "900s", *helm_tail])
    expected.append(["kind", "delete", "cluster", "--name", "seldon-gpu-r1", "--kubeconfig", kc])
    assert calls(fake_env) == expected

    # The same sequence, with the timeout each call ran under (profile.timeouts).
    timeouts = [(rec.argv[0], rec.argv[1], rec.timeout) for rec in p.runner.history]
    assert timeouts[:3] == [("kind", "get", 120.0), ("kind", "create", 660.0), ("kind", "load", 600.0)]
    assert {t for t in timeouts if t[1] in ("pull", "tag", "save")} == {
        ("docker", "pull", 900.0), ("docker", "tag", 120.0), ("docker", "save", 900.0)}
    assert {t for t in timeouts if t[1] == "load"} == {("kind", "load", 600.0), ("kind", "load", 900.0)}
    first_exec = next(i for i, t in enumerate(timeouts) if t[1] == "exec")
    assert timeouts[first_exec][2] == 600.0 and timeouts[first_exec + 1][2] == 120.0  # toolkit: GPU stack budget
    assert [t for t in timeouts if t[0] == "helm"] == [("helm", "upgrade", 630.0)] + [("helm", "upgrade", 930.0)] * 3
    assert timeouts[-1] == ("kind", "delete", 300.0)

    # Through Kube: the RuntimeClass, the mesh NodePort, and a wait for GPU allocatable on both workers.
    assert [(o["kind"], o["metadata"]["name"]) for o in kube.applied] == [
        ("RuntimeClass", "nvidia"), ("Service", "seldon-mesh-nodeport")]
    assert kube.waits == ["GPU nodes to advertise nvidia.com/gpu (seldon-gpu-r1-worker2=1, seldon-gpu-r1-worker3=1)"]
    values = (work / "helm" / "device-plugin-values.yaml").read_text()
    assert "seldon-gpu-srv" in values and "runtimeClassName: nvidia" in values
    assert p.mesh_endpoint(kube).http_url == "http://127.0.0.1:30080"  # type: ignore[arg-type]


def test_gpu_wait_fails_when_a_worker_lacks_allocatable(fake_env: Path, tmp_path: Path) -> None:
    p = provider(tmp_path)
    p.provision()
    kube = FakeKube([gpu_node("seldon-gpu-r1-worker2", 1), gpu_node("seldon-gpu-r1-worker3", 0)])
    with pytest.raises(AssertionError, match="predicate false"):
        p.install_gpu_stack(kube)  # type: ignore[arg-type]


def test_keep_cluster_reuses_existing_and_never_deletes(fake_env: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_KIND_CLUSTERS", "other,seldon-gpu-r1")
    p = provider(tmp_path, keep=True)
    handle = p.provision()
    assert handle.created is False
    p.teardown()
    kc = str(tmp_path / "work" / "kubeconfig")
    assert calls(fake_env) == [
        ["kind", "get", "clusters"],
        ["kind", "export", "kubeconfig", "--name", "seldon-gpu-r1", "--kubeconfig", kc],
        ["kind", "load", "docker-image", "harness/probe:dev", "--name", "seldon-gpu-r1"],
        ["docker", "info", "--format", "{{json .}}"],
    ] + [c for c in calls(fake_env) if c[:2] in (["docker", "pull"], ["docker", "tag"], ["docker", "save"])
         or c[:3] == ["kind", "load", "image-archive"]]
    assert calls(fake_env)[-1][:3] == ["kind", "load", "image-archive"]  # images arrive; nothing is deleted


def test_existing_cluster_without_keep_is_refused(fake_env: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_KIND_CLUSTERS", "seldon-gpu-r1")
    with pytest.raises(UsageError, match="already exists: pass --keep-cluster"):
        provider(tmp_path).provision()
    assert [c[:2] for c in calls(fake_env)] == [["kind", "get"]]


def test_keep_cluster_creates_when_absent_and_keeps_it(fake_env: Path, tmp_path: Path) -> None:
    p = provider(tmp_path, keep=True)
    assert p.provision().created is True
    p.teardown()
    assert not any(c[:2] == ["kind", "delete"] for c in calls(fake_env))


def test_teardown_after_a_failed_install_deletes_the_cluster(fake_env: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_FAIL", json.dumps(["helm upgrade --install seldon-core-v2-setup"]))
    p = provider(tmp_path)
    p.provision()
    with pytest.raises(ToolError) as err:
        p.install_seldon(FakeKube())  # type: ignore[arg-type]
    assert "`helm upgrade --install seldon-core-v2-setup" in str(err.value)
    assert "exit code 1" in str(err.value) and "failing on purpose" in str(err.value)
    p.teardown()
    log = calls(fake_env)
    assert log[-1][:3] == ["kind", "delete", "cluster"]
    assert [c[3] for c in log if c[:3] == ["helm", "upgrade", "--install"]] == [
        "seldon-core-v2-crds", "seldon-core-v2-setup"]  # stopped at the failure, runtime never ran


def test_teardown_after_a_failed_create_still_deletes(fake_env: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_FAIL", json.dumps(["kind create cluster"]))
    p = provider(tmp_path)
    with pytest.raises(ToolError, match="kind create cluster"):
        p.provision()
    p.teardown()
    assert calls(fake_env)[-1][:5] == ["kind", "delete", "cluster", "--name", "seldon-gpu-r1"]


def test_kind_cpu_fakes_capacity_through_the_guard_and_installs_no_gpu_stack(fake_env: Path, tmp_path: Path) -> None:
    p = provider(tmp_path, profile=load_profile(ROOT / "profiles" / "kind-cpu.yaml"))
    p.provision()

    class Guard:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, int]] = []

        def set_extended_capacity(self, node: str, resource: str, count: int) -> None:
            self.calls.append((node, resource, count))

    guard = Guard()
    taint = [{"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}]
    kube = FakeKube([gpu_node("seldon-cpu-r1-worker2", 0, taint), gpu_node("seldon-cpu-r1-worker3", 0)])
    problems = p.prepare_nodes(kube, guard)  # type: ignore[arg-type]
    assert guard.calls == [("seldon-cpu-r1-worker2", "nvidia.com/gpu", 1),
                           ("seldon-cpu-r1-worker3", "nvidia.com/gpu", 1)]
    assert problems == ["GPU worker seldon-cpu-r1-worker3 lacks the taint seldon-gpu-srv=true:NoSchedule "
                        "(the kind config's kubeadm patch did not apply)"]
    before = len(calls(fake_env))
    p.install_gpu_stack(kube)  # type: ignore[arg-type]
    assert len(calls(fake_env)) == before and kube.applied == []


# --- pure helpers and the runner ------------------------------------------------------------------------------


def test_hidden_indices() -> None:
    assert hidden_indices(("0",), UUIDS) == [1]
    assert hidden_indices((UUIDS[1],), UUIDS) == [0]
    assert hidden_indices(("all",), UUIDS) == []
    assert hidden_indices(("0", "1"), UUIDS) == []


def test_needed_host_gpus() -> None:
    assert needed_host_gpus(two_gpu_profile()) == 2


def test_runner_timeout_names_the_command(tmp_path: Path) -> None:
    script = tmp_path / "slow"
    script.write_text("#!/bin/sh\nexec sleep 5\n")  # the child sleeps, not the harness
    script.chmod(0o755)
    runner = ToolRunner(default_timeout=0.3)
    object.__setattr__(runner.paths, "kind", str(script))
    with pytest.raises(ToolError, match=r"`kind get clusters` timed out after 0.3s"):
        runner.run("kind", ["get", "clusters"])
    assert runner.history[-1].timeout == 0.3


def test_runner_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match="kind not found on PATH"):
        ToolRunner().run("kind", ["version"])


# --- pinned upstream facts ------------------------------------------------------------------------------------


UPSTREAM = ROOT / "tests" / "fixtures" / "upstream"


def test_in_node_recipe_is_nvkinds_at_the_pinned_commit() -> None:
    facts = json.loads((UPSTREAM / "nvkind-node.json").read_text(encoding="utf-8"))
    assert facts["commit"] == NVKIND_COMMIT
    assert facts["configure_runtime"] == CONFIGURE_CONTAINERD
    assert "--set-as-default" not in CONFIGURE_CONTAINERD and "--config-source=command" not in CONFIGURE_CONTAINERD
    assert facts["restart_runtime"] == RESTART_CONTAINERD
    rc = render.runtime_class()
    assert {"name": rc["metadata"]["name"], "handler": rc["handler"]} == facts["runtime_class"]


def test_toolkit_packages_are_pinned_to_one_version_from_the_profile() -> None:
    script = install_toolkit_script("1.17.8-1")
    install = next(line for line in script.splitlines() if line.startswith("apt-get install") and "toolkit" in line)
    assert sorted(install.split()[4:]) == sorted(
        f"{pkg}=1.17.8-1" for pkg in ("nvidia-container-toolkit", "nvidia-container-toolkit-base",
                                      "libnvidia-container-tools", "libnvidia-container1"))
    assert Profile().gpu.container_toolkit_version == "1.17.8-1"
    with pytest.raises(UsageError, match="container_toolkit_version"):
        parse_profile({"gpu": {"container_toolkit_version": "latest; rm -rf /"}}, "p.yaml")


def test_node_image_digests_map_to_the_kind_release_that_ships_them() -> None:
    # kind's release notes: v0.26.0 -> kindest/node:v1.32.0@c48c62ea..., v0.27.0 -> v1.32.2@f2263459...
    assert node_image_kind_floor(
        "kindest/node:v1.32.2@sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f") == (0, 27, 0)
    assert node_image_kind_floor(
        "kindest/node:v1.32.0@sha256:c48c62eac5da28cdadcf560d1d8616cfa6783b58f0d94cf63ad1bf49600cb027") == (0, 26, 0)
    assert node_image_kind_floor("kindest/node:v1.32.2") is None
    for name in ("kind-gpu.yaml", "kind-cpu.yaml"):
        image = load_profile(ROOT / "profiles" / name).cluster.node_image or ""
        floor = node_image_kind_floor(image)
        assert floor is not None, f"{name}: node image {image} is not in NODE_IMAGE_KIND_RELEASE"
        assert floor <= MIN_VERSIONS["kind"], f"{name}: its node image needs kind {floor}"
    assert max(NODE_IMAGE_KIND_RELEASE.values()) <= MIN_VERSIONS["kind"]


def test_readme_and_code_agree_on_every_tool_floor() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for tool, floor in MIN_VERSIONS.items():
        shown = ".".join(map(str, floor))
        assert f"`{tool}` ≥ {shown}" in readme, f"README must say `{tool}` ≥ {shown}"
        others = [v.rstrip(".") for v in re.findall(rf"`{tool}` ≥ ([0-9.]+)", readme)]
        assert set(others) == {shown}, f"README names other {tool} floors: {others}"


def test_kind_older_than_the_node_image_is_refused(fake_env: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_STDOUT", json.dumps({"kind version": "kind v0.26.0 go1.23.4 linux/amd64\n"}))
    p = provider(tmp_path)
    finding = p._version_finding("kind")
    assert not finding.ok and "install kind >= 0.27.0" in finding.message


# --- evidence before deletion ----------------------------------------------------------------------------------


def test_failed_run_collects_evidence_before_the_cluster_is_deleted(fake_env: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.lifecycle import ClusterSession, RunOptions
    from harness.providers.kind import DEVICE_PLUGIN_SELECTOR, NODE_EVIDENCE

    nodes = "seldon-gpu-r1-control-plane\nseldon-gpu-r1-worker\n"
    config = "docker exec seldon-gpu-r1-worker sh -c cat /etc/containerd/config"
    monkeypatch.setenv("FAKEBIN_STDOUT", json.dumps({"kind get nodes": nodes, config: "version = 2\n"}))
    session = ClusterSession(two_gpu_profile(), RunOptions(run_id="r1", workdir=tmp_path / "report" / "work"))
    p = provider(tmp_path)
    p.workdir = tmp_path / "report" / "work"
    p.kubeconfig = p.workdir / "kubeconfig"
    session.provider = p
    p.provision()
    before = len(calls(fake_env))
    assert session.down(failed=True) == []
    done = calls(fake_env)[before:]
    kc = str(p.kubeconfig)
    evidence = tmp_path / "report" / "evidence" / "seldon-gpu-r1"
    expected = [
        ["kind", "export", "logs", str(evidence / "kind-logs"), "--name", "seldon-gpu-r1"],
        ["kind", "get", "nodes", "--name", "seldon-gpu-r1"],
    ]
    for node in nodes.split():
        expected += [["docker", "exec", node, "sh", "-c", script] for script in NODE_EVIDENCE.values()]
    expected += [
        ["kubectl", "--kubeconfig", kc, "--context", "kind-seldon-gpu-r1", "logs", "--namespace",
         "nvidia-device-plugin", "--selector", DEVICE_PLUGIN_SELECTOR, "--all-containers", "--prefix", "--tail=-1",
         "--ignore-errors"],
        ["kind", "delete", "cluster", "--name", "seldon-gpu-r1", "--kubeconfig", kc],  # only after the evidence
    ]
    assert done == expected
    assert (evidence / "nodes" / "seldon-gpu-r1-worker" / "containerd-config.toml").read_text() == "version = 2\n"
    assert (evidence / "device-plugin.log").is_file()
    assert [r.name for r in session.phases] == ["evidence", "cleanup"]


def test_passing_run_deletes_without_collecting(fake_env: Path, tmp_path: Path) -> None:
    from harness.lifecycle import ClusterSession, RunOptions

    session = ClusterSession(two_gpu_profile(), RunOptions(run_id="r1", workdir=tmp_path / "work"))
    session.provider = p = provider(tmp_path)
    p.provision()
    before = len(calls(fake_env))
    session.down()
    assert calls(fake_env)[before:] == [["kind", "delete", "cluster", "--name", "seldon-gpu-r1", "--kubeconfig",
                                         str(tmp_path / "work" / "kubeconfig")]]


def test_evidence_that_cannot_be_collected_is_reported_not_raised(fake_env: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEBIN_FAIL", json.dumps(["kind export logs"]))
    p = provider(tmp_path)
    p.provision()
    problems = p.collect_evidence()
    assert len(problems) == 1 and "kind export logs" in problems[0]
