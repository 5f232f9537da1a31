"""Is a 200 an answer? Pure checks of one response body against the model that was asked.

A server (or a proxy in front of it) can answer 200 with a body that is no inference at all: an
HTML error page, an empty body, another model's answer. Counting those as successes would report a
healthy latency for a broken service, so every successful response is checked:

- `bad_answer`: the body is not an Open Inference Protocol response for the asked model (not JSON or
  protobuf of that shape, no outputs, another `model_name`). Seldon answers `<model>_<version>`.
- `wrong_answer`: the response is well formed but, on a sampled response, an output differs from
  the profile's expected output (`models[].expected_output`).
- `body_too_large`: the body exceeded the read bound (`MAX_BODY_BYTES`); it is not read further.

The structural check runs on every response; the value comparison runs on every `check_every`-th
response, so a large output tensor does not make the client the bottleneck. `AnswerChecker` keeps
the verdicts of the last few distinct bodies: a body byte-identical to one already judged gets the
same verdict without being parsed again (a deterministic model answers the same bytes to the same
request, and parsing every answer was a third of the HTTP client's CPU per request against Triton).
A verdict reached without the value comparison is reused for a sampled response only if it was an
error; an accepted body is compared once before it counts as compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Bodies larger than this are an error of their own and are not buffered: an inference answer of the
# models we drive is a few hundred bytes; 4 MiB leaves room for image-sized outputs.
MAX_BODY_BYTES = 4 * 1024 * 1024
BAD_ANSWER = "bad_answer"
WRONG_ANSWER = "wrong_answer"
BODY_TOO_LARGE = "body_too_large"
# Response heads are bounded too: a server that streams header lines (or CONTINUATION frames) without
# end must not grow a client's buffer until the request's timer fires. Go's net/http allows 1 MiB of
# headers by default; an inference answer's head is a few hundred bytes.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_COUNT = 100
HEADERS_TOO_LARGE = "headers_too_large"
# fp32 values travel through text (JSON) or fp32 contents (gRPC); compare with fp32 precision.
_REL_TOL = 1e-5
_ABS_TOL = 1e-6


@dataclass(frozen=True)
class Expected:
    """One expected output tensor: its name and flat data."""

    name: str
    data: tuple[Any, ...]


def model_matches(answered: object, model: str) -> bool:
    """The server names the model as asked, or as Seldon does (`<model>_<version>`)."""
    if not isinstance(answered, str):
        return False
    if answered == model:
        return True
    prefix = f"{model}_"
    return answered.startswith(prefix) and answered[len(prefix):].isdigit()


def values_equal(got: Sequence[Any], want: Sequence[Any]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        if isinstance(w, float) or isinstance(g, float):
            if isinstance(g, bool) or isinstance(w, bool) or not isinstance(g, int | float):
                return False
            if not math.isclose(float(g), float(w), rel_tol=_REL_TOL, abs_tol=_ABS_TOL):
                return False
        elif g != w:
            return False
    return True


def _outputs_ok(outputs: object) -> bool:
    if not isinstance(outputs, list) or not outputs:
        return False
    return all(isinstance(o, dict) and isinstance(o.get("name"), str) and isinstance(o.get("data"), list)
               for o in outputs)


def check_json_answer(body: bytes, model: str, expected: Sequence[Expected] = (), compare: bool = False) -> str | None:
    """The error kind of a 200 HTTP body, or None when it is an inference answer for `model`
    (and, with `compare`, carries the expected outputs)."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return BAD_ANSWER
    if not isinstance(parsed, dict) or not model_matches(parsed.get("model_name"), model):
        return BAD_ANSWER
    outputs = parsed.get("outputs")
    if not _outputs_ok(outputs):
        return BAD_ANSWER
    if compare and expected:
        by_name = {o["name"]: o["data"] for o in outputs}  # type: ignore[union-attr]
        for want in expected:
            got = by_name.get(want.name)
            if got is None or not values_equal(_flatten(got), want.data):
                return WRONG_ANSWER
    return None


def _flatten(data: list[Any]) -> list[Any]:
    # The protocol allows nested (row-major) data as well as flat lists.
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    for v in data:
        flat.extend(_flatten(v) if isinstance(v, list) else [v])
    return flat


_CONTENTS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
             "fp32_contents", "fp64_contents", "bytes_contents")
_RAW_FORMATS = {"FP32": "f", "FP64": "d", "INT32": "i", "INT64": "q", "INT8": "b", "INT16": "h", "UINT8": "B",
                "UINT16": "H", "UINT32": "I", "UINT64": "Q", "BOOL": "?"}


def grpc_output_data(response: Any, index: int) -> list[Any]:
    """The flat data of output `index` of a ModelInferResponse (typed contents or raw bytes)."""
    import struct

    out = response.outputs[index]
    if len(response.raw_output_contents) > index:
        raw = response.raw_output_contents[index]
        fmt = _RAW_FORMATS.get(out.datatype)
        if fmt is None:
            return [raw]
        size = struct.calcsize(fmt)
        return list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))
    for name in _CONTENTS:
        values = getattr(out.contents, name)
        if len(values):
            return list(values)
    return []


def check_grpc_answer(raw: bytes, model: str, expected: Sequence[Expected] = (), compare: bool = False) -> str | None:
    """The error kind of an OK gRPC ModelInfer response (serialised bytes), or None when it answers `model`."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
    from tritonclient.grpc import service_pb2

    try:
        response = service_pb2.ModelInferResponse.FromString(raw)
    except DecodeError:
        return BAD_ANSWER
    if not model_matches(response.model_name, model) or not len(response.outputs):
        return BAD_ANSWER
    if compare and expected:
        names = [o.name for o in response.outputs]
        for want in expected:
            if want.name not in names:
                return WRONG_ANSWER
            got = grpc_output_data(response, names.index(want.name))
            if not values_equal(got, want.data):
                return WRONG_ANSWER
    return None


# Distinct bodies whose verdicts are remembered (a model with varying answers just misses the memo).
MEMO_SIZE = 64


@dataclass
class AnswerChecker:
    """Checks every answer's shape and every `check_every`-th answer's values, for one model."""

    model: str
    expected: tuple[Expected, ...] = ()
    check_every: int = 1
    seen: int = 0
    # body -> (verdict, whether that verdict covers the value comparison)
    memo: dict[bytes, tuple[str | None, bool]] = field(default_factory=dict)

    def http(self, body: bytes) -> str | None:
        return self._judge(body, check_json_answer)

    def grpc(self, raw: bytes) -> str | None:
        return self._judge(raw, check_grpc_answer)

    def _judge(self, body: bytes, check: Callable[[bytes, str, Sequence[Expected], bool], str | None]) -> str | None:
        self.seen += 1
        compare = self._compare()
        known = self.memo.get(body)
        if known is not None and (known[1] or not compare or known[0] is not None):
            return known[0]
        verdict = check(body, self.model, self.expected, compare)
        if len(self.memo) >= MEMO_SIZE:
            self.memo.clear()
        self.memo[body] = (verdict, compare or not self.expected)
        return verdict

    def _compare(self) -> bool:
        return bool(self.expected) and (self.seen - 1) % self.check_every == 0


def expected_from_outputs(outputs: Any, source: str) -> tuple[Expected, ...]:
    """`outputs` of an expected-answer JSON (`[{name, data}, ...]`) as `Expected` items; ValueError naming the field."""
    if not isinstance(outputs, list) or not outputs:
        raise ValueError(f"{source}: outputs: expected a non-empty list of tensors")
    items = []
    for i, out in enumerate(outputs):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str) or not isinstance(out.get("data"), list):
            raise ValueError(f"{source}: outputs[{i}]: expected an object with a name and a data list")
        items.append(Expected(out["name"], tuple(_flatten(out["data"]))))
    return tuple(items)
