"""Was the benchmark machine quiet? The CPU that work other than the bench's own used while it ran.

The load average cannot tell: the bench's own server, client and wrk keep one to two cores busy, so
a quiet run on 2 CPUs read 0.92 before and 2.02 after and was called noisy. Instead, over each
measured phase, two CPU times are compared:

- the machine's busy time, all CPUs together (`/proc/stat`: user, nice, system, irq, softirq, steal;
  steal is CPU the hypervisor gave to other guests, which a benchmark feels like any other work);
- the bench's own CPU time: this process and every process descended from it (servers, wrk, load
  workers, a fork server's children), whether still running (`/proc/<pid>/stat`: utime, stime and
  the times of the children it has reaped) or already reaped by this process (`RUSAGE_CHILDREN`).

Their difference is other work. A run is noisy when other work averaged more than
`OTHER_CORES_LIMIT` of a core over any phase, or when the 1-minute load average was already above
the CPU count before the run began. A process that left the bench's tree (re-parented to init)
counts as other work: the rule errs towards "noisy", never towards a target met.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Other work above this share of one core, averaged over a phase, makes the run noisy. The
# accounting itself is tick-sampled (100 Hz) on one side and exact on the other, which over a
# phase of a minute or more differs by far less than this.
OTHER_CORES_LIMIT = 0.25
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice. guest and
# guest_nice are already inside user and nice, and idle and iowait are not busy.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class CpuSample:
    at: float  # time.monotonic() when taken
    busy_s: float  # the machine's busy CPU seconds since boot, all CPUs together
    own_s: float  # CPU seconds of this process and its descendants (reaped ones included)


@dataclass(frozen=True)
class Phase:
    name: str
    start: CpuSample
    end: CpuSample

    @property
    def wall_s(self) -> float:
        return max(self.end.at - self.start.at, 1e-9)

    @property
    def own_cores(self) -> float:
        return (self.end.own_s - self.start.own_s) / self.wall_s

    @property
    def other_cores(self) -> float:
        """Cores' worth of CPU used by work that is not the bench's, on average over the phase."""
        busy = self.end.busy_s - self.start.busy_s
        own = self.end.own_s - self.start.own_s
        return max(0.0, busy - own) / self.wall_s

    def describe(self) -> str:
        return (f"{self.name}: other work {self.other_cores:.2f} of a core, the bench's own processes "
                f"{self.own_cores:.2f}, over {self.wall_s:.0f} s")


def noise(load_before: float, cpus: int, phases: Sequence[Phase]) -> str | None:
    """Why the run's figures cannot be judged, or None for a quiet run (a pure decision)."""
    reasons = []
    if load_before > cpus:
        reasons.append(f"load average {load_before:.2f} above the {cpus} CPUs before the run")
    for phase in phases:
        if phase.other_cores > OTHER_CORES_LIMIT:
            reasons.append(f"{phase.name}: other work used {phase.other_cores:.2f} of a core "
                           f"(limit {OTHER_CORES_LIMIT:g})")
    return "; ".join(reasons) or None


def busy_seconds(proc_stat: str, ticks_per_s: int) -> float:
    """The busy CPU seconds of the first (all-CPU) line of /proc/stat."""
    fields = proc_stat.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("/proc/stat: expected the all-CPU 'cpu' line first")
    values = [int(v) for v in fields[1:]]
    return sum(values[i] for i in _BUSY_COLUMNS if i < len(values)) / ticks_per_s


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(parent pid, CPU ticks of the process and its reaped children) of one /proc/<pid>/stat."""
    # The command name (field 2) may hold spaces and parentheses; the fields after it are plain.
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return int(rest[1]), sum(int(v) for v in rest[11:15])


def descendants(stats: Mapping[int, tuple[int, int]], root: int) -> list[int]:
    """The pids below `root` (not `root` itself) among pid -> (ppid, ticks)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    seen: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_ticks(stats: Mapping[int, tuple[int, int]], root: int) -> int:
    """CPU ticks of the live descendants of `root` (not `root` itself), from pid -> (ppid, ticks)."""
    return sum(stats[pid][1] for pid in descendants(stats, root))


def proc_stats(pids: Iterable[str]) -> dict[int, tuple[int, int]]:
    stats = {}
    for name in pids:
        if not name.isdigit():
            continue
        try:
            stats[int(name)] = parse_pid_stat(Path(f"/proc/{name}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked: its times went to whoever reaped it
    return stats


def sample() -> CpuSample | None:
    """The machine's and the bench's CPU seconds now; None where /proc cannot be read (not Linux)."""
    try:
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        busy = busy_seconds(Path("/proc/stat").read_text(), ticks_per_s)
        names = os.listdir("/proc")
    except (OSError, ValueError):
        return None
    # What was reaped first, then the live descendants: a child reaped in between is then counted
    # nowhere, so the bench looks cheaper and the machine busier (noisy), never the other way.
    # Samples are taken between runs, when nothing is being reaped.
    mine = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = tree_ticks(proc_stats(names), os.getpid()) / ticks_per_s
    own = mine.ru_utime + mine.ru_stime + reaped.ru_utime + reaped.ru_stime + live
    return CpuSample(at=time.monotonic(), busy_s=busy, own_s=own)


@dataclass(frozen=True)
class TimerOvershoot:
    """How late this machine wakes a thread that slept: what no client can be more punctual than."""

    sleeps: int
    p50_ms: float
    p99_ms: float
    late_fraction: float  # of the sleeps, woken more than `late_s` after their time
    late_s: float

    def describe(self) -> str:
        return (f"- timer wake-ups before the run ({self.sleeps} sleeps of 1 ms, nothing of the bench running): "
                f"late by p50 {self.p50_ms:.3f} ms, p99 {self.p99_ms:.3f} ms; {self.late_fraction:.1%} more "
                f"than {1000 * self.late_s:g} ms late")

    def hides(self, target: float) -> bool:
        """Whether the machine alone wakes at least `target` of sleepers late: then an open loop's late
        sends, held to that target, measure the machine (hypervisor steal, timer slack), not the client."""
        return self.late_fraction >= target


def overshoot_of(overshoots_s: Sequence[float], late_s: float) -> TimerOvershoot:
    """The summary of measured sleep overshoots (seconds): p50 and p99 by nearest rank."""
    ordered = sorted(overshoots_s)
    if not ordered:
        raise ValueError("no sleeps measured")

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    late = sum(1 for v in ordered if v > late_s)
    return TimerOvershoot(len(ordered), 1000.0 * rank(0.50), 1000.0 * rank(0.99), late / len(ordered), late_s)


def timer_overshoot(late_s: float, sleeps: int = 1000, sleep_s: float = 0.001) -> TimerOvershoot:
    """Sleep `sleeps` times for `sleep_s`, measuring how late each wake-up came (takes about `sleeps` ms)."""
    overshoots = []
    for _ in range(sleeps):
        start = time.monotonic()
        time.sleep(sleep_s)
        overshoots.append(max(0.0, time.monotonic() - start - sleep_s))
    return overshoot_of(overshoots, late_s)


def phase(name: str, start: CpuSample | None, end: CpuSample | None) -> Phase | None:
    return Phase(name, start, end) if start is not None and end is not None else None


def judge(load_before: float, load_after: float, cpus: int,
          phases: Sequence[Phase | None]) -> tuple[bool, list[str]]:
    """(noisy, the markdown lines of the benchmark's Machine section that say why)."""
    lines = [f"- load average before / after: {load_before:.2f} / {load_after:.2f} (the bench's own server, "
             "client and wrk raise the reading after; it judges only the reading before, against the CPU count)"]
    measured = [p for p in phases if p is not None]
    if len(measured) == len(phases):
        why = noise(load_before, cpus, measured)
        lines.append(f"- CPU used by other work while the bench ran (noisy above {OTHER_CORES_LIMIT:g} of a core; "
                     "harness/commands/bench_noise.py): " + "; ".join(p.describe() for p in measured))
    else:
        # No /proc: only the load averages, which the bench's own processes raise (errs towards noisy).
        why = (f"load average above the {cpus} CPUs (no /proc to tell the bench's own CPU from other work)"
               if max(load_before, load_after) > cpus else None)
    if why is not None:
        lines.append(f"- **NOISY RUN ({why}): no verdict below is judged, and no figure here may be quoted "
                     "as a target met**")
    return why is not None, lines
