"""One in-cluster load generator: a standard-library-only script that a Job pod runs.

It ships in a ConfigMap beside its plan (`plan.json`) and runs as `python3 -I -S generator.py
--plan /generator/plan.json --target URL` (Python 3.11+) in the image the NVML probe already uses,
so a pod needs no package install and no extra image pull. Nothing here may import the harness or anything outside
Python's standard library (tests/load/test_load_generators.py runs it with `-I -S` to hold that).

Every pod of the indexed Job reads its index from `JOB_COMPLETION_INDEX`, waits for the plan's
shared wall-clock start, paces its share of the schedule (open loop: pod k of N sends the
requests k, k+N, k+2N, ... of the whole constant-rate schedule, each timed from its intended send
time; closed loop: its share of the connections) and prints one JSON document: per measurement
window the request counts, error kinds, late sends and an exactly mergeable latency histogram
(HdrHistogram's buckets at 1 us .. 1 h, 3 significant digits: `lowest_equivalent_us`), plus its own
CPU time, start lag, pod and node. The harness merges the pods' documents (harness/load/merge.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from typing import Any
from urllib.parse import urlsplit

FORMAT = "seldon-gpu-harness/generator/v1"
LATE_S = 0.001  # the engine's definition (harness/load/worker.py): sent more than 1 ms after its time
EARLY_S = 0.001
TICK_S = 0.02
MAX_CONNECTIONS = 256
PREWARM_CONNECTIONS = 8
# HdrHistogram with lowest 1 us and 3 significant digits keeps 2048 sub-buckets: every value below
# 2048 us exactly, above that its 11 highest bits (hdrh's get_lowest_equivalent_value).
SUB_BUCKET_BITS = 11
HIGHEST_US = 3_600_000_000
CONNECTION_KINDS = ("connection_refused", "connection_reset", "connection_error")


def lowest_equivalent_us(value_us: int) -> int:
    """The lowest value of the HdrHistogram bucket holding `value_us` (1 us .. 1 h, 3 digits)."""
    value = min(max(int(value_us), 1), HIGHEST_US)
    shift = max(0, value.bit_length() - SUB_BUCKET_BITS)
    return (value >> shift) << shift


def record_us(histogram: dict[int, int], seconds: float) -> None:
    key = lowest_equivalent_us(int(seconds * 1_000_000 + 0.5))
    histogram[key] = histogram.get(key, 0) + 1


class Window:
    __slots__ = ("errors", "histogram", "late", "latency_sum", "ok", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.late = 0
        self.latency_sum = 0.0
        self.errors: dict[str, int] = {}
        self.histogram: dict[int, int] = {}

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "late": self.late, "errors": dict(sorted(self.errors.items())),
                "latency_sum_s": self.latency_sum, "histogram_us": sorted(self.histogram.items())}


def classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "connection_reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "connection_error"


def check_answer(body: bytes, model: str) -> bool:
    """An inference answer for `model` (`model` or `<model>_<version>`) with at least one output."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    name = str(doc.get("model_name") or "")
    outputs = doc.get("outputs")
    return (name == model or name.startswith(model + "_")) and isinstance(outputs, list) and bool(outputs)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time (no pipelining)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.callback: Any = None
        self.sent_at = 0.0
        self.deadline = 0.0
        self.check = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, callback: Any, check: bool, timeout_s: float) -> None:
        self.callback = callback
        self.check = check
        self.sent_at = time.monotonic()
        self.deadline = self.sent_at + timeout_s
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.callback is None:
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).decode("latin-1")
        lines = head.split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self.finish("bad_response", close=True)
            return
        length = None
        keep = True
        for line in lines[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "content-length":
                length = int(value.strip())
            elif key == "transfer-encoding" and "chunked" in value.lower():
                self.finish("chunked_response_unsupported", close=True)
                return
            elif key == "connection" and value.strip().lower() == "close":
                keep = False
        if length is None:
            self.finish("no_content_length", close=True)
            return
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        body = bytes(self.buffer[head_end + 4:end])
        del self.buffer[:end]
        if status != 200:
            self.finish(f"http_{status}", close=not keep)
        elif self.check and not check_answer(body, self.client.model):
            self.finish("bad_answer", close=not keep)
        else:
            self.finish(None, close=not keep)

    def finish(self, kind: str | None, close: bool = False) -> None:
        callback, self.callback = self.callback, None
        if close or kind in CONNECTION_KINDS:
            self.close()
        else:
            self.client.idle.append(self)
        if callback is not None:
            callback(kind, self.sent_at)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.callback is not None:
            self.finish(classify(exc) if exc else "connection_reset")


class Client:
    """Connections to one target; `submit` sends on an idle one or opens a new one."""

    def __init__(self, host: str, port: int, request: bytes, model: str, timeout_s: float, limit: int) -> None:
        self.host, self.port, self.request, self.model = host, port, request, model
        self.timeout_s = timeout_s
        self.limit = limit
        self.idle: list[Connection] = []
        self.all: list[Connection] = []
        self.waiting: list[tuple[Any, bool]] = []
        self.opening = 0

    def submit(self, callback: Any, check: bool) -> None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.send(self.request, callback, check, self.timeout_s)
                return
        self.waiting.append((callback, check))
        live = len([c for c in self.all if not c.closed]) + self.opening
        if live < self.limit:
            self.opening += 1
            asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Connection(self), self.host, self.port), self.timeout_s)
        except Exception as exc:  # every waiting request fails with the reason
            self.opening -= 1
            if self.waiting:
                callback, _ = self.waiting.pop(0)
                callback(classify(exc), time.monotonic())
            return
        self.opening -= 1
        self.all.append(conn)
        self.idle.append(conn)
        self.pump()

    async def prewarm(self, count: int) -> None:
        """Connections opened before the start, so early sends do not wait for a handshake (as wrk
        opens its connections up front). Failures are left to the run, which counts them."""
        loop = asyncio.get_running_loop()
        for _ in range(min(count, self.limit)):
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: Connection(self), self.host, self.port), self.timeout_s)
            except Exception:
                return
            self.all.append(conn)
            self.idle.append(conn)

    def pump(self) -> None:
        while self.waiting and self.idle:
            conn = self.idle.pop()
            if conn.closed:
                continue
            callback, check = self.waiting.pop(0)
            conn.send(self.request, callback, check, self.timeout_s)

    def expire(self, now: float) -> None:
        for conn in self.all:
            if conn.callback is not None and now > conn.deadline:
                conn.finish("timeout", close=True)
        self.all = [c for c in self.all if not c.closed]
        self.pump()
        # Requests still waiting for a connection past their timeout count as timeouts too.
        while self.waiting and len(self.all) + self.opening == 0:
            callback, _ = self.waiting.pop(0)
            callback("connection_error", now)

    def close(self) -> None:
        for conn in self.all:
            conn.close()


def request_bytes(host: str, port: int, path: str, model: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Seldon-Model: {model}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def intended_times(rate: float, pods: int, index: int, start: float, end: float) -> list[float]:
    """This pod's share of a constant-rate schedule over [start, end): requests index, index+pods, ..."""
    period = 1.0 / rate
    out: list[float] = []
    n = index
    while True:
        t = start + n * period
        if t >= end:
            return out
        out.append(t)
        n += pods


class Generator:
    def __init__(self, plan: dict[str, Any], index: int, target: str) -> None:
        self.plan = plan
        self.index = index
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--target: expected http://host:port[/prefix], got {target!r}")
        host, port = parts.hostname, parts.port or 80
        path = f"{parts.path.rstrip('/')}/v2/models/{plan['model']}/infer"
        body = plan["body"].encode()
        self.model = str(plan["model"])
        self.mode = plan["mode"]
        self.pods = int(plan["pods"])
        total_conc = int(plan.get("concurrency") or 0)
        share = total_conc // self.pods + (1 if index < total_conc % self.pods else 0)
        self.concurrency = share
        limit = share if self.mode == "closed" else MAX_CONNECTIONS
        self.client = Client(host, port, request_bytes(host, port, path, self.model, body), self.model,
                             float(plan["timeout_s"]), max(1, limit))
        self.windows: dict[int, Window] = {}
        self.window_s = float(plan["window_s"])
        self.n_windows = int(plan["windows"])
        self.check_every = int(plan.get("check_every") or 10)
        self.answers = 0
        self.outstanding = 0
        self.stopping = False
        self.drained: asyncio.Event | None = None

    def window_of(self, t: float) -> Window | None:
        if t < self.measure_start:
            return None
        i = int((t - self.measure_start) / self.window_s)
        if i >= self.n_windows:
            return None
        w = self.windows.get(i)
        if w is None:
            w = self.windows[i] = Window()
        return w

    def submit(self, intended: float) -> None:
        window = self.window_of(intended)
        if window is not None:
            window.sent += 1
        self.outstanding += 1
        self.answers += 1
        check = self.answers % self.check_every == 0

        def done(kind: str | None, sent_at: float) -> None:
            now = time.monotonic()
            self.outstanding -= 1
            if window is not None:
                if kind is None:
                    start = min(intended, sent_at) if self.mode == "open" else sent_at
                    window.ok += 1
                    window.latency_sum += now - start
                    record_us(window.histogram, now - start)
                else:
                    window.errors[kind] = window.errors.get(kind, 0) + 1
                if self.mode == "open" and sent_at - intended > LATE_S:
                    window.late += 1
            if self.mode == "closed" and not self.stopping and now < self.end:
                self.submit(now)
            if self.outstanding == 0 and self.stopping and self.drained is not None:
                self.drained.set()

        self.client.submit(done, check)

    async def ticker(self) -> None:
        while True:
            self.client.expire(time.monotonic())
            await asyncio.sleep(TICK_S)

    async def run(self, start_wall: float) -> dict[str, Any]:
        plan = self.plan
        self.drained = asyncio.Event()
        # One clock offset, read once: the schedule runs on the monotonic clock from here on.
        lag = time.time() - start_wall
        start = time.monotonic() - lag
        self.measure_start = start + float(plan["warmup_s"])
        self.end = self.measure_start + self.n_windows * self.window_s
        if lag > 0:
            return self.result(lag, 0.0, f"pod started {lag:.2f} s after the shared start time; "
                                         "raise load.generators.start_margin_s")
        # Bounded by the start: a mesh that does not accept connections is the run's to count.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.client.prewarm(self.concurrency if self.mode == "closed"
                                                       else PREWARM_CONNECTIONS),
                                   max(0.001, start - time.monotonic() - 0.01))
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        ticker = asyncio.get_running_loop().create_task(self.ticker())
        cpu0 = time.process_time()
        try:
            if self.mode == "open":
                times = intended_times(float(plan["rate"]), self.pods, self.index, start, self.end)
                if plan.get("poisson"):
                    rng = random.Random(None if plan.get("seed") is None else int(plan["seed"]) * 1000 + self.index)
                    share = float(plan["rate"]) / self.pods
                    times = []
                    t = start + rng.expovariate(share)
                    while t < self.end:
                        times.append(t)
                        t += rng.expovariate(share)
                i = 0
                while i < len(times):
                    delay = times[i] - time.monotonic()
                    if delay > EARLY_S:
                        await asyncio.sleep(delay - EARLY_S)
                        continue
                    now = time.monotonic()
                    while i < len(times) and times[i] <= now + EARLY_S:
                        self.submit(times[i])
                        i += 1
            else:
                for _ in range(self.concurrency):
                    self.submit(time.monotonic())
                await asyncio.sleep(max(0.0, self.end - time.monotonic()))
            self.stopping = True
            cpu = time.process_time() - cpu0
            if self.outstanding:
                with contextlib.suppress(TimeoutError):  # asyncio's is the builtin one from 3.11 on
                    await asyncio.wait_for(self.drained.wait(), float(plan["timeout_s"]) + 1.0)
        finally:
            ticker.cancel()
            self.client.close()
        for w in self.windows.values():
            unfinished = w.sent - w.ok - sum(w.errors.values())
            if unfinished > 0:
                w.errors["unfinished"] = w.errors.get("unfinished", 0) + unfinished
        return self.result(max(lag, 0.0), cpu, None)

    def result(self, lag: float, cpu: float, failure: str | None) -> dict[str, Any]:
        windows = [self.windows.get(i, Window()).to_json() for i in range(self.n_windows)]
        return {
            "format": FORMAT, "index": self.index, "pod": os.environ.get("POD_NAME", ""),
            "node": os.environ.get("NODE_NAME", ""), "mode": self.mode, "window_s": self.window_s,
            "windows": windows if failure is None else [], "cpu_s": cpu,
            "measured_requests": sum(w["sent"] for w in windows) if failure is None else 0,
            "start_lag_s": lag, "failure": failure,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--index", type=int, default=None, help="default: $JOB_COMPLETION_INDEX")
    args = parser.parse_args(argv)
    with open(args.plan, encoding="utf-8") as f:
        plan = json.load(f)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    generator = Generator(plan, index, args.target)
    result = asyncio.run(generator.run(float(plan["start_at"])))
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    # A failure this pod can report (a late start) is in its document, and it exits 0: a failed pod
    # would fail the Job (backoffLimit 0), whose controller then deletes the other pods mid-measurement.
    return 0


if __name__ == "__main__":
    sys.exit(main())
