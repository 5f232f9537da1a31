"""Admission for the simulated API server: defaulting and validation, worded like kube-apiserver.

Only the rules the harness leans on are enforced (names, labels, extended-resource requests and
limits, the immutability of a pod's spec); everything else is accepted as a real server would accept it.
"""

from __future__ import annotations

import re
from typing import Any

from harness.k8s.quantity import quantity_or_none
from harness.k8s.seldon_api import SELDON_GROUP
from harness.sim.api import corevalidation as core
from harness.sim.api import crdschema
from harness.sim.api.resources import ResourceType
from harness.sim.contracts import ApiError

Obj = dict[str, Any]
Cause = tuple[str, str, str]  # (reason, field, message)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
# Kinds whose names must be DNS labels (they become hostnames or DNS records).
LABEL_NAMED = frozenset({"Namespace", "Service"})
TEMPLATE_KINDS = frozenset({"StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"})

def _qstr(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def is_extended_resource(name: str) -> bool:
    """Extended resources: a domain-prefixed name outside kubernetes.io (e.g. nvidia.com/gpu)."""
    if "/" not in name:
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def _name_message(name: str, label: bool) -> str:
    if label:
        return (f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
                "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    return (f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def _validate_meta(rt: ResourceType, obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        causes.append(("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"))
    else:
        label = rt.kind in LABEL_NAMED
        pattern = DNS1123_LABEL if label else DNS1123_SUBDOMAIN
        if not pattern.match(name) or len(name) > (63 if label else 253):
            causes.append(("FieldValueInvalid", "metadata.name", _name_message(name, label)))
    for key, value in (meta.get("labels") or {}).items():
        if not QUALIFIED_NAME.match(str(key)):
            causes.append(("FieldValueInvalid", "metadata.labels",
                           f'Invalid value: "{key}": name part must consist of alphanumeric characters, \'-\', \'_\' '
                           "or '.', and must start and end with an alphanumeric character"))
        if not isinstance(value, str) or not LABEL_VALUE.match(value) or len(value) > 63:
            causes.append(("FieldValueInvalid", "metadata.labels", f'Invalid value: "{value}": a valid label must be '
                           "an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                           "and end with an alphanumeric character"))
    return causes


def default_resources(container: Obj) -> None:
    """A limit without a request defaults the request to the limit (as the API server does)."""
    res = container.get("resources")
    if not isinstance(res, dict):
        return
    limits = res.get("limits")
    if isinstance(limits, dict) and limits:
        requests = res.setdefault("requests", {})
        if isinstance(requests, dict):
            for rname, qty in limits.items():
                requests.setdefault(rname, qty)


def _validate_container_resources(container: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    res = container.get("resources") or {}
    requests = res.get("requests") or {}
    limits = res.get("limits") or {}
    for section, values in (("requests", requests), ("limits", limits)):
        for rname, qty in values.items():
            parsed = quantity_or_none(qty)
            field = f"{path}.resources.{section}[{rname}]"
            if parsed is None:
                causes.append(("FieldValueInvalid", field, f'Invalid value: "{_qstr(qty)}": quantities must match the '
                               "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
            elif parsed < 0:
                causes.append(("FieldValueInvalid", field, f'Invalid value: "{_qstr(qty)}": must be greater than or '
                               "equal to 0"))
            elif is_extended_resource(rname) and parsed.denominator != 1:
                causes.append(("FieldValueInvalid", field, f'Invalid value: "{_qstr(qty)}": must be an integer'))
    for rname, qty in requests.items():
        parsed = quantity_or_none(qty)
        if parsed is None:
            continue
        field = f"{path}.resources.requests[{rname}]"
        if rname in limits:
            lim = quantity_or_none(limits[rname])
            if lim is None:
                continue
            if is_extended_resource(rname) and parsed != lim:
                causes.append(("FieldValueInvalid", field, f'Invalid value: "{_qstr(qty)}": must be equal to {rname} '
                               f"limit of {_qstr(limits[rname])}"))
            elif parsed > lim:
                causes.append(("FieldValueInvalid", field, f'Invalid value: "{_qstr(qty)}": must be less than or '
                               f"equal to {rname} limit of {_qstr(limits[rname])}"))
        elif is_extended_resource(rname):
            causes.append(("FieldValueRequired", f"{path}.resources.limits",
                           "Required value: Limit must be set for non overcommitable resources"))
    return causes


def _pod_spec_containers(spec: Obj, prefix: str) -> list[tuple[Obj, str]]:
    out: list[tuple[Obj, str]] = []
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            if isinstance(c, dict):
                out.append((c, f"{prefix}.{key}[{i}]"))
    return out


def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            default_resources(c)
            image = str(c.get("image", ""))
            latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _validate_pod_spec(spec: Any, prefix: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [("FieldValueRequired", prefix, "Required value")]
    causes: list[Cause] = []
    if not spec.get("containers"):
        causes.append(("FieldValueRequired", f"{prefix}.containers", "Required value"))
    for c, path in _pod_spec_containers(spec, prefix):
        if not c.get("name"):
            causes.append(("FieldValueRequired", f"{path}.name", "Required value"))
        if not c.get("image"):
            causes.append(("FieldValueRequired", f"{path}.image", "Required value"))
        causes.extend(_validate_container_resources(c, path))
    return causes


# The DefaultTolerationSeconds admission plugin (on by default, kind included): pods ride out a
# NotReady or unreachable node for 300 s before the taint manager evicts them.
DEFAULT_TOLERATION_SECONDS = 300
_NODE_PROBLEM_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _default_toleration_seconds(spec: Obj) -> None:
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return
    for key in _NODE_PROBLEM_TAINTS:
        covered = any(
            isinstance(t, dict) and t.get("effect") in (None, "", "NoExecute")
            and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
            for t in tolerations
        )
        if not covered:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    spec["tolerations"] = tolerations


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """Fill what the API server fills on create (mutates `obj`)."""
    kind = rt.kind
    spec = obj.get("spec")
    if kind == "Pod" and isinstance(spec, dict):
        _default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        _default_toleration_seconds(spec)
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
    elif kind in TEMPLATE_KINDS and isinstance(spec, dict):
        tpl_spec = ((spec.get("template") or {}).get("spec"))
        if isinstance(tpl_spec, dict):
            _default_pod_spec(tpl_spec)
        if kind != "DaemonSet":
            spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        elif kind == "Deployment":
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
            spec.setdefault("progressDeadlineSeconds", 600)
        elif kind == "DaemonSet":
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    elif kind == "Job" and isinstance(spec, dict):
        # kubernetes/kubernetes pkg/apis/batch/v1/defaults.go (SetDefaults_Job)
        tpl_spec = ((spec.get("template") or {}).get("spec"))
        if isinstance(tpl_spec, dict):
            _default_pod_spec(tpl_spec)
        spec.setdefault("completionMode", "NonIndexed")
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("suspend", False)
    elif kind == "Namespace":
        name = (obj.get("metadata") or {}).get("name", "")
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif kind == "Service":
        s = obj.setdefault("spec", {})
        s.setdefault("type", "ClusterIP")
        s.setdefault("sessionAffinity", "None")
        for p in s.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "port" in p:
                    p.setdefault("targetPort", p["port"])
        obj.setdefault("status", {}).setdefault("loadBalancer", {})


# --- pod updates ---------------------------------------------------------------------------------
# kubernetes/kubernetes pkg/apis/core/validation/validation.go (ValidatePodUpdate,
# ValidateContainerUpdates, validateOnlyAddedTolerations; read at commit 000f26050b9be6fb3d79fae95e06b47fc96128cd):
# a pod's spec is immutable except for container images, activeDeadlineSeconds (set, or lowered),
# added tolerations (existing ones may change only tolerationSeconds) and removed scheduling gates.
# nodeName is set once, through the binding subresource, never by an update.
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _same_toleration(old: Any, new: Any) -> bool:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return bool(old == new)
    keys = ("key", "operator", "value", "effect")
    return all((old.get(k) or "") == (new.get(k) or "") for k in keys)


def _changed_paths(old: Any, new: Any, path: str, out: list[str], limit: int = 8) -> None:
    """Where two JSON values differ (a short, readable stand-in for the apiserver's cmp.Diff)."""
    if len(out) >= limit or old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _changed_paths(old.get(key), new.get(key), f"{path}.{key}", out, limit)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _changed_paths(a, b, f"{path}[{i}]", out, limit)
    else:
        out.append(path)


def pod_update_causes(new: Obj, old: Obj) -> list[Cause]:
    """What kube-apiserver's ValidatePodUpdate forbids in a change from `old` to `new` (pod specs)."""
    causes: list[Cause] = []
    for key in ("containers", "initContainers"):
        new_list = [c for c in new.get(key) or [] if isinstance(c, dict)]
        old_list = [c for c in old.get(key) or [] if isinstance(c, dict)]
        if len(new_list) != len(old_list):
            return [("FieldValueForbidden", f"spec.{key}", "Forbidden: pod updates may not add or remove containers")]
        for i, c in enumerate(new_list):
            if not c.get("image"):
                causes.append(("FieldValueRequired", f"spec.{key}[{i}].image", "Required value"))
    new_deadline, old_deadline = new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    if new_deadline is not None:
        if not isinstance(new_deadline, int) or new_deadline < 0 or new_deadline > 2**31 - 1:
            return [*causes, ("FieldValueInvalid", "spec.activeDeadlineSeconds",
                              f"Invalid value: {new_deadline}: must be between 0 and 2147483647, inclusive")]
        if isinstance(old_deadline, int) and old_deadline < new_deadline:
            return [*causes, ("FieldValueInvalid", "spec.activeDeadlineSeconds",
                              f"Invalid value: {new_deadline}: must be less than or equal to previous value")]
    elif old_deadline is not None:
        causes.append(("FieldValueInvalid", "spec.activeDeadlineSeconds",
                       "Invalid value: null: must not update from a positive integer to nil value"))
    new_tols = new.get("tolerations") or []
    if any(not any(_same_toleration(o, n) for n in new_tols) for o in old.get("tolerations") or []):
        causes.append(("FieldValueForbidden", "spec.tolerations",
                       "Forbidden: existing toleration can not be modified except its tolerationSeconds"))
    new_gates = [g.get("name") for g in new.get("schedulingGates") or [] if isinstance(g, dict)]
    old_gates = [g.get("name") for g in old.get("schedulingGates") or [] if isinstance(g, dict)]
    if any(g not in old_gates for g in new_gates):
        causes.append(("FieldValueForbidden", "spec.schedulingGates",
                       "Forbidden: only deletion is allowed, but found new scheduling gate"))
    munged = dict(new)
    for key in ("containers", "initContainers"):
        if key in new:
            olds = [c for c in old.get(key) or [] if isinstance(c, dict)]
            munged[key] = [{**c, "image": olds[i].get("image")} if isinstance(c, dict) else c
                           for i, c in enumerate(new.get(key) or [])]
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged.pop(key, None)
        if key in old:
            munged[key] = old[key]
    grace_old, grace_new = old.get("terminationGracePeriodSeconds"), munged.get("terminationGracePeriodSeconds")
    if isinstance(grace_old, int) and grace_old < 0 and grace_new == 1:
        munged["terminationGracePeriodSeconds"] = grace_old
    if _normal(munged) != _normal(old):
        changed: list[str] = []
        _changed_paths(_normal(old), _normal(munged), "spec", changed)
        causes.append(("FieldValueForbidden", "spec", "Forbidden: pod updates may not change fields other than "
                       f"{UPDATABLE_POD_SPEC_FIELDS}\n  changed: {', '.join(changed)}"))
    return causes


def _normal(value: Any) -> Any:
    """Drop empty values, as Go's semantic equality treats an absent field and its zero value alike."""
    if isinstance(value, dict):
        out = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {}, False)}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def validate(rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid listing every violated rule, shaped like kube-apiserver's message
    (harness/sim/api/corevalidation.py holds the rules for taints, tolerations, node affinity,
    immutable ConfigMaps and workload selectors/updates)."""
    causes = _validate_meta(rt, obj)
    spec = obj.get("spec")
    if rt.kind == "Pod":
        causes.extend(_validate_pod_spec(spec, "spec"))
        causes.extend(core.pod_spec_causes(spec, "spec"))
        if old is not None and isinstance(spec, dict):
            causes.extend(pod_update_causes(spec, old.get("spec") or {}))
    elif rt.kind in TEMPLATE_KINDS:
        tpl = (spec or {}).get("template") if isinstance(spec, dict) else None
        if not isinstance(tpl, dict):
            causes.append(("FieldValueRequired", "spec.template", "Required value"))
        else:
            causes.extend(_validate_pod_spec(tpl.get("spec"), "spec.template.spec"))
            causes.extend(core.pod_spec_causes(tpl.get("spec"), "spec.template.spec"))
        if isinstance(spec, dict) and not spec.get("selector"):
            causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        causes.extend(core.selector_causes(rt.kind, spec))
        if old is not None:
            causes.extend(core.workload_update_causes(rt.kind, spec, old.get("spec")))
    elif rt.kind == "Node":
        causes.extend(core.taint_causes((spec or {}).get("taints") if isinstance(spec, dict) else None))
        causes.extend(core.node_status_causes(obj.get("status")))
    elif rt.kind == "ConfigMap" and old is not None:
        causes.extend(core.configmap_update_causes(obj, old))
    elif rt.group == SELDON_GROUP:
        causes.extend(crdschema.causes(rt.kind, obj, old))
    elif rt.kind == "Job":
        causes.extend(_job_causes(spec))
    if causes:
        raise invalid(rt, (obj.get("metadata") or {}).get("name", ""), causes)


def _job_causes(spec: Any) -> list[Cause]:
    """kubernetes/kubernetes pkg/apis/batch/validation/validation.go (validateJobSpec): a template whose
    restartPolicy is OnFailure or Never; Indexed needs completions."""
    if not isinstance(spec, dict) or not isinstance(spec.get("template"), dict):
        return [("FieldValueRequired", "spec.template", "Required value")]
    tpl_spec = spec["template"].get("spec")
    causes = _validate_pod_spec(tpl_spec, "spec.template.spec")
    policy = (tpl_spec or {}).get("restartPolicy") if isinstance(tpl_spec, dict) else None
    if policy not in ("OnFailure", "Never"):
        causes.append(("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                       f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(("FieldValueRequired", "spec.completions",
                       "Required value: when completion mode is Indexed"))
    for key in ("completions", "parallelism", "backoffLimit"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            causes.append(("FieldValueInvalid", f"spec.{key}",
                           f"Invalid value: {value!r}: must be greater than or equal to 0"))
    return causes


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    rendered = [f"{field}: {msg}" for _, field, msg in causes]
    body = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = {
        "name": name,
        "group": rt.group,
        "kind": rt.kind,
        "causes": [{"reason": reason, "message": msg, "field": field} for reason, field, msg in causes],
    }
    return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {body}', details)
