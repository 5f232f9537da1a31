"""Node selection: `nodeSelector`, required node affinity and label selectors, as Kubernetes decides.

Sources (kubernetes/kubernetes):
- staging/src/k8s.io/component-helpers/scheduling/corev1/nodeaffinity/nodeaffinity.go
  (commit 1ca8f84eede93fa9b3577a07025ca90582b2ac46): nodeSelector and required affinity are ANDed;
  terms are ORed; an empty term matches nothing; a term with a malformed requirement matches nothing;
  matchFields supports only In/NotIn with exactly one value; matchFields are ignored for a node
  without a name.
- staging/src/k8s.io/apimachinery/pkg/labels/selector.go (`NewRequirement`, `Requirement.Matches`):
  In/NotIn need at least one value, Exists/DoesNotExist none, Gt/Lt exactly one base-10 int64; NotIn
  and DoesNotExist are satisfied by an absent label; Gt/Lt need the label present and an integer.

`unknown_keys` and a `None` node name let a caller judge a node that does not exist yet (lint checks
a profile's expected nodes): requirements on keys whose value cannot be known are assumed satisfied.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from harness.k8s.quantity import parse_int64

Labels = Mapping[str, str]
NODE_NAME_FIELD = "metadata.name"


def _values(req: Mapping[str, Any]) -> list[str]:
    return [str(v) for v in (req.get("values") or [])]


def requirement_valid(req: Mapping[str, Any]) -> bool:
    """labels.NewRequirement's checks on operator and values (names are not validated here)."""
    op, values = req.get("operator"), _values(req)
    if op in ("In", "NotIn"):
        return len(values) > 0
    if op in ("Exists", "DoesNotExist"):
        return not values
    if op in ("Gt", "Lt"):
        return len(values) == 1 and parse_int64(values[0]) is not None
    return False


def requirement_matches(req: Mapping[str, Any], labels: Labels) -> bool:
    """One NodeSelectorRequirement / LabelSelectorRequirement against a label map."""
    if not requirement_valid(req):
        return False
    key, op, values = str(req.get("key", "")), req.get("operator"), _values(req)
    present = key in labels
    value = labels.get(key)
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    have = parse_int64(value) if present else None
    if have is None:
        return False
    want = int(values[0])
    return have > want if op == "Gt" else have < want


def field_requirement_matches(req: Mapping[str, Any], node_name: str | None) -> bool:
    """A matchFields requirement (only `metadata.name`, In/NotIn, one value) against a node name."""
    values = _values(req)
    if req.get("key") != NODE_NAME_FIELD or req.get("operator") not in ("In", "NotIn") or len(values) != 1:
        return False
    if not node_name:
        return True  # upstream ignores matchFields for a node without a name; a name to come is unknown
    return (node_name == values[0]) == (req.get("operator") == "In")


def term_matches(term: Mapping[str, Any], labels: Labels, node_name: str | None,
                 unknown_keys: Collection[str] = ()) -> bool:
    """A NodeSelectorTerm: its expressions and fields ANDed; an empty or malformed term matches nothing."""
    exprs: Sequence[Mapping[str, Any]] = term.get("matchExpressions") or []
    fields: Sequence[Mapping[str, Any]] = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(requirement_valid(e) for e in exprs):
        return False
    if not all(
        str(e.get("key", "")) in unknown_keys or requirement_matches(e, labels) for e in exprs
    ):
        return False
    return all(field_requirement_matches(f, node_name) for f in fields)


def required_terms(pod_spec: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The required node-affinity terms of a pod spec; None when it has no required node affinity."""
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not isinstance(required, Mapping):
        return None
    return [t for t in required.get("nodeSelectorTerms") or [] if isinstance(t, Mapping)]


def node_selector_matches(selector: Mapping[str, Any] | None, labels: Labels,
                          unknown_keys: Collection[str] = ()) -> bool:
    """`spec.nodeSelector`: every key present with exactly that value."""
    return all(
        str(k) in unknown_keys or labels.get(str(k)) == str(v) for k, v in (selector or {}).items()
    )


def selects_node(pod_spec: Mapping[str, Any], labels: Labels, node_name: str | None,
                 unknown_keys: Collection[str] = ()) -> bool:
    """RequiredNodeAffinity.Match: nodeSelector AND (any required affinity term)."""
    if not node_selector_matches(pod_spec.get("nodeSelector"), labels, unknown_keys):
        return False
    terms = required_terms(pod_spec)
    if terms is None:
        return True
    return any(term_matches(t, labels, node_name, unknown_keys) for t in terms)


def preferred_weight(pod_spec: Mapping[str, Any], labels: Labels, node_name: str | None) -> int:
    """NodeAffinity scoring: the sum of the weights of the matching preferred terms."""
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    total = 0
    for pref in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        weight = int(pref.get("weight", 0) or 0)
        if weight and term_matches(pref.get("preference") or {}, labels, node_name):
            total += weight
    return total


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Labels) -> bool:
    """metav1.LabelSelector: a null selector matches nothing, an empty one everything."""
    if selector is None:
        return False
    if any(labels.get(str(k)) != str(v) for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(requirement_matches(e, labels) for e in selector.get("matchExpressions") or [])


