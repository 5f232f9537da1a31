"""Servers the load tests aim at: a stub HTTP server on loopback and a modelled server with a known capacity."""

from __future__ import annotations

import asyncio
import threading
import time

from harness.load.result import LoadResult
from harness.load.spec import LoadSpec

STUB_ANSWER = b'{"model_name":"stub","outputs":[{"name":"predict","datatype":"INT64","shape":[1,1],"data":[0]}]}'


class StubServer:
    def __init__(self, stall_after_s: float | None = None, stall_s: float = 0.0, fail_every: int = 0,
                 framing: str = "length", body: bytes | None = None) -> None:
        self.framing = framing  # length | chunked | close (HTTP/1.0 style: the body ends at close)
        # What a 200 carries: by default a well-formed inference answer for model `stub`.
        self.body = body if body is not None else STUB_ANSWER
        # The first request that arrives `stall_after_s` after start stalls the whole server.
        self.stall_at: float | None = None if stall_after_s is None else time.monotonic() + stall_after_s
        self.stall_s = stall_s
        self.fail_every = fail_every
        self.count = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.gate: asyncio.Event | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.gate = asyncio.Event()
        self.gate.set()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        # Close every connection and let the handlers finish before the loop goes away.
        for writer in list(self.writers):
            writer.close()
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=5))
        self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.gate is not None
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.count += 1
                if self.stall_at is not None and time.monotonic() >= self.stall_at:
                    self.stall_at = None
                    # The whole server stops answering for a while (a GC pause, a stuck worker).
                    self.gate.clear()
                    self.loop.call_later(self.stall_s, self.gate.set)
                await self.gate.wait()
                failing = self.fail_every and self.count % self.fail_every == 0
                body = b'{"error":"overloaded"}' if failing else self.body
                status = b"503 Service Unavailable" if failing else b"200 OK"
                head = b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                if self.framing == "chunked":
                    half = len(body) // 2
                    chunks = [body[:half], body[half:], b""]
                    writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
                        f"{len(c):x}".encode() + b"\r\n" + c + b"\r\n" for c in chunks))
                elif self.framing == "close":
                    writer.write(head + b"Connection: close\r\n\r\n" + body)
                    await writer.drain()
                    break
                else:
                    writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def __enter__(self) -> StubServer:
        self.thread.start()
        assert self.ready.wait(10), "stub server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        def shutdown() -> None:
            assert self.server is not None
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(shutdown)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ModelledServer:
    """p99 grows slowly below `capacity` and explodes above it; a fake clock advances per step."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.now = 0.0
        self.rates: list[float] = []

    def clock(self) -> float:
        return self.now

    def measure(self, spec: LoadSpec) -> LoadResult:
        assert spec.rate is not None and spec.mode == "open" and spec.goodput_ms == 25.0
        self.rates.append(spec.rate)
        self.now += spec.warmup_s + spec.duration_s + 0.3
        p99 = 5.0 + 10.0 * spec.rate / self.capacity if spec.rate <= self.capacity else 400.0
        requests = int(spec.rate * spec.duration_s)
        return LoadResult(
            engine="harness", mode="open", protocol="http", endpoint=spec.endpoint, model=spec.model,
            offered_rate_rps=spec.rate, concurrency=None, poisson=False, duration_s=spec.duration_s,
            warmup_s=spec.warmup_s, workers=1, requests=requests, ok=requests, errors={}, error_rate=0.0,
            achieved_rate_rps=spec.rate, throughput_rps=spec.rate, late_sends=0, late_send_fraction=0.0,
            latency_ms={"min": p99 / 4, "mean": p99 / 2, "p50": p99 / 2, "p90": p99 * 0.8, "p95": p99 * 0.9,
                        "p99": p99, "p99_9": p99 * 1.05, "max": p99 * 1.1},
            stable=True, trials=1, windows=[], client_cpu_ms_per_request=0.05, complete=True, failure=None,
        ).counting_good(requests if p99 <= 25 else requests // 2)


class OverloadedAt(ModelledServer):
    """The modelled server, except that the first `times` steps at `rate` are measured by an overloaded
    client: 6 % of sends late and a p99 over the SLO (what two CPU burners did to run b1's sweep)."""

    def __init__(self, capacity: float, rate: float, times: int) -> None:
        super().__init__(capacity)
        self.overloaded_rate, self.times = rate, times

    def measure(self, spec: LoadSpec) -> LoadResult:
        result = super().measure(spec)
        if spec.rate != self.overloaded_rate or self.times == 0:
            return result
        self.times -= 1
        late = int(result.requests * 0.06)
        latency = result.latency_ms.model_copy(update={"p99": 31.0, "p99_9": 33.0, "max": 35.0})
        return result.model_copy(update={"late_sends": late, "late_send_fraction": late / result.requests,
                                         "latency_ms": latency}).counting_good(result.requests - late)


def modelled_spec() -> LoadSpec:
    return LoadSpec(endpoint="http://127.0.0.1:1", model="m", rate=1.0, duration_s=3.0)


# --------------------------------------------------------------------------------------------
# A stub Open Inference Protocol server: answers at once, can stall everything once, can fail.
# --------------------------------------------------------------------------------------------
