"""The simulated cluster itself: its API server (api/), its node-side controllers (scheduler/), its Seldon control
and data plane (seldon/), and `harness sim up` as a process (here)."""
