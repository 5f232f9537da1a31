"""Taints and tolerations, exactly as Kubernetes matches them.

Source: kubernetes/kubernetes staging/src/k8s.io/api/core/v1/toleration.go, `ToleratesTaint`
(commit 19c6083b5c8b499f3bdd52e5f58a0b6f645d0fd3): an empty effect matches every effect; a non-empty
key must equal the taint's; operator "" or Equal compares values; Exists matches any value; Lt/Gt
compare the values as base-10 int64 (the taint's value against the toleration's); anything else
matches nothing. API validation rejects an empty key with Equal, but the matcher itself does not
special-case it, and neither do we. The scheduler's TaintToleration filter and the taint manager
only act on NoSchedule and NoExecute (pkg/scheduler/framework/plugins/tainttoleration): a
PreferNoSchedule taint never filters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.k8s.quantity import parse_int64

Taint = Mapping[str, Any]
Toleration = Mapping[str, Any]

FILTER_EFFECTS: tuple[str, ...] = ("NoSchedule", "NoExecute")


def toleration_matches(toleration: Toleration, taint: Taint) -> bool:
    """Does this one toleration tolerate this one taint (Toleration.ToleratesTaint)?"""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    operator = toleration.get("operator") or ""
    if operator in ("", "Equal"):
        return str(toleration.get("value") or "") == str(taint.get("value") or "")
    if operator == "Exists":
        return True
    if operator in ("Lt", "Gt"):
        want, have = parse_int64(toleration.get("value") or ""), parse_int64(taint.get("value") or "")
        if want is None or have is None:
            return False
        return have < want if operator == "Lt" else have > want
    return False


def tolerates(tolerations: Iterable[Toleration] | None, taint: Taint) -> bool:
    """Some toleration of the list tolerates `taint`."""
    return any(toleration_matches(t, taint) for t in (tolerations or ()))


def untolerated(tolerations: Iterable[Toleration] | None, taints: Iterable[Taint] | None,
                effects: Iterable[str] = FILTER_EFFECTS) -> list[Taint]:
    """The taints with one of `effects` that no toleration covers, in the node's order."""
    tols = list(tolerations or ())
    wanted = tuple(effects)
    return [t for t in (taints or ()) if t.get("effect") in wanted and not tolerates(tols, t)]


def first_untolerated(tolerations: Iterable[Toleration] | None, taints: Iterable[Taint] | None,
                      effects: Iterable[str] = FILTER_EFFECTS) -> Taint | None:
    """The first taint the scheduler would report (it names one taint per node), or None."""
    left = untolerated(tolerations, taints, effects)
    return left[0] if left else None


def format_taint(taint: Taint) -> str:
    """`key=value:Effect` (or `key:Effect` without a value), as kubectl prints taints."""
    value = taint.get("value") or ""
    key, effect = taint.get("key") or "", taint.get("effect") or ""
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def node_has_taint(node: Mapping[str, Any], key: str, value: str | None, effect: str) -> bool:
    """The node carries this taint exactly (key, value and effect; no value equals the empty value,
    as the API server stores it)."""
    return any(t.get("key") == key and (t.get("value") or "") == (value or "") and t.get("effect") == effect
               for t in (node.get("spec") or {}).get("taints") or [])
