"""Child processes die with their parent, even when the parent is killed with SIGKILL.

Process groups let the harness stop its children when it exits normally or on a signal it can
handle; SIGKILL runs no handler at all. So each long-lived child (MLServer, the sim's mesh, `load`
workers) watches its own parent: on Linux, `PR_SET_PDEATHSIG` (through ctypes' prctl) asks the kernel
to signal it, and because the kernel ties that to the *thread* that spawned the child (the sim spawns
from worker threads that come and go), the child also polls `getppid()`: a changed parent means
the original one is gone. Either way the child gets `sig` and shuts down as on a normal stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

PARENT_ENV = "HARNESS_PARENT_PID"
_PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def set_pdeathsig(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` when the spawning thread dies; False where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def expected_parent() -> int:
    """The process this one must not outlive: `HARNESS_PARENT_PID` if set, else the current parent."""
    raw = os.environ.get(PARENT_ENV, "")
    return int(raw) if raw.isdigit() else os.getppid()


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGTERM, *, pdeathsig: bool = False) -> None:
    """Call first thing in a child. `parent_pid`: the parent it must outlive never (default: the
    `HARNESS_PARENT_PID` environment variable, else the current parent)."""
    if parent_pid is None:
        parent_pid = expected_parent()
    if pdeathsig:
        set_pdeathsig(sig)
    if os.getppid() != parent_pid:  # the parent died before we got here
        os.kill(os.getpid(), sig)
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(POLL_S):
            if os.getppid() != parent_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(os.getpid(), sig)
                return

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that calls `die_with_parent()`: names this process as its parent."""
    out = dict(os.environ if env is None else env)
    out[PARENT_ENV] = str(os.getpid())
    return out
