"""The simulated `seldon-mesh`: what Seldon's Envoy does for Open Inference Protocol traffic.

One port serves both, like Envoy's: HTTP/1.1 is REST, a connection that opens with the HTTP/2
preface (gRPC) is spliced to the gRPC proxy, which also listens on a port of its own.
REST: an HTTP/1.1 reverse proxy on 127.0.0.1 (a free port) routing by the `Seldon-Model` header or
the `/v2/models/<model>/...` path to an MLServer that holds the model, with the model segment of
the path rewritten to the served name (`<model>_1`); paths without `/infer` get Seldon's agent's 400.
Upstream connections are kept open and reused;
the proxy is a small asyncio loop on its own thread because it sits in the latency path.
gRPC: a server on another free port forwarding `inference.GRPCInferenceService/*` by the lowercase
`seldon-model` metadata, rewriting `model_name` (`name` for metadata/ready requests) to the served
name. Unknown models get 404 / NOT_FOUND like Envoy; models the sim cannot serve (Triton) get
503 / UNAVAILABLE with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

HOST = "127.0.0.1"
_HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"host", b"content-length",
}
_MODEL_PATH = re.compile(rb"^/v2/models/([^/?]+)((?:/versions/[^/?]+)?)([/?].*)?$")
_MAX_HEAD = 64 * 1024
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\n"
_IDLE_PER_UPSTREAM = 64
GRPC_SERVICE = "inference.GRPCInferenceService"
# Seldon 2.10.2's agent reverse proxy (SeldonIO/seldon-core v2.10.2 scheduler/pkg/agent/rproxy.go,
# `RoundTrip`, lines 141-146) takes the part of the path after "/infer_stream" or "/infer"
# (scheduler/pkg/translator/utils.go `GetPathTermination`) and answers any path with neither with
# HTTP 400 and this plain-text body. "/infer" also matches "/infer_stream".
_INFER_MARKER = b"/infer"
AGENT_NO_INFER_BODY = b"Failed to get path termination for request: no valid marker found in path"


@dataclass(frozen=True)
class Upstream:
    host: str
    http_port: int
    grpc_port: int


@dataclass(frozen=True)
class Route:
    """Where a model is served: its served name and the replicas that hold it, or why it cannot be."""

    served_name: str
    upstreams: tuple[Upstream, ...] = ()
    refusal: str | None = None
    # Test hook (`faults.slow_model`): answers are held until `slowdown` times the upstream's own
    # time has passed, so the model looks that much slower to every client (regression-gate tests).
    slowdown: float = 1.0


Resolver = Callable[[str], "Route | None"]


class _BadRequest(Exception):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def _read_raw_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest("request head too large") from None


def _parse_head(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        if not sep:
            raise _BadRequest("malformed header line")
        headers.append((key.strip().lower(), value.strip()))
    return lines[0], headers


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    raw = await _read_raw_head(reader)
    return None if raw is None else _parse_head(raw)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        for _ in range(1 << 40):  # bounded by the connection's life
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], until_eof: bool) -> bytes:
    encoding = _header(headers, b"transfer-encoding")
    if encoding is not None and b"chunked" in encoding.lower():
        parts: list[bytes] = []
        for _ in range(1_000_000):  # bounded: a body of a million chunks is not an inference request
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # Trailers (rare) end with an empty line.
                for _ in range(100):
                    if await reader.readuntil(b"\r\n") == b"\r\n":
                        break
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        raise _BadRequest("too many chunks")
    length = _header(headers, b"content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise _BadRequest("bad Content-Length") from None
        return await reader.readexactly(n) if n > 0 else b""
    return await reader.read() if until_eof else b""


def _response(status: int, reason: str, body: bytes, keep_alive: bool,
              content_type: bytes = b"application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: ".encode()
        + content_type
        + f"\r\ncontent-length: {len(body)}\r\nserver: envoy\r\n".encode()
        + (b"" if keep_alive else b"connection: close\r\n")
        + b"\r\n"
    )
    return head + body


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _HttpProxy:
    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._rr = itertools.count()
        self.requests = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.grpc_port = 0  # where HTTP/2 (gRPC) connections on the REST port are spliced to

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            for count in range(10_000_000):  # one client connection, many requests
                try:
                    raw = await _read_raw_head(reader)
                    if raw is None:
                        break
                    if count == 0 and raw.startswith(_H2_PREFACE) and self.grpc_port:
                        # HTTP/2 with prior knowledge is gRPC: Envoy serves it on the same port as REST.
                        await self._splice_grpc(raw, reader, writer)
                        break
                    start, headers = _parse_head(raw)
                    parts = start.split(b" ", 2)
                    if len(parts) != 3:
                        raise _BadRequest("malformed request line")
                    method, target, version = parts
                    if (_header(headers, b"expect") or b"").lower() == b"100-continue":
                        # curl asks before sending bodies over 1 KiB; without this it stalls for a second.
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                        headers = [(k, v) for k, v in headers if k != b"expect"]
                    body = await _read_body(reader, headers, until_eof=False)
                except (_BadRequest, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    writer.write(_response(400, "Bad Request", _error_body(str(exc) or "bad request"), False))
                    await writer.drain()
                    break
                conn = (_header(headers, b"connection") or b"").lower()
                keep_alive = b"close" not in conn if version == b"HTTP/1.1" else b"keep-alive" in conn
                writer.write(await self._forward(method, target, headers, body, keep_alive))
                await writer.drain()
                self.requests += 1
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self.tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _splice_grpc(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.grpc_port)
        except OSError:
            return  # the client sees the connection close, as when Envoy has no healthy upstream
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _forward(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
    ) -> bytes:
        header_model = _header(headers, b"seldon-model")
        match = _MODEL_PATH.match(target)
        model = header_model.decode(errors="replace") if header_model else None
        if model is None and match is not None:
            model = match.group(1).decode(errors="replace")
        if model is None:
            where = target.decode(errors="replace")
            message = f"no route: {where} names no model (use /v2/models/<model>/... or the Seldon-Model header)"
            return _response(404, "Not Found", _error_body(message), keep_alive)
        route = self._resolve(model)
        if route is None:
            return _response(404, "Not Found", _error_body(f"model {model} not found in the mesh"), keep_alive)
        if route.refusal is not None or not route.upstreams:
            reason = route.refusal or f"model {model} has no available replica"
            return _response(503, "Service Unavailable", _error_body(reason), keep_alive)
        if _INFER_MARKER not in target.split(b"?", 1)[0]:
            # Seldon's agent reverse proxy forwards inference only: any other path is refused before it
            # reaches the server (model config, metadata and ready included).
            return _response(400, "Bad Request", AGENT_NO_INFER_BODY, keep_alive, content_type=b"text/plain")
        if match is not None:
            target = b"/v2/models/" + route.served_name.encode() + match.group(2) + (match.group(3) or b"")
        upstream = route.upstreams[next(self._rr) % len(route.upstreams)]
        out = [method + b" " + target + b" HTTP/1.1\r\n"]
        out.append(f"host: {upstream.host}:{upstream.http_port}\r\n".encode())
        for key, value in headers:
            if key not in _HOP_BY_HOP:
                out.append(key + b": " + value + b"\r\n")
        out.append(f"content-length: {len(body)}\r\n\r\n".encode())
        request = b"".join(out) + body
        started = time.monotonic()
        for attempt in range(2):
            try:
                fresh, (up_reader, up_writer) = await self._connection(upstream)
            except OSError:
                return _response(503, "Service Unavailable",
                                 _error_body("upstream connect error or disconnect/reset before headers"), keep_alive)
            try:
                up_writer.write(request)
                await up_writer.drain()
                parsed = await _read_head(up_reader)
                if parsed is None:
                    raise ConnectionResetError("upstream closed the connection")
                status_line, up_headers = parsed
                no_body = method == b"HEAD" or status_line.split(b" ")[1] in (b"204", b"304")
                up_conn = (_header(up_headers, b"connection") or b"").lower()
                framed = (_header(up_headers, b"content-length") is not None
                          or _header(up_headers, b"transfer-encoding") is not None)
                up_body = b"" if no_body else await _read_body(up_reader, up_headers, until_eof=not framed)
            except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError):
                with contextlib.suppress(Exception):
                    up_writer.close()
                if fresh or attempt == 1:
                    return _response(503, "Service Unavailable",
                                     _error_body("upstream connect error or disconnect/reset before headers"),
                                     keep_alive)
                continue  # a kept-alive connection the server had closed: retry once on a new one
            if b"close" in up_conn or not framed:
                up_writer.close()
            else:
                self._release(upstream, up_reader, up_writer)
            resp = [status_line.replace(b"HTTP/1.0", b"HTTP/1.1", 1) + b"\r\n"]
            for key, value in up_headers:
                if key not in _HOP_BY_HOP and key != b"server":
                    resp.append(key + b": " + value + b"\r\n")
            resp.append(b"server: envoy\r\n")
            resp.append(f"content-length: {len(up_body)}\r\n".encode())
            if not keep_alive:
                resp.append(b"connection: close\r\n")
            resp.append(b"\r\n")
            if route.slowdown > 1.0:
                # The injected slowness itself (not a wait for a condition): other requests proceed.
                await asyncio.sleep((time.monotonic() - started) * (route.slowdown - 1.0))
            return b"".join(resp) + up_body
        raise AssertionError("unreachable")

    async def _connection(
        self, upstream: Upstream
    ) -> tuple[bool, tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        idle = self._idle.get((upstream.host, upstream.http_port))
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return False, (reader, writer)
        reader, writer = await asyncio.open_connection(upstream.host, upstream.http_port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True, (reader, writer)

    def _release(self, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idle = self._idle.setdefault((upstream.host, upstream.http_port), [])
        if len(idle) < _IDLE_PER_UPSTREAM:
            idle.append((reader, writer))
        else:
            writer.close()

    def close_idle(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                with contextlib.suppress(Exception):
                    writer.close()
        self._idle.clear()


# --- gRPC -------------------------------------------------------------------------------------

def _rewrite(method: str, request: bytes, served_name: str) -> bytes:
    """Put the served name into the request message of the model-scoped RPCs."""
    from tritonclient.grpc import service_pb2

    name = method.rsplit("/", 1)[-1]
    message: Any
    if name == "ModelInfer":
        message = service_pb2.ModelInferRequest()
        message.ParseFromString(request)
        message.model_name = served_name
    elif name in ("ModelMetadata", "ModelReady"):
        message = service_pb2.ModelMetadataRequest() if name == "ModelMetadata" else service_pb2.ModelReadyRequest()
        message.ParseFromString(request)
        message.name = served_name
    else:
        return request
    out: bytes = message.SerializeToString()
    return out


class _GrpcProxy(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self._channels: dict[tuple[str, int], grpc.Channel] = {}
        self._lock = threading.Lock()
        self._rr = itertools.count()

    def _channel(self, upstream: Upstream) -> grpc.Channel:
        key = (upstream.host, upstream.grpc_port)
        with self._lock:
            channel = self._channels.get(key)
            if channel is None:
                channel = grpc.insecure_channel(f"{upstream.host}:{upstream.grpc_port}")
                self._channels[key] = channel
            return channel

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if not method.startswith(f"/{GRPC_SERVICE}/"):
            return None  # grpc answers UNIMPLEMENTED
        metadata = [(m.key, m.value) for m in handler_call_details.invocation_metadata or ()]
        model = next((str(v) for k, v in metadata if k == "seldon-model"), None)

        def refuse(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
            def abort(_request: bytes, context: grpc.ServicerContext) -> bytes:
                context.abort(code, message)
                raise AssertionError("unreachable")

            return grpc.unary_unary_rpc_method_handler(abort)

        if method.endswith("/ModelStreamInfer"):
            return refuse(grpc.StatusCode.UNIMPLEMENTED, "streaming inference is not simulated")
        if model is None:
            return refuse(grpc.StatusCode.NOT_FOUND, "no route: the seldon-model metadata (lowercase key) is missing")
        route = self._resolve(model)
        if route is None:
            return refuse(grpc.StatusCode.NOT_FOUND, f"model {model} not found in the mesh")
        if route.refusal is not None or not route.upstreams:
            return refuse(grpc.StatusCode.UNAVAILABLE, route.refusal or f"model {model} has no available replica")
        upstream = route.upstreams[next(self._rr) % len(route.upstreams)]
        channel = self._channel(upstream)
        forward_md = tuple((k, v) for k, v in metadata if not k.startswith(":") and k not in ("grpc-timeout",))

        def call(request: bytes, context: grpc.ServicerContext) -> bytes:
            stub = channel.unary_unary(method)
            remaining = context.time_remaining()
            # Without a client deadline grpc reports ~9e18 s, which overflows as an upstream timeout.
            timeout = remaining if remaining is not None and remaining < 1e6 else None
            started = time.monotonic()
            try:
                reply: bytes = stub(
                    _rewrite(method, request, route.served_name),
                    timeout=timeout,
                    metadata=forward_md,
                )
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")
                raise AssertionError("unreachable") from None
            if route.slowdown > 1.0:
                # The injected slowness itself, on this call's own server thread (see Route.slowdown).
                time.sleep((time.monotonic() - started) * (route.slowdown - 1.0))
            return reply

        return grpc.unary_unary_rpc_method_handler(call)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


class Mesh:
    """The mesh endpoint: `start()` binds free loopback ports; `http_port`/`grpc_port` say which."""

    def __init__(self, resolve: Resolver, *, host: str = HOST, grpc_workers: int = 16) -> None:
        self.host = host
        self.http_port = 0
        self.grpc_port = 0
        self._http = _HttpProxy(resolve)
        self._grpc_handler = _GrpcProxy(resolve)
        self._grpc_workers = grpc_workers
        self._grpc_server: grpc.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def requests(self) -> int:
        return self._http.requests

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            return
        server = grpc.server(ThreadPoolExecutor(max_workers=self._grpc_workers, thread_name_prefix="sim-mesh-grpc"))
        server.add_generic_rpc_handlers((self._grpc_handler,))
        self.grpc_port = server.add_insecure_port(f"{self.host}:0")
        server.start()
        self._grpc_server = server
        self._http.grpc_port = self.grpc_port
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._http.handle, self.host, 0, limit=_MAX_HEAD, backlog=1024)
                )
                self.http_port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            self._http.close_idle()
            self._server.close()
            # Open client connections: cancel their handlers so nothing is left pending.
            tasks = list(self._http.tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            loop.close()

        self._thread = threading.Thread(target=run, name="sim-mesh-http", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            raise RuntimeError(f"the mesh HTTP proxy did not start: {failure[0] if failure else 'timeout'}")

    def stop(self) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None)
            self._grpc_server = None
        self._grpc_handler.close()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None
        self._loop = None


# --- the mesh in its own process -------------------------------------------------------------------
# In-process, the mesh shares the GIL with whatever else runs there (in the sim provider: the load
# generator itself), which inflates the latency it adds. `MeshProcess` runs the same `Mesh` in a
# child process; the controller sends it the route table as one JSON line on stdin whenever it
# changes. The child exits when its stdin closes, so it never outlives its parent.

def routes_to_json(routes: dict[str, Route]) -> str:
    return json.dumps({
        name: {"served_name": r.served_name, "refusal": r.refusal, "slowdown": r.slowdown,
               "upstreams": [[u.host, u.http_port, u.grpc_port] for u in r.upstreams]}
        for name, r in routes.items()
    }, sort_keys=True)


def routes_from_json(text: str) -> dict[str, Route]:
    data = json.loads(text)
    return {
        str(name): Route(str(r["served_name"]),
                         tuple(Upstream(str(h), int(hp), int(gp)) for h, hp, gp in r.get("upstreams") or []),
                         r.get("refusal"), float(r.get("slowdown") or 1.0))
        for name, r in data.items()
    }


class MeshProcess:
    """`Mesh` in a child process: `start()`, `update(routes)`, `stop()`; same ports attributes."""

    def __init__(self, *, host: str = HOST, log_path: str | None = None) -> None:
        self.host = host
        self.http_port = 0
        self.grpc_port = 0
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._sent: str | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        import selectors

        if self.alive():
            return
        if self._log_path:
            os.makedirs(os.path.dirname(self._log_path) or ".", exist_ok=True)
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "harness.sim.mesh", "--host", self.host],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            for _ in range(10_000):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or b"\n" in line:
                    break
                if sel.select(remaining):
                    chunk = os.read(self._proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    line += chunk
        try:
            ports = json.loads(line.split(b"\n", 1)[0])
            self.http_port, self.grpc_port = int(ports["http_port"]), int(ports["grpc_port"])
        except (ValueError, KeyError, TypeError):
            code = self._proc.poll()
            self.stop()
            raise RuntimeError(
                f"the mesh process did not report its ports (exit code {code}, got {line[:200]!r})") from None
        self._sent = None

    def update(self, routes: dict[str, Route], timeout: float = 10.0) -> bool:
        """Send the route table and wait for the child to acknowledge it, so a Model reported
        available afterwards is already routable. False when the child did not answer."""
        import selectors

        text = routes_to_json(routes)
        with self._lock:
            proc = self._proc
            if text == self._sent:
                return True
            if proc is None or proc.stdin is None or proc.stdout is None:
                return False
            try:
                proc.stdin.write(text.encode() + b"\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._sent = None  # the child died; the controller restarts it
                return False
            deadline = time.monotonic() + timeout
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                for _ in range(1000):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not sel.select(remaining):
                        return False
                    ack = os.read(proc.stdout.fileno(), 64)
                    if not ack:
                        return False
                    if b"\n" in ack:
                        self._sent = text
                        return True
            return False

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: print the ports as JSON, then read route tables from stdin."""
    import argparse

    from harness.heap import freeze_startup_heap

    parser = argparse.ArgumentParser(prog="python -m harness.sim.mesh")
    parser.add_argument("--host", default=HOST)
    args = parser.parse_args(argv)
    table: dict[str, dict[str, Route]] = {"routes": {}}
    mesh = Mesh(lambda model: table["routes"].get(model), host=args.host)
    mesh.start()
    freeze_startup_heap()
    sys.stdout.write(json.dumps({"http_port": mesh.http_port, "grpc_port": mesh.grpc_port}) + "\n")
    sys.stdout.flush()
    try:
        for line in sys.stdin:  # ends when the parent closes stdin or dies
            if line.strip():
                try:
                    table["routes"] = routes_from_json(line)
                except (ValueError, KeyError, TypeError) as exc:
                    sys.stderr.write(f"mesh: ignoring a bad route table: {exc}\n")
                # The acknowledgement: the parent reports Models available only after it.
                sys.stdout.write("ok\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        mesh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
