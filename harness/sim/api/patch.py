"""The three patch types of the Kubernetes API: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
and strategic merge patch for the built-in kinds the harness uses.

Strategic merge needs to know, per list field, whether the list is merged by a key or replaced;
Kubernetes reads that from struct tags. Here a small table keyed by field name (and the parent for the
ambiguous `ports`) carries the same facts for the kinds in play. Lists not in the table are replaced,
which is what the Go types do for atomic lists such as `tolerations` and node `taints`.
"""

from __future__ import annotations

from typing import Any

from harness.sim.api.objcopy import clone
from harness.sim.contracts import ApiError

# field name -> merge key (lists merged element-wise by that key)
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "addresses": "type",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# lists of scalars with strategy "merge": union on patch
MERGED_PRIMITIVES = frozenset({"finalizers"})


def _bad(msg: str) -> ApiError:
    return ApiError(400, "BadRequest", msg)


# ---------------------------------------------------------------- JSON merge patch (RFC 7386)
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch) as a new value; neither argument is changed. The target is
    copied once and merged into in place (copying it again at every level of the patch cost more
    than the rest of a status write)."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            inner = result.get(key)
            if not isinstance(inner, dict):  # a non-object target member is replaced by {} first
                inner = result[key] = {}
            _merge_into(inner, value)
        else:
            result[key] = clone(value)


# ---------------------------------------------------------------- JSON patch (RFC 6902)
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _bad(f"invalid JSON pointer {path!r}: must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                               f"jsonpatch: path {path!r} not found")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise ApiError(422, "Invalid", f"jsonpatch: index {p!r} out of range in {path!r}") from None
        else:
            raise ApiError(422, "Invalid", f"jsonpatch: path {path!r} does not exist")
    return cur


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _pointer(path), path)


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError:
                raise _bad(f"jsonpatch: invalid index {last!r}") from None
            if idx < 0 or idx > len(parent):
                raise ApiError(422, "Invalid", f"jsonpatch: add index {idx} out of range in {path!r}")
            parent.insert(idx, value)
    else:
        raise ApiError(422, "Invalid", f"jsonpatch: cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise _bad("jsonpatch: cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ApiError(422, "Invalid", f"jsonpatch remove operation does not apply: doc is missing path: {path}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        try:
            return doc, parent.pop(int(last))
        except (ValueError, IndexError):
            raise ApiError(422, "Invalid", f"jsonpatch remove operation does not apply: doc is missing path: "
                           f"{path}") from None
    raise ApiError(422, "Invalid", f"jsonpatch: cannot remove {path!r}")


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise _bad("json patch must be a JSON array of operations")
    doc = clone(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _bad(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "move":
            doc, value = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, clone(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid", f"testing value {path} failed")
        else:
            raise _bad(f"unexpected json patch operation {kind!r}")
    return doc


# ---------------------------------------------------------------- strategic merge patch
def _merge_key(field: str, parent_field: str) -> str | None:
    if field == "ports":
        # container ports merge by containerPort; Service ports by port
        return "containerPort" if parent_field in ("containers", "initContainers", "ephemeralContainers") else "port"
    return MERGE_KEYS.get(field)


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise _bad("strategic merge patch must be a JSON object")
    return _smp_map(clone(original) if isinstance(original, dict) else {}, patch, "")


def _smp_map(orig: dict[str, Any], patch: dict[str, Any], parent_field: str) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue  # ordering hints and handled directives
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(orig.get(name), list) and isinstance(value, list):
                orig[name] = [x for x in orig[name] if x not in value]
            continue
        if value is None:
            orig.pop(key, None)
        elif isinstance(value, dict):
            base = orig.get(key)
            orig[key] = _smp_map(base if isinstance(base, dict) else {}, value, parent_field=key)
        elif isinstance(value, list):
            orig[key] = _smp_list(orig.get(key), value, key, parent_field)
        else:
            orig[key] = clone(value)
    if isinstance(retain, list):
        for key in list(orig):
            if key not in retain and key not in patch:
                orig.pop(key)
    return orig


def _smp_list(orig: Any, patch: list[Any], field: str, parent_field: str) -> list[Any]:
    base: list[Any] = clone(orig) if isinstance(orig, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [clone(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    if field in MERGED_PRIMITIVES:
        return base + [clone(p) for p in patch if p not in base]
    key = _merge_key(field, parent_field)
    if key is None:
        return clone(patch)
    for item in patch:
        if not isinstance(item, dict):
            raise _bad(f"strategic merge patch: {field} items must be objects with {key!r}")
        if key not in item:
            raise _bad(f"map: {item} does not contain declared merge key: {key}")
        match = next((i for i, e in enumerate(base) if isinstance(e, dict) and e.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if match is not None:
                base.pop(match)
            continue
        if match is None:
            base.append(_smp_map({}, item, field))
        else:
            base[match] = _smp_map(base[match], item, field)
    return base
