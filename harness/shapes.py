"""The base of every data shape the harness writes to a file and reads back (results and the report).

A producer (the load engine, the sweep, the SLO check) and the report declare such a shape once, as a
subclass of `Record`: the report takes the producer's class as a field type, so what is written and
what is read back cannot drift apart.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, PlainSerializer


class Record(BaseModel):
    # Unknown keys are errors, so a typo in a producer fails loudly instead of silently dropping
    # evidence; numbers are finite, since a NaN p99 compares false with every SLO and would pass a gate.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def rounded(ndigits: int) -> PlainSerializer:
    """Write a float rounded to `ndigits` places. The value is held unrounded, so figures derived from
    a fresh result are exact; rounding again a value read back from a file changes nothing."""
    return PlainSerializer(lambda value: round(value, ndigits), return_type=float)
