"""The GPU proof: the NVML probe and its bindings, the visibility, sharing and GPU-use verdicts, Triton's three
views, probes beside servers, and `make gpu-smoke` without a GPU."""
