"""Where the runner sends its requests to the Seldon mesh, decided once, when a test first needs it.

In order: the profile's `seldon.mesh_endpoint`; the seldon-mesh Service's LoadBalancer address when it
has one the runner can connect to; else a tunnel through the API server to a ready pod behind the
Service (the kubernetes client's port-forward, harness/kube/tunnel.py), labelled as such because every
request then also crosses the API server and the kubelet. kind publishes the mesh through a NodePort
and extraPortMappings instead (harness/providers/kind.py).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any
from urllib.parse import urlsplit

from harness.config import Profile
from harness.errors import UsageError, WaitTimeout
from harness.k8s.affinity import label_selector_matches
from harness.kube.client import Kube
from harness.kube.tunnel import PortForwardTunnel, TunnelError
from harness.providers.base import MeshEndpoint
from harness.providers.common import _has_ingress, mesh_from_service

Obj = dict[str, Any]
TUNNEL_NOTE = ("through a port-forward tunnel via the API server (no LoadBalancer address the runner can reach): "
               "latencies include the API server and kubelet hops, not the mesh's alone")
CONNECT_CHECK_S = 3.0


def from_profile(url: str) -> MeshEndpoint:
    """`seldon.mesh_endpoint` (`http://host:port`): REST and gRPC on one port, as Envoy serves them."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    return MeshEndpoint(http_url=f"{parts.scheme}://{shown}:{port}", grpc_target=f"{shown}:{port}", route="profile")


def reachable(url: str, timeout: float = CONNECT_CHECK_S) -> bool:
    """Can the runner open a TCP connection to the endpoint's host and port?"""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def tunnel_target(svc: Obj, pods: list[Obj]) -> tuple[str, int] | None:
    """(pod, container port) a port-forward for the Service's first port goes to: a ready pod the
    selector picks, the port's targetPort (a named one looked up in the pod's containers)."""
    spec = svc.get("spec") or {}
    selector = spec.get("selector") or {}
    ports = spec.get("ports") or []
    if not selector or not ports:
        return None
    target = ports[0].get("targetPort", ports[0].get("port"))
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if not _ready(pod) or not label_selector_matches({"matchLabels": selector}, labels):
            continue
        if isinstance(target, int) or str(target).isdigit():
            return pod["metadata"]["name"], int(target)
        for container in (pod.get("spec") or {}).get("containers") or []:
            for p in container.get("ports") or []:
                if p.get("name") == target and p.get("containerPort"):
                    return pod["metadata"]["name"], int(p["containerPort"])
    return None


def mesh_endpoint(kube: Kube, profile: Profile, tunnels: list[PortForwardTunnel]) -> MeshEndpoint:
    """The route to the mesh (module docstring); a tunnel it opens is appended to `tunnels` (closed by the
    provider's teardown)."""
    if profile.seldon.mesh_endpoint:
        return from_profile(profile.seldon.mesh_endpoint)
    ns = profile.seldon.namespace
    where = f"Service {ns}/seldon-mesh"
    svc = kube.get("v1", "Service", "seldon-mesh", ns)
    if svc is None:
        raise UsageError(f"{where} not found: is Seldon Core 2 installed in namespace {ns}?")
    if (svc.get("spec") or {}).get("type") == "LoadBalancer" and not _has_ingress(svc):
        # Load balancers publish their address some time after the Service exists: wait (bounded).
        with contextlib.suppress(WaitTimeout):
            svc = kube.wait_for("v1", "Service", "seldon-mesh", ns, _has_ingress, profile.timeouts.load_balancer_s,
                                "the seldon-mesh Service to get a LoadBalancer address")
    why = "has no LoadBalancer ingress (status.loadBalancer.ingress is empty)"
    if _has_ingress(svc):
        endpoint = mesh_from_service(svc, ns)
        if reachable(endpoint.http_url):
            return endpoint
        why = f"has the LoadBalancer address {endpoint.http_url}, which this runner cannot connect to"
    target = tunnel_target(svc or {}, kube.list("v1", "Pod", ns))
    if target is None:
        raise UsageError(f"{where} {why}, and no ready pod behind it to tunnel to: install a load balancer (e.g. "
                         f"MetalLB), or set seldon.mesh_endpoint in the profile to an address the runner can reach")
    tunnel = PortForwardTunnel(kube, ns, target[0], target[1], profile.timeouts.request_s)
    try:
        local = tunnel.start()
    except TunnelError as exc:
        raise UsageError(f"{where} {why}, and the port-forward tunnel failed: {exc}; set seldon.mesh_endpoint "
                         "in the profile to an address the runner can reach") from None
    tunnels.append(tunnel)
    return MeshEndpoint(http_url=f"http://127.0.0.1:{local}", grpc_target=f"127.0.0.1:{local}", route="tunnel",
                        note=f"{TUNNEL_NOTE} (pod {ns}/{target[0]} port {target[1]})")


def close_tunnels(tunnels: list[PortForwardTunnel]) -> None:
    while tunnels:
        tunnels.pop().close()
