"""gRPC unary calls over a minimal HTTP/2 client: pre-built frames out, frames parsed in.

Why not grpc.aio: per call it creates a task, a call object, metadata and status objects and runs
through the C core's completion queue; measured against one MLServer on loopback that is ~0.3-0.5
ms of client CPU per request, 5-10x the HTTP path (docs/benchmarks.md). A unary gRPC call is two
frames out (HEADERS with a header block that never changes, DATA with the pre-serialised message)
and three frames in (HEADERS, DATA, trailing HEADERS with `grpc-status`), so this client builds the
outgoing bytes once and only patches the stream id.

What it keeps of HTTP/2 and gRPC (RFC 9113, gRPC's PROTOCOL-HTTP2.md):
- the connection preface and SETTINGS exchange (ACKs sent; the server's INITIAL_WINDOW_SIZE,
  MAX_FRAME_SIZE and MAX_CONCURRENT_STREAMS respected), PING answered, GOAWAY honoured (streams above
  the last id fail, new calls go to a new connection);
- flow control both ways: our windows are opened wide up front and replenished as DATA arrives; our
  DATA waits while the server's connection or stream window is too small for it;
- HPACK decoding of every response header block (the `hpack` package) so the dynamic table stays in
  step; our own header block uses no dynamic table, so it is the same bytes for every call;
- trailers-only responses (an error before any message: one HEADERS frame with END_STREAM and
  `grpc-status`), `grpc-timeout` plus a client-side deadline that cancels the stream (RST_STREAM),
  RST_STREAM from the server, HTTP statuses other than 200 mapped as gRPC clients map them;
- bounded reads: a message over `MAX_BODY_BYTES` cancels its stream (`body_too_large`).
Connection loss fails the calls in flight as `connection_reset` (refused: `connection_refused`),
the same kinds as the HTTP path.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from hpack import Decoder

from harness.load.answers import BODY_TOO_LARGE, HEADERS_TOO_LARGE, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADER_COUNT

Callback = Callable[[str | None, float], None]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 5, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
# Our receive windows: wide open, so the server never waits on us for the bounded bodies we read.
OUR_STREAM_WINDOW = 16 * 1024 * 1024
OUR_CONNECTION_WINDOW = 1 << 30
WINDOW_REFILL = OUR_CONNECTION_WINDOW // 4  # received DATA bytes that earn the server a WINDOW_UPDATE
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_STREAM_ID = (1 << 31) - 1
HEADER_CACHE_SIZE = 64
# A frame head: 24-bit length (as a byte and a short), type, flags, stream id (RFC 9113 section 4.1).
_FRAME_HEAD = struct.Struct(">BHBBI").unpack_from
_SID = struct.Struct(">I").pack  # a stream id as it stands in a frame head
_WINDOW_UPDATE_HEAD = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00"  # 4 bytes, WINDOW_UPDATE, no flags, stream 0

GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
# gRPC's doc/http-grpc-status-mapping.md: what a client reports for a non-200 HTTP status.
HTTP_TO_GRPC = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}
# RST_STREAM error codes as gRPC clients report them (REFUSED_STREAM: the call never ran).
RST_TO_GRPC = {7: "UNAVAILABLE", 8: "CANCELLED", 11: "RESOURCE_EXHAUSTED", 12: "PERMISSION_DENIED"}


def status_kind(code: int) -> str:
    """The error kind of a gRPC status code (DEADLINE_EXCEEDED is a `timeout`, like the HTTP path's)."""
    if code == 4:
        return "timeout"
    name = GRPC_CODES[code] if 0 <= code < len(GRPC_CODES) else "UNKNOWN"
    return f"grpc_{name}"


def _number(value: bytes, otherwise: int) -> int:
    try:
        return int(value)
    except ValueError:
        return otherwise


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A literal header field without indexing, new name, no Huffman: stateless for the encoder."""
    n, v = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v


def header_block(authority: str, path: str, model: str, timeout_s: float) -> bytes:
    # Static table: index 3 is `:method: POST`, index 6 is `:scheme: http`.
    millis = max(1, int(timeout_s * 1000))
    return b"".join((
        b"\x83\x86", _literal(":path", path), _literal(":authority", authority),
        _literal("content-type", "application/grpc"), _literal("te", "trailers"),
        _literal("grpc-timeout", f"{millis}m"),
        # gRPC metadata keys must be lowercase; the Seldon mesh routes on this one.
        _literal("seldon-model", model),
    ))


def grpc_message(payload: bytes) -> bytes:
    """The length-prefixed message: uncompressed flag and a 4-byte big-endian length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class _Stream:
    __slots__ = ("callback", "chunks", "headers_seen", "http_status", "received", "sent_at")

    def __init__(self, callback: Callback, sent_at: float) -> None:
        self.callback = callback
        self.sent_at = sent_at  # the pool's sweep cancels the stream `timeout` after this (monotonic)
        self.headers_seen = False
        self.http_status = 0
        # DATA payloads as read (one, for a small answer: no copy); made at the first DATA frame
        # that is cut one by one (a repeated answer, see `_Answer`, needs none).
        self.chunks: list[bytes] | None = None
        self.received = 0


class _Answer:
    """The three frames of one whole good answer as read at the start of one read: HEADERS
    (`:status 200`), DATA, trailing HEADERS (`grpc-status 0`), all for one stream.

    A server answering the same request the same way sends the same bytes but for the stream id, so
    a later read that starts with `parts` joined around its own stream id starts with that answer
    again, which is then taken without cutting frames (what follows it, such as the server's
    WINDOW_UPDATE, is read as usual). Exact, because the header blocks are in the connection's
    header cache (they left the HPACK table as it was), and the answer is forgotten whenever that
    cache is."""

    __slots__ = ("alone", "alone_size", "body", "data_length", "increment", "parts", "size", "tail", "template")

    def __init__(self, parts: tuple[bytes, bytes, bytes, bytes], data_length: int, body: bytes,
                 tail: bytes | None) -> None:
        self.parts = parts  # the three frames without their stream ids
        self.size = sum(len(part) for part in parts) + 12
        # The answer as a %-template of its three stream ids (bytes formatting: one C call).
        self.template = b"%b".join(part.replace(b"%", b"%%") for part in parts)
        self.data_length = data_length  # DATA payload bytes, counted against our receive window
        # The message without its length prefix (checked when learnt), one object for every repeat:
        # the answer checker's memo hashes it once.
        self.body = body
        # The server's connection WINDOW_UPDATE that followed the answer (Triton grants back our
        # request's DATA after each answer), taken whole when it follows again, and its increment.
        self.tail = tail
        self.increment = int.from_bytes(tail[9:13], "big") & MAX_STREAM_ID if tail is not None else 0
        # A read that is exactly the answer and that WINDOW_UPDATE (what a quiet machine reads from
        # Triton for every call): its template and size (-1: no such read, the answer had no tail).
        self.alone = self.template + (tail or b"").replace(b"%", b"%%")
        self.alone_size = self.size + 13 if tail is not None else -1

    def with_tail(self, tail: bytes) -> _Answer:
        """The same answer, followed by the server's WINDOW_UPDATE `tail`."""
        return _Answer(self.parts, self.data_length, self.body, tail)


def learn_answer(data: bytes, cache: dict[bytes, tuple[int, int, int]]) -> _Answer | None:
    """The start of `data` as an `_Answer` when it is one whole good answer whose header blocks are
    in `cache` and whose message is one uncompressed, whole length-prefixed message; None otherwise."""
    heads: list[tuple[int, int, int, int, int]] = []
    at = 0
    while len(data) - at >= 9 and len(heads) < 3:
        high, low, kind, flags, sid = _FRAME_HEAD(data, at)
        heads.append((at, high << 16 | low, kind, flags, sid))
        at += 9 + (high << 16 | low)
    if at > len(data) or len(heads) != 3:
        return None
    (a1, _, k1, f1, s1), (a2, l2, k2, f2, s2), (a3, _, k3, f3, s3) = heads
    if (k1, f1, k2, f2, k3, f3) != (HEADERS, END_HEADERS, DATA, 0, HEADERS, END_HEADERS | END_STREAM):
        return None
    if not s1 == s2 == s3 or not s1 & MAX_STREAM_ID:
        return None
    first = cache.get(data[a1 + 9 : a2])
    last = cache.get(data[a3 + 9 : at])
    # The same conditions as the read loop's own shortcuts for these blocks.
    if first is None or first[0] > MAX_HEADER_COUNT or first[1] != 200:
        return None
    if last is None or last[0] > MAX_HEADER_COUNT or last[1] >= 0 or last[2] != 0:
        return None
    message = data[a2 + 9 : a3]
    if l2 > MAX_BODY_BYTES or not _whole_message(message):
        return None
    parts = (data[:5], data[9 : a2 + 5], data[a2 + 9 : a3 + 5], data[a3 + 9 : at])
    tail = data[at : at + 13] if len(data) - at >= 13 and data.startswith(_WINDOW_UPDATE_HEAD, at) else None
    return _Answer(parts, l2, message[5:], tail)


def _whole_message(data: bytes) -> bool:
    """One uncompressed length-prefixed message (we never offer compression), all of it."""
    return len(data) >= 5 and not data[0] and int.from_bytes(data[1:5], "big") == len(data) - 5


class _Connection(asyncio.Protocol):
    def __init__(self, pool: RawGrpcPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.decoder = Decoder()
        self.decoder.max_allowed_table_size = 1 << 16
        self.streams: dict[int, _Stream] = {}
        # Streams of calls answered by a repeated answer (no frame touched them): reused by `send`
        # rather than made anew, at most one per call in flight.
        self.spare: list[_Stream] = []
        self.next_id = 1
        self.send_window = DEFAULT_WINDOW  # connection-level, granted by the server
        self.stream_window = DEFAULT_WINDOW  # the server's initial window for each new stream
        self.max_frame = DEFAULT_MAX_FRAME
        self.max_streams = 1 << 31
        self.unacked = 0  # DATA bytes received since our last connection WINDOW_UPDATE
        self.goaway = False
        self.header_stream = 0  # stream of a header block continued in CONTINUATION frames
        self.header_flags = 0
        self.header_block = bytearray()
        self.closed = False
        # Whether a new call may open a stream as far as the connection's state goes (open, no
        # GOAWAY, stream ids left, our message within the server's stream window); the stream count
        # and the connection window are tested per call. Kept by `_recheck` whenever one changes.
        self.ready = False
        self.header_cache: dict[bytes, tuple[int, int, int]] = {}
        self.answer: _Answer | None = None  # the bytes of the last whole good answer read at once

    # --- outgoing --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._recheck()
        settings = (
            (2).to_bytes(2, "big") + (0).to_bytes(4, "big")  # ENABLE_PUSH 0
            + (4).to_bytes(2, "big") + OUR_STREAM_WINDOW.to_bytes(4, "big")  # INITIAL_WINDOW_SIZE
        )
        self.transport.write(PREFACE + frame(SETTINGS, 0, 0, settings)
                             + frame(WINDOW_UPDATE, 0, 0, (OUR_CONNECTION_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big")))

    def _recheck(self) -> None:
        self.ready = (not self.goaway and not self.closed and self.transport is not None
                      and self.next_id <= MAX_STREAM_ID and self.pool.size <= self.stream_window)

    def can_send(self) -> bool:
        """Whether a call can go out now (RFC 9113: SETTINGS_MAX_CONCURRENT_STREAMS, section 6.5.2;
        flow control, section 5.2)."""
        return self.ready and len(self.streams) < self.max_streams and self.pool.size <= self.send_window

    def send(self, callback: Callback) -> None:
        assert self.transport is not None
        pool = self.pool
        sid = self.next_id
        self.next_id = sid + 2
        if sid + 2 > MAX_STREAM_ID:
            self._recheck()  # the last stream id of this connection (RFC 9113 section 5.1.1)
        if pool.size <= self.max_frame:
            sid_bytes = _SID(sid)
            out = pool.call % (sid_bytes, sid_bytes)
        else:
            message = pool.message
            parts = [pool.headers_head + sid.to_bytes(4, "big") + pool.block]
            for at in range(0, len(message), self.max_frame):
                chunk = message[at : at + self.max_frame]
                last = at + self.max_frame >= len(message)
                parts.append(frame(DATA, END_STREAM if last else 0, sid, chunk))
            out = b"".join(parts)
        self.send_window -= pool.size
        spare = self.spare
        if spare:
            stream = spare.pop()
            stream.callback = callback
            stream.sent_at = time.monotonic()
        else:
            stream = _Stream(callback, time.monotonic())
        self.streams[sid] = stream
        if pool.sweeper is None:
            pool.arm()
        self.transport.write(out)

    def _timed_out(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            self._reset(sid, 8)  # CANCEL
            self._finish(sid, "timeout")

    def _reset(self, sid: int, code: int) -> None:
        if self.transport is not None:
            self.transport.write(frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")))

    def _finish(self, sid: int, kind: str | None) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        pool = self.pool
        pool.active -= 1
        stream.callback(kind, stream.sent_at)
        if pool.waiting:
            pool._pump()

    # --- incoming --------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is not None and len(data) == answer.alone_size and not self.buffer and not self.header_stream:
            # One repeated answer (see `_Answer`) and the server's WINDOW_UPDATE after it, alone in
            # the read: the loop below would take it too, at twice the Python.
            sid_bytes = data[5:9]
            sid = int.from_bytes(sid_bytes, "big")
            stream = self.streams.get(sid)
            if (stream is not None and not stream.headers_seen and stream.chunks is None
                    and data == answer.alone % (sid_bytes, sid_bytes, sid_bytes)):
                del self.streams[sid]
                self.unacked += answer.data_length
                self.send_window += answer.increment
                pool = self.pool
                pool.active -= 1
                callback, sent_at = stream.callback, stream.sent_at
                self.spare.append(stream)
                checker = pool.checker
                callback(None if checker is None else checker(answer.body), sent_at)
                if pool.waiting:
                    pool._pump()
                if self.unacked >= WINDOW_REFILL:
                    self._replenish()
                return
        # Frames are cut from `data` itself (bytes: no copy into a buffer first); only a frame torn
        # across reads waits in `buffer`, and then the next read is joined to it.
        buffer = self.buffer
        streams = self.streams
        whole = not buffer and not self.header_stream
        at = 0
        if whole and answer is not None:
            # Answers that repeat the last good one (see `_Answer`): what their frames would have
            # done, at once. Per answer this was most of the client's own work against a real
            # Triton, which sends each answer in its own read; so it is kept to one frame of Python.
            pool = self.pool
            checker = pool.checker
            size = answer.size
            template = answer.template
            body = answer.body
            tail = answer.tail
            spare = self.spare
            end = len(data)
            while end - at >= size:
                sid_bytes = data[at + 5 : at + 9]
                # No mask of the reserved bit: with it set, the id is no stream of ours (all below
                # 2^31), and the frame loop below reads the frames as RFC 9113 section 4.1 says.
                sid = int.from_bytes(sid_bytes, "big")
                stream = streams.get(sid)
                if (stream is None or stream.headers_seen or stream.chunks is not None
                        or not data.startswith(template % (sid_bytes, sid_bytes, sid_bytes), at)):
                    break
                del streams[sid]
                at += size
                self.unacked += answer.data_length
                pool.active -= 1
                callback, sent_at = stream.callback, stream.sent_at
                spare.append(stream)  # untouched by any frame: as new, for the next call's `send`
                callback(None if checker is None else checker(body), sent_at)
                if self.closed:
                    return
                if tail is not None and data.startswith(tail, at):
                    # The server's connection WINDOW_UPDATE that followed this answer before.
                    at += 13
                    self.send_window += answer.increment
                elif end - at >= 13 and data.startswith(_WINDOW_UPDATE_HEAD, at):
                    # Another increment: as the frame loop takes it.
                    self.send_window += int.from_bytes(data[at + 9 : at + 13], "big") & MAX_STREAM_ID
                    at += 13
                    if tail is None and at == end == size + 13:
                        # A read of this answer and a WINDOW_UPDATE alone, where the answer was
                        # learnt from a read without one: the answer learns it, so the next such
                        # read takes the shortcut at the top. Without this, a run whose first
                        # learnt read lacked the grant cut every later answer here instead (seen
                        # against Triton: 1.3x the HTTP client's CPU per call, not 1.1x).
                        self.answer = answer.with_tail(data[at - 13 : at])
                if pool.waiting:
                    pool._pump()  # calls that waited for this stream's place or for window
            if self.unacked >= WINDOW_REFILL:
                self._replenish()
            if at == end:
                return
            if at:
                whole = False  # the answer is known: nothing to learn from the rest
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        end = len(data)
        cache = self.header_cache
        while end - at >= 9:
            high, low, kind, flags, sid = _FRAME_HEAD(data, at)
            length = high << 16 | low
            if length > DEFAULT_MAX_FRAME:  # we never raise SETTINGS_MAX_FRAME_SIZE above its default
                self._protocol_error(f"a frame of {length} bytes exceeds our {DEFAULT_MAX_FRAME}-byte maximum")
                return
            stop = at + 9 + length
            if stop > end:
                break
            payload = data[at + 9 : stop]
            at = stop
            sid &= MAX_STREAM_ID
            # The frames of a good answer (HEADERS, DATA, trailing HEADERS whose blocks are in the
            # cache, the server's WINDOW_UPDATE) are taken here, in the read loop: per answer this
            # was most of the client's own work. Everything else goes to `_headers`, `_data` and
            # `_frame`, which the cases here only shortcut.
            if self.header_stream:
                self._frame(kind, flags, sid, payload)
            elif kind == HEADERS and flags & (PADDED | PRIORITY | END_HEADERS) == END_HEADERS:
                stream = streams.get(sid)
                summary = cache.get(payload)
                if stream is None or summary is None or summary[0] > MAX_HEADER_COUNT:
                    self._headers(sid, flags, payload)
                elif not stream.headers_seen and summary[1] == 200 and not flags & END_STREAM:
                    stream.headers_seen = True  # the answer's first headers: `:status 200`, no status
                    stream.http_status = 200
                elif stream.headers_seen and flags & END_STREAM and summary[1] < 0 and summary[2] == 0:
                    self._finish(sid, self._answer(stream.chunks))  # trailers: `grpc-status 0`
                else:
                    self._headers(sid, flags, payload)
            elif kind == DATA:
                stream = streams.get(sid)
                if flags or stream is None or stream.received + length > MAX_BODY_BYTES or (
                        self.unacked + length >= WINDOW_REFILL):
                    self._data(flags, sid, payload)
                else:
                    self.unacked += length
                    if stream.chunks is None:
                        stream.chunks = [payload]
                    else:
                        stream.chunks.append(payload)
                    stream.received += length
            elif kind == WINDOW_UPDATE and not sid and length == 4:
                self.send_window += int.from_bytes(payload, "big") & MAX_STREAM_ID
                if self.pool.waiting:
                    self.pool._pump()
            else:
                self._frame(kind, flags, sid, payload)
            if self.closed:
                return
        if at < end:
            buffer += data[at:]
        elif whole and len(data) < 1024:
            # A read that was something else (two answers, an error) keeps the answer known before.
            self.answer = learn_answer(data, self.header_cache) or self.answer

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        # The frames of every call (HEADERS, DATA, trailing HEADERS) are tested first.
        if self.header_stream and kind != CONTINUATION:
            self._protocol_error("a header block was interrupted by another frame")
        elif kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._headers(sid, flags, payload)
            else:
                self.header_block = bytearray(payload)
                self.header_flags = flags
                self.header_stream = sid
        elif kind == DATA:
            self._data(flags, sid, payload)
        elif kind == CONTINUATION:
            if sid != self.header_stream:
                self._protocol_error("CONTINUATION on another stream")
                return
            self.header_block += payload
            if len(self.header_block) > MAX_HEAD_BYTES:
                self._protocol_error(f"a header block over {MAX_HEAD_BYTES} bytes", HEADERS_TOO_LARGE)
                return
            if flags & END_HEADERS:
                self.header_stream = 0
                self._headers(sid, self.header_flags, bytes(self.header_block))
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if not flags & ACK and self.transport is not None:
                self.transport.write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & MAX_STREAM_ID
            if sid == 0:
                self.send_window += increment
                self.pool._released(self)
        elif kind == RST_STREAM:
            code = int.from_bytes(payload[:4], "big")
            self._finish(sid, f"grpc_{RST_TO_GRPC.get(code, 'INTERNAL')}")
        elif kind == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & MAX_STREAM_ID
            self.goaway = True
            self._recheck()
            for stream_id in [s for s in self.streams if s > last]:
                self._finish(stream_id, "grpc_UNAVAILABLE")  # never processed: safe to count as refused
            self.pool._gone(self)
        elif kind == PUSH_PROMISE:
            self._protocol_error("PUSH_PROMISE although push is disabled")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 asks.

    def _settings(self, payload: bytes) -> None:
        for at in range(0, len(payload) - 5, 6):
            key = int.from_bytes(payload[at : at + 2], "big")
            value = int.from_bytes(payload[at + 2 : at + 6], "big")
            if key == 3:
                self.max_streams = value
            elif key == 4:
                # A new initial window applies to open streams too; ours have sent all their DATA.
                self.stream_window = value
            elif key == 5:
                self.max_frame = value
        self._recheck()
        if self.transport is not None:
            self.transport.write(frame(SETTINGS, ACK, 0, b""))
        self.pool._released(self)

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        self.unacked += len(payload)
        if self.unacked >= WINDOW_REFILL:
            self._replenish()
        stream = self.streams.get(sid)
        if stream is None:
            return
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if stream.chunks is None:
            stream.chunks = [payload]
        else:
            stream.chunks.append(payload)
        stream.received += len(payload)
        if stream.received > MAX_BODY_BYTES + 5:
            self._reset(sid, 8)
            self._finish(sid, BODY_TOO_LARGE)
            return
        if flags & END_STREAM:
            # A gRPC response always ends with trailers; a stream that ends on DATA lost its status.
            self._finish(sid, "grpc_INTERNAL")

    def _replenish(self) -> None:
        """Grant the server back the DATA bytes received since the last grant, on the connection
        (RFC 9113 section 6.9: the only flow control we do for receiving, our streams' windows
        being opened wider than any answer we read at the start)."""
        if self.transport is not None:
            self.transport.write(frame(WINDOW_UPDATE, 0, 0, self.unacked.to_bytes(4, "big")))
            self.unacked = 0

    def _table_version(self) -> tuple[int, int, int]:
        table = self.decoder.header_table
        entries = table.dynamic_entries
        return len(entries), id(entries[0]) if entries else 0, table.maxsize

    def _summary(self, block: bytes) -> tuple[int, int, int] | None:
        """What a response header block says: (number of fields, `:status` or -1, `grpc-status` or
        -1); None when it does not decode. A non-numeric status reads as 0 (HTTP, mapped to UNKNOWN)
        or 2 (gRPC UNKNOWN).

        HPACK-decoding in pure Python costs more than the rest of a call (servers send Huffman
        literals). A block that left the dynamic table untouched decodes to the same fields for as
        long as the table stays as it was, so such blocks' summaries are cached, and the cache is
        dropped whenever a block changes the table (an insertion, an eviction or a size update)."""
        cached = self.header_cache.get(block)
        if cached is not None:
            return cached
        before = self._table_version()
        try:
            fields = list(self.decoder.decode(block, raw=True))
        except Exception:  # hpack raises its own errors; any of them breaks the connection state
            return None
        http_status = grpc_status = -1
        for name, value in fields:
            if name == b":status":
                http_status = _number(bytes(value), 0)
            elif name == b"grpc-status":
                grpc_status = _number(bytes(value), 2)
        summary = (len(fields), http_status, grpc_status)
        if self._table_version() == before:
            if len(self.header_cache) < HEADER_CACHE_SIZE:
                self.header_cache[block] = summary
        else:
            self.header_cache.clear()
            self.answer = None  # its header blocks are no longer known to leave the table alone
        return summary

    def _headers(self, sid: int, flags: int, block: bytes) -> None:
        summary = self.header_cache.get(block) or self._summary(block)
        if summary is None:
            self._protocol_error("undecodable header block")
            return
        stream = self.streams.get(sid)
        if stream is None:
            return
        count, http_status, status = summary
        if count > MAX_HEADER_COUNT:
            if not flags & END_STREAM:
                self._reset(sid, 8)
            self._finish(sid, HEADERS_TOO_LARGE)
            return
        if http_status >= 0:
            stream.http_status = http_status
        if not stream.headers_seen:
            stream.headers_seen = True
            if stream.http_status != 200:
                if not flags & END_STREAM:
                    self._reset(sid, 8)
                self._finish(sid, f"grpc_{HTTP_TO_GRPC.get(stream.http_status, 'UNKNOWN')}")
                return
        if not flags & END_STREAM:
            return
        if status < 0:
            self._finish(sid, "grpc_INTERNAL")
        elif status != 0:
            self._finish(sid, status_kind(status))
        else:
            self._finish(sid, self._answer(stream.chunks))

    def _answer(self, chunks: list[bytes] | None) -> str | None:
        data = b"" if chunks is None else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not _whole_message(data):
            # No message, a compressed one (we never offer compression) or a torn length prefix.
            return "grpc_INTERNAL"
        checker = self.pool.checker
        return checker(data[5:]) if checker is not None else None

    def _protocol_error(self, why: str, kind: str = "connection_reset") -> None:
        if self.transport is not None:
            self.transport.write(frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") + (1).to_bytes(4, "big") + why.encode()))
            self.transport.close()
        self._fail_all(kind)

    def _fail_all(self, kind: str) -> None:
        self.closed = True
        self._recheck()
        for sid in list(self.streams):
            self._finish(sid, kind)
        self.pool._gone(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._recheck()
        self._fail_all("connection_reset")


class RawGrpcPool:
    """Unary ModelInfer calls with the pre-serialised request `payload`; the interface of `GrpcPool`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, path: str, payload: bytes,
                 timeout: float, model: str, limit: int, checker: Callable[[bytes], str | None] | None = None) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.timeout = timeout
        self.limit = limit
        self.checker = checker
        self.message = grpc_message(payload)
        self.block = header_block(f"{host}:{port}", path, model, timeout)
        self.headers_head = len(self.block).to_bytes(3, "big") + bytes((HEADERS, END_HEADERS))
        self.data_head = len(self.message).to_bytes(3, "big") + bytes((DATA, END_STREAM))
        # A call in one frame each: headers_head, stream id, `between`, stream id, message.
        self.between = self.block + self.data_head
        self.size = len(self.message)
        # The same as a %-template of the two stream ids (bytes formatting, RFC 9113 section 4.1's
        # frame heads around them): one C call per call.
        self.call = b"%b".join(part.replace(b"%", b"%%") for part in (
            self.headers_head, self.between, self.message))
        self.conn: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.waiting: deque[Callback] = deque()
        self.active = 0
        self.closed = False
        self.others: set[_Connection] = set()  # connections draining after GOAWAY
        # Timeouts: one sweep timer for the pool, not one per call (as the HTTP pool): a call is
        # cancelled between `timeout` and `timeout + sweep_s` after its send.
        self.sweep_s = max(0.005, min(0.05, timeout / 10.0))
        self.sweeper: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self.sweeper is None and not self.closed:
            self.sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    def _sweep(self) -> None:
        self.sweeper = None
        now = time.monotonic()
        busy = False
        for conn in [c for c in (self.conn, *self.others) if c is not None]:
            # Streams are kept in send order and share one timeout: the expired ones come first.
            expired = []
            for sid, stream in conn.streams.items():
                if now - stream.sent_at < self.timeout:
                    break
                expired.append(sid)
            for sid in expired:
                conn._timed_out(sid)
            busy = busy or bool(conn.streams)
        if busy:
            self.arm()

    def submit(self, callback: Callback) -> None:
        conn = self.conn
        # `can_send`, inlined: this runs for every call.
        if (conn is not None and conn.ready and not self.waiting and self.active < self.limit
                and len(conn.streams) < conn.max_streams and self.size <= conn.send_window):
            self.active += 1
            conn.send(callback)
            return
        self.waiting.append(callback)
        self._pump()

    def _pump(self) -> None:
        conn = self.conn
        if conn is None or conn.closed or conn.goaway:
            if self.connecting is None and not self.closed and self.waiting:
                self.connecting = self.loop.create_task(self._connect())
            return
        size = self.size
        while self.waiting and self.active < self.limit and conn.can_send():
            self.active += 1
            conn.send(self.waiting.popleft())
        if self.waiting and size > conn.stream_window:
            # The server's per-stream window can never take our message: fail rather than wait forever.
            waiting, self.waiting = self.waiting, deque()
            now = time.monotonic()
            for callback in waiting:
                callback("grpc_RESOURCE_EXHAUSTED", now)

    async def _connect(self) -> None:
        started = time.monotonic()
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), self.host, self.port), timeout=self.timeout)
        except (TimeoutError, OSError) as exc:
            from harness.load.clients import classify_os_error

            self.connecting = None
            kind = classify_os_error(exc)
            # Every waiting call fails once; the next submit tries to connect again.
            waiting, self.waiting = self.waiting, deque()
            for callback in waiting:
                callback(kind, started)
            return
        self.connecting = None
        self.conn = conn
        self._pump()

    def _released(self, conn: _Connection) -> None:
        if self.waiting:
            self._pump()

    def _gone(self, conn: _Connection) -> None:
        if conn is self.conn:
            self.conn = None
        self._pump()

    async def prewarm(self) -> None:
        """Open the connection ahead of the run (the HTTP pool prewarms too); failures are left to the run."""
        if self.conn is None and self.connecting is None:
            self.connecting = self.loop.create_task(self._connect())
        task = self.connecting
        if task is not None:
            await asyncio.wait([task], timeout=min(self.timeout, 2.0))

    async def aclose(self) -> None:
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        if self.connecting is not None:
            self.connecting.cancel()
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None

