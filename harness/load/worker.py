"""One load-generating process: paces requests, times them and closes fixed windows.

The same code runs in the caller's process (one worker) or in each of several spawned worker
processes; the coordinator (`engine.py`) merges their windows. Clocks are `time.monotonic()`,
which on Linux is one system-wide clock, so worker processes share a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from harness.load.answers import AnswerChecker, Expected
from harness.load.clients import GRPC_METHOD, GrpcPool, HttpPool
from harness.load.generator import SUB_BUCKET_BITS, lowest_equivalent_us
from harness.load.grpc_raw import DEFAULT_WINDOW, RawGrpcPool
from harness.load.histogram import bucket_counts_to_histogram, encode
from harness.load.spec import Mode, Protocol, Target

LATE_S = 0.001  # a send more than 1 ms after its intended time is late (as counted by wrk2 users)
# Event-loop timers are millisecond-grained: uvloop rounds a delay to the nearest millisecond, the
# stock loop rounds it up. The pacer asks to wake half a millisecond (uvloop) or one millisecond
# (stock loop) ahead, then sends everything due within the next millisecond. Sends therefore land
# up to ~1 ms early rather than late; an early send is timed from its actual send (never flattered),
# and a send counts as late only when the process itself was not run in time.
EARLY_S = 0.001
UVLOOP_BIAS_S = 0.0005
STOCK_LOOP_BIAS_S = 0.001
TICK_S = 0.02
OPEN_LOOP_CONNECTIONS = 256
PREWARM_CONNECTIONS = 16
# The raw HTTP/2 client sends each request in one go within the server's default stream window;
# larger requests go through grpc.aio, which streams them as the window opens.
RAW_GRPC_MAX_MESSAGE = DEFAULT_WINDOW
_EXACT_BELOW_US = 1 << SUB_BUCKET_BITS
CONNECTION_KINDS = frozenset({"connection_refused", "connection_reset", "connection_error", "grpc_UNAVAILABLE"})


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    count: int
    protocol: Protocol
    target: Target
    endpoint: str
    model: str
    payload: bytes
    mode: Mode
    rate: float | None  # this worker's share of the offered rate
    concurrency: int | None  # this worker's share of the concurrency
    poisson: bool
    seed: int | None
    start_at: float  # monotonic time at which warm-up starts
    warmup_s: float
    window_s: float
    max_windows: int
    timeout_s: float
    dead_after_s: float
    # Constant-rate workers interleave: worker k sends at start + (k + n * count) / total rate.
    offset_s: float = 0.0
    check_answers: bool = True
    expected: tuple[Expected, ...] = ()
    check_every: int = 10
    grpc_client: str = "raw"  # raw (grpc_raw.py) | aio (grpc.aio)


@dataclass
class WindowRecord:
    worker: int
    index: int
    sent: int = 0
    ok: int = 0
    late: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    histogram: bytes = b""
    latency_sum_s: float = 0.0  # exact sum of the recorded latencies (the mean without a bucket walk)
    seconds: float = 0.0
    partial: bool = False

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WorkerSummary:
    worker: int
    cpu_s: float
    measured_requests: int
    failure: str | None
    wall_s: float


class _Window:
    __slots__ = ("errors", "histogram", "late", "latency_sum", "ok", "outstanding", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.late = 0
        self.outstanding = 0
        self.latency_sum = 0.0
        self.errors: dict[str, int] = {}
        # HdrHistogram bucket value (us) -> count: a dict increment per request instead of hdrh's
        # record_value in Python; the window's HdrHistogram is built from it once, exactly.
        self.histogram: dict[int, int] = {}


class Worker:
    def __init__(self, plan: WorkerPlan, emit: Callable[[WindowRecord], None], should_stop: Callable[[], bool]) -> None:
        self.plan = plan
        self.emit = emit
        self.should_stop = should_stop
        self.measure_start = plan.start_at + plan.warmup_s
        self.hard_end = self.measure_start + plan.max_windows * plan.window_s
        self.windows: dict[int, _Window] = {}
        self.next_emit = 0
        self.next_end = self.measure_start + plan.window_s  # when window `next_emit` ends
        self.scheduled_upto = plan.start_at
        self.stopping = False
        self.stopped_at: float | None = None
        self.failure: str | None = None
        self.outstanding = 0
        self.drained: asyncio.Event | None = None
        self.last_ok = plan.start_at
        self.conn_streak = 0
        self.conn_kind = "connection_error"
        self.measured = 0
        self.cpu_start: float | None = None
        self.cpu_end: float | None = None
        self.pool: HttpPool | GrpcPool | RawGrpcPool | None = None
        self.open_loop = plan.mode == "open"

    # --- bookkeeping ---------------------------------------------------------------------------
    def _submit(self, intended: float) -> None:
        assert self.pool is not None
        # The measurement window of the intended send (-1: warm-up, -2: after the end).
        if intended < self.measure_start:
            index = -1
        elif intended >= self.hard_end:
            index = -2
        else:
            index = int((intended - self.measure_start) / self.plan.window_s)
        if index >= 0:
            window = self.windows.get(index)
            if window is None:
                window = self.windows[index] = _Window()
            window.sent += 1
            window.outstanding += 1
            self.measured += 1
        self.outstanding += 1
        # A partial, not a lambda: calling it costs no Python frame of its own.
        self.pool.submit(partial(self._done, intended, index))

    def _done(self, intended: float, index: int, kind: str | None, sent_at: float) -> None:
        now = time.monotonic()
        self.outstanding -= 1
        if index >= 0:
            window = self.windows[index]
            window.outstanding -= 1
            if kind is None:
                window.ok += 1
                # Open loop: from the intended send (no coordinated omission); never from before the
                # actual send, so a send that the pacer let out a little early is not flattered.
                latency = now - (min(intended, sent_at) if self.open_loop else sent_at)
                # `generator.record_us`, inlined: values below 2048 us are their own bucket.
                micros = int(latency * 1_000_000 + 0.5)
                key = micros if 0 < micros < _EXACT_BELOW_US else lowest_equivalent_us(micros)
                histogram = window.histogram
                histogram[key] = histogram.get(key, 0) + 1
                window.latency_sum += latency
            else:
                window.errors[kind] = window.errors.get(kind, 0) + 1
            if self.open_loop and sent_at - intended > LATE_S:
                window.late += 1
        if kind is None:
            self.last_ok = now
            self.conn_streak = 0
        elif kind in CONNECTION_KINDS:
            self.conn_streak += 1
            self.conn_kind = kind
            self._check_dead(now, kind)
        if not self.open_loop and not self.stopping:
            # The stop request is polled by the ticker: cheaper than asking it on every completion.
            if now >= self.hard_end:
                self._stop(now)
            else:
                self._submit(now)
        if self.outstanding == 0 and self.stopping and self.drained is not None:
            self.drained.set()
        if now >= self.next_end:
            self._try_emit(now)

    def _check_dead(self, now: float, kind: str) -> None:
        silent = now - max(self.last_ok, self.plan.start_at)
        if self.failure is None and self.conn_streak >= 3 and silent >= self.plan.dead_after_s:
            self.failure = (
                f"server at {self.plan.endpoint} stopped answering: {kind} on every request for "
                f"{silent:.1f} s (no success since then); figures are partial"
            )
            self._stop(now)

    def _stop(self, now: float) -> None:
        if not self.stopping:
            self.stopping = True
            # Running to the planned end is not an early stop: every window is whole.
            self.stopped_at = self.hard_end if now >= self.hard_end - 1e-3 and self.failure is None else now
            if self.cpu_end is None:
                self.cpu_end = time.process_time()
            if self.outstanding == 0 and self.drained is not None:
                self.drained.set()

    def _record(self, index: int, window: _Window, seconds: float, partial: bool) -> WindowRecord:
        return WindowRecord(
            worker=self.plan.index, index=index, sent=window.sent, ok=window.ok, late=window.late,
            errors=dict(window.errors), histogram=encode(bucket_counts_to_histogram(window.histogram)),
            latency_sum_s=window.latency_sum, seconds=seconds, partial=partial,
        )

    def _try_emit(self, now: float) -> None:
        plan = self.plan
        while self.next_emit < plan.max_windows:
            end = self.measure_start + (self.next_emit + 1) * plan.window_s
            if now < end or (self.scheduled_upto < end and self.open_loop):
                return
            window = self.windows.get(self.next_emit) or _Window()
            if window.outstanding:
                return
            self.emit(self._record(self.next_emit, window, plan.window_s, partial=False))
            self.windows.pop(self.next_emit, None)
            self.next_emit += 1
            self.next_end = self.measure_start + (self.next_emit + 1) * plan.window_s

    def _emit_rest(self) -> None:
        """After stopping early: hand over the windows not yet emitted, the last one marked partial."""
        plan = self.plan
        end_time = self.stopped_at if self.stopped_at is not None else time.monotonic()
        for index in range(self.next_emit, plan.max_windows):
            start = self.measure_start + index * plan.window_s
            if start >= end_time:
                break
            covered = min(plan.window_s, end_time - start)
            window = self.windows.get(index) or _Window()
            if window.outstanding:
                # Still unanswered after the drain deadline: counted, so requests == ok + errors.
                window.errors["unfinished"] = window.errors.get("unfinished", 0) + window.outstanding
                window.outstanding = 0
            self.emit(self._record(index, window, covered, partial=covered < plan.window_s - 1e-9))
            self.next_emit = index + 1
            self.next_end = self.measure_start + (self.next_emit + 1) * plan.window_s

    # --- pacing --------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        if self.cpu_start is None and now >= self.measure_start:
            self.cpu_start = time.process_time()
        # The planned end stops a closed loop here; an open loop is ended by its pacer once it has
        # sent everything intended before the end. Stopping it here would drop the sends a starved
        # pacer still owes (the ticker can wake first): a silent shortfall that no late count shows.
        if not self.stopping and ((now >= self.hard_end and not self.open_loop) or self.should_stop()):
            self._stop(now)
        if self.conn_streak:
            self._check_dead(now, self.conn_kind)
        self._try_emit(now)

    async def _ticker(self) -> None:
        while True:
            self._tick()
            await asyncio.sleep(TICK_S)

    async def _open_loop(self) -> None:
        plan = self.plan
        assert plan.rate is not None
        rng = random.Random(None if plan.seed is None else plan.seed * 1000 + plan.index)
        period = 1.0 / plan.rate
        intended = plan.start_at + (rng.expovariate(plan.rate) if plan.poisson else plan.offset_s)
        count = 0
        uvloop = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        bias = UVLOOP_BIAS_S if uvloop else STOCK_LOOP_BIAS_S
        while not self.stopping and intended < self.hard_end:
            delay = intended - time.monotonic()
            if delay > EARLY_S:
                await asyncio.sleep(max(0.0, delay - bias))
                continue
            now = time.monotonic()
            # Everything due is sent now; a late pacer catches up instead of silently thinning the load.
            while intended <= now + EARLY_S and intended < self.hard_end and not self.stopping:
                self._submit(intended)
                self.scheduled_upto = intended
                count += 1
                intended = (intended + rng.expovariate(plan.rate)) if plan.poisson else (
                    plan.start_at + plan.offset_s + count * period)
        self.scheduled_upto = max(self.scheduled_upto, self.hard_end)

    async def run(self) -> WorkerSummary:
        loop = asyncio.get_running_loop()
        plan = self.plan
        self.drained = asyncio.Event()
        checker = AnswerChecker(plan.model, plan.expected, plan.check_every) if plan.check_answers else None
        if plan.protocol == "http":
            limit = plan.concurrency if plan.mode == "closed" and plan.concurrency else OPEN_LOOP_CONNECTIONS
            self.pool = HttpPool(loop, plan.target, plan.payload, plan.timeout_s, limit,
                                 checker.http if checker else None)
        else:
            limit = plan.concurrency if plan.mode == "closed" and plan.concurrency else 10_000
            if plan.grpc_client == "raw" and len(plan.payload) + 5 <= RAW_GRPC_MAX_MESSAGE:
                self.pool = RawGrpcPool(loop, plan.target.host, plan.target.port, GRPC_METHOD, plan.payload,
                                        plan.timeout_s, plan.model, limit, checker.grpc if checker else None)
            else:
                self.pool = GrpcPool(loop, plan.target, plan.payload, plan.timeout_s, plan.model, limit,
                                     checker.grpc if checker else None)
        wall0 = time.monotonic()
        if isinstance(self.pool, HttpPool):
            await self.pool.prewarm(min(limit, PREWARM_CONNECTIONS))
        elif isinstance(self.pool, RawGrpcPool):
            await self.pool.prewarm()
        delay = plan.start_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ticker = loop.create_task(self._ticker())
        try:
            if self.open_loop:
                await self._open_loop()
            else:
                assert plan.concurrency is not None
                for _ in range(plan.concurrency):
                    self._submit(time.monotonic())
            if not self.stopping:
                # Closed loop runs until a completion or the ticker sees the end; open loop has sent all.
                while not self.stopping:
                    if self.open_loop:
                        # Everything was sent; the run ends at the planned end, not at the last send.
                        self.stopping = True
                        self.stopped_at = self.hard_end
                        self.cpu_end = time.process_time()
                        break
                    await asyncio.sleep(TICK_S)
            if self.outstanding:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.drained.wait(), timeout=plan.timeout_s + 1.0)
            self._try_emit(time.monotonic())
            if self.failure is not None or self.next_emit < plan.max_windows:
                self._emit_rest()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if isinstance(self.pool, GrpcPool | RawGrpcPool):
                await self.pool.aclose()
            elif self.pool is not None:
                self.pool.close()
        cpu_end = self.cpu_end if self.cpu_end is not None else time.process_time()
        cpu_start = self.cpu_start if self.cpu_start is not None else cpu_end
        return WorkerSummary(plan.index, max(0.0, cpu_end - cpu_start), self.measured, self.failure,
                             time.monotonic() - wall0)


def new_event_loop(protocol: Protocol) -> asyncio.AbstractEventLoop:
    """uvloop where installed: cheaper per request and its timers wake closer to the asked time
    (measured here: grpc.aio at concurrency 8 went from ~370 to ~660 req/s against MLServer)."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    except ImportError:
        return asyncio.new_event_loop()


def run_worker(
    plan: WorkerPlan, emit: Callable[[WindowRecord], None], should_stop: Callable[[], bool]
) -> WorkerSummary:
    loop = new_event_loop(plan.protocol)
    try:
        return loop.run_until_complete(Worker(plan, emit, should_stop).run())
    finally:
        loop.close()
