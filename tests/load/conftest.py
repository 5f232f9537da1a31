"""The latency engine against stub, modelled and real servers (MLServer, Triton), its gRPC client, the sweep,
telemetry, in-cluster generators, and the local server processes."""
