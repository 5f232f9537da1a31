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


def summary_ms(histogram: HdrHistogram) -> dict[str, float]:
    """min, mean, p50 ... p99.9, max in milliseconds; zeros when nothing was recorded."""
    if histogram.get_total_count() == 0:
        return dict.fromkeys(LATENCY_KEYS, 0.0)
    out = {"min": histogram.get_min_value() / 1000.0, "mean": histogram.get_mean_value() / 1000.0}
    for key, percentile in PERCENTILE_KEYS:
        out[key] = histogram.get_value_at_percentile(percentile) / 1000.0
    out["max"] = histogram.get_max_value() / 1000.0
    return {key: round(out[key], 4) for key in LATENCY_KEYS}
