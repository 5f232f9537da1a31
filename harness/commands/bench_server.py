"""What the server spent on each request of a benchmark run: its CPU time and its threads' wake-ups.

Why the benchmark reports them: against the real Triton, the gRPC client's CPU per request comes out
above the HTTP client's, while against two minimal servers that answer both protocols at the same
pace it does not (docs/benchmarks.md, issue 31). The difference is on the server's side of the
loopback: Triton's gRPC front end passes each call between several threads (its completion-queue
threads, then the model's), and on a runner whose cores the client shares with the server every such
wake-up can land on the client's core, preempt it and cool its caches. These figures put the server's
share in the report next to the client's, so a reader can tell a client that got dearer from a server
that did.

All of it comes from /proc (Linux; elsewhere the figures are left out):
- CPU: utime + stime of the server's process and every process under it (Triton's python backend
  runs each model in a stub process), from `/proc/<pid>/stat`, which sums all of a process's threads;
- wake-ups: the voluntary context switches of every thread of those processes
  (`/proc/<pid>/task/<tid>/status`): each one is a thread that went to sleep and was woken again;
- requests: Triton's own counter of successful inferences (`nv_inference_request_success` on its
  metrics endpoint), read at the same moments, so warm-up, measured window and drain all count on
  both sides of the division.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.commands.bench_noise import descendants, proc_stats
from harness.gpu.triton import parse_metrics

SUCCESS_COUNTER = "nv_inference_request_success"


@dataclass(frozen=True)
class ServerCounters:
    """Cumulative counters of one server at one moment."""

    cpu_s: float
    wakeups: int
    requests: float


@dataclass(frozen=True)
class ServerCost:
    """What one run cost the server, per request it answered."""

    cpu_ms_per_request: float
    wakeups_per_request: float
    requests: int


def voluntary_switches(status: str) -> int:
    """`voluntary_ctxt_switches` of one /proc/<pid>/task/<tid>/status (0 when absent)."""
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split(":", 1)[1])
    return 0


def successes(metrics_text: str, model: str) -> float | None:
    """Triton's count of successful inferences of `model` (all versions); None when not exposed."""
    values = [value for name, labels, value in parse_metrics(metrics_text)
              if name == SUCCESS_COUNTER and labels.get("model") == model]
    return sum(values) if values else None


def cost(before: ServerCounters | None, after: ServerCounters | None) -> ServerCost | None:
    """The run's cost per answered request; None when a reading is missing or nothing was answered."""
    if before is None or after is None:
        return None
    requests = after.requests - before.requests
    if requests <= 0:
        return None
    return ServerCost(cpu_ms_per_request=1000.0 * (after.cpu_s - before.cpu_s) / requests,
                      wakeups_per_request=(after.wakeups - before.wakeups) / requests,
                      requests=int(requests))


def process_tree(stats: Mapping[int, tuple[int, int]], root: int) -> list[int]:
    """`root` and its descendants among `stats` (pid -> (ppid, ticks)); empty when `root` is not there."""
    return [root, *descendants(stats, root)] if root in stats else []


def read_counters(root: int, metrics_url: str, model: str, timeout: float = 5.0) -> ServerCounters | None:
    """The server's counters now: `root` is its process (its launcher is fine: the tree below it is
    summed); None where /proc or the metrics endpoint cannot be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
            answered = successes(response.read().decode(errors="replace"), model)
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        stats = proc_stats(os.listdir("/proc"))
    except (OSError, ValueError):
        return None
    tree = process_tree(stats, root)
    if answered is None or not tree:
        return None
    wakeups = 0
    for pid in tree:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # exited since: its CPU time went to whoever reaped it
        for tid in tids:
            try:
                wakeups += voluntary_switches(Path(f"/proc/{pid}/task/{tid}/status").read_text())
            except (OSError, ValueError):
                continue  # a thread that ended meanwhile
    return ServerCounters(cpu_s=sum(stats[pid][1] for pid in tree) / ticks_per_s, wakeups=wakeups,
                          requests=answered)
