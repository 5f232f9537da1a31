"""The simulated cluster (design A4): an in-process Kubernetes API plus controllers, for CI without GPUs."""

from harness.sim.cluster import SimCluster

__all__ = ["SimCluster"]
