"""A local port that reaches one pod port through the API server (the kubernetes client's port-forward).

For load sent from the runner when the cluster gives it no route to the mesh (no LoadBalancer it can
reach): `127.0.0.1:<local>` accepts connections, and each one is carried to the pod's port over its
own port-forward websocket (`pods/<name>/portforward?ports=<port>`, channel protocol v4: data on
channel 0, errors on channel 1, each opened by a frame that names the port; kubernetes python client
`kubernetes/stream/ws_client.py` PortForward). Every request then crosses the API server and the
kubelet, so latencies measured through it are not the mesh's alone: the report says so.
Test traffic stays on 127.0.0.1; nothing here listens on another address.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.kube.client import Kube

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
# Connections the tunnel carries at once: a bound on threads (two per connection).
MAX_CONNECTIONS = 256


class TunnelError(HarnessError):
    """The port-forward could not be opened; the message names the pod and port."""


def _pump(src: Any, dst: Any) -> None:
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class PortForwardTunnel:
    """`start()` -> the local port; `close()` stops accepting and ends every carried connection."""

    def __init__(self, kube: Kube, namespace: str, pod: str, port: int, connect_timeout: float = 30.0) -> None:
        self.kube, self.namespace, self.pod, self.port = kube, namespace, pod, port
        self.connect_timeout = connect_timeout
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._open: set[Any] = set()
        self._lock = threading.Lock()
        self.local_port = 0

    def open_stream(self) -> Any:
        """One port-forward stream to the pod's port: a socket-like object (send, recv, shutdown, close)."""
        from kubernetes.stream.ws_client import portforward_call

        configuration, url, headers = self.kube.websocket_request(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}/portforward")
        try:
            forward = portforward_call(  # type: ignore[no-untyped-call]
                configuration, "GET", url, query_params=[("ports", str(self.port))], headers=headers)
        except Exception as exc:  # the client wraps every failure in ApiException(status=0)
            raise TunnelError(f"port-forward to pod {self.namespace}/{self.pod} port {self.port} failed: "
                              f"{getattr(exc, 'reason', None) or exc}") from None
        return forward.socket(self.port)

    def start(self) -> int:
        # Fail early and clearly: one stream must open before the tunnel is offered to anyone.
        probe = self.open_stream()
        probe.close()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        self.local_port = int(listener.getsockname()[1])
        threading.Thread(target=self._accept, name=f"tunnel-{self.pod}-{self.port}", daemon=True).start()
        return self.local_port

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if len(self._open) >= MAX_CONNECTIONS * 2:
                    conn.close()
                    continue
            threading.Thread(target=self._carry, args=(conn,), daemon=True).start()

    def _carry(self, conn: socket.socket) -> None:
        try:
            remote = self.open_stream()
        except TunnelError as exc:
            log.warning("%s", exc)
            conn.close()
            return
        with self._lock:
            self._open.update((conn, remote))
        back = threading.Thread(target=_pump, args=(remote, conn), daemon=True)
        back.start()
        _pump(conn, remote)
        back.join(timeout=self.connect_timeout)
        for end in (conn, remote):
            with contextlib.suppress(OSError):
                end.close()
        with self._lock:
            self._open.difference_update((conn, remote))

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            ends = list(self._open)
        for end in ends:
            with contextlib.suppress(OSError):
                end.close()
