"""Bounded retries of transient Kubernetes API failures.

Only idempotent verbs are retried (a repeated bare `create` could act twice). Waits between
attempts use `threading.Event.wait` against a monotonic clock (never a blind pause), so an
interrupting signal or a `cancel` event ends them early.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from harness.errors import HarnessError

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class KubeApiError(HarnessError):
    """A Kubernetes API call failed. `status` is the HTTP code (0 for connection failures)."""

    def __init__(self, message: str, status: int = 0, reason: str = "", attempts: int = 1,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.attempts = attempts
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in TRANSIENT_STATUS


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. `attempts` counts the first try; delays grow `base_s * 2**n` up to `max_delay_s`."""

    attempts: int = 5
    base_s: float = 0.1
    max_delay_s: float = 5.0
    # A server's Retry-After is honoured but capped, so a hostile or buggy value cannot stall a run.
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        backoff: float = min(self.max_delay_s, self.base_s * (2 ** (attempt - 1)))
        if retry_after is not None:
            return float(max(backoff, min(retry_after, self.max_retry_after_s)))
        return backoff


@dataclass
class Retrier:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    cancel: threading.Event = field(default_factory=threading.Event)
    # Observed waits, for diagnostics and tests (the sum of backoff actually taken).
    waits: list[float] = field(default_factory=list)

    def call(self, what: str, fn: Callable[[], T], idempotent: bool) -> T:
        attempts = self.policy.attempts if idempotent else 1
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except KubeApiError as exc:
                if not exc.transient or attempt >= attempts:
                    if exc.transient and attempt > 1:
                        raise KubeApiError(
                            f"{what}: {exc} (gave up after {attempt} attempts)",
                            exc.status, exc.reason, attempt, exc.retry_after,
                        ) from exc
                    if exc.transient and not idempotent:
                        raise KubeApiError(
                            f"{what}: {exc} (1 attempt; not retried because the call is not idempotent)",
                            exc.status, exc.reason, 1, exc.retry_after,
                        ) from exc
                    raise
                delay = self.policy.delay(attempt, exc.retry_after)
                self.waits.append(delay)
                if self.cancel.wait(delay):
                    raise KubeApiError(f"{what}: cancelled while backing off after {attempt} attempts",
                                       exc.status, exc.reason, attempt) from exc
