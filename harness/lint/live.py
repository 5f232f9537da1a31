"""The one place lint reads a live cluster: its nodes, as plain dicts (the lead may route this through
the shared kube wrapper later; keep the signature)."""

from __future__ import annotations

from typing import Any

from harness.errors import UsageError


def read_live_nodes(
    kubeconfig: str | None, context: str | None = None, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """List the cluster's nodes with the official client. Any failure is a one-line `UsageError`."""
    from kubernetes import client, config  # imported here: plain lint runs must not need a cluster client

    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    except Exception as exc:  # the client raises ConfigException, OSError, TypeError for bad files
        where = kubeconfig or "$KUBECONFIG / ~/.kube/config"
        problem = f"{exc.__class__.__name__}: {exc}"
        raise UsageError(f"{where}: --kubeconfig: cannot load a usable kubeconfig ({problem})") from None
    try:
        with api_client:
            nodes = client.CoreV1Api(api_client).list_node(_request_timeout=timeout_s)
            data = api_client.sanitize_for_serialization(nodes)
    except Exception as exc:  # connection refused, TLS, 401/403: all mean "cannot check this cluster"
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        status = getattr(exc, "status", None)
        detail = f"HTTP {status} {reason}" if status else str(reason)
        where = kubeconfig or "the default kubeconfig"
        raise UsageError(f"--cluster: cannot list nodes of the cluster in {where}: {detail}") from None
    items = data.get("items") if isinstance(data, dict) else None
    return [n for n in items or [] if isinstance(n, dict)]
