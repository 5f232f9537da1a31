"""Kubernetes taint and toleration semantics, as the scheduler and the taint manager apply them.

Rules (k8s.io/api core/v1 `Toleration.ToleratesTaint`): an empty toleration key with operator
Exists matches every taint; an empty toleration effect matches every effect; operator Exists
ignores the value; operator Equal (the default) compares values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Taint = Mapping[str, Any]
Toleration = Mapping[str, Any]


def toleration_matches(toleration: Toleration, taint: Taint) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def tolerates(tolerations: Iterable[Toleration] | None, taint: Taint) -> bool:
    return any(toleration_matches(t, taint) for t in (tolerations or ()))


def untolerated(tolerations: Iterable[Toleration] | None, taints: Iterable[Taint] | None,
                effects: tuple[str, ...] = ("NoSchedule", "NoExecute")) -> list[Taint]:
    """Taints with one of `effects` that no toleration covers (PreferNoSchedule never filters)."""
    tols = list(tolerations or ())
    return [t for t in (taints or ()) if t.get("effect") in effects and not tolerates(tols, t)]


def format_taint(taint: Taint) -> str:
    value = taint.get("value") or ""
    return f"{taint.get('key')}={value}:{taint.get('effect')}" if value else f"{taint.get('key')}:{taint.get('effect')}"
