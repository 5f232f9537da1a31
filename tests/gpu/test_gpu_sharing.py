"""Shared GPUs: MIG and time-slicing rules, the device plugin config, the simulated device plugin, the
checks, and the seed's own MIG/time-sliced node as a fixture.

Facts are pinned to NVIDIA/k8s-device-plugin tag v0.17.1 (commit 3c378193fcebf6e955f0d65bd6f2aeed099ad8ea),
which holds the device plugin and gpu-feature-discovery (GFD); each test names the file it follows.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import render
from harness.checks.placement import gpu_node
from harness.cli import main
from harness.config import parse_profile
from harness.errors import UsageError
from harness.gpu import checks
from harness.gpu.result import parse_probe_output
from harness.k8s.gpu import is_gpu_node, node_gpu_count, pod_gpu_request
from harness.k8s.sharing import (
    Sharing,
    capacity_problems,
    gfd_product,
    is_gpu_resource,
    mig_resource,
    node_replicas,
    product_label_for,
)
from harness.lint import lint_documents, lint_manifests
from harness.lint.model import Document
from harness.render.sharing import device_plugin_config
from harness.sim import deviceplugin
from harness.sim.nodes import make_node

ROOT = Path(__file__).resolve().parents[2]
SEED_NODE = ROOT / "tests" / "data" / "seed" / "node-mig-shared.yaml"
MIG_FIXTURE = ROOT / "tests" / "fixtures" / "nvml" / "synthetic-A100-MIG-535.161.08.json"

SINGLE_SHARED = Sharing("single", ("1g.5gb",) * 7, replicas=2)
MIXED = Sharing("mixed", ("3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"))


def _profile(sharing: dict[str, Any], **extra: Any) -> Any:
    base: dict[str, Any] = {"cluster": {"nodes": {"gpu_workers": [{"count": 2, "gpus": 2}]}},
                            "gpu": {"sharing": sharing}}
    base.update(extra)
    return parse_profile(base, "p.yaml")


# --- resource names, capacity, labels (harness/k8s/sharing.py) -----------------------------------------


def test_resource_names_follow_the_device_plugin() -> None:
    # api/config/v1/consts.go: DefaultSharedResourceNameSuffix ".shared"; internal/rm/rm.go: mixed -> mig-<profile>.
    assert mig_resource("1g.5gb") == "nvidia.com/mig-1g.5gb"
    assert mig_resource("1g.10gb+me") == "nvidia.com/mig-1g.10gb.me"
    for name in ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-3g.20gb", "nvidia.com/mig-1g.5gb.shared"):
        assert is_gpu_resource(name), name
    for name in ("nvidia.com/gpu.product", "amd.com/gpu", "cpu", "nvidia.com/mig-strategy"):
        assert not is_gpu_resource(name), name
    with pytest.raises(ValueError):
        mig_resource("big")


@pytest.mark.parametrize(("sharing", "gpus", "capacity"), [
    (Sharing(), 2, {"nvidia.com/gpu": 2}),
    (Sharing(replicas=4), 2, {"nvidia.com/gpu": 8}),
    (Sharing(replicas=4, rename=True), 2, {"nvidia.com/gpu.shared": 8}),
    (SINGLE_SHARED, 1, {"nvidia.com/gpu": 14}),
    (MIXED, 2, {"nvidia.com/mig-3g.20gb": 2, "nvidia.com/mig-2g.10gb": 2, "nvidia.com/mig-1g.5gb": 4}),
    (Sharing(replicas=3), 0, {}),
])
def test_node_capacity_is_gpus_times_devices_times_replicas(sharing: Sharing, gpus: int,
                                                            capacity: dict[str, int]) -> None:
    # internal/rm/device_map.go: `replicas` annotated devices per device, under `rename` when set.
    assert sharing.node_capacity(gpus) == capacity


def test_gfd_product_labels() -> None:
    # internal/lm/resource.go getProductName/sanitise; mig-strategy.go (single: <model>-MIG-<profile>).
    assert gfd_product("NVIDIA H200") == "NVIDIA-H200"
    assert gfd_product("A100-SXM4-40GB", "MIG", "1g.5gb", shared=True) == "A100-SXM4-40GB-MIG-1g.5gb-SHARED"
    assert product_label_for(SINGLE_SHARED, "A100-SXM4-40GB", "1g.5gb") == "A100-SXM4-40GB-MIG-1g.5gb-SHARED"
    assert product_label_for(Sharing(replicas=2, rename=True), "NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert product_label_for(MIXED, "NVIDIA A100-SXM4-40GB", "3g.20gb") == "NVIDIA-A100-SXM4-40GB-MIG-3g.20gb"


def test_pod_and_node_gpu_rules_count_mig_devices_and_replicas() -> None:
    pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/mig-1g.5gb": "2"}}}]}}
    assert pod_gpu_request(pod) == 2 and pod_gpu_request(pod, "amd.com/gpu") == 0
    node = {"metadata": {"name": "n", "labels": {}}, "status": {"allocatable": {"nvidia.com/mig-3g.20gb": "2",
                                                                               "nvidia.com/gpu.shared": "4"}}}
    assert node_gpu_count(node) == 6 and is_gpu_node(node, "", "")


def test_capacity_problems_name_the_resource_and_the_product() -> None:
    node = make_node("n", gpus=2, sharing=Sharing(replicas=4), plugin_sharing=Sharing(replicas=2))
    assert capacity_problems(node, Sharing(replicas=2)) == []
    assert capacity_problems(node, Sharing(replicas=4)) == [
        "node n advertises 4 nvidia.com/gpu, expected 8 (nvidia.com/gpu.count 2 x 4 replica(s), "
        "gpu.sharing time-slicing)"]
    unshared = make_node("m", gpus=2)
    assert "does not use" in capacity_problems(unshared, Sharing(replicas=2, rename=True))[0]


# --- the profile ----------------------------------------------------------------------------------------


def test_profile_sharing_section() -> None:
    p = _profile({"time_slicing": {"replicas": 4}})
    assert p.gpu.shared() == Sharing(replicas=4) and p.gpu.sharing.mode == "time-slicing"
    p = _profile({"mig": {"strategy": "single", "profiles": ["1g.5gb"] * 7}, "time_slicing": {"replicas": 2}})
    assert p.gpu.sharing.mode == "mig+time-slicing"
    assert p.gpu.shared(plugin=True).mig_strategy == "single"


@pytest.mark.parametrize(("sharing", "servers", "expected"), [
    ({"mig": {"strategy": "single", "profiles": ["1g.5gb", "2g.10gb"]}}, [],
     "gpu.sharing.mig: the single MIG strategy needs one MIG profile on every GPU"),
    ({"mig": {"strategy": "mixed", "profiles": ["1g.5gb"]}}, [{"name": "s", "mig_profile": "3g.20gb"}],
     "servers[0].mig_profile: server 's' asks for nvidia.com/mig-3g.20gb, which no GPU worker offers "
     "(they offer nvidia.com/mig-1g.5gb; gpu.sharing mig)"),
    ({}, [{"name": "s", "mig_profile": "1g.5gb"}], "only the mixed MIG strategy advertises"),
    ({"platform": "gke", "mig": {"strategy": "mixed"}}, [], "use mig.strategy single with platform gke"),
    ({"time_slicing": {"replicas": 1}}, [], "gpu.sharing.time_slicing.replicas"),
])
def test_bad_sharing_is_one_line(sharing: dict[str, Any], servers: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(UsageError) as err:
        _profile(sharing, servers=servers)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_server_requesting_a_mig_profile_the_nodes_do_not_offer_exits_2(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Negative profile: one line naming the profile and the nodes' resources, exit 2, no traceback.
    profile = tmp_path / "mig-not-offered.yaml"
    profile.write_text(yaml.safe_dump({
        "gpu": {"sharing": {"mig": {"strategy": "mixed", "profiles": ["1g.5gb", "1g.5gb"]}}},
        "servers": [{"name": "big", "mig_profile": "3g.20gb"}]}))
    assert main(["lint", "--profile", str(profile)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {profile}: servers[0].mig_profile: server 'big' asks for nvidia.com/mig-3g.20gb, which "
                   "no GPU worker offers (they offer nvidia.com/mig-1g.5gb; gpu.sharing mig)"]


def test_lint_finds_a_mig_resource_no_live_node_offers() -> None:
    # An existing cluster: the profile cannot know the nodes, lint --cluster judges the live ones (GPU008).
    p = parse_profile({"cluster": {"provider": "existing"}, "gpu": {"sharing": {"mig": {"strategy": "mixed"}}},
                       "servers": [{"name": "big", "mig_profile": "3g.20gb"}]})
    node = make_node("gpu-1", gpus=1, labels={"pool": "infer-srv"}, taints=[p.gpu.taint.as_k8s()],
                     sharing=Sharing("mixed", ("1g.5gb",) * 7))
    findings = [f for f in lint_manifests(render.render_all(p)["seldon/servers.yaml"], p, nodes=[node])
                if f.rule == "GPU008"]
    assert [f.message for f in findings] == [
        "requests nvidia.com/mig-3g.20gb (MIG profile 3g.20gb), which no live node offers; the nodes offer "
        "nvidia.com/mig-1g.5gb on gpu-1; pods stay Pending"]


def test_gpu001_covers_mig_and_shared_resources() -> None:
    p = parse_profile({})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{
        "name": "c", "image": "i", "resources": {"requests": {"nvidia.com/mig-1g.5gb": "1"},
                                                 "limits": {"nvidia.com/mig-1g.5gb": "2"}}}]}}
    found = [f for f in lint_manifests([pod], p) if f.rule == "GPU001"]
    assert len(found) == 1 and found[0].message.startswith("nvidia.com/mig-1g.5gb requests 1 != limits 2")


# --- the device plugin config (harness/render/sharing.py) -----------------------------------------------


def test_device_plugin_config_keys() -> None:
    # api/config/v1/config.go, flags.go, replicas.go; chart values.yaml `config.map` / `config.default`.
    assert device_plugin_config(_profile({})) is None
    assert device_plugin_config(_profile({"time_slicing": {"replicas": 4, "rename": True,
                                                           "fail_requests_greater_than_one": True}})) == {
        "version": "v1", "flags": {"migStrategy": "none"},
        "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 4}],
                                    "renameByDefault": True, "failRequestsGreaterThanOne": True}}}
    assert device_plugin_config(_profile({"mig": {"strategy": "mixed", "profiles": ["3g.20gb", "1g.5gb"]},
                                          "time_slicing": {"replicas": 2}})) == {
        "version": "v1", "flags": {"migStrategy": "mixed"},
        "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/mig-3g.20gb", "replicas": 2},
                                                  {"name": "nvidia.com/mig-1g.5gb", "replicas": 2}]}}}
    assert device_plugin_config(_profile({"platform": "gke", "time_slicing": {"replicas": 2}})) is None
    values = render.device_plugin_values(_profile({"mig": {"strategy": "single"}}))
    assert values["config"]["default"] == "harness"
    assert yaml.safe_load(values["config"]["map"]["harness"]) == {"version": "v1", "flags": {"migStrategy": "single"}}


# --- the simulated device plugin and GFD (harness/sim/deviceplugin.py) ----------------------------------


def test_simulated_gfd_labels_match_upstream_expected_output() -> None:
    # tests/expected-output-mig-single.txt / -mig-mixed.txt: the GPU and MIG label keys GFD writes.
    single = make_node("n", gpus=1, gpu_product="A100-SXM4-40GB", sharing=SINGLE_SHARED)["metadata"]["labels"]
    assert {k: single[k] for k in ("nvidia.com/gpu.product", "nvidia.com/gpu.count", "nvidia.com/gpu.replicas",
                                   "nvidia.com/gpu.sharing-strategy", "nvidia.com/mig.strategy")} == {
        "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb-SHARED", "nvidia.com/gpu.count": "7",
        "nvidia.com/gpu.replicas": "2", "nvidia.com/gpu.sharing-strategy": "time-slicing",
        "nvidia.com/mig.strategy": "single"}
    mixed = make_node("n", gpus=2, gpu_product="NVIDIA-A100-SXM4-40GB", sharing=MIXED)["metadata"]["labels"]
    for key in ("product", "count", "replicas", "sharing-strategy", "memory"):
        assert f"nvidia.com/mig-1g.5gb.{key}" in mixed
    assert mixed["nvidia.com/mig-1g.5gb.count"] == "4" and mixed["nvidia.com/gpu.count"] == "2"
    assert mixed["nvidia.com/mig.strategy"] == "mixed"
    assert node_replicas({"nvidia.com/gpu.replicas": "4"}) == 4
    assert node_replicas({"cloud.google.com/gke-max-shared-clients-per-gpu": "3"}) == 3


def test_allocation_spreads_replicas_and_refuses_like_the_plugin() -> None:
    devices = {"nvidia.com/gpu": [f"GPU-{g}::{r}" for g in "ab" for r in range(2)]}
    # internal/rm/allocate.go: the GPU with the fewest replicas in use first.
    assert deviceplugin.allocate(devices, set(), {"nvidia.com/gpu": 2}) == ["GPU-a::0", "GPU-b::0"]
    assert deviceplugin.allocate(devices, {"GPU-a::0"}, {"nvidia.com/gpu": 1}) == ["GPU-b::0"]
    with pytest.raises(deviceplugin.AllocationError, match="maximum request size for shared resources is 1"):
        deviceplugin.allocate(devices, set(), {"nvidia.com/gpu": 2}, fail_greater_than_one=True)
    with pytest.raises(deviceplugin.AllocationError, match="Requested: 1, Available: 0"):
        deviceplugin.allocate(devices, set(devices["nvidia.com/gpu"]), {"nvidia.com/gpu": 1})
    assert deviceplugin.device_uuid("GPU-a::1") == "GPU-a"


def test_mig_strategy_none_on_mig_gpus_hands_out_the_whole_gpu() -> None:
    # internal/rm/device_map.go: with migStrategy none the MIG-enabled GPU is advertised whole.
    node = make_node("n", gpus=1, gpu_product="A100-SXM4-40GB", sharing=Sharing("single", ("1g.5gb",) * 2),
                     plugin_sharing=Sharing("none", ("1g.5gb",) * 2))
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
    inventory = deviceplugin.inventory(node, [node["metadata"]["annotations"]["sim.harness.dev/gpu-uuids"]],
                                       "x", 40960)
    assert [m["name"] for m in inventory[0]["mig_devices"]] == ["A100 SXM4 40GB MIG 1g.5gb"] * 2


# --- checks -----------------------------------------------------------------------------------------------


def _mig_result(names: tuple[str, str] = ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB MIG 1g.5gb"),
                migs: int = 1) -> Any:
    doc = json.loads(MIG_FIXTURE.read_text())
    device = doc["devices"][0]
    device["name"] = names[0]
    one = device["mig_devices"][0]
    one["name"] = names[1]
    device["mig_devices"] = [dict(one, slot=i, uuid=one["uuid"][:-1] + str(i)) for i in range(migs)]
    return parse_probe_output(json.dumps(doc), "pod ns/p")


def test_mig_checks_pass_for_one_slice_and_name_a_second() -> None:
    good = checks.check_mig_devices(_mig_result(), 1, node="n")
    assert [v.ok for v in good] == [True] and "(1g.5gb) on GPU-7f3e2d1c" in good[0].reason
    bad = checks.check_mig_devices(_mig_result(migs=2), 1, node="n")
    assert not bad[0].ok and "requested 1 MIG device(s) but sees 2" in bad[0].reason
    whole = checks.check_mig_devices(parse_probe_output(
        (ROOT / "tests/fixtures/nvml/synthetic-2xH200-550.54.15.json").read_text(), "p"), 2)
    assert not whole[0].ok and "is a whole GPU, not a MIG device" in whole[0].reason


def test_shared_report_names_who_shares_what() -> None:
    a, b = _mig_result(), _mig_result()
    verdict = checks.check_shared({"pod-a": a, "pod-b": b}, node="n")[0]
    assert verdict.ok and "shared by pod-a, pod-b" in verdict.reason
    assert checks.check_disjoint({"pod-a": a, "pod-b": b}, node="n", shared=True)[0].id == "gpu.shared"
    assert not checks.check_disjoint({"pod-a": a, "pod-b": b}, node="n")[0].ok
    assert not checks.check_shared({"pod-a": a}, node="n")[0].ok


# --- the seed's node ----------------------------------------------------------------------------------------


def _seed_node() -> dict[str, Any]:
    node = yaml.safe_load(SEED_NODE.read_text())
    assert isinstance(node, dict)
    return node


def test_seed_node_is_accepted_by_lint_and_placement() -> None:
    node = _seed_node()
    p = parse_profile({"gpu": {"sharing": {"mig": {"strategy": "single", "profiles": ["1g.5gb"] * 7},
                                           "time_slicing": {"replicas": 2}}},
                       "cluster": {"nodes": {"gpu_workers": [{"count": 1, "gpus": 1,
                                                              "product": "A100-SXM4-40GB"}]}},
                       "servers": [{"name": "gpu-server", "gpus": 1}]})
    assert gpu_node(node, p)
    docs = [Document(d, "<rendered>", i) for i, d in enumerate(render.render_all(p)["seldon/servers.yaml"])]
    findings = lint_documents(docs, p, nodes=[node])
    assert [f.text() for f in findings if f.severity == "error"] == []
    assert checks.check_shared_capacity(node, p.gpu.shared())[0].ok


def test_seed_product_label_is_accepted_when_nvml_names_the_gpu_without_the_nvidia_prefix() -> None:
    labels = _seed_node()["metadata"]["labels"]
    old_driver = _mig_result(("A100-SXM4-40GB", "A100-SXM4-40GB MIG 1g.5gb"))
    verdict = checks.check_sharing_product(old_driver, labels, SINGLE_SHARED, node="seed")[0]
    assert verdict.ok, verdict.reason
    assert checks.check_pod_visibility(old_driver, 1, None, labels["nvidia.com/gpu.product"], None)[-1].ok
    # A driver that says "NVIDIA A100-SXM4-40GB" has GFD write the NVIDIA- prefix: there the seed's label is wrong.
    new_driver = _mig_result()
    verdict = checks.check_sharing_product(new_driver, labels, SINGLE_SHARED, node="seed")[0]
    assert not verdict.ok and "expected 'NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED'" in verdict.reason
    # Without -SHARED the label would say the slices are not time-sliced.
    unshared = copy.deepcopy(labels)
    unshared["nvidia.com/gpu.product"] = "A100-SXM4-40GB-MIG-1g.5gb"
    assert not checks.check_sharing_product(old_driver, unshared, SINGLE_SHARED)[0].ok


# --- kind preflight and the report ----------------------------------------------------------------------------


def test_kind_preflight_says_in_one_line_when_the_host_has_no_mig() -> None:
    from harness.providers.sharing import host_mig_check

    mig = _profile({"mig": {"strategy": "single", "profiles": ["1g.5gb"]}})
    h200 = parse_probe_output((ROOT / "tests/fixtures/nvml/synthetic-2xH200-550.54.15.json").read_text(), "host")
    assert host_mig_check(_profile({"time_slicing": {"replicas": 2}}), h200, "") is None
    refused = host_mig_check(mig, h200, "")
    assert refused is not None and not refused.ok and "\n" not in refused.message
    assert "needs MIG-capable GPUs with MIG mode on and MIG devices created" in refused.message
    ok = host_mig_check(mig, _mig_result(), "")
    assert ok is not None and ok.ok, ok
    unusable = host_mig_check(mig, None, "NVML library not found")
    assert unusable is not None and not unusable.ok and "NVML library not found" in unusable.message


def test_report_inventory_shows_slices_and_replicas() -> None:
    from harness.report.html import _probe_sees, _sharing_text

    labels = make_node("n", gpus=2, gpu_product="NVIDIA-A100-SXM4-40GB", sharing=MIXED)["metadata"]["labels"]
    text = _sharing_text(labels, {"nvidia.com/mig-1g.5gb": "4", "nvidia.com/mig-3g.20gb": "2", "cpu": "4"})
    assert text == "nvidia.com/mig-1g.5gb=4 (4 device(s)); nvidia.com/mig-3g.20gb=2 (2 device(s)); MIG mixed"
    shared = make_node("m", gpus=1, sharing=Sharing(replicas=4))["metadata"]["labels"]
    assert _sharing_text(shared, {"nvidia.com/gpu": "4"}) == "nvidia.com/gpu=4 (1 device(s) x 4 replicas)"
    doc = json.loads(MIG_FIXTURE.read_text())
    assert _probe_sees(doc) == [
        "MIG-1c2d3e4f-5a6b-5c7d-8e9f-0a1b2c3d4e5f (on GPU-7f3e2d1c-0b9a-4877-a665-5a4b3c2d1e0f)"]


def test_gke_time_sharing_capacity_uses_gke_labels() -> None:
    # cloud.google.com/kubernetes-engine/docs/concepts/timesharing-gpus: the two node labels; the resource
    # stays nvidia.com/gpu. GPUs per node from the seed's gke-accelerator-count (unverified: docs/gpu-sharing.md).
    gke = Sharing(replicas=3, platform="gke")
    node = {"metadata": {"name": "g", "labels": {
        "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing",
        "cloud.google.com/gke-max-shared-clients-per-gpu": "3", "cloud.google.com/gke-accelerator-count": "2"}},
        "status": {"allocatable": {"nvidia.com/gpu": "6"}}}
    assert capacity_problems(node, gke) == []
    node["metadata"]["labels"]["cloud.google.com/gke-max-shared-clients-per-gpu"] = "2"
    assert "expected 'time-sharing' and '3'" in capacity_problems(node, gke)[0]
    assert device_plugin_config(_profile({"platform": "gke", "time_slicing": {"replicas": 3}})) is None


def test_kind_labels_its_shared_gpu_workers_as_gfd_would() -> None:
    from harness.render.kind import gpu_node_labels

    p = _profile({"time_slicing": {"replicas": 4}})
    labels = gpu_node_labels(p, p.cluster.nodes.gpu_workers[0])
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H200-SHARED" and labels["nvidia.com/gpu.replicas"] == "4"
    node = {"metadata": {"name": "w", "labels": labels}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}}
    assert capacity_problems(node, p.gpu.shared()) == []
    plain = parse_profile({})
    assert "nvidia.com/gpu.replicas" not in gpu_node_labels(plain, plain.cluster.nodes.gpu_workers[0])


def test_free_units_count_one_resource_exactly() -> None:
    from harness.k8s.gpu import free_units

    node = make_node("n", gpus=2, sharing=MIXED)
    pods = [{"spec": {"containers": [{"resources": {"limits": {"nvidia.com/mig-1g.5gb": "1"}}}]},
             "status": {"phase": phase}} for phase in ("Running", "Succeeded", "Pending")]
    assert free_units(node, pods, "nvidia.com/mig-1g.5gb") == 2
    assert free_units(node, pods, "nvidia.com/mig-3g.20gb") == 2
    assert free_units(node, pods, "nvidia.com/gpu") == 0
