"""The kubelet's part of graceful pod deletion.

Upstream (kubernetes/kubernetes, commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282):
pkg/kubelet/pod_workers.go and kuberuntime_container.go (`killContainer`): a pod with a
deletionTimestamp has its containers stopped with SIGTERM; a container still running when the grace
period (`metadata.deletionGracePeriodSeconds`) runs out is killed (SIGKILL). Once every container has
stopped, pkg/kubelet/status/status_manager.go deletes the pod with grace 0 and a UID precondition,
which removes it from the API. Until then the pod is Terminating: it keeps its node, its resources
(the scheduler and the device plugin still count its GPUs) and its name.

The sim runs a process only for one-shot Python containers; those get a real SIGTERM and the full
grace before SIGKILL (a process that ignores SIGTERM keeps its pod Terminating for the whole grace
period). A container the sim runs no process for (pause, the Seldon agent and rclone, an MLServer
whose process the data plane retires as soon as the pod is Terminating) counts as stopped at once,
as an image that exits on SIGTERM does. A pod whose node's kubelet is down stays Terminating, as on
a real cluster, until the node comes back.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from harness.sim.api.deletion import DeleteOptions
from harness.sim.contracts import ApiError, Obj, Store

log = logging.getLogger(__name__)


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


class Terminator:
    """Per-pod termination deadlines, kept from the first pass that saw the pod being deleted."""

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        self._signalled: set[str] = set()

    def step(self, store: Store, pod: Obj, now: float, proc: subprocess.Popen[bytes] | None,
             starting: bool = False) -> float | None:
        """Advance one Terminating pod; returns when to look again (None: it is gone). `starting`:
        the kubelet is still launching its container (the process is not there yet to be signalled)."""
        meta = _meta(pod)
        uid = str(meta.get("uid") or "")
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        deadline = min(self._deadlines.setdefault(uid, now + grace), now + grace)  # a later delete may shorten it
        self._deadlines[uid] = deadline
        running = proc is not None and proc.poll() is None
        if proc is None and starting and now < deadline:
            return min(deadline, now + 0.05)
        if running and proc is not None:
            if uid not in self._signalled:
                self._signalled.add(uid)
                proc.terminate()  # SIGTERM; the one-shot runner records how it exited
                return min(deadline, now + 0.05)
            if now < deadline:
                return min(deadline, now + 0.1)  # poll: the process may exit before its grace is up
            proc.kill()  # the grace period is over: SIGKILL
        self._remove(store, pod)
        return None

    def forget(self, live: set[str]) -> None:
        for uid in [u for u in self._deadlines if u not in live]:
            del self._deadlines[uid]
            self._signalled.discard(uid)

    @staticmethod
    def _remove(store: Store, pod: Obj) -> None:
        meta = _meta(pod)
        try:
            store.delete("v1", "Pod", str(meta.get("name")), meta.get("namespace"),
                         options=DeleteOptions(grace_period=0, uid=str(meta.get("uid") or "")))
        except ApiError as exc:
            if exc.code not in (404, 409):  # gone already, or a new pod of the same name
                raise
