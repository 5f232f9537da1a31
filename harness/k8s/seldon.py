"""Seldon Core 2 rules: a Server's podSpec merged over its ServerConfig, and Model-to-Server matching.

Sources (SeldonIO/seldon-core, tag v2.10.2; read at commit 7a8325018bf323702dc6ef01594db5177c112c3d):
- operator/controllers/reconcilers/common/patch_utils.go `MergePodSpecs`/`MergeContainers`: the
  ServerConfig's pod spec is the base and the Server's `spec.podSpec` is merged over it with
  overriding values and appended slices (tolerations, volumes, initContainers, imagePullSecrets, ...);
  maps such as nodeSelector merge key by key; containers merge by name, resource maps key by key.
  Affinity is replaced as a whole (design B1).
- scheduler/pkg/scheduler/filters/serverrequirements.go: a Model fits a Server when every
  requirement (trimmed of blanks) is exactly one of the capabilities of the Server's replicas.
- The agent announces `SELDON_SERVER_CAPABILITIES` (the ServerConfig's list; `spec.capabilities`
  replaces it) plus `SELDON_EXTRA_CAPABILITIES` (`spec.extraCapabilities`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from harness.k8s.quantity import parse_quantity

Obj = dict[str, Any]

CAPABILITIES_ENV = "SELDON_SERVER_CAPABILITIES"
EXTRA_CAPABILITIES_ENV = "SELDON_EXTRA_CAPABILITIES"
# Slices mergo appends (WithAppendSlice) that pod specs carry; containers are merged by name instead.
_APPENDED = ("tolerations", "volumes", "initContainers", "imagePullSecrets", "hostAliases",
             "topologySpreadConstraints", "readinessGates", "resourceClaims", "schedulingGates")


def _merge_resources(base: Mapping[str, Any], override: Mapping[str, Any]) -> Obj:
    out: Obj = copy.deepcopy(dict(base))
    for section in ("requests", "limits"):
        if isinstance(override.get(section), Mapping):
            out[section] = {**(out.get(section) or {}), **override[section]}
    if "claims" in override:
        out["claims"] = copy.deepcopy(override["claims"])
    return out


def merge_container(base: Mapping[str, Any], override: Mapping[str, Any]) -> Obj:
    """A Server's container over the ServerConfig's container of the same name."""
    out: Obj = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            continue
        if key == "resources" and isinstance(value, Mapping):
            out["resources"] = _merge_resources(out.get("resources") or {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_containers(base: Sequence[Any], override: Sequence[Any]) -> list[Obj]:
    out: list[Obj] = [copy.deepcopy(dict(c)) for c in base if isinstance(c, Mapping)]
    index = {c.get("name"): i for i, c in enumerate(out)}
    for container in override:
        if not isinstance(container, Mapping):
            continue
        i = index.get(container.get("name"))
        if i is None:
            out.append(copy.deepcopy(dict(container)))
            index[container.get("name")] = len(out) - 1
        else:
            out[i] = merge_container(out[i], container)
    return out


def merge_pod_spec(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> Obj:
    """The ServerConfig pod spec with a Server's `spec.podSpec` applied (Seldon's merge rules)."""
    out: Obj = copy.deepcopy(dict(base or {}))
    for key, value in (override or {}).items():
        if value is None:
            continue
        if key in _APPENDED:
            out[key] = [*(out.get(key) or []), *copy.deepcopy(list(value))]
        elif key == "nodeSelector":
            out[key] = {**(out.get(key) or {}), **value}
        elif key == "containers":
            out[key] = _merge_containers(out.get(key) or [], value)
        else:
            # affinity and every other field: the Server's value replaces the config's.
            out[key] = copy.deepcopy(value)
    return out


def split_capabilities(text: str) -> list[str]:
    """A comma-separated capability list as the agent reads it (blanks trimmed, empties dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def agent_env(pod_spec: Mapping[str, Any], name: str) -> str | None:
    """The literal value of an env variable of the `agent` container, or None."""
    for container in pod_spec.get("containers") or []:
        if not isinstance(container, Mapping) or container.get("name") != "agent":
            continue
        for env in container.get("env") or []:
            if isinstance(env, Mapping) and env.get("name") == name and isinstance(env.get("value"), str):
                return str(env["value"])
    return None


def config_capabilities(pod_spec: Mapping[str, Any]) -> list[str] | None:
    """The capabilities a ServerConfig's agent announces, or None when its pod spec does not say."""
    text = agent_env(pod_spec, CAPABILITIES_ENV)
    return None if text is None else split_capabilities(text)


def server_capabilities(server_spec: Mapping[str, Any], base: Iterable[str]) -> list[str]:
    """`spec.capabilities` replaces `base` (the ServerConfig's); else `base` plus `spec.extraCapabilities`."""
    replaced = server_spec.get("capabilities")
    if replaced:
        return [str(c) for c in replaced]
    return [*base, *(str(c) for c in server_spec.get("extraCapabilities") or [])]


def satisfies(requirements: Iterable[str], capabilities: Iterable[str]) -> bool:
    """Every requirement (trimmed) is exactly one of the capabilities."""
    caps = set(capabilities)
    return all(str(r).strip() in caps for r in requirements)


# SeldonIO/seldon-core v2.10.2 (commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce):
# scheduler/pkg/store/utils/validate.go `CheckName` and scheduler/pkg/store/memory.go `UpdateModel`.
_MODEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def model_name_error(name: str) -> str | None:
    """The scheduler's refusal of a model name (a DNS label, no dots), as the operator reports it
    on the Model: the gRPC FailedPrecondition error text. None for a valid name."""
    if _MODEL_NAME.match(name) and "." not in name:
        return None
    return (f"rpc error: code = FailedPrecondition desc = Model {name} does not have a valid name - it must be "
            "alphanumeric and not contains dots (.)")


def model_memory_bytes(value: object) -> int | str:
    """`spec.memory` in bytes, or the error that fails the Model: operator/apis/mlops/v1alpha1/model_types.go
    `AsSchedulerModel` takes `Quantity.AsInt64()`, which refuses a quantity that is not a whole number
    of bytes ("500m" is half a byte), instead of rounding it to 0."""
    if value in (None, ""):
        return 0
    try:
        parsed = parse_quantity(value)
    except ValueError:
        return f"spec.memory {value!r} is not a quantity"
    if parsed.denominator == 1:
        return int(parsed)
    return f"Can't convert model memory quantity to bytes. {_canonical_milli(parsed) or value}"


def _canonical_milli(value: Fraction) -> str | None:
    """Quantity.String() of a fraction in decimal SI form (500m, 1500m, 250u), where one fits."""
    for suffix, scale in (("m", 1000), ("u", 10**6), ("n", 10**9)):
        scaled = value * scale
        if scaled.denominator == 1:
            return f"{int(scaled)}{suffix}"
    return None
