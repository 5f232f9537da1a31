"""Latency histograms: HdrHistogram at microsecond resolution, 3 significant digits."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
# One hour: an open-loop latency timed from the intended send can far exceed the request timeout
# when the client falls behind, and it must still be recorded rather than clipped.
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3

PERCENTILE_KEYS: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
)
LATENCY_KEYS = ("min", "mean", *(key for key, _ in PERCENTILE_KEYS), "max")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record one latency given in seconds (clamped into the trackable range)."""
    micros = int(seconds * 1_000_000 + 0.5)
    histogram.record_value(min(max(micros, LOWEST_US), HIGHEST_US))


def bucket_counts_to_histogram(counts: dict[int, int]) -> HdrHistogram:
    """An HdrHistogram from bucket value -> count (`harness.load.generator.record_us`'s shape): every
    count lands in the bucket it was counted in, so the histogram is exactly the counts."""
    histogram = new_histogram()
    for value, count in counts.items():
        histogram.record_value(value, count)
    return histogram


def encode(histogram: HdrHistogram) -> bytes:
    encoded: bytes = histogram.encode()
    return encoded


def merge_encoded(encoded: Iterable[bytes]) -> HdrHistogram:
    """One histogram holding every value of the encoded ones (how worker processes are combined)."""
    merged = new_histogram()
    for blob in encoded:
        merged.decode_and_add(blob)
    return merged


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    merged = new_histogram()
    for histogram in histograms:
        merged.add(histogram)
    return merged


def summary_ms(histogram: HdrHistogram, total_seconds: float | None = None) -> dict[str, float]:
    """min, mean, p50 ... p99.9, max in milliseconds; zeros when nothing was recorded.

    `total_seconds` (the exact sum of the recorded latencies) gives the mean cheaply; without it
    the mean comes from the histogram, which walks every bucket in Python (~0.1 s).
    """
    count = histogram.get_total_count()
    if count == 0:
        return dict.fromkeys(LATENCY_KEYS, 0.0)
    mean_ms = total_seconds * 1000.0 / count if total_seconds is not None else histogram.get_mean_value() / 1000.0
    out = {"min": histogram.get_min_value() / 1000.0, "mean": mean_ms}
    # One pass over the buckets for all percentiles (asking one by one walks them each time).
    values = histogram.get_percentile_to_value_dict([p for _, p in PERCENTILE_KEYS])
    for key, percentile in PERCENTILE_KEYS:
        out[key] = values[percentile] / 1000.0
    out["max"] = histogram.get_max_value() / 1000.0
    return {key: round(out[key], 4) for key in LATENCY_KEYS}


def count_at_or_below_ms(histogram: HdrHistogram, limit_ms: float) -> int:
    """How many recorded latencies are at or below `limit_ms` (goodput against a latency SLO).

    Values are compared at the histogram's resolution (3 significant digits): a value counts when
    its bucket's lowest equivalent value is within the limit."""
    limit_us = int(limit_ms * 1000.0)
    if limit_us < 0:
        return 0
    # Every bucket up to the one that holds `limit_us` starts at or below it, and none after does: the
    # sum of the counts array up to that index (in C; the library's recorded-value iterator took
    # seconds of a sweep's CPU). A decoded histogram's array may be shorter than counts_len.
    end = min(histogram._counts_index_for(limit_us) + 1, len(histogram.counts), histogram.counts_len)
    return int(sum(histogram.counts[:end]))
