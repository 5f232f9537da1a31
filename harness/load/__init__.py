"""The latency engine: open and closed loop load over the Open Inference Protocol (REST and gRPC).

`run_load(LoadSpec) -> LoadResult`; `infer_once(...)` for one correctness check.
"""

from harness.load.clients import InferenceError, infer_once
from harness.load.engine import run_load
from harness.load.spec import DEFAULT_INPUT, LoadResult, LoadSpec

__all__ = ["DEFAULT_INPUT", "InferenceError", "LoadResult", "LoadSpec", "infer_once", "run_load"]
