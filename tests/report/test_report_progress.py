"""Progress lines: exact plain lines for CI logs, a spinner in terminals, failures reported and re-raised."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from harness.progress import progress


class FakeClock:
    def __init__(self) -> None:
        self.wall = datetime(2026, 11, 28, 18, 40, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    out, clock = io.StringIO(), FakeClock()
    with progress("cluster create", stream=out, now=clock.now, monotonic=clock.monotonic) as handle:
        clock.advance(4.0)
        handle.note("3 of 4 nodes\n ready")
        clock.advance(8.3)
    assert out.getvalue().splitlines() == [
        "2026-11-28T18:40:00Z harness: cluster create started",
        "2026-11-28T18:40:04Z harness: cluster create: 3 of 4 nodes ready",
        "2026-11-28T18:40:12Z harness: cluster create done in 12.3s",
    ]
    assert handle.notes == ["3 of 4 nodes ready"]


def test_failure_is_reported_and_reraised() -> None:
    out, clock = io.StringIO(), FakeClock()
    with pytest.raises(TimeoutError), progress("seldon install", stream=out, now=clock.now,
                                               monotonic=clock.monotonic):
        clock.advance(3.24)
        raise TimeoutError("scheduler not ready")
    assert out.getvalue().splitlines()[-1] == (
        "2026-11-28T18:40:03Z harness: seldon install failed after 3.2s: TimeoutError"
    )


def test_terminal_gets_the_rich_spinner_not_log_lines() -> None:
    out, clock = Tty(), FakeClock()
    with progress("model loads", stream=out, now=clock.now, monotonic=clock.monotonic) as handle:
        handle.note("iris-gpu ModelAvailable")
        clock.advance(1.5)
    text = out.getvalue()
    assert "harness: model loads started" not in text
    # rich erases the spinner line with ANSI codes before the final line
    assert text.rstrip().splitlines()[-1].endswith("[ok] model loads done in 1.5s")


def test_interactive_can_be_forced_off() -> None:
    out = Tty()
    with progress("load run", stream=out, interactive=False):
        pass
    assert out.getvalue().splitlines()[0].endswith("harness: load run started")


def test_builder_phase_can_show_progress() -> None:
    from harness.report import ReportBuilder

    out = io.StringIO()
    builder = ReportBuilder("r", provider="kind", simulated=False, profile_name="p")
    with builder.phase("gpu stack", show=True, stream=out):
        pass
    assert "harness: gpu stack started" in out.getvalue()
    assert builder.snapshot().phases[0].status == "ok"
