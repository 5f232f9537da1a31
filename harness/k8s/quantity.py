"""Resource quantities (`100m`, `1.5Gi`, `2`, `1e3`) and Go-style integers.

The text is held to the grammar of kubernetes/kubernetes
staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (commit
1ca8f84eede93fa9b3577a07025ca90582b2ac46): `<sign><digits>[.<digits>]<suffix>` with suffix a binary SI
(Ki..Ei), a decimal SI (n u m "" k M G T P E) or a decimal exponent (e/E<signed int>); the value is the
number times the suffix's multiplier, exactly (a Fraction). The official client's
`kubernetes.utils.parse_quantity` gives the same values (tests/rules/test_k8s_rules.py compares them) but
accepts what the API server refuses (`NaN`, `Infinity`, `1_000`, blanks), and importing it loads the
whole client (0.4 CPU-seconds in every process that reads a profile).
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from fractions import Fraction

_GRAMMAR = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}  # powers of two
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}  # powers of ten
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_quantity(value: object) -> Fraction:
    """A quantity as an exact fraction; ValueError (naming the value) for anything Kubernetes refuses."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str):
        raise ValueError(f"not a quantity: {value!r}")
    return _parse_text(value)


# The same few strings ("1", "500m", "2Gi") are parsed over and over by the scheduler, the linter and
# the GPU rules, and building Fractions is slow; a Fraction is immutable, so the answer can be shared.
@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Fraction:
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    number = Fraction(Decimal(match["number"]))
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * (1 << _BINARY[suffix])
    exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:]) if suffix else 0
    return number * Fraction(10) ** exponent


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
