"""Resource quantities (`100m`, `1.5Gi`, `2`, `1e3`) and Go-style integers.

The arithmetic is `kubernetes.utils.parse_quantity` (the official client's port of apimachinery's
resource.Quantity suffixes). That function also accepts things the API server refuses (`NaN`,
`Infinity`, `1_000`, surrounding blanks), so the text is first held to the grammar of
kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go
(commit 1ca8f84eede93fa9b3577a07025ca90582b2ac46): `<sign><digits>[.<digits>]<suffix>` with suffix a
binary SI (Ki..Ei), a decimal SI (n u m "" k M G T P E) or a decimal exponent (e/E<signed int>).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from kubernetes.utils import parse_quantity as _client_parse_quantity

_GRAMMAR = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_quantity(value: object) -> Fraction:
    """A quantity as an exact fraction; ValueError (naming the value) for anything Kubernetes refuses."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    text = value if isinstance(value, str) else None
    if text is None or not _GRAMMAR.fullmatch(text):
        raise ValueError(f"not a quantity: {value!r}")
    parsed: Decimal = _client_parse_quantity(text)  # type: ignore[no-untyped-call]
    return Fraction(parsed)


def quantity_or_none(value: object) -> Fraction | None:
    """The quantity, or None when the value is absent or malformed (the caller reports which)."""
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def quantity_or_zero(value: object) -> Fraction:
    """The quantity, or 0 when absent or malformed (for sums over objects the API already admitted)."""
    parsed = quantity_or_none(value)
    return Fraction(0) if parsed is None else parsed


def parse_int64(text: object) -> int | None:
    """Go's strconv.ParseInt(s, 10, 64): optional sign, ASCII digits, within int64; None otherwise."""
    s = str(text)
    digits = s[1:] if s[:1] in ("+", "-") else s
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(s)
    return value if _INT64_MIN <= value <= _INT64_MAX else None
