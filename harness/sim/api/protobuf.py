"""Just enough of the Kubernetes protobuf wire format to accept kubectl's imperative creates.

kubectl sends built-in kinds made by its generators (`kubectl create namespace`, `kubectl create
configmap`) as `application/vnd.kubernetes.protobuf` and does not fall back to JSON on 415. This
decodes the `k8s\\x00` envelope (runtime.Unknown) and, for Namespace and ConfigMap only, the fields
those commands set (ObjectMeta name/generateName/namespace/labels/annotations; ConfigMap data and
binaryData). Any other kind raises `Unsupported` and the server answers 415.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"


class Unsupported(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    for _ in range(10):  # a varint has at most 10 bytes
        if pos >= len(buf):
            raise Unsupported("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise Unsupported("varint too long")


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited; others are skipped."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            out.append((number, buf[pos:pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise Unsupported(f"unsupported wire type {wire}")
    return out


def _str(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _map_entry(value: int | bytes) -> tuple[str, bytes]:
    key, val = "", b""
    for n, v in fields(value if isinstance(value, bytes) else b""):
        if n == 1:
            key = _str(v)
        elif n == 2 and isinstance(v, bytes):
            val = v
    return key, val


def _object_meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for n, v in fields(buf):
        if n in names:
            meta[names[n]] = _str(v)
        elif n in (11, 12):
            key, val = _map_entry(v)
            meta.setdefault("labels" if n == 11 else "annotations", {})[key] = val.decode()
    return meta


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a protobuf request body, or `Unsupported`."""
    if not body.startswith(MAGIC):
        raise Unsupported("missing the k8s protobuf envelope")
    api_version = kind = ""
    raw = b""
    for n, v in fields(body[len(MAGIC):]):
        if n == 1 and isinstance(v, bytes):
            for tn, tv in fields(v):
                if tn == 1:
                    api_version = _str(tv)
                elif tn == 2:
                    kind = _str(tv)
        elif n == 2 and isinstance(v, bytes):
            raw = v
    if (api_version, kind) not in (("v1", "Namespace"), ("v1", "ConfigMap")):
        raise Unsupported(f"no protobuf decoding for {kind or 'this kind'}")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    for n, v in fields(raw):
        if n == 1 and isinstance(v, bytes):
            obj["metadata"] = _object_meta(v)
        elif kind == "ConfigMap" and n in (2, 3):
            key, val = _map_entry(v)
            if n == 2:
                obj.setdefault("data", {})[key] = val.decode()
            else:
                obj.setdefault("binaryData", {})[key] = base64.b64encode(val).decode()
        elif kind == "ConfigMap" and n == 4:
            obj["immutable"] = bool(v)
    return obj
