"""The GPU-use criterion (harness/gpu/gpu_use.py) on sequences of Triton metrics: a GPU that computes
passes; one that idles and one whose memory grew once without compute fail; short windows never pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.gpu.gpu_use import TimedScrape, judge_gpu_use, timed_scrape

FIXTURES = Path(__file__).parents[1] / "fixtures" / "triton_metrics"


def _load(name: str) -> tuple[list[TimedScrape], list[str], float]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return [timed_scrape(s["text"], s["at_s"]) for s in doc["scrapes"]], doc["gpus"], doc["interval_s"]


def test_a_gpu_that_computes_passes_with_its_evidence() -> None:
    scrapes, gpus, interval = _load("computes")
    use = judge_gpu_use(scrapes, gpus, interval_s=interval)
    assert use.ok, use.reason
    assert (use.window_s, use.scrapes, use.interval_s) == (9.0, 19, 2.0)
    assert "19 scrape(s) over 9.0 s, metrics interval 2 s" in use.reason


@pytest.mark.parametrize("name", ["idles", "memory_once"])
def test_an_idle_gpu_and_one_memory_bump_fail(name: str) -> None:
    scrapes, gpus, interval = _load(name)
    use = judge_gpu_use(scrapes, gpus, interval_s=interval)
    assert not use.ok
    assert f"no sustained compute on {gpus}" in use.reason


def test_memory_growth_alone_is_reported_but_not_counted() -> None:
    scrapes, gpus, interval = _load("memory_once")
    assert scrapes[-1].memory_used[gpus[0]] > scrapes[0].memory_used[gpus[0]]
    assert "memory +33554432 B (not evidence)" in judge_gpu_use(scrapes, gpus, interval_s=interval).reason


def test_a_window_shorter_than_three_intervals_never_passes() -> None:
    scrapes, gpus, interval = _load("computes")
    short = [s for s in scrapes if s.at_s <= 5.5]  # 5.5 s < 3 x 2 s
    use = judge_gpu_use(short, gpus, interval_s=interval)
    assert not use.ok and "too short to judge" in use.reason


def test_one_busy_refresh_or_no_compute_time_is_not_enough() -> None:
    scrapes, gpus, interval = _load("computes")
    uuid = gpus[0]
    one_busy = [TimedScrape(s.at_s, {uuid: 0.5 if i == 10 else 0.0}, s.memory_used, s.compute_us)
                for i, s in enumerate(scrapes)]
    assert not judge_gpu_use(one_busy, gpus, interval_s=interval).ok
    no_compute = [TimedScrape(s.at_s, s.utilization, s.memory_used, {uuid: 5.0}) for s in scrapes]
    assert not judge_gpu_use(no_compute, gpus, interval_s=interval).ok
    # Another GPU's compute does not count for this one.
    elsewhere = [TimedScrape(s.at_s, s.utilization, s.memory_used, {"GPU-other": s.compute_us[uuid]})
                 for s in scrapes]
    assert not judge_gpu_use(elsewhere, gpus, interval_s=interval).ok


def test_no_gpu_fails() -> None:
    scrapes, _, interval = _load("computes")
    assert not judge_gpu_use(scrapes, [], interval_s=interval).ok
