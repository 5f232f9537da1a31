"""The one place lint reads a live cluster: its nodes, as plain dicts, through the shared kube wrapper."""

from __future__ import annotations

from typing import Any

from harness.config import Timeouts
from harness.errors import UsageError


def read_live_nodes(
    kubeconfig: str | None, context: str | None = None, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """List the cluster's nodes. Any failure is a one-line `UsageError` (lint exits 2)."""
    from harness.kube import Kube  # imported here: plain lint runs must not need a cluster client

    kube = Kube.from_kubeconfig(kubeconfig, context, Timeouts(request_s=timeout_s))
    try:
        return kube.list("v1", "Node")
    except Exception as exc:  # connection refused, TLS, 401/403: all mean "cannot check this cluster"
        where = kubeconfig or "the default kubeconfig"
        raise UsageError(f"--cluster: cannot list nodes of the cluster in {where}: {exc}") from None
    finally:
        kube.close()
