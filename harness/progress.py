"""Progress for long phases (cluster create, installs, model loads, load runs).

In a terminal a rich spinner shows the phase and its latest note; anywhere else (CI logs, pipes,
files) each event is one plain, timestamped line that greps well and survives log folding:

    2026-11-28T18:40:00Z harness: cluster create started
    2026-11-28T18:40:12Z harness: cluster create: 3 of 4 nodes ready
    2026-11-28T18:40:12Z harness: cluster create done in 12.3s

Nothing here waits: the spinner is animated by rich's own refresh thread and stops when the phase
ends. The clock and the stream are parameters so tests can check the lines exactly.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO


def _utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PhaseProgress:
    """Handle yielded by `progress()`: `note()` reports a sub-step of the running phase."""

    def __init__(self, phase: str, stream: TextIO, now: Callable[[], datetime], status: Any | None) -> None:
        self.phase = phase
        self._stream = stream
        self._now = now
        self._status = status
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        line = " ".join(message.split())
        self.notes.append(line)
        if self._status is not None:
            self._status.update(f"{self.phase}: {line}")
        else:
            _line(self._stream, self._now, f"{self.phase}: {line}")


def _line(stream: TextIO, now: Callable[[], datetime], text: str) -> None:
    stream.write(f"{timestamp(now())} harness: {text}\n")
    stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):
        return False


@contextmanager
def progress(
    phase: str,
    *,
    stream: TextIO | None = None,
    interactive: bool | None = None,
    now: Callable[[], datetime] = _utc_now,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[PhaseProgress]:
    """Show `phase` while the block runs; say how long it took and whether it failed.

    `interactive=None` means: a rich spinner when `stream` is a terminal, plain lines otherwise.
    An exception from the block is reported ("failed after 3.2s: TimeoutError") and re-raised.
    """
    out = stream if stream is not None else sys.stdout
    rich_mode = _is_terminal(out) if interactive is None else interactive
    started = monotonic()
    status_cm: Any = None
    status: Any = None
    if rich_mode:
        from rich.console import Console

        console = Console(file=out)
        status_cm = console.status(f"{phase} ...")
        status = status_cm.__enter__()
    else:
        _line(out, now, f"{phase} started")
    handle = PhaseProgress(phase, out, now, status)
    try:
        yield handle
    except BaseException as exc:
        elapsed = monotonic() - started
        if status_cm is not None:
            status_cm.__exit__(None, None, None)
            out.write(f"[x] {phase} failed after {elapsed:.1f}s: {type(exc).__name__}\n")
        else:
            _line(out, now, f"{phase} failed after {elapsed:.1f}s: {type(exc).__name__}")
        raise
    elapsed = monotonic() - started
    if status_cm is not None:
        status_cm.__exit__(None, None, None)
        out.write(f"[ok] {phase} done in {elapsed:.1f}s\n")
    else:
        _line(out, now, f"{phase} done in {elapsed:.1f}s")
