"""The simulated Kubernetes API: object store (`store`), admission (`validation`), patches (`patch`),
selectors (`selectors`), the resource table (`resources`) and the HTTP server (`server`)."""

from harness.sim.api.store import MemoryStore, Watch

__all__ = ["MemoryStore", "Watch"]
