"""Open Inference Protocol clients: a lean keep-alive HTTP/1.1 pool, a gRPC channel, `infer_once`.

The load path avoids every per-request cost it can: the request bytes are built once, HTTP
responses are parsed only as far as the status line and the body length, and gRPC requests are
sent as pre-serialised protobuf bytes. Completion is a callback, not a task, so a request costs
one write and one read on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from harness.errors import HarnessError
from harness.load.answers import BODY_TOO_LARGE, HEADERS_TOO_LARGE, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADER_COUNT
from harness.load.spec import Protocol, Target, parse_endpoint, validate_inputs

# on_done(error_kind or None, send_time): error kinds are short stable strings (see `classify_os_error`).
Callback = Callable[[str | None, float], None]
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"


class InferenceError(HarnessError):
    """One inference failed; `kind` is the error kind the load engine would count."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def classify_os_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "connection_reset"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    return "connection_error"


def infer_path(target: Target, model: str) -> str:
    return f"{target.prefix}/v2/models/{model}/infer"


def json_body(inputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def http_request_bytes(target: Target, model: str, inputs: list[dict[str, Any]]) -> bytes:
    """The whole HTTP/1.1 request, built once and written as is for every request."""
    body = json_body(inputs)
    head = (
        f"POST {infer_path(target, model)} HTTP/1.1\r\n"
        f"Host: {target.host}:{target.port}\r\n"
        # MLServer rejects binary tensors and text/plain; the mesh routes on Seldon-Model.
        "Content-Type: application/json\r\n"
        f"Seldon-Model: {model}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def grpc_request_bytes(model: str, inputs: list[dict[str, Any]]) -> bytes:
    """A serialised ModelInferRequest with the tensors as typed contents."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    for tensor in inputs:
        item = request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
        field = _CONTENTS_FIELD[tensor["datatype"]]
        values = tensor["data"]
        if field == "bytes_contents":
            values = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        getattr(item.contents, field).extend(values)
    data: bytes = request.SerializeToString()
    return data


_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP16": "fp32_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


# --------------------------------------------------------------------------------------------
# HTTP: one asyncio protocol per keep-alive connection.
# --------------------------------------------------------------------------------------------
class _HttpConnection(asyncio.Protocol):
    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need = -1  # total bytes of the response in progress; -1 until its head is parsed
        self.status = 0
        self.chunked = False
        self.until_close = False
        self.keep_alive = True
        self.callback: Callback | None = None
        self.sent_at = 0.0  # the pool's sweep times the request out `timeout` after this (monotonic)
        self.body_at = 0  # offset of the body in `buffer`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.pool.conns.add(self)

    def send(self, callback: Callback) -> None:
        assert self.transport is not None
        pool = self.pool
        self.callback = callback
        if self.buffer:
            self.buffer.clear()
        self.need = -1
        self.until_close = False
        self.sent_at = time.monotonic()
        if pool.sweeper is None:
            pool.arm()
        self.transport.write(pool.payload)

    def _finish(self, kind: str | None, reusable: bool) -> None:
        callback, self.callback = self.callback, None
        if not reusable and self.transport is not None:
            self.transport.close()
        self.pool._released(self, reusable)
        if callback is not None:
            callback(kind, self.sent_at)

    def _timed_out(self) -> None:
        if self.callback is not None:
            self._finish("timeout", reusable=False)

    def data_received(self, data: bytes) -> None:
        if self.callback is None:
            # Bytes nobody asked for (a late answer after a timeout): the connection is out of step.
            if self.transport is not None:
                self.transport.close()
            return
        if self.need < 0 and not self.buffer:
            # Fast path: the whole answer in one read, with a head seen before (no copy, no parse).
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                head = self.pool.heads.get(data[:end])
                if head is not None and head[2] >= 0 and len(data) >= end + 4 + head[2]:
                    status = head[0]
                    checker = self.pool.checker
                    if status != 200:
                        kind: str | None = f"http_{status}"
                    elif checker is None:
                        kind = None
                    else:
                        kind = checker(data[end + 4 : end + 4 + head[2]])
                    self._finish(kind, reusable=head[1])
                    return
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._finish(HEADERS_TOO_LARGE, reusable=False)
                return
            parsed = self.pool.head(bytes(self.buffer[:end]))
            if isinstance(parsed, str):
                self._finish(parsed, reusable=False)
                return
            self.status, self.keep_alive, length, self.chunked = parsed
            self.body_at = end + 4
            if length >= 0:
                self.need = end + 4 + length
            else:
                self.need = end + 4
                if not self.chunked and self.status not in (204, 304):
                    # No length and no chunks: the body ends when the server closes (HTTP/1.0 style).
                    self.until_close = True
                    self.keep_alive = False
                    return
        if (self.until_close or self.chunked) and len(self.buffer) - self.body_at > MAX_BODY_BYTES:
            self._finish(BODY_TOO_LARGE, reusable=False)
            return
        if self.until_close:
            return
        if self.chunked:
            if not self.buffer.endswith(b"0\r\n\r\n"):
                return
        elif len(self.buffer) < self.need:
            return
        self._finish(self._kind(), reusable=self.keep_alive)

    def _kind(self) -> str | None:
        """The error kind of the response now complete in `buffer` (None: a checked answer)."""
        if self.status != 200:
            return f"http_{self.status}"
        checker = self.pool.checker
        if checker is None:
            return None
        if self.chunked:
            body = dechunk(self.buffer, self.body_at)
            if body is None:
                return "http_bad_response"
        else:
            body = bytes(self.buffer[self.body_at : self.need if self.need >= self.body_at else len(self.buffer)])
        return checker(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool.conns.discard(self)
        if self.callback is not None and self.until_close and exc is None:
            self.need = len(self.buffer)
            self._finish(self._kind(), reusable=False)
        elif self.callback is not None:
            self._finish(classify_os_error(exc) if exc else "connection_reset", reusable=False)
        else:
            self.pool._dropped(self)


def dechunk(buffer: bytes | bytearray, start: int) -> bytes | None:
    """The body of a chunked response that starts at `start`; None when the framing is broken."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[at:line_end]).split(b";", 1)[0], 16)
        except ValueError:
            return None
        if size == 0:
            return bytes(body)
        body += buffer[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2


# A parsed response head: (status, keep-alive, content length or -1 when absent, chunked).
Head = tuple[int, bool, int, bool]


def parse_head(head: bytes) -> Head | str:
    """What the client needs of a response head (the bytes before the blank line), or the error
    kind that ends the request: HEADERS_TOO_LARGE, BODY_TOO_LARGE (the declared length is over the
    read bound: the body is not buffered, and the connection is out of step), http_bad_response."""
    lower = head.lower()
    if len(head) > MAX_HEAD_BYTES or lower.count(b"\r\n") > MAX_HEADER_COUNT:
        return HEADERS_TOO_LARGE
    try:
        status = int(lower[9:12])
    except ValueError:
        return "http_bad_response"
    keep_alive = b"\r\nconnection: close" not in lower
    length_at = lower.find(b"\r\ncontent-length:")
    if length_at < 0:
        return status, keep_alive, -1, b"transfer-encoding: chunked" in lower
    line_end = lower.find(b"\r\n", length_at + 2)
    try:
        length = int(lower[length_at + 17 : line_end if line_end >= 0 else len(lower)].strip())
    except ValueError:
        return "http_bad_response"
    if length > MAX_BODY_BYTES:
        return BODY_TOO_LARGE
    return status, keep_alive, length, False


# Distinct response heads whose parse is remembered per pool (a server sending a Date header
# just misses the memo once a second).
HEAD_MEMO_SIZE = 64


class HttpPool:
    """Keep-alive connections to one endpoint; at most `limit` open, extra requests queue in order.

    `checker` judges each 200 body (see `answers.py`): its error kind, or None for a real answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: Target, payload: bytes, timeout: float,
                 limit: int, checker: Callable[[bytes], str | None] | None = None) -> None:
        self.loop = loop
        self.checker = checker
        self.target = target
        self.payload = payload
        self.timeout = timeout
        self.limit = limit
        self.idle: list[_HttpConnection] = []
        self.open = 0
        self.waiting: deque[Callback] = deque()
        self.closed = False
        # Timeouts: one sweep timer over the open connections while requests are in flight, not a
        # timer per request (a timer's creation and cancel per request, and then the upkeep of a set
        # of busy connections, were a measurable part of the client's CPU). A request times out
        # between `timeout` and `timeout + sweep_s` after its send.
        self.conns: set[_HttpConnection] = set()
        self.sweep_s = max(0.005, min(0.05, timeout / 10.0))
        self.sweeper: asyncio.TimerHandle | None = None
        # head bytes -> parsed head: the same bytes always parse the same, so the memo is exact.
        self.heads: dict[bytes, Head] = {}

    def head(self, raw: bytes) -> Head | str:
        parsed = self.heads.get(raw)
        if parsed is not None:
            return parsed
        result = parse_head(raw)
        if not isinstance(result, str):
            if len(self.heads) >= HEAD_MEMO_SIZE:
                self.heads.clear()
            self.heads[raw] = result
        return result

    def arm(self) -> None:
        if self.sweeper is None and not self.closed:
            self.sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    def _sweep(self) -> None:
        self.sweeper = None
        now = time.monotonic()
        for conn in [c for c in self.conns if c.callback is not None and now - c.sent_at >= self.timeout]:
            conn._timed_out()
        if any(c.callback is not None for c in self.conns):
            self.arm()

    def submit(self, callback: Callback) -> None:
        if self.idle:
            self.idle.pop().send(callback)
        elif self.open < self.limit:
            self.open += 1
            self.loop.create_task(self._connect_and_send(callback))
        else:
            self.waiting.append(callback)

    async def prewarm(self, count: int) -> None:
        """Open up to `count` idle connections ahead of the run, so early sends do not wait for a
        TCP handshake (wrk and wrk2 open their connections up front too). Failures are left to the run."""
        count = min(count, self.limit - self.open)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.loop.create_connection(lambda: _HttpConnection(self), self.target.host,
                                                           self.target.port), timeout=min(self.timeout, 0.5))
              for _ in range(count)),
            return_exceptions=True,
        )
        for item in results:
            if isinstance(item, BaseException):
                continue
            _, conn = item
            self.open += 1
            self.idle.append(conn)

    async def _connect_and_send(self, callback: Callback) -> None:
        started = time.monotonic()
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _HttpConnection(self), self.target.host, self.target.port),
                timeout=self.timeout,
            )
        except (TimeoutError, OSError) as exc:
            self.open -= 1
            callback(classify_os_error(exc), started)
            self._next()
            return
        if self.closed or conn.transport is None:
            if conn.transport is not None:
                conn.transport.close()
            self.open -= 1
            callback("connection_reset", started)
            return
        conn.send(callback)

    def _released(self, conn: _HttpConnection, reusable: bool) -> None:
        if reusable and not self.closed:
            if self.waiting:
                conn.send(self.waiting.popleft())
            else:
                self.idle.append(conn)
            return
        self.open -= 1
        self._next()

    def _dropped(self, conn: _HttpConnection) -> None:
        # An idle connection closed by the server (keep-alive timeout): forget it.
        if conn in self.idle:
            self.idle.remove(conn)
            self.open -= 1

    def _next(self) -> None:
        if self.waiting and not self.closed and self.open < self.limit:
            self.submit(self.waiting.popleft())

    def close(self) -> None:
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


# --------------------------------------------------------------------------------------------
# gRPC: grpc.aio with pre-serialised requests (no protobuf work per request).
# --------------------------------------------------------------------------------------------
class GrpcPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, target: Target, payload: bytes, timeout: float,
                 model: str, limit: int, checker: Callable[[bytes], str | None] | None = None) -> None:
        import grpc

        self.loop = loop
        self.payload = payload
        self.timeout = timeout
        self.checker = checker
        self.metadata = (("seldon-model", model),)  # gRPC metadata keys must be lowercase
        # Bounded reads: a larger answer fails as RESOURCE_EXHAUSTED instead of being buffered.
        self.channel = grpc.aio.insecure_channel(
            f"{target.host}:{target.port}", options=[("grpc.max_receive_message_length", MAX_BODY_BYTES)])
        # No (de)serialisers: requests go out as the bytes given and responses come back as bytes.
        self.call = self.channel.unary_unary(GRPC_METHOD)
        self.limit = limit
        self.active = 0
        self.waiting: deque[Callback] = deque()
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, callback: Callback) -> None:
        if self.active >= self.limit:
            self.waiting.append(callback)
            return
        self.active += 1
        task = self.loop.create_task(self._one(callback))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, callback: Callback) -> None:
        import grpc

        sent = time.monotonic()
        kind: str | None = None
        try:
            raw = await self.call(self.payload, metadata=self.metadata, timeout=self.timeout)
            if self.checker is not None:
                kind = self.checker(raw)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            kind = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else f"grpc_{code.name}"
        except OSError as exc:
            kind = classify_os_error(exc)
        self.active -= 1
        callback(kind, sent)
        if self.waiting and self.active < self.limit:
            self.submit(self.waiting.popleft())

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
        await self.channel.close()


# --------------------------------------------------------------------------------------------
# One request, fully parsed: the suites' correctness check.
# --------------------------------------------------------------------------------------------
def _as_dict(tensor: Any) -> Any:
    # A profile `Tensor` (pydantic) dumps to exactly the Open Inference Protocol tensor fields.
    dump = getattr(tensor, "model_dump", None)
    return dump() if callable(dump) else tensor


def infer_once(
    endpoint: str, model: str, tensor: Any, protocol: Protocol = "http", timeout: float = 10.0,
) -> dict[str, Any]:
    """Send one inference and return the parsed response as an Open Inference Protocol dict
    (`model_name`, `model_version`, `outputs: [{name, datatype, shape, data}]`).

    `tensor`: one input (a dict with name, datatype, shape, data, or a profile `Tensor`) or a list
    of them. Raises `InferenceError` with the error kind and the server's message on any failure.
    """
    items = tensor if isinstance(tensor, list) else [tensor]
    inputs = validate_inputs([_as_dict(t) for t in items], "inputs")
    target = parse_endpoint(endpoint, protocol)
    if protocol == "http":
        return _infer_http(target, model, inputs, timeout)
    return _infer_grpc(target, model, inputs, timeout)


def _infer_http(target: Target, model: str, inputs: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        conn.request(
            "POST", infer_path(target, model), body=json_body(inputs),
            headers={"Content-Type": "application/json", "Seldon-Model": model},
        )
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise InferenceError(classify_os_error(exc), f"POST {target.host}:{target.port}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        text = body[:300].decode(errors="replace")
        raise InferenceError(f"http_{response.status}", f"model {model!r}: {text}")
    try:
        parsed: dict[str, Any] = json.loads(body)
    except ValueError:
        raise InferenceError("http_bad_response", f"model {model!r}: response is not JSON") from None
    return parsed


def _infer_grpc(target: Target, model: str, inputs: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    import grpc
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from tritonclient.grpc import service_pb2

    with grpc.insecure_channel(f"{target.host}:{target.port}") as channel:
        call = channel.unary_unary(GRPC_METHOD)
        try:
            raw = call(grpc_request_bytes(model, inputs), metadata=(("seldon-model", model),), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            kind = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else f"grpc_{code.name}"
            raise InferenceError(kind, f"model {model!r}: {exc.details()}") from None
    response = service_pb2.ModelInferResponse.FromString(raw)
    outputs = []
    for i, out in enumerate(response.outputs):
        if response.raw_output_contents:
            data: list[Any] = _decode_raw(out.datatype, response.raw_output_contents[i])
        else:
            field = _CONTENTS_FIELD.get(out.datatype, "fp32_contents")
            data = list(getattr(out.contents, field))
        outputs.append({"name": out.name, "datatype": out.datatype, "shape": list(out.shape), "data": data})
    params = json_format.MessageToDict(response).get("parameters", {})
    return {"model_name": response.model_name, "model_version": response.model_version, "id": response.id,
            "parameters": params, "outputs": outputs}


def _decode_raw(datatype: str, raw: bytes) -> list[Any]:
    import struct

    formats = {"FP32": "f", "FP64": "d", "INT32": "i", "INT64": "q", "INT8": "b", "INT16": "h", "UINT8": "B",
               "UINT16": "H", "UINT32": "I", "UINT64": "Q", "BOOL": "?"}
    fmt = formats.get(datatype)
    if fmt is None:
        return [raw]
    size = struct.calcsize(fmt)
    return list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))
