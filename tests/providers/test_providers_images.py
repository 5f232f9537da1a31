"""Images that arrive (kind): the exact docker and kind commands for both Docker image stores, a registry
mirror, host credentials; and the kind config `gpu_workers: auto` renders for hosts with 1, 2, 4, 8 GPUs.

Recording fakes on PATH (tests/fakebin) log every call; the kind contract is pinned to
tests/fixtures/upstream/kind-load.json (kubernetes-sigs/kind v0.27.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import render
from harness.config import Profile, load_profile, parse_profile
from harness.errors import UsageError
from harness.layout import resolve, worker_shape
from harness.providers.images import (
    KIND_IMPORT_ARGV,
    DockerFacts,
    commands,
    docker_facts,
    logged_in_registries,
    present_images,
    pull_plans,
)
from harness.render.gpu import KIND_PROBE_IMAGE, PROBE_IMAGE
from harness.render.images import CONTAINERD_REGISTRY_PATCH, hosts_toml, mirror_ref, run_images
from tests.kit.fake_tools import ROOT, calls, provider

UPSTREAM = json.loads((ROOT / "tests" / "fixtures" / "upstream" / "kind-load.json").read_text(encoding="utf-8"))
UUIDS = [f"GPU-{i:08x}-0000-0000-0000-000000000000" for i in range(8)]


def kind_gpu(**cluster: Any) -> Profile:
    data = load_profile(ROOT / "profiles" / "kind-gpu.yaml").model_dump(exclude={"source"})
    data["cluster"].update(cluster)
    return resolve(parse_profile(data, "kind-gpu.yaml"), 2, "NVIDIA-H200", 143771, "test")[0]


def test_kind_contract_is_the_pinned_upstream_one() -> None:
    """kind imports with --all-platforms: the reason archives must hold one platform (kind#3795)."""
    assert list(KIND_IMPORT_ARGV) == UPSTREAM["import_argv"] and UPSTREAM["tag"] == "v0.27.0"
    assert "--all-platforms" in KIND_IMPORT_ARGV
    assert UPSTREAM["containerd_registry_patch"] == CONTAINERD_REGISTRY_PATCH
    assert set(UPSTREAM["image_archive_flags"]) == {"--name", "--nodes"}


def test_run_images_are_listed_once_from_the_profile() -> None:
    images = {i.ref: i.where for i in run_images(kind_gpu())}
    assert images == {
        "docker.io/seldonio/seldonv2-controller:2.10.2": "all", "docker.io/seldonio/seldon-scheduler:2.10.2": "all",
        "docker.io/seldonio/seldon-envoy:2.10.2": "all", "docker.io/seldonio/seldon-agent:2.10.2": "all",
        "docker.io/seldonio/seldon-rclone:2.10.2": "all", "nvcr.io/nvidia/tritonserver:23.03-py3": "gpu",
        "docker.io/seldonio/mlserver:1.7.1": "all", "nvcr.io/nvidia/k8s-device-plugin:v0.17.1": "gpu",
        PROBE_IMAGE: "all"}


@pytest.mark.parametrize(("store", "save"), [
    ("classic", ["docker", "save", "--output", "/a.tar"]),
    # Docker's containerd image store: one platform in the archive, or ctr's --all-platforms import fails.
    ("containerd", ["docker", "save", "--platform", "linux/amd64", "--output", "/a.tar"]),
])
def test_commands_per_docker_image_store(store: str, save: list[str]) -> None:
    plans = [p for p in pull_plans(kind_gpu()) if p.image.ref in (PROBE_IMAGE, "docker.io/seldonio/mlserver:1.7.1")]
    facts = DockerFacts(store, "linux/amd64", "29.1.2")  # type: ignore[arg-type]
    assert commands(plans, facts, Path("/a.tar"), "c1", None) == [
        ["docker", "pull", "--platform", "linux/amd64", "docker.io/seldonio/mlserver:1.7.1"],
        ["docker", "pull", "--platform", "linux/amd64", PROBE_IMAGE],
        # Loaded by the local tag the probe pod names (an archive carries tags, not digests).
        ["docker", "tag", PROBE_IMAGE, KIND_PROBE_IMAGE],
        [*save, "docker.io/seldonio/mlserver:1.7.1", KIND_PROBE_IMAGE],
        ["kind", "load", "image-archive", "/a.tar", "--name", "c1"],
    ]
    assert commands(plans, facts, Path("/a.tar"), "c1", ["w2", "w3"])[-1][-2:] == ["--nodes", "w2,w3"]


def test_docker_info_tells_the_store_and_platform() -> None:
    containerd = {"ServerVersion": "29.1.2", "Architecture": "aarch64", "Driver": "overlayfs",
                  "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}
    assert docker_facts(containerd) == DockerFacts("containerd", "linux/arm64", "29.1.2")
    classic = {"ServerVersion": "27.3.1", "Architecture": "x86_64", "Driver": "overlay2",
               "DriverStatus": [["Backing Filesystem", "extfs"]]}
    assert docker_facts(classic) == DockerFacts("classic", "linux/amd64", "27.3.1")


@pytest.mark.parametrize("store", ["classic", "containerd"])
def test_provision_loads_every_image_from_an_archive(fake_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     store: str) -> None:
    monkeypatch.setenv("FAKEBIN_DOCKER_STORE", store)
    p = provider(tmp_path, profile=kind_gpu())
    p.provision()
    work = tmp_path / "work"
    made = [c for c in calls(fake_env) if c[:2] in (["docker", "save"], ["kind", "load"])]
    platform = ["--platform", "linux/amd64"] if store == "containerd" else []
    gpu_only = ["nvcr.io/nvidia/tritonserver:23.03-py3", "nvcr.io/nvidia/k8s-device-plugin:v0.17.1"]
    everywhere = [p.load_ref for p in pull_plans(kind_gpu()) if p.image.where == "all"]
    assert made == [
        ["docker", "save", *platform, "--output", str(work / "images" / "all-workers.tar"), *everywhere],
        ["kind", "load", "image-archive", str(work / "images" / "all-workers.tar"), "--name", "seldon-gpu-r1"],
        ["docker", "save", *platform, "--output", str(work / "images" / "gpu-workers.tar"), *gpu_only],
        ["kind", "load", "image-archive", str(work / "images" / "gpu-workers.tar"), "--name", "seldon-gpu-r1",
         "--nodes", "seldon-gpu-r1-worker2,seldon-gpu-r1-worker3"],
    ]
    # Nothing goes through `kind load docker-image` (its docker save writes the whole index).
    assert not any(c[:3] == ["kind", "load", "docker-image"] for c in calls(fake_env))


def test_a_mirror_configures_the_nodes_and_serves_the_host_pulls(fake_env: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = "https://mirror.example:5000/hub"
    profile = kind_gpu(registry_mirrors={"docker.io": mirror})
    config = render.kind_config(profile)
    assert config["containerdConfigPatches"] == [CONTAINERD_REGISTRY_PATCH]
    nodes = "seldon-gpu-r1-control-plane\nseldon-gpu-r1-worker\n"
    monkeypatch.setenv("FAKEBIN_STDOUT", json.dumps({"kind get nodes": nodes}))
    p = provider(tmp_path, profile=profile)
    p.provision()
    log = calls(fake_env)
    folder = "/etc/containerd/certs.d/docker.io"
    assert [c for c in log if c[:2] == ["docker", "exec"]] == [
        ["docker", "exec", "-i", node, "sh", "-c", f"mkdir -p {folder} && cat > {folder}/hosts.toml"]
        for node in ("seldon-gpu-r1-control-plane", "seldon-gpu-r1-worker")]
    assert hosts_toml("docker.io", mirror) == (
        'server = "https://registry-1.docker.io"\n\n[host."https://mirror.example:5000/hub"]\n'
        '  capabilities = ["pull", "resolve"]\n')
    # Host pulls of Docker Hub images go to the mirror and are tagged with the name the pods use.
    assert ["docker", "pull", "--platform", "linux/amd64", "mirror.example:5000/hub/seldonio/mlserver:1.7.1"] in log
    assert ["docker", "tag", "mirror.example:5000/hub/seldonio/mlserver:1.7.1",
            "docker.io/seldonio/mlserver:1.7.1"] in log
    assert ["docker", "pull", "--platform", "linux/amd64", "nvcr.io/nvidia/tritonserver:23.03-py3"] in log  # no mirror
    assert mirror_ref("python:3.12-slim", {"docker.io": mirror}) == "mirror.example:5000/hub/library/python:3.12-slim"


def test_mirror_field_is_validated() -> None:
    with pytest.raises(UsageError, match=r"cluster.registry_mirrors: .*without credentials"):
        parse_profile({"cluster": {"registry_mirrors": {"docker.io": "https://user:pw@mirror"}}}, "p.yaml")


def _preflight_pulls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str = "") -> tuple[str, bool]:
    monkeypatch.setenv("FAKEBIN_STDOUT", json.dumps({"docker image ls": listing}))
    found = {f.id: f for f in provider(tmp_path, profile=kind_gpu()).preflight()}
    return found["docker.pulls"].message, found["docker.pulls"].ok


def test_preflight_counts_anonymous_docker_hub_pulls(fake_env: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    message, ok = _preflight_pulls(tmp_path, monkeypatch)
    # Seldon's 5 components, MLServer and the probe come from Docker Hub; Triton and the plugin from nvcr.io.
    assert ok and message.startswith("7 anonymous Docker Hub pull(s) on the host (the limit is 10 per hour")
    assert "docker login" in message and "cluster.registry_mirrors" in message
    listing = "\n".join(json.dumps({"Repository": r, "Tag": t, "Digest": "<none>"}) for r, t in (
        ("seldonio/mlserver", "1.7.1"), ("seldonio/seldon-agent", "2.10.2")))
    message, _ = _preflight_pulls(tmp_path, monkeypatch, listing + "\n")
    assert message.startswith("5 anonymous Docker Hub pull(s)")  # images already on the host are not pulled


def test_host_credentials_are_used_and_never_shown(fake_env: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    secret = "c2VjcmV0LXRva2VuLXZhbHVl"
    (config / "config.json").write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": secret}},
                                                    "credHelpers": {"nvcr.io": "ngc"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    assert logged_in_registries(config) == {"docker.io", "nvcr.io"}
    p = provider(tmp_path, profile=kind_gpu())
    findings = p.preflight()
    pulls = next(f for f in findings if f.id == "docker.pulls")
    assert pulls.ok and pulls.message.startswith("7 Docker Hub pull(s) on the host, with the Docker login")
    assert not any(secret in f.message for f in findings)
    p.provision()
    # The same plain `docker pull`: the Docker client reads its own credentials from DOCKER_CONFIG.
    records = [json.loads(line) for line in fake_env.read_text().splitlines()]
    pulls_made = [r for r in records if r["argv"][:1] == ["pull"]]
    assert pulls_made and all(r["env"].get("DOCKER_CONFIG") == str(config) for r in pulls_made)
    assert pulls_made[0]["argv"] == ["pull", "--platform", "linux/amd64",
                                     "docker.io/seldonio/seldonv2-controller:2.10.2"]


def test_present_images_reads_docker_image_ls() -> None:
    listing = "\n".join(json.dumps(r) for r in (
        {"Repository": "python", "Tag": "3.12-slim", "Digest": PROBE_IMAGE.split("@")[1]},
        {"Repository": "<none>", "Tag": "<none>", "Digest": "<none>"}))
    assert PROBE_IMAGE in present_images(listing) and "docker.io/library/python:3.12-slim" in present_images(listing)


@pytest.mark.parametrize(("gpus", "workers", "per_worker"), [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 4, 2)])
def test_kind_config_for_auto_on_hosts_with_1_2_4_8_gpus(gpus: int, workers: int, per_worker: int) -> None:
    auto = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    assert auto.cluster.nodes.gpu_layout == "auto" and worker_shape(gpus) == (workers, per_worker)
    laid_out, layout = resolve(auto, gpus, "NVIDIA-H100-80GB-HBM3", 81559, "host NVML")
    config = render.kind_config(laid_out)
    gpu_nodes = [n for n in config["nodes"] if n.get("extraMounts")]
    assert len(gpu_nodes) == workers
    mounts = [[m["containerPath"].rsplit("/", 1)[1] for m in n["extraMounts"]] for n in gpu_nodes]
    assert mounts == [[str(w * per_worker + g) for g in range(per_worker)] for w in range(workers)]
    assert {n["labels"]["nvidia.com/gpu.product"] for n in gpu_nodes} == {"NVIDIA-H100-80GB-HBM3"}
    assert {n["labels"]["nvidia.com/gpu.count"] for n in gpu_nodes} == {str(per_worker)}
    # One GPU cannot hold both GPU Servers: the second one and the model pinned to it are left out, by name.
    assert layout.left_out_servers == (("mlserver-gpu-sel",) if gpus == 1 else ())
    expected = ["triton-gpu"] if gpus == 1 else ["triton-gpu", "mlserver-gpu-sel"]
    assert [s.name for s in laid_out.gpu_servers] == expected


def test_auto_is_only_for_kind_with_passthrough() -> None:
    with pytest.raises(UsageError, match=r"cluster\.nodes\.gpu_workers: auto lays GPU workers out"):
        parse_profile({"cluster": {"provider": "existing", "nodes": {"gpu_workers": "auto"}}}, "p.yaml")
    with pytest.raises(UsageError, match="auto lays GPU workers out"):
        parse_profile({"cluster": {"provider": "kind", "fake_gpus": True, "nodes": {"gpu_workers": "auto"}}}, "p.yaml")


def test_existing_clusters_get_image_rewrites_instead_of_node_config() -> None:
    data = load_profile(ROOT / "profiles" / "existing.yaml").model_dump(exclude={"source"})
    data["cluster"]["registry_mirrors"] = {"docker.io": "https://mirror.example:5000/hub"}
    profile = parse_profile(data, "existing.yaml")
    namespace = profile.seldon.namespace
    cpu = render.server(profile, profile.server("mlserver-cpu"), namespace)
    assert {c["name"]: c.get("image") for c in cpu["spec"]["podSpec"]["containers"]} == {
        "mlserver": "mirror.example:5000/hub/seldonio/mlserver:1.7.1"}  # an installed Seldon keeps agent/rclone
    triton = render.server(profile, profile.server("triton-gpu"), namespace)
    assert triton["spec"]["podSpec"]["containers"][0]["image"] == "nvcr.io/nvidia/tritonserver:23.03-py3"
    probe = render.probe_pod(profile, "p", "ns", 1)
    assert probe["spec"]["containers"][0]["image"] == "mirror.example:5000/hub/library/python:3.12-slim@" + \
        PROBE_IMAGE.split("@")[1]
    data["seldon"]["install"] = True
    installing = parse_profile(data, "existing.yaml")
    values = render.setup_values(installing)
    assert values["controller"] == {"image": {"registry": "mirror.example:5000/hub"}}
    assert values["serverConfig"]["agent"] == {"image": {"registry": "mirror.example:5000/hub"}}
    names = {c["name"] for c in render.server(installing, installing.server("mlserver-cpu"), namespace)["spec"][
        "podSpec"]["containers"]}
    assert names == {"mlserver", "agent", "rclone"}
    # kind configures its nodes instead: no rewrite there.
    assert render.setup_values(kind_gpu(registry_mirrors={"docker.io": "https://m.example"})) == {}
