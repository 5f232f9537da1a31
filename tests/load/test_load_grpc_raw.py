"""The raw HTTP/2 gRPC client against a real gRPC server (grpcio) on 127.0.0.1 that misbehaves on request.

Each behaviour is chosen by the model name the client asks for (the `seldon-model` metadata), so one
server covers: a good answer, a trailers-only error status, a deadline overrun, garbage with an OK
status, an oversized message, and a server that goes away.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from harness.load import LoadSpec, run_load
from harness.load.answers import BAD_ANSWER, BODY_TOO_LARGE, MAX_BODY_BYTES
from harness.load.grpc_raw import header_block, status_kind

METHOD = "/inference.GRPCInferenceService/ModelInfer"
# Many times HTTP/2's default 65,535-byte windows and 16 KiB frames, under the client's read bound.
BIG_ANSWER = 1_000_000


def _answer(model: str, raw: bytes = b"") -> bytes:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse(model_name=model)
    out = response.outputs.add(name="predict", datatype="INT64", shape=[1])
    out.contents.int64_contents.extend([0])
    if raw:
        response.raw_output_contents.append(raw)
    data: bytes = response.SerializeToString()
    return data


class GrpcStub:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.metadata: list[dict[str, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: Any = None
        self.stopped: asyncio.Event | None = None
        # Built before serving: a first answer that waits on an import would eat the measured window.
        self.answers = {"iris": _answer("iris"), "big": _answer("big", b"x" * BIG_ANSWER)}

    async def _handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        meta = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.metadata.append(meta)
        model = meta.get("seldon-model", "")
        if model == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")  # trailers-only
        if model == "slow":
            await asyncio.sleep(2.0)
        if model == "garbage":
            return b"\x08\x96\x01 not a response"
        if model == "huge":
            return b"\x0a" + b"x" * (MAX_BODY_BYTES + 10)
        return self.answers.get(model) or _answer(model)

    async def _serve(self) -> None:
        handler = grpc.unary_unary_rpc_method_handler(self._handle)  # bytes in, bytes out
        generic = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": handler})
        self.server = grpc.aio.server(options=[("grpc.max_send_message_length", 2 * MAX_BODY_BYTES)])
        self.server.add_generic_rpc_handlers((generic,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.stopped = asyncio.Event()
        self.ready.set()
        await self.stopped.wait()
        await self.server.stop(grace=None)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    def stop(self) -> None:
        if self.stopped is not None and self.thread.is_alive() and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(10)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def stub() -> Iterator[GrpcStub]:
    server = GrpcStub()
    server.thread.start()
    assert server.ready.wait(20), "gRPC stub did not start"
    yield server
    server.stop()


def _run(stub: GrpcStub, model: str, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"mode": "closed", "concurrency": 2, "duration_s": 0.9, "warmup_s": 0.1}
    options.update(kwargs)
    return run_load(LoadSpec(endpoint=stub.target, model=model, protocol="grpc", **options))


def test_good_answers_and_the_seldon_model_metadata(stub: GrpcStub) -> None:
    result = _run(stub, "iris")
    assert result.complete and result.errors == {} and result.ok > 10
    assert stub.metadata and all(m.get("seldon-model") == "iris" for m in stub.metadata)
    assert all(m.get("grpc-timeout") is None for m in stub.metadata)  # consumed by the server, not metadata


def test_trailers_only_error_is_its_status(stub: GrpcStub) -> None:
    result = _run(stub, "missing")
    assert result.complete and result.ok == 0 and result.errors == {"grpc_NOT_FOUND": result.requests}


def test_deadline_is_a_timeout(stub: GrpcStub) -> None:
    result = _run(stub, "slow", mode="open", concurrency=None, rate=10.0, duration_s=0.6, timeout_s=0.3)
    assert result.complete and result.ok == 0 and result.requests >= 5
    assert result.errors == {"timeout": result.requests}


def test_garbage_and_oversized_answers(stub: GrpcStub) -> None:
    garbage = _run(stub, "garbage")
    assert garbage.ok == 0 and garbage.errors == {BAD_ANSWER: garbage.requests}
    huge = _run(stub, "huge", concurrency=1, duration_s=0.6)
    assert huge.ok == 0 and set(huge.errors) == {BODY_TOO_LARGE}


def test_server_gone_mid_run_ends_incomplete(stub: GrpcStub) -> None:
    timer = threading.Timer(0.8, stub.stop)
    timer.start()
    started = time.monotonic()
    try:
        result = _run(stub, "iris", duration_s=6.0, timeout_s=1.0)
    finally:
        timer.join()
    assert result.complete is False and result.ok > 0
    assert result.failure is not None and "stopped answering" in result.failure
    # A stopping grpcio server cancels the calls in flight (RST_STREAM CANCEL), then the socket goes.
    assert set(result.errors) <= {"connection_reset", "connection_refused", "grpc_UNAVAILABLE", "grpc_CANCELLED"}
    assert time.monotonic() - started < 6.0


def test_header_block_and_status_kinds() -> None:
    from hpack import Decoder

    fields = dict(Decoder().decode(header_block("h:1", METHOD, "iris", 2.5)))
    assert fields == {":method": "POST", ":scheme": "http", ":path": METHOD, ":authority": "h:1",
                      "content-type": "application/grpc", "te": "trailers", "grpc-timeout": "2500m",
                      "seldon-model": "iris"}
    assert status_kind(4) == "timeout" and status_kind(5) == "grpc_NOT_FOUND" and status_kind(99) == "grpc_UNKNOWN"


def test_a_big_answer_flows_and_our_windows_need_no_update(stub: GrpcStub, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import grpc_raw

    built: list[int] = []  # the kinds of the frames the client built beyond its calls
    make = grpc_raw.frame
    monkeypatch.setattr(grpc_raw, "frame", lambda kind, *rest: (built.append(kind), make(kind, *rest))[1])
    result = _run(stub, "big", workers=1, duration_s=0.6)
    # The server never waits on our windows (RFC 9113 section 6.9): the opening grants (SETTINGS
    # INITIAL_WINDOW_SIZE for streams, one WINDOW_UPDATE for the connection) cover every answer.
    # Beyond the opening one, a WINDOW_UPDATE only per WINDOW_REFILL (256 MiB) received: far fewer
    # than the answers, where one per read would be dozens per answer.
    assert result.complete and result.errors == {} and result.ok >= 2
    assert 1 <= built.count(grpc_raw.WINDOW_UPDATE) < max(2, result.ok)
