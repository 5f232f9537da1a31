"""The run Lease: liveness another process can prove, whatever host or PID namespace it runs in.

A run holds `harness-run-<run id>` and renews it on a timer well inside its duration. Whether a run
is alive is decided only by that renewal, by the API server's clock (its `Date` header): the run
writes `renewTime` on the server's clock and `harness cleanup` compares it with the server's clock,
so no two hosts' clocks are ever compared. Host names and pids are not evidence: two containers
share a host name, and a pid means nothing outside its PID namespace. The holder identity names
host, boot id, PID namespace, pid and process start time, for people reading the Lease.

The Lease also records what the run needs found again by a cleanup that has only the cluster:
the namespaces in which it creates Servers, Models and pods (`harness.seldon.dev/namespaces`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import threading
from typing import Any

from harness.errors import HarnessError
from harness.kube.client import Kube
from harness.kube.retry import KubeApiError

Obj = dict[str, Any]
LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "default"
RUN_LEASE_PREFIX = "harness-run-"
RUN_ID_KEY = "harness.seldon.dev/run-id"  # harness.render.labels.RUN_ID_KEY (kube stays below render)
MANAGED = {"app.kubernetes.io/managed-by": "seldon-gpu-harness"}
NAMESPACES_ANNOTATION = "harness.seldon.dev/namespaces"
# Renewed every RENEW_EVERY_S; expired after RUN_LEASE_SECONDS without a renewal: five renewals may
# fail in a row (a slow API server, a paused VM) before anyone may call the run dead.
RUN_LEASE_SECONDS = 90
RENEW_EVERY_S = 15.0


def run_lease_name(run_id: str) -> str:
    return f"{RUN_LEASE_PREFIX}{run_id}"[:253]


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read(4096).strip()
    except OSError:
        return "unknown"


def _start_ticks() -> str:
    """The process start time in clock ticks since boot (/proc/self/stat field 22): with the boot id
    and the PID namespace it names this process uniquely, even after its pid is reused."""
    stat = _read("/proc/self/stat")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else "unknown"


def holder_identity(run_id: str) -> str:
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = "unknown"
    return (f"{run_id} host={socket.gethostname()} boot={_read('/proc/sys/kernel/random/boot_id')} "
            f"pidns={pidns} pid={os.getpid()} start={_start_ticks()}")


def micro_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def expired(lease: Obj, server_now: dt.datetime, default_s: int = RUN_LEASE_SECONDS) -> str | None:
    """Why the Lease is expired at `server_now` (the API server's clock), or None while it is valid.
    An unreadable time is never read as expired: only a proven lapse may end a run."""
    spec = lease.get("spec") or {}
    renew = spec.get("renewTime") or spec.get("acquireTime")
    when = parse_time(renew) if renew else None
    if when is None:
        return None
    try:
        duration = int(spec.get("leaseDurationSeconds") or default_s)
    except (TypeError, ValueError):
        duration = default_s
    age = (server_now - when).total_seconds()
    if age <= duration:
        return None
    return f"its Lease was last renewed {age:.0f} s ago by the API server's clock (duration {duration} s)"


def recorded_namespaces(lease: Obj | None) -> list[str]:
    raw = (((lease or {}).get("metadata") or {}).get("annotations") or {}).get(NAMESPACES_ANNOTATION)
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        return []
    return sorted({str(n) for n in found if isinstance(n, str) and n}) if isinstance(found, list) else []


def run_lease_body(run_id: str, server_now: dt.datetime, namespaces: list[str],
                   duration_s: int = RUN_LEASE_SECONDS) -> Obj:
    return {
        "apiVersion": LEASE_API, "kind": "Lease",
        "metadata": {"name": run_lease_name(run_id), "namespace": LEASE_NAMESPACE,
                     "labels": {**MANAGED, RUN_ID_KEY: run_id},
                     "annotations": {NAMESPACES_ANNOTATION: json.dumps(sorted(set(namespaces)))}},
        "spec": {"holderIdentity": holder_identity(run_id), "leaseDurationSeconds": duration_s,
                 "acquireTime": micro_time(server_now), "renewTime": micro_time(server_now)},
    }


def run_of(lease: Obj) -> str:
    """The run id a run Lease belongs to (its label; the name for Leases written before the label)."""
    meta = lease.get("metadata") or {}
    label = (meta.get("labels") or {}).get(RUN_ID_KEY)
    name = str(meta.get("name") or "")
    return str(label) if label else name[len(RUN_LEASE_PREFIX):]


def run_gone(kube: Kube, run_id: str, node_lease: Obj | None, server_now: dt.datetime | None = None) -> str | None:
    """Why run `run_id` is certainly gone, or None while it may run: its run Lease expired (or it has
    none and the node Lease it holds expired), by the API server's clock."""
    now = server_now or kube.server_time()
    run = kube.get(LEASE_API, "Lease", run_lease_name(run_id), LEASE_NAMESPACE)
    if run is not None:
        return expired(run, now)
    if node_lease is not None:
        return expired(node_lease, now)
    return None


class RunLease:
    """Take, renew on a timer, record namespaces in, and release one run's Lease."""

    def __init__(self, kube: Kube, run_id: str, duration_s: int = RUN_LEASE_SECONDS,
                 every_s: float = RENEW_EVERY_S) -> None:
        if not 0 < every_s * 3 <= duration_s:
            raise ValueError(f"renewal every {every_s} s is not well inside a {duration_s} s Lease")
        self.kube = kube
        self.run_id = run_id
        self.name = run_lease_name(run_id)
        self.duration_s = duration_s
        self.every_s = every_s
        self.namespaces: set[str] = set()
        self.held = False
        self.renewals = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def take(self, namespaces: list[str]) -> None:
        """Create the Lease; one left by a run whose Lease expired is replaced, a live one refused."""
        self.namespaces.update(namespaces)
        now = self.kube.server_time()
        body = run_lease_body(self.run_id, now, sorted(self.namespaces), self.duration_s)
        try:
            self.kube.create(body)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            live = self.kube.get(LEASE_API, "Lease", self.name, LEASE_NAMESPACE)
            if live is not None and expired(live, self.kube.server_time()) is None:
                raise HarnessError(
                    f"run id {self.run_id} is in use by a running harness run (Lease {LEASE_NAMESPACE}/{self.name}, "
                    f"held by {(live.get('spec') or {}).get('holderIdentity')}, renewed "
                    f"{(live.get('spec') or {}).get('renewTime')}); pick another --run-id") from None
            # expired: its namespaces are still to be cleaned, so this run takes them over
            self.namespaces.update(recorded_namespaces(live))
            self.kube.delete(LEASE_API, "Lease", self.name, LEASE_NAMESPACE, wait=True, timeout=30)
            self.kube.create(run_lease_body(self.run_id, now, sorted(self.namespaces), self.duration_s))
        self.held = True

    def record_namespace(self, namespace: str) -> None:
        """Note in the Lease, before anything is created there, a namespace this run creates objects in."""
        with self._lock:
            if not self.held or namespace in self.namespaces:
                return
            self.namespaces.add(namespace)
            annotation = json.dumps(sorted(self.namespaces))
        self.kube.patch(LEASE_API, "Lease", self.name, LEASE_NAMESPACE,
                        {"metadata": {"annotations": {NAMESPACES_ANNOTATION: annotation}}})

    def renew(self) -> None:
        """One renewal, stamped with the API server's clock. A Lease gone or taken over is reported."""
        now = self.kube.server_time()
        patched = self.kube.patch(LEASE_API, "Lease", self.name, LEASE_NAMESPACE,
                                  {"spec": {"renewTime": micro_time(now)}})
        holder = str((patched.get("spec") or {}).get("holderIdentity") or "")
        if holder != holder_identity(self.run_id):
            raise KubeApiError(f"Lease {LEASE_NAMESPACE}/{self.name} is now held by {holder!r}")
        self.renewals += 1

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # A timer, not a wait for state: the Event ends it at once on release.
        while not self._stop.wait(self.every_s):
            try:
                self.renew()
                self.last_error = None
            except Exception as exc:  # keep trying: the next renewal may get through in time
                if self.last_error is None:
                    print(f"warning: renewing run Lease {LEASE_NAMESPACE}/{self.name} failed: {exc}",
                          file=sys.stderr)
                self.last_error = str(exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.kube.timeouts.request_s + 1)
            self._thread = None

    def release(self) -> None:
        self.stop()
        if self.held:
            self.kube.delete(LEASE_API, "Lease", self.name, LEASE_NAMESPACE, wait=False)
            self.held = False
