"""Issue 26 item 5: bounds everywhere. Every numeric profile field and `load` flag has a documented
ceiling refused in one line; the preflight keeps its budget against an API server that never
answers; the HTTP and gRPC load clients bound the size and count of response headers."""

from __future__ import annotations

import socket
import threading
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from harness import bounds
from harness.cli import main
from harness.config import Profile, load_profile
from harness.lifecycle import ClusterSession, RunOptions
from harness.load import LoadSpec, run_load
from harness.load.answers import HEADERS_TOO_LARGE, MAX_HEAD_BYTES

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "profiles" / "sim.yaml"


def _numeric_fields(model: type[pydantic.BaseModel], prefix: str = "") -> Iterator[str]:
    """Every numeric field of the profile's model, `*` for list items and map values."""
    def walk(annotation: Any, path: str) -> Iterator[str]:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            yield from walk(args[0], path)
        elif origin in (typing.Union, types.UnionType):
            for arg in args:
                yield from walk(arg, path)
        elif origin in (list, tuple):
            yield from walk(args[0], f"{path}.*") if args else iter(())
        elif origin is dict:
            yield from walk(args[1], f"{path}.*")
        elif isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            yield from _numeric_fields(annotation, f"{path}.")
        elif annotation in (int, float):
            yield path

    for name, info in model.model_fields.items():
        if not info.exclude:
            yield from walk(info.annotation, f"{prefix}{name}")


def test_every_numeric_profile_field_has_a_documented_bound() -> None:
    fields = sorted(set(_numeric_fields(Profile)))
    assert "timeouts.preflight_s" in fields and "load.rate" in fields and "models.*.inputs.*.shape.*" in fields
    missing = [f for f in fields if (bounds.bound_for(f.replace("*", "0")) or (0, ""))[1].startswith("no documented")]
    assert missing == []


def test_the_bounds_page_is_the_table() -> None:
    assert bounds.table() in (ROOT / "docs" / "bounds.md").read_text()


def _lint(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any) -> list[str]:
    data = yaml.safe_load(SIM.read_text())
    change(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["lint", "--profile", str(path)]) == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(("change", "needle"), [
    (lambda d: d["timeouts"].update(server_ready_s=1e12), "timeouts.server_ready_s: expected at most 86400"),
    (lambda d: d["timeouts"].update(preflight_s=7200), "timeouts.preflight_s: expected at most 3600"),
    (lambda d: d.setdefault("load", {}).update(rate=1e9), "load.rate: expected at most 100000"),
    (lambda d: d.setdefault("load", {}).update(rate=1000, duration_s=80000, warmup_s=0),
     "planned requests per trial, got 80000000"),
    (lambda d: [d["models"][0].pop(k, None) for k in ("input", "expected_output")]
     and d["models"][0].update(inputs=[{"name": "x", "shape": [10**12, 0], "data": []}]),
     "models[0].inputs[0].shape[0]: expected at most 1000000"),
    (lambda d: d.setdefault("slo", {}).update(p99_ms=1e300), "slo.p99_ms: expected at most 3600000"),
])
def test_a_huge_finite_profile_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 change: Any, needle: str) -> None:
    err = _lint(tmp_path, capsys, change)
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize(("flags", "needle"), [
    (["--rate", "1e9"], "--rate: expected at most 100000"),
    (["--concurrency", "100000"], "--concurrency: expected at most 1024"),
    (["--rate", "10", "--duration", "1e7"], "--duration: expected at most 86400"),
    (["--rate", "90000", "--duration", "86000"], "planned requests per trial"),
    (["--rate", "10", "--workers", "1000"], "--workers: expected at most 64"),
])
def test_a_huge_load_flag_is_one_line(flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["load", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--json", "x.json", "--duration", "1",
            *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


class _Silent:
    """A TCP server on 127.0.0.1 that accepts and reads, and never answers: a hanging API server."""

    def __init__(self, answer: bytes = b"", flood: bytes = b"", hello: bytes = b"",
                 asked: Any = lambda received: True) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.flood, self.hello, self.asked = answer, flood, hello, asked
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            received = conn.recv(65536)
            if self.hello:
                conn.sendall(self.hello)
            while not self.asked(received):
                more = conn.recv(65536)
                if not more:
                    return
                received += more
            if self.answer:
                conn.sendall(self.answer)
                for _ in range(8 * MAX_HEAD_BYTES // max(1, len(self.flood))):
                    conn.sendall(self.flood)
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_the_preflight_keeps_its_budget_against_a_hanging_api(tmp_path: Path) -> None:
    server = _Silent()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    data = yaml.safe_load((ROOT / "profiles" / "existing.yaml").read_text())
    data["cluster"]["kubeconfig"] = str(kubeconfig)
    data["timeouts"] = {**(data.get("timeouts") or {}), "preflight_s": 1, "request_s": 30}
    path = tmp_path / "existing.yaml"
    path.write_text(yaml.safe_dump(data))
    session = ClusterSession(load_profile(path), RunOptions(run_id="hang", workdir=tmp_path / "work"))
    started = time.monotonic()
    try:
        problems = session.preflight()
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed <= 1 + 5, elapsed
    assert [p.id for p in problems] == ["preflight"]
    assert "did not finish within timeouts.preflight_s=1 s" in problems[0].message


def test_the_http_client_bounds_response_headers() -> None:
    server = _Silent(answer=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", flood=b"X-Pad: " + b"a" * 50
                     + b"\r\n")
    try:
        result = run_load(LoadSpec(endpoint=f"http://127.0.0.1:{server.port}", model="m", mode="closed",
                                   concurrency=1, duration_s=1.5, warmup_s=0.0, timeout_s=30, workers=1))
    finally:
        server.close()
    assert result.requests >= 1 and set(result.errors) == {HEADERS_TOO_LARGE}, result.errors


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


def test_the_grpc_client_bounds_a_header_block() -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames without end."""
    def asked(received: bytes) -> bool:  # the client's HEADERS frame for stream 1 arrived
        at = 24  # the connection preface
        while at + 9 <= len(received):
            if received[at + 3] == 1:
                return True
            at += 9 + int.from_bytes(received[at:at + 3], "big")
        return False

    server = _Silent(hello=_frame(4, 0, 0, b""), asked=asked, answer=_frame(1, 0, 1, b"\x88"),  # :status 200, open
                     flood=_frame(9, 0, 1, b"\x00" * 16_000))
    try:
        result = run_load(LoadSpec(endpoint=f"127.0.0.1:{server.port}", model="m", protocol="grpc", mode="closed",
                                   concurrency=1, duration_s=1.5, warmup_s=0.0, timeout_s=30, workers=1))
    finally:
        server.close()
    assert result.requests >= 1 and set(result.errors) == {HEADERS_TOO_LARGE}, result.errors
