"""Command handlers that join several layers (the CLI's side): here a command may read a live cluster
through `harness.kube` and hand plain data to a pure package (lint) that never imports the kube layer."""
