"""The simulated cluster (design A4): an in-process Kubernetes API plus controllers, for CI without GPUs.

`harness.sim.cluster.SimCluster` is the way in. This package file imports nothing: the mesh and the
Triton stand-in run as processes of their own (`python -m harness.sim.mesh`), one per simulated
cluster or pod, and importing the whole cluster (and the Kubernetes client) there cost each of them
half a CPU-second at start for nothing.
"""
