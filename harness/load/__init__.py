"""The latency engine: open and closed loop load over the Open Inference Protocol (REST and gRPC).

`run_load(LoadSpec) -> LoadResult`; `infer_once(...)` for one correctness check. `LoadResult` lives in
`harness.load.result` and is not imported here: spawned workers import this package and need not import
pydantic (result.py says why).
"""

from harness.load.clients import InferenceError, infer_once
from harness.load.engine import run_load
from harness.load.spec import DEFAULT_INPUT, LoadSpec

__all__ = ["DEFAULT_INPUT", "InferenceError", "LoadSpec", "infer_once", "run_load"]
