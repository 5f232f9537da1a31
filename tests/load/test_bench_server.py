"""The benchmark's view of the server's own cost (harness/commands/bench_server.py), and the paced
minimal servers that compare the two clients at the same pace (harness/commands/bench.py)."""

from __future__ import annotations

import http.server
import selectors
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness.commands.bench_server import (
    ServerCost,
    ServerCounters,
    cost,
    process_tree,
    read_counters,
    successes,
    voluntary_switches,
)

METRICS = """# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="simple",version="1"} 120
nv_inference_request_success{model="simple",version="2"} 30
nv_inference_request_success{model="other",version="1"} 999
nv_inference_request_failure{model="simple",version="1"} 7
"""


def test_parsers_and_the_cost_per_request() -> None:
    status = "Name:\ttritonserver\nvoluntary_ctxt_switches:\t4521\nnonvoluntary_ctxt_switches:\t88\n"
    assert voluntary_switches(status) == 4521 and voluntary_switches("Name:\tx\n") == 0
    assert successes(METRICS, "simple") == 150.0  # every version of the model, no other model, no failures
    assert successes(METRICS, "absent") is None
    before = ServerCounters(cpu_s=10.0, wakeups=1000, requests=150.0)
    after = ServerCounters(cpu_s=10.5, wakeups=3000, requests=1150.0)
    assert cost(before, after) == ServerCost(cpu_ms_per_request=0.5, wakeups_per_request=2.0, requests=1000)
    assert cost(None, after) is None and cost(before, None) is None
    assert cost(after, after) is None  # nothing answered: no per-request figure


def test_process_tree_is_the_root_and_everything_below_it() -> None:
    stats = {1: (0, 5), 10: (1, 1), 11: (10, 1), 12: (11, 1), 20: (1, 1), 13: (10, 1)}
    assert sorted(process_tree(stats, 10)) == [10, 11, 12, 13]
    assert process_tree(stats, 99) == []


@pytest.fixture
def metrics_url() -> Iterator[tuple[str, list[int]]]:
    """A loopback metrics endpoint whose success counter the test sets."""
    count = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f'nv_inference_request_success{{model="simple",version="1"}} {count[0]}\n'.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", count
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _wait_line(proc: subprocess.Popen[bytes], expected: bytes) -> None:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=60), f"no {expected!r} from the child"
    assert proc.stdout.readline() == expected


def test_counters_sum_cpu_and_wakeups_over_the_whole_process_tree(metrics_url: tuple[str, list[int]]) -> None:
    """A child that starts a grandchild; the grandchild sleeps 50 times and burns CPU in a second
    thread. Both are counted from the child down: CPU of every process, wake-ups of every thread."""
    url, count = metrics_url
    # The thread stays alive until the end: an ended thread's wake-ups leave /proc with it.
    grandchild = ("import sys, threading, time\n"
                  "def work():\n"
                  "    for _ in range(50):\n"
                  "        time.sleep(0.001)\n"
                  "    end = time.process_time() + 0.3\n"
                  "    while time.process_time() < end: pass\n"
                  "    print('done', flush=True)\n"
                  "    sys.stdin.readline()\n"
                  "sys.stdin.readline()\n"  # the test says go
                  "t = threading.Thread(target=work); t.start(); t.join()\n")
    child = ("import subprocess, sys\n"
             f"g = subprocess.Popen([sys.executable, '-c', {grandchild!r}], stdin=sys.stdin)\n"
             "print('started', flush=True)\n"
             "g.wait()\n")
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        _wait_line(proc, b"started\n")
        count[0] = 100
        before = read_counters(proc.pid, url, "simple")
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        _wait_line(proc, b"done\n")  # the grandchild's print, through the stdout it inherited
        count[0] = 300
        after = read_counters(proc.pid, url, "simple")
        spent = cost(before, after)
        assert before is not None and after is not None and spent is not None
        assert after.cpu_s - before.cpu_s >= 0.3 - 0.02  # tick-sampled (100 Hz): two ticks of slack
        assert after.wakeups - before.wakeups >= 50  # the worker thread's sleeps, each a wake-up
        assert spent.requests == 200
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    assert read_counters(proc.pid, url, "simple") is None  # gone: no reading, not a zero


def test_the_paced_servers_answer_both_protocols_at_the_asked_pace() -> None:
    """At 8 calls in flight and 20 ms per answer neither client can exceed 400 answers a second;
    servers that ignored the delay would answer thousands."""
    from harness.commands.bench import _paced_clients

    (http_run, grpc_run), = _paced_clients(0.6, pairs=1, delay_ms=20.0)
    for run in (http_run, grpc_run):
        assert run.ok > 0 and not run.errors, run
        assert 0 < run.throughput_rps <= 8 / 0.020 * 1.05, run.throughput_rps
        assert run.latency_ms.p50 >= 20.0


def test_a_helper_server_that_never_says_ready_fails_the_bench_within_its_bound() -> None:
    from harness.commands.bench import _stop, _wait_ready

    for script in ("import sys; sys.exit(3)", "import time; time.sleep(60)"):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            with pytest.raises(RuntimeError, match="was not ready within 1 s"):
                _wait_ready(proc, timeout=1.0)
        finally:
            _stop(proc)
