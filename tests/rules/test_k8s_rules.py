"""Each rule of harness/k8s pinned to the upstream behaviour it follows, one table per rule.

Upstream sources (the expectations below were read off these files):
- kubernetes/kubernetes staging/src/k8s.io/api/core/v1/toleration.go `ToleratesTaint`
  (commit 19c6083b5c8b499f3bdd52e5f58a0b6f645d0fd3)
- kubernetes/kubernetes staging/src/k8s.io/component-helpers/scheduling/corev1/nodeaffinity/nodeaffinity.go
  and staging/src/k8s.io/apimachinery/pkg/labels/selector.go (commit 1ca8f84eede93fa9b3577a07025ca90582b2ac46)
- kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (same commit)
- kubernetes/kubernetes staging/src/k8s.io/component-helpers/resource/helpers.go `PodRequests`
  (commit 0085214e563468088672cf8c50849884198a18cc)
- SeldonIO/seldon-core tag v2.10.2: operator/controllers/reconcilers/common/patch_utils.go `MergePodSpecs`,
  scheduler/pkg/scheduler/filters/serverrequirements.go
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from harness.k8s import affinity, gpu, quantity, seldon, taints

ROOT = Path(__file__).resolve().parents[2]
GPU = "nvidia.com/gpu"
TAINT = {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}


# --- taints: Toleration.ToleratesTaint ---------------------------------------------------------------
@pytest.mark.parametrize(("toleration", "taint", "expected"), [
    ({"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, TAINT, True),
    ({"key": "seldon-gpu-srv", "value": "true"}, TAINT, True),  # "" operator is Equal; "" effect matches all
    ({"key": "seldon-gpu-srv", "value": "false"}, TAINT, False),
    ({"key": "seldon-gpu-srv", "operator": "Exists"}, TAINT, True),  # Exists ignores the value
    ({"operator": "Exists"}, TAINT, True),  # empty key + Exists: every taint
    ({"operator": "Exists", "effect": "NoExecute"}, TAINT, False),  # ... but the effect still filters
    ({"operator": "Equal", "value": "true"}, TAINT, True),  # empty key skips the key test (validation refuses it)
    ({"operator": "Equal", "value": "x"}, TAINT, False),
    ({"key": "other", "operator": "Exists"}, TAINT, False),
    ({"key": "seldon-gpu-srv", "operator": "Exists", "effect": "PreferNoSchedule"}, TAINT, False),
    ({"key": "k", "operator": "Equal"}, {"key": "k", "effect": "NoSchedule"}, True),  # empty value == empty value
    ({"key": "k", "operator": "Gt", "value": "5"}, {"key": "k", "value": "7", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Gt", "value": "7"}, {"key": "k", "value": "7", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Lt", "value": "5"}, {"key": "k", "value": "3", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Lt", "value": "x"}, {"key": "k", "value": "3", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Lt", "value": "5"}, {"key": "k", "value": "3.0", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Bogus"}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_toleration_matches(toleration: dict[str, str], taint: dict[str, str], expected: bool) -> None:
    assert taints.toleration_matches(toleration, taint) is expected


def test_prefer_no_schedule_never_filters_and_order_is_kept() -> None:
    node_taints = [
        {"key": "soft", "effect": "PreferNoSchedule"},
        {"key": "a", "value": "1", "effect": "NoExecute"},
        {"key": "b", "effect": "NoSchedule"},
    ]
    assert taints.untolerated([], node_taints) == node_taints[1:]
    assert taints.first_untolerated([{"key": "a", "operator": "Exists"}], node_taints) == node_taints[2]
    assert taints.first_untolerated([{"operator": "Exists"}], node_taints) is None
    assert taints.untolerated(None, node_taints, ("NoExecute",)) == [node_taints[1]]
    assert taints.format_taint(TAINT) == "seldon-gpu-srv=true:NoSchedule"
    assert taints.format_taint({"key": "b", "effect": "NoSchedule"}) == "b:NoSchedule"


# --- affinity: labels.Requirement and nodeaffinity ------------------------------------------------------
LABELS = {"pool": "infer-srv", "gpus": "4", "zone": "a"}


@pytest.mark.parametrize(("req", "expected"), [
    ({"key": "pool", "operator": "In", "values": ["infer-srv", "x"]}, True),
    ({"key": "pool", "operator": "In", "values": ["x"]}, False),
    ({"key": "pool", "operator": "In", "values": []}, False),  # In needs values: malformed, matches nothing
    ({"key": "pool", "operator": "NotIn", "values": ["x"]}, True),
    ({"key": "absent", "operator": "NotIn", "values": ["x"]}, True),  # absent label satisfies NotIn
    ({"key": "pool", "operator": "Exists"}, True),
    ({"key": "pool", "operator": "Exists", "values": ["x"]}, False),  # Exists takes no values
    ({"key": "absent", "operator": "DoesNotExist"}, True),
    ({"key": "pool", "operator": "DoesNotExist"}, False),
    ({"key": "gpus", "operator": "Gt", "values": ["2"]}, True),
    ({"key": "gpus", "operator": "Gt", "values": ["4"]}, False),
    ({"key": "gpus", "operator": "Lt", "values": ["5"]}, True),
    ({"key": "gpus", "operator": "Lt", "values": ["5", "6"]}, False),  # exactly one value
    ({"key": "gpus", "operator": "Lt", "values": ["five"]}, False),
    ({"key": "absent", "operator": "Gt", "values": ["1"]}, False),  # Gt needs the label
    ({"key": "pool", "operator": "Gt", "values": ["1"]}, False),  # ... and an integer label
    ({"key": "pool", "operator": "Equals", "values": ["infer-srv"]}, False),
])
def test_requirement_matches(req: dict[str, Any], expected: bool) -> None:
    assert affinity.requirement_matches(req, LABELS) is expected


def _pod(selector: dict[str, str] | None = None, terms: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if selector is not None:
        spec["nodeSelector"] = selector
    if terms is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}
    return spec


IN_POOL = {"key": "pool", "operator": "In", "values": ["infer-srv"]}
NOT_POOL = {"key": "pool", "operator": "NotIn", "values": ["infer-srv"]}


@pytest.mark.parametrize(("spec", "expected"), [
    (_pod(), True),
    (_pod({"pool": "infer-srv"}), True),
    (_pod({"pool": "infer-srv", "zone": "b"}), False),
    (_pod(terms=[{"matchExpressions": [IN_POOL]}]), True),
    (_pod(terms=[{"matchExpressions": [NOT_POOL]}, {"matchExpressions": [IN_POOL]}]), True),  # terms ORed
    (_pod(terms=[{"matchExpressions": [IN_POOL, NOT_POOL]}]), False),  # expressions ANDed
    (_pod(terms=[{}]), False),  # an empty term matches nothing
    (_pod(terms=[]), False),  # required affinity with no terms matches nothing
    (_pod({"zone": "b"}, [{"matchExpressions": [IN_POOL]}]), False),  # selector AND affinity
    (_pod(terms=[{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-1"]}]}]), True),
    (_pod(terms=[{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["gpu-1"]}]}]), False),
    (_pod(terms=[{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "gpu-1"]}]}]),
     False),  # matchFields take exactly one value
    (_pod(terms=[{"matchFields": [{"key": "spec.other", "operator": "In", "values": ["x"]}]}]), False),
    (_pod(terms=[{"matchExpressions": [IN_POOL, {"key": "pool", "operator": "In", "values": []}]},
                 {"matchExpressions": [IN_POOL]}]), True),  # a malformed term fails alone
])
def test_selects_node(spec: dict[str, Any], expected: bool) -> None:
    assert affinity.selects_node(spec, LABELS, "gpu-1") is expected


def test_unknown_keys_and_names_are_assumed_to_match_for_nodes_to_be() -> None:
    spec = _pod({"kubernetes.io/hostname": "w1"}, [{
        "matchExpressions": [IN_POOL, {"key": "kubernetes.io/hostname", "operator": "In", "values": ["w1"]}],
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w1"]}],
    }])
    assert not affinity.selects_node(spec, LABELS, "w2")
    assert affinity.selects_node(spec, LABELS, None, {"kubernetes.io/hostname"})


def test_preferred_weight_and_label_selectors() -> None:
    spec = {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [IN_POOL]}},
        {"weight": 5, "preference": {"matchExpressions": [NOT_POOL]}},
        {"weight": 0, "preference": {"matchExpressions": [IN_POOL]}},
    ]}}}
    assert affinity.preferred_weight(spec, LABELS, "n") == 10
    assert affinity.label_selector_matches(None, LABELS) is False  # null selector: nothing
    assert affinity.label_selector_matches({}, LABELS) is True  # empty selector: everything
    assert affinity.label_selector_matches({"matchLabels": {"zone": "a"}, "matchExpressions": [IN_POOL]}, LABELS)


# --- quantities ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [
    ("1", Fraction(1)), ("500m", Fraction(1, 2)), ("1Gi", Fraction(2**30)), ("2k", Fraction(2000)),
    ("1e3", Fraction(1000)), ("1E3", Fraction(1000)), ("1.5Mi", Fraction(3 * 2**19)), ("100n", Fraction(1, 10**7)),
    ("10u", Fraction(1, 10**5)), ("1E", Fraction(10**18)), ("+2", Fraction(2)), (".5", Fraction(1, 2)),
    (3, Fraction(3)),
])
def test_quantities(text: object, value: Fraction) -> None:
    assert quantity.parse_quantity(text) == value


def test_quantities_agree_with_the_official_client() -> None:
    """Our arithmetic (no client import) gives what kubernetes.utils.parse_quantity gives on every
    suffix, sign, fraction and exponent form the grammar admits."""
    from kubernetes.utils import parse_quantity as client_parse_quantity

    # (Not beyond 28 significant digits: the client computes in Decimal's default precision and rounds
    # there, where this module, like apimachinery's big-number path, stays exact.)
    numbers = ["0", "7", "+3", "-2", ".5", "5.", "1.25", "123456789"]
    suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
                "e3", "E-3", "e+2", "e0"]
    for number in numbers:
        for suffix in suffixes:
            text = number + suffix
            assert quantity.parse_quantity(text) == Fraction(client_parse_quantity(text)), text


@pytest.mark.parametrize("bad", ["", "lots", "1Ki ", " 1", "NaN", "Infinity", "1_000", "1ki", "1K", "1e", True, None])
def test_quantities_kubernetes_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        quantity.parse_quantity(bad)
    assert quantity.quantity_or_none(bad) is None
    assert quantity.quantity_or_zero(bad) == 0


# --- GPUs: PodRequests and the GPU-node definition -----------------------------------------------------
def _c(gpus: str | None = None, limit: str | None = None, restart: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if gpus is not None:
        res["requests"] = {gpu.GPU_RESOURCE: gpus}
    if limit is not None:
        res["limits"] = {gpu.GPU_RESOURCE: limit}
    c: dict[str, Any] = {"name": "c", "resources": res}
    if restart:
        c["restartPolicy"] = restart
    return c


@pytest.mark.parametrize(("spec", "expected"), [
    ({"containers": [_c("1"), _c("2")]}, 3),
    ({"containers": [_c(limit="2")]}, 2),  # the limit stands in for an unset request
    ({"containers": [_c("1", limit="1")]}, 1),
    ({"containers": [_c()]}, 0),
    ({"containers": [_c("1")], "initContainers": [_c("3")]}, 3),  # the largest init container sets the floor
    ({"containers": [_c("1")], "initContainers": [_c("1", restart="Always")]}, 2),  # sidecars add
    ({"containers": [_c("1")], "initContainers": [_c("1", restart="Always"), _c("2")]}, 3),  # init after a sidecar
])
def test_pod_gpu_request(spec: dict[str, Any], expected: int) -> None:
    assert gpu.pod_gpu_request({"spec": spec}) == expected
    assert gpu.pod_gpu_request(spec) == expected


@pytest.mark.parametrize(("node", "expected"), [
    ({"metadata": {"labels": {"pool": "infer-srv"}}}, True),  # pool label without capacity: still a GPU node
    ({"metadata": {"labels": {"nvidia.com/gpu.present": "true"}}}, True),
    ({"metadata": {}, "status": {"capacity": {"nvidia.com/gpu": "2"}}}, True),
    ({"metadata": {}, "status": {"allocatable": {"nvidia.com/gpu": "0"}, "capacity": {"nvidia.com/gpu": "2"}}},
     False),  # allocatable is what the scheduler uses
    ({"metadata": {"labels": {"pool": "cpu"}}, "status": {"allocatable": {"cpu": "4"}}}, False),
])
def test_is_gpu_node(node: dict[str, Any], expected: bool) -> None:
    assert gpu.is_gpu_node(node, "pool", "infer-srv") is expected


def test_report_and_checks_agree_on_gpu_nodes() -> None:
    from harness.checks.placement import gpu_node
    from harness.config import Profile
    from harness.report.builder import node_info

    profile = Profile()
    pool = profile.gpu.pool_label
    node = {"metadata": {"name": "n", "labels": {pool.key: pool.value}}}
    assert gpu_node(node, profile)
    assert node_info(node, pool=(pool.key, pool.value)).role == "gpu"


# --- Seldon ---------------------------------------------------------------------------------------------
def test_seldon_merge_appends_slices_merges_maps_and_replaces_affinity() -> None:
    base = {
        "tolerations": [{"key": "a", "operator": "Exists"}], "initContainers": [{"name": "init-a"}],
        "nodeSelector": {"pool": "x", "zone": "a"}, "affinity": {"podAntiAffinity": {}},
        "containers": [{"name": "agent", "image": "agent:1"},
                       {"name": "mlserver", "image": "m:1", "resources": {"requests": {"memory": "1Gi", "cpu": "1"}}}],
    }
    override = {
        "tolerations": [{"key": "b", "operator": "Exists"}], "initContainers": [{"name": "init-b"}],
        "nodeSelector": {"pool": "infer-srv"}, "affinity": {"nodeAffinity": {}},
        "containers": [{"name": "mlserver", "resources": {"requests": {"memory": "2Gi"}, "limits": {GPU: 1}}},
                       {"name": "sidecar", "image": "s:1"}],
    }
    merged = seldon.merge_pod_spec(base, override)
    assert [t["key"] for t in merged["tolerations"]] == ["a", "b"]
    assert [c["name"] for c in merged["initContainers"]] == ["init-a", "init-b"]
    assert merged["nodeSelector"] == {"pool": "infer-srv", "zone": "a"}
    assert merged["affinity"] == {"nodeAffinity": {}}
    by_name = {c["name"]: c for c in merged["containers"]}
    assert set(by_name) == {"agent", "mlserver", "sidecar"}
    assert by_name["mlserver"]["image"] == "m:1"
    assert by_name["mlserver"]["resources"] == {"requests": {"memory": "2Gi", "cpu": "1"}, "limits": {GPU: 1}}
    assert base["nodeSelector"] == {"pool": "x", "zone": "a"}  # inputs untouched


def test_seldon_capabilities_and_requirements() -> None:
    env = [{"name": seldon.CAPABILITIES_ENV, "value": "mlserver, sklearn"}]
    config = {"containers": [{"name": "agent", "env": env}]}
    base = seldon.config_capabilities(config)
    assert base == ["mlserver", "sklearn"]
    assert seldon.config_capabilities({"containers": [{"name": "agent"}]}) is None
    assert seldon.server_capabilities({"extraCapabilities": ["model-on-gpu"]}, base) == [
        "mlserver", "sklearn", "model-on-gpu"]
    assert seldon.server_capabilities({"capabilities": ["only"], "extraCapabilities": ["x"]}, base) == ["only"]
    assert seldon.satisfies([" sklearn "], base)  # requirements are trimmed
    assert not seldon.satisfies(["sklearn", "model-on-gpu"], base)
    assert not seldon.satisfies(["SKLEARN"], base)  # exact strings
    assert seldon.satisfies([], [])


# --- one source: no rule is defined twice under harness/ ------------------------------------------------
# The same pattern as the project's before-stop hook, plus the names the old copies used.
_RULE_DEF = re.compile(
    r"^\s*def (_?(tolerat[a-z_]*|parse_quantity|quantity[a-z_]*|is_gpu_node|gpu_request[a-z_]*|"
    r"merge_pod_spec[a-z_]*|matches_requirements?|merge_server_pod|requirement_matches|term_matches|"
    r"label_selector_matches|pod_gpu_request|server_capabilities|node_gpu_count|first_untolerated[a-z_]*))\(",
    re.M,
)


# Names that only harness/k8s may define (lint rules such as gpu_requests_equal_limits are findings,
# not Kubernetes rules, and may match the pattern above).
_K8S_ONLY = frozenset({
    "tolerates", "toleration_matches", "parse_quantity", "quantity", "quantity_or_zero", "quantity_or_none",
    "is_gpu_node", "pod_gpu_request", "merge_pod_spec", "merge_server_pod", "requirement_matches", "term_matches",
    "label_selector_matches", "server_capabilities", "first_untolerated", "first_untolerated_taint",
})


def _definitions(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    """Each name `pattern` finds under harness/ (its first group) and the files that define it."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        for match in pattern.finditer(path.read_text()):
            seen.setdefault(match.group(1), []).append(str(path.relative_to(ROOT)))
    return seen


def test_no_rule_is_defined_twice() -> None:
    seen = _definitions(_RULE_DEF)
    twice = {name: where for name, where in seen.items() if len(where) > 1}
    assert not twice, f"rules defined more than once (keep one, in harness/k8s): {twice}"
    outside = {name: where for name, where in seen.items()
               if name.lstrip("_") in _K8S_ONLY and not all(w.startswith("harness/k8s/") for w in where)}
    assert not outside, f"Kubernetes/Seldon rules defined outside harness/k8s: {outside}"


def test_the_grep_would_see_a_copy() -> None:
    assert _RULE_DEF.search("def tolerates(a, b):\n")
    assert _RULE_DEF.search("    def parse_quantity(x):\n")
    assert not _RULE_DEF.search("tolerates(a, b)\n")  # a call is not a definition


# --- one source: no data shape is declared twice under harness/ (issue 17) ---------------------------------
# What a producer writes and the report reads back is one class, which the report uses as a field type.
_SHAPES = ("LoadResult", "LatencyPercentiles", "LatencyWindow", "Slo", "SloVerdict", "SweepStep", "SweepResult",
           "PlacementRow", "Finding")
# The report's former copies of those shapes: a class by one of these names would be a copy again.
_FORMER_COPIES = ("LoadResultData", "SloSpec", "SweepStepData")
_CLASS_DEF = re.compile(rf"^\s*class ({'|'.join(_SHAPES + _FORMER_COPIES)})\b", re.M)


def test_no_data_shape_is_declared_twice() -> None:
    seen = _definitions(_CLASS_DEF)
    twice = {name: where for name, where in seen.items() if len(where) > 1}
    assert not twice, f"data shapes declared more than once (keep the producer's, use it in the report): {twice}"
    copies = {name: where for name, where in seen.items() if name in _FORMER_COPIES}
    assert not copies, f"the report's old copies are back (use the producer's class instead): {copies}"
    assert set(_SHAPES) <= set(seen), f"shapes not found (renamed? update this list): {set(_SHAPES) - set(seen)}"


def test_the_class_grep_would_see_a_copy() -> None:
    assert _CLASS_DEF.search("class LoadResult(Record):\n")
    assert _CLASS_DEF.search("    class Slo:\n")
    assert not _CLASS_DEF.search("class SloLimits(Record):\n")  # another name, not the shape `Slo`
    assert not _CLASS_DEF.search("result: LoadResult\n")  # a use is not a declaration


def test_k8s_package_imports_nothing_but_itself_and_the_client() -> None:
    lines = [line for path in sorted((ROOT / "harness" / "k8s").glob("*.py"))
             for line in path.read_text().splitlines() if re.match(r"(from|import) ", line)]
    imported = {line.split()[1].split(".")[0] for line in lines}
    allowed = {"__future__", "collections", "copy", "dataclasses", "decimal", "fractions", "functools", "re", "typing",
               "harness", "kubernetes"}
    assert imported <= allowed, imported
    assert all(line.split()[1].startswith("harness.k8s") for line in lines if "harness" in line.split()[1])
