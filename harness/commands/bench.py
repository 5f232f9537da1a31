"""`python -m harness.commands.bench --out docs/benchmarks.md`: the harness against wrk on loopback MLServer
and on a real Triton.

Measures, in one run and interleaved (wrk, harness, wrk, harness, ...) so that drifting machine load
hits both alike: max throughput at concurrency 8 (ratio harness/wrk), p50 at one connection
(harness - wrk) and open-loop accuracy at half of capacity (achieved/offered, late sends); then the
real-Triton rows (harness/commands/bench_triton.py: client CPU per request, throughput and p50 against
wrk, HTTP and gRPC). Not a timed test; the figures depend on the machine and are written with its
description. A run during which other work shared the machine (more than a quarter of a core besides
the bench's own processes, or a load average above the CPU count before it began: bench_noise.py) is
noisy: its verdicts say so instead of "met", and its figures are not evidence of a target met.
`--only triton` measures the real-Triton rows alone and prints them (written only with `--out`).
wrk comes from the distribution (`apt-get install -y wrk` on Debian/Ubuntu); without it the wrk
rows say "skipped" and how to get it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.commands import bench_noise
from harness.heap import freeze_startup_heap
from harness.load.clients import json_body
from harness.load.engine import run_load
from harness.load.result import LoadResult
from harness.load.spec import DEFAULT_INPUT, LoadSpec
from harness.load.worker import LATE_S
from harness.localserver import MLServerProcess, free_port, train_iris

# A minimal HTTP/1.1 server answering every request at once with a well-formed inference answer
# (the client checks answers): it measures the client's own ceiling.
_ECHO_SERVER = """
import asyncio, sys
BODY = b'{"model_name":"iris","outputs":[{"name":"predict","datatype":"INT64","shape":[1,1],"data":[0]}]}'
RESP = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: "
        + str(len(BODY)).encode() + b"\\r\\n\\r\\n" + BODY)
DELAY = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0  # answer after this many ms
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\\r\\n\\r\\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            size = int(head[at + 15:].split(b"\\r\\n")[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + size:
                return
            self.buf = self.buf[end + 4 + size:]
            if DELAY:
                asyncio.get_running_loop().call_later(DELAY, self.transport.write, RESP)
            else:
                self.transport.write(RESP)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""

TARGET_RATIO = 0.9
READY_TIMEOUT_S = 60.0  # a helper server's start: Python, uvloop and (gRPC) tritonclient imports
TARGET_P50_OVERHEAD_MS = 0.5
TARGET_RATE_ERROR = 0.01
TARGET_LATE = 0.01


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec and the --latency distribution from wrk's text output."""
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise ValueError(f"no Requests/sec in wrk output: {output[-300:]!r}")
    rps = float(found.group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return WrkResult(
        rps=rps,
        p50_ms=_ms(p50.group(1)) if p50 else 0.0,
        p99_ms=_ms(p99.group(1)) if p99 else 0.0,
        errors=int(errors.group(1)) if errors else 0,
    )


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: float) -> WrkResult:
    args = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(proc.stdout)


def _wrk_script(path: Path, model: str) -> Path:
    body = json_body([dict(DEFAULT_INPUT)]).decode()
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Seldon-Model"] = "{model}"\n'
    )
    return path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_about(wrk: str | None, version_text: str | None = None) -> str:
    """Which wrk ran: its version as `wrk -v` prints it (`wrk debian/4.1.0-3+b2 [epoll] ...`) and where
    it is; `version_text` stands in for running it (tests)."""
    if wrk is None:
        return "not installed"
    if version_text is None:
        try:
            version_text = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            version_text = ""
    found = re.match(r"wrk (\S+)", version_text)
    inside = Path(wrk).resolve().is_relative_to(Path(sys.prefix).resolve())
    return f"{found.group(1) if found else '(version unknown)'} " + (
        "(unpacked into the venv by `make wrk`)" if inside else f"at {wrk}")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def verdict(ok: bool, noisy: bool = False) -> str:
    if noisy:
        return "noisy: not judged"
    return "met" if ok else "NOT met"


def is_noisy(loads: list[float], cpus: int) -> bool:
    """Without /proc only: a 1-minute load average above the CPU count at any reading. The bench's
    own server, client and wrk raise the load average too, so where /proc can be read the rule is
    bench_noise.noise (other work's CPU, measured), not this."""
    return any(load > cpus for load in loads)


def _closed(url: str, concurrency: int, seconds: float, warmup: float, protocol: str = "http",
            grpc_client: str = "raw") -> LoadResult:
    return run_load(LoadSpec(endpoint=url, model="iris", protocol=protocol, mode="closed",  # type: ignore[arg-type]
                             concurrency=concurrency, duration_s=seconds, warmup_s=warmup, workers=1,
                             grpc_client=grpc_client))  # type: ignore[arg-type]


# A minimal gRPC server (grpcio, generic handler, one fixed answer): the gRPC client's own ceiling.
_GRPC_SERVER = """
import asyncio, sys, grpc
from tritonclient.grpc import service_pb2
r = service_pb2.ModelInferResponse(model_name="iris")
r.outputs.add(name="predict", datatype="INT64", shape=[1]).contents.int64_contents.append(0)
ANSWER = r.SerializeToString()
async def infer(request, context):
    return ANSWER
async def main():
    handler = grpc.unary_unary_rpc_method_handler(infer)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": handler}),))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


# A minimal HTTP/2 gRPC server that answers every ModelInfer at once with pre-built frames (response
# HEADERS, the message, trailers with grpc-status 0), reading nothing of the request but its frame
# boundaries: unlike a grpcio server it costs little enough per call to show the client's ceiling.
_H2_SERVER = """
import asyncio, sys
def frame(kind, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload
def lit(name, value):
    return bytes((0, len(name))) + name + bytes((len(value),)) + value
HEAD = bytes((0x88,)) + lit(b"content-type", b"application/grpc")
TRAIL = lit(b"grpc-status", b"0")
MSG = bytes.fromhex(sys.argv[2])
BODY = b"\\x00" + len(MSG).to_bytes(4, "big") + MSG
DELAY = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0  # answer after this many ms
class H2(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf, self.pre = transport, bytearray(), False
        transport.write(frame(4, 0, 0, b""))
    def data_received(self, data):
        self.buf += data
        if not self.pre:
            if len(self.buf) < 24:
                return
            del self.buf[:24]
            self.pre = True
        out = []
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            kind, flags, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big")
            del self.buf[:9 + n]
            if kind == 4 and not flags & 1:
                out.append(frame(4, 1, 0, b""))
            elif kind == 0 and flags & 1:
                out.append(frame(1, 4, sid, HEAD) + frame(0, 0, sid, BODY) + frame(1, 5, sid, TRAIL))
                out.append(frame(8, 0, 0, n.to_bytes(4, "big")) + frame(8, 0, sid, n.to_bytes(4, "big")))
        if out and DELAY:
            asyncio.get_running_loop().call_later(DELAY, self.t.write, b"".join(out))
        elif out:
            self.t.write(b"".join(out))
async def main():
    server = await asyncio.get_running_loop().create_server(H2, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def _wait_ready(proc: subprocess.Popen[str], timeout: float = READY_TIMEOUT_S) -> None:
    """Wait for one of the bench's helper servers to print its "ready" line (it listens then); a server
    that dies or stays silent past `timeout` fails the bench, naming what it printed."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline() if selector.select(timeout) else ""
    if line.strip() != "ready":
        raise RuntimeError(f"a bench helper server (pid {proc.pid}) was not ready within {timeout:g} s "
                           f"(exit code {proc.poll()}, printed {line.strip()!r})")


def _stop(proc: subprocess.Popen[str]) -> None:
    """End one of the bench's helper servers: SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _answer_bytes() -> bytes:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse(model_name="iris")
    response.outputs.add(name="predict", datatype="INT64", shape=[1]).contents.int64_contents.append(0)
    data: bytes = response.SerializeToString()
    return data


def _grpc_ceiling(seconds: float, minimal: bool = False) -> LoadResult:
    """The gRPC client's throughput at c=8 against a grpcio server, or (`minimal`) the bare HTTP/2 one."""
    port = free_port()
    args = [sys.executable, "-c", _H2_SERVER, str(port), _answer_bytes().hex()] if minimal else [
        sys.executable, "-c", _GRPC_SERVER, str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc)
        return _closed(f"127.0.0.1:{port}", 8, seconds, 0.5, protocol="grpc")
    finally:
        _stop(proc)


def _tritonclient_grpc(address: str, seconds: float) -> tuple[float, float]:
    """tritonclient's gRPC client, one call at a time: (req/s, client CPU ms per request), for reference."""
    import numpy as np
    import tritonclient.grpc as tgrpc

    client = tgrpc.InferenceServerClient(address)
    item = tgrpc.InferInput("predict", [1, 4], "FP32")
    item.set_data_from_numpy(np.array([DEFAULT_INPUT["data"]], dtype=np.float32))
    headers = {"seldon-model": "iris"}
    client.infer("iris", [item], headers=headers)
    count = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    while time.monotonic() - wall0 < seconds:
        client.infer("iris", [item], headers=headers)
        count += 1
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    client.close()
    return count / wall, 1000.0 * cpu / max(1, count)


def _client_ceiling(wrk: str | None, script: Path, seconds: float) -> tuple[float, float | None]:
    """Harness and wrk throughput (c=8) against a server that costs almost nothing."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc)
        url = f"http://127.0.0.1:{port}"
        harness = _closed(url, 8, seconds, 0.5).throughput_rps
        other = run_wrk(wrk, url + "/v2/models/iris/infer", script, 8, seconds).rps if wrk else None
        return harness, other
    finally:
        _stop(proc)


# The gRPC-vs-HTTP client comparison at the same pace: both minimal servers answer each request this
# long after it arrives, so both clients see the same answers per second and per wake-up, and their
# CPU per request is their own (against a real server each protocol is served at its own speed).
PACED_DELAY_MS = 2.0
PACED_PAIRS = 3


def _paced_clients(seconds: float, pairs: int = PACED_PAIRS,
                   delay_ms: float = PACED_DELAY_MS) -> list[tuple[LoadResult, LoadResult]]:
    """(HTTP, gRPC) closed-loop runs at c=8 against the minimal servers, each answering after `delay_ms`."""
    http_port, grpc_port = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-c", _ECHO_SERVER, str(http_port), str(delay_ms)],
                              stdout=subprocess.PIPE, text=True)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", _H2_SERVER, str(grpc_port), _answer_bytes().hex(),
                                       str(delay_ms)], stdout=subprocess.PIPE, text=True))
        for proc in procs:
            _wait_ready(proc)
        return [(_closed(f"http://127.0.0.1:{http_port}", 8, seconds, 0.5),
                 _closed(f"127.0.0.1:{grpc_port}", 8, seconds, 0.5, protocol="grpc")) for _ in range(pairs)]
    finally:
        for proc in procs:
            _stop(proc)


NOTES_HEADING = "## Notes (added by hand"


def _triton_only(wrk: str | None, rounds: int, seconds: float, warmup: float, out: str | None) -> int:
    """`--only triton`: the real-Triton rows alone, judged for noise like a whole run; printed, and
    written to `out` when given (never over docs/benchmarks.md by default: it is one whole run's)."""
    from harness.commands import bench_triton

    load_before = os.getloadavg()
    start = bench_noise.sample()
    figures, about = bench_triton.measure(wrk, rounds, seconds, warmup)
    phases = [bench_noise.phase("real-Triton rows", start, bench_noise.sample())]
    noisy, machine = bench_noise.judge(load_before[0], os.getloadavg()[0], os.cpu_count() or 1, phases)
    lines = ["# Latency engine benchmark: real-Triton rows only (`--only triton`)", "",
             f"- CPUs: {os.cpu_count()} x {_cpu_model()}; date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             *machine, "", *bench_triton.lines(figures, about, noisy, wrk)]
    print("\n".join(lines))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.commands.bench", description=__doc__)
    parser.add_argument("--out", default=None,
                        help="markdown file to write (default docs/benchmarks.md; with --only, none unless given)")
    parser.add_argument("--only", choices=("triton",), default=None,
                        help="measure only these rows: `triton`, the real-Triton rows (printed)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per figure (default 7)")
    parser.add_argument("--no-triton", action="store_true", help="leave out the real-Triton rows")
    args = parser.parse_args(argv)
    freeze_startup_heap()  # as every harness command does (harness/cli.py): the figures are the CLI's
    seconds, rounds, warmup = args.seconds, args.rounds, 0.5
    wrk = shutil.which("wrk")
    if args.only == "triton":
        return _triton_only(wrk, rounds, seconds, warmup, args.out)
    lines: list[str] = []
    # Before any of the bench's own work: this reading is judged against the CPU count.
    load_before = os.getloadavg()
    # Before anything of the bench runs: how punctual can any client be on this machine?
    timers = bench_noise.timer_overshoot(LATE_S)
    cpu_start = bench_noise.sample()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        models = Path(tmp) / "models"
        train_iris(models / "iris")
        server = MLServerProcess(Path(tmp) / "srv", models_dir=models, parallel_workers=0)
        server.start(timeout=120)
        try:
            url = f"{server.http_url}/v2/models/iris/infer"
            script = _wrk_script(Path(tmp) / "post.lua", "iris")
            # Warm the server once so the first measured figure is not a cold start.
            _closed(server.http_url, 8, 1.0, 0.5)

            tput_h: list[float] = []
            tput_w: list[float] = []
            cpu_h: list[float] = []
            tput_g: list[float] = []
            cpu_g: list[float] = []
            p50_g: list[float] = []
            p50_h: list[float] = []
            p50_w: list[float] = []
            for _ in range(rounds):
                if wrk:
                    tput_w.append(run_wrk(wrk, url, script, 8, seconds).rps)
                r = _closed(server.http_url, 8, seconds, warmup)
                tput_h.append(r.throughput_rps)
                cpu_h.append(r.client_cpu_ms_per_request)
                # gRPC right after HTTP: each pair sees about the same machine load.
                g = _closed(server.grpc_address, 8, seconds, warmup, protocol="grpc")
                tput_g.append(g.throughput_rps)
                cpu_g.append(g.client_cpu_ms_per_request)
            for _ in range(rounds):
                if wrk:
                    p50_w.append(run_wrk(wrk, url, script, 1, seconds).p50_ms)
                p50_h.append(_closed(server.http_url, 1, seconds, warmup).latency_ms.p50)
                p50_g.append(_closed(server.grpc_address, 1, seconds, warmup, protocol="grpc").latency_ms.p50)
            grpc = _closed(server.grpc_address, 8, seconds, warmup, protocol="grpc", grpc_client="aio")
            triton = _tritonclient_grpc(server.grpc_address, seconds)

            # The lower of the two medians: on a shared machine the optimistic one would overload the server.
            capacity = statistics.median(tput_h)
            if tput_w:
                capacity = min(capacity, statistics.median(tput_w))
            rate = round(capacity * 0.5, 1)
            open_runs = [
                run_load(LoadSpec(endpoint=server.http_url, model="iris", rate=rate, duration_s=seconds,
                                  warmup_s=warmup, workers=1))
                for _ in range(rounds)
            ]
            load_after = os.getloadavg()
        finally:
            server.stop()
        ceiling = _client_ceiling(wrk, script, seconds)
        grpc_ceiling = _grpc_ceiling(seconds)
        grpc_bare = _grpc_ceiling(seconds, minimal=True)
        paced = _paced_clients(seconds)
    cpu_mlserver = bench_noise.sample()
    phases = [bench_noise.phase("MLServer rows", cpu_start, cpu_mlserver)]
    triton_section: list[str] = []
    if not args.no_triton:
        from harness.commands import bench_triton

        figures, about = bench_triton.measure(wrk, rounds, seconds, warmup)
        load_after = max(load_after, os.getloadavg(), key=lambda loads: loads[0])
        phases.append(bench_noise.phase("real-Triton rows", cpu_mlserver, bench_noise.sample()))
    noisy, machine = bench_noise.judge(load_before[0], load_after[0], os.cpu_count() or 1, phases)
    if not args.no_triton:
        triton_section = bench_triton.lines(figures, about, noisy, wrk)

    med = statistics.median
    h_tput, h_p50 = med(tput_h), med(p50_h)
    achieved = med(r.achieved_rate_rps for r in open_runs)
    late = med(r.late_send_fraction for r in open_runs)
    rate_error = abs(achieved - rate) / rate
    # A machine that alone wakes sleepers late as often as the target allows cannot show the client's
    # punctuality: that row then says so instead of judging the client by the machine.
    late_verdict = (f"not judged: the machine alone woke {timers.late_fraction:.1%} of idle sleepers over "
                    "1 ms late (Machine above)" if timers.hides(TARGET_LATE) and not noisy
                    else verdict(late < TARGET_LATE, noisy))

    lines += [
        "# Latency engine benchmark",
        "",
        "Written by `make bench` (`python -m harness.commands.bench --out docs/benchmarks.md`). MLServer "
        f"{_version('mlserver')} serves the iris sklearn model on 127.0.0.1 with `parallel_workers=0`; "
        "the harness (one worker process, HTTP unless noted) and `wrk` take turns against it, "
        f"{rounds} interleaved rounds of {seconds:g} s each, {warmup:g} s warm-up per harness run. Columns "
        "show medians; the ratio and the overhead are medians over adjacent (wrk, harness) pairs, which "
        "cancels slow drifts of machine load better than a ratio of medians.",
        "",
        "## Machine",
        "",
        f"- CPUs: {os.cpu_count()} x {_cpu_model()}",
        *machine,
        timers.describe(),
        f"- Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- mlserver {_version('mlserver')}, uvloop {_version('uvloop')}, grpcio {_version('grpcio')}, "
        f"hdrhistogram {_version('hdrhistogram')}, wrk {wrk_about(wrk)}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "## Results",
        "",
        "| figure | harness | wrk | result | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    if wrk:
        w_tput, w_p50 = med(tput_w), med(p50_w)
        # Each harness run is compared with the wrk run just before it (the same machine load, as
        # far as it can be had); the median of those pairs is the figure.
        ratio = med(h / w for h, w in zip(tput_h, tput_w, strict=True))
        overhead = med(h - w for h, w in zip(p50_h, p50_w, strict=True))
        lines += [
            f"| max throughput, concurrency 8 (req/s) | {h_tput:.0f} | {w_tput:.0f} | ratio {ratio:.2f} "
            f"| >= {TARGET_RATIO} | {verdict(ratio >= TARGET_RATIO, noisy)} |",
            f"| p50 at one connection (ms) | {h_p50:.3f} | {w_p50:.3f} | overhead {overhead:+.3f} ms "
            f"| <= {TARGET_P50_OVERHEAD_MS} ms | {verdict(overhead <= TARGET_P50_OVERHEAD_MS, noisy)} |",
        ]
    else:
        lines += [
            f"| max throughput, concurrency 8 (req/s) | {h_tput:.0f} | skipped | - | - | wrk not installed "
            "(`apt-get install -y wrk`) |",
            f"| p50 at one connection (ms) | {h_p50:.3f} | skipped | - | - | wrk not installed |",
        ]
    cpu_ratio = med(g / h for g, h in zip(cpu_g, cpu_h, strict=True))
    tput_ratio = med(g / h for g, h in zip(tput_g, tput_h, strict=True))
    lines += [
        f"| gRPC client CPU per request, c=8 (ms) | {med(cpu_g):.3f} | HTTP {med(cpu_h):.3f} | ratio "
        f"{cpu_ratio:.2f} | <= 1.5 | {verdict(cpu_ratio <= 1.5, noisy)} |",
        f"| gRPC max throughput, c=8 (req/s) | {med(tput_g):.0f} | HTTP {h_tput:.0f} | ratio {tput_ratio:.2f} "
        f"| >= 0.9 | {verdict(tput_ratio >= 0.9, noisy)} |",
        f"| gRPC p50 at one call in flight (ms) | {med(p50_g):.3f} | HTTP {h_p50:.3f} | - | - | - |",
    ]
    lines += [
        f"| open loop at 50 % of capacity: achieved / offered ({rate:g} req/s) | {achieved:.1f} | - "
        f"| {achieved / rate:.4f} | within {TARGET_RATE_ERROR:.0%} "
        f"| {verdict(rate_error <= TARGET_RATE_ERROR, noisy)} |",
        f"| open loop late sends (> 1 ms after intended) | {late:.2%} | - | - | < {TARGET_LATE:.0%} | {late_verdict} |",
        "",
        *triton_section,
        "## Detail",
        "",
        f"- harness throughput per round (c=8): {', '.join(f'{v:.0f}' for v in tput_h)} req/s; "
        f"wrk: {', '.join(f'{v:.0f}' for v in tput_w) or 'skipped'}",
        f"- harness p50 per round (c=1): {', '.join(f'{v:.3f}' for v in p50_h)} ms; "
        f"wrk: {', '.join(f'{v:.3f}' for v in p50_w) or 'skipped'}",
        f"- harness client CPU per request (HTTP, c=8): {med(cpu_h):.3f} ms",
        f"- client ceiling against a minimal loopback HTTP server (c=8): harness {ceiling[0]:.0f} req/s, wrk "
        + (f"{ceiling[1]:.0f} req/s" if ceiling[1] is not None else "skipped"),
        f"- gRPC (harness raw HTTP/2 client) per round (c=8): {', '.join(f'{v:.0f}' for v in tput_g)} req/s, "
        f"client CPU {', '.join(f'{v:.3f}' for v in cpu_g)} ms/request; HTTP client CPU per round "
        f"{', '.join(f'{v:.3f}' for v in cpu_h)} ms/request",
        f"- gRPC p50 per round (c=1): {', '.join(f'{v:.3f}' for v in p50_g)} ms",
        f"- gRPC through grpc.aio (pre-serialised requests, the previous client), c=8: {grpc.throughput_rps:.0f} "
        f"req/s, p50 {grpc.latency_ms.p50:.2f} ms, client CPU {grpc.client_cpu_ms_per_request:.3f} ms/request",
        f"- tritonclient.grpc, one call at a time (reference): {triton[0]:.0f} req/s, client CPU "
        f"{triton[1]:.3f} ms/request",
        f"- gRPC client ceiling against a minimal grpcio server (c=8): {grpc_ceiling.throughput_rps:.0f} req/s, "
        f"client CPU {grpc_ceiling.client_cpu_ms_per_request:.3f} ms/request (the Python server is the bound)",
        f"- gRPC client ceiling against a bare HTTP/2 server answering with pre-built frames (c=8, one worker "
        f"process): {grpc_bare.throughput_rps:.0f} req/s, client CPU {grpc_bare.client_cpu_ms_per_request:.3f} "
        "ms/request",
        f"- gRPC against HTTP client at the same pace (c=8; minimal servers, both answering each request "
        f"{PACED_DELAY_MS:g} ms after it arrives, {len(paced)} interleaved pairs): client CPU per request gRPC "
        f"{', '.join(f'{g.client_cpu_ms_per_request:.4f}' for _, g in paced)} ms, HTTP "
        f"{', '.join(f'{h.client_cpu_ms_per_request:.4f}' for h, _ in paced)} ms, ratio "
        f"{med(g.client_cpu_ms_per_request / h.client_cpu_ms_per_request for h, g in paced):.2f} (median of the "
        "pairs): the clients' own cost, where no server serves one protocol slower than the other",
        "- open loop runs: " + "; ".join(
            f"achieved {r.achieved_rate_rps:.1f}, late {r.late_sends}/{r.requests}, p50 {r.latency_ms.p50:.2f} ms, "
            f"p99 {r.latency_ms.p99:.2f} ms" for r in open_runs),
        "",
        "## Method",
        "",
        "- Max throughput: closed loop with 8 connections (harness: 8 requests in flight on 8 keep-alive "
        "connections; wrk: `-t1 -c8`), successful responses per second.",
        "- p50 at one connection: closed loop with one request in flight; harness p50 from its HdrHistogram "
        "(microsecond resolution, 3 significant digits), wrk's from `--latency`.",
        "- Open loop: constant rate at half the capacity (the lower of the wrk and harness medians at c=8); "
        "latency timed from each request's intended send time; a send more than 1 ms after its intended "
        "time is late. Late sends measure the client's ability to keep the schedule: on a machine whose "
        "CPUs are shared with other work, the kernel not running the client on time shows up here first.",
        "- gRPC vs HTTP: each gRPC run follows an HTTP run at the same concurrency; the ratios are medians "
        "over those pairs. Client CPU per request is the worker's process CPU time over the measured "
        "requests, so it holds up on a busy machine better than throughput does.",
        "- Client ceiling: the same closed loop against a minimal HTTP server that answers at once, which "
        "bounds what the client itself can generate on this machine.",
        "- Client and server share the same CPUs, so every millisecond of client CPU is taken from the "
        "server; that, not the network, is why a cheaper client shows higher throughput.",
        "",
    ]
    out = Path(args.out or "docs/benchmarks.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Hand-written notes (figures measured once, such as the capacity sweep) survive a rewrite.
    previous = out.read_text() if out.is_file() else ""
    kept = previous.find(NOTES_HEADING)
    out.write_text("\n".join(lines) + (previous[kept:] if kept >= 0 else ""))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a helper server that never came up (`_wait_ready`): one line, no traceback
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
