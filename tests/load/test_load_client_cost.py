"""The cheap per-request paths of the load clients give exactly what the general paths give.

The HTTP client parses a response head once per distinct head and takes a one-read fast path; the
raw gRPC client cuts frames from the read bytes, caches header-block summaries and builds each call
from pre-encoded parts; the worker counts latencies into histogram buckets inline. Each is checked
here against the general path or the plain construction it replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hpack import Encoder

from harness.load import worker as worker_module
from harness.load.answers import BODY_TOO_LARGE, HEADERS_TOO_LARGE, MAX_BODY_BYTES, AnswerChecker
from harness.load.clients import HttpPool, _HttpConnection, parse_head
from harness.load.generator import record_us
from harness.load.grpc_raw import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    RawGrpcPool,
    _Connection,
    frame,
    grpc_message,
    header_block,
)
from harness.load.spec import parse_endpoint
from harness.load.worker import Worker, WorkerPlan

BODY = b'{"model_name":"simple","outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[1],"data":[2]}]}'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode()


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_parse_head() -> None:
    assert parse_head(HEAD) == (200, True, len(BODY), False)
    assert parse_head(b"HTTP/1.1 503 Busy\r\nConnection: close\r\ncontent-length: 0") == (503, False, 0, False)
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked") == (200, True, -1, True)
    assert parse_head(b"HTTP/1.1 200 OK") == (200, True, -1, False)
    assert parse_head(b"HTTP/1.1 2x0 OK") == "http_bad_response"
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: ten") == "http_bad_response"
    assert parse_head(HEAD.replace(str(len(BODY)).encode(), str(MAX_BODY_BYTES + 1).encode())) == BODY_TOO_LARGE
    assert parse_head(b"HTTP/1.1 200 OK" + b"\r\nX: y" * 101) == HEADERS_TOO_LARGE


def _http(loop: asyncio.AbstractEventLoop, model: str = "simple") -> tuple[HttpPool, _HttpConnection, list[Any]]:
    target = parse_endpoint("http://127.0.0.1:1", "http")
    pool = HttpPool(loop, target, b"POST / HTTP/1.1\r\n\r\n", 10.0, 1, AnswerChecker(model).http)
    conn = _HttpConnection(pool)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    pool.open, pool.idle = 1, [conn]
    done: list[Any] = []
    return pool, conn, done


@pytest.mark.parametrize("reads", [
    [HEAD + b"\r\n\r\n" + BODY],  # one read: the fast path once the head is known
    [HEAD + b"\r\n\r\n" + BODY[:10], BODY[10:]],  # the body torn across reads
    [HEAD[:20], HEAD[20:] + b"\r\n\r\n" + BODY],  # the head torn across reads
])
def test_http_fast_path_answers_as_the_general_path(loop: asyncio.AbstractEventLoop, reads: list[bytes]) -> None:
    for model, kind in (("simple", None), ("other", "bad_answer")):
        pool, conn, done = _http(loop, model)
        for _ in range(3):  # the first parses the head, the next ones find it in the memo
            pool.submit(lambda k, sent, done=done: done.append(k))
            for data in reads:
                conn.data_received(data)
        assert done == [kind] * 3 and pool.idle == [conn] and HEAD in pool.heads
        assert conn.transport is not None and not conn.transport.closed  # type: ignore[attr-defined]
    pool, conn, done = _http(loop)
    refused = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno"
    for _ in range(2):
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        pool.open, pool.idle = 1, [conn]
        pool.submit(lambda k, sent: done.append(k))
        conn.data_received(refused)
        assert conn.transport.closed and pool.idle == []  # type: ignore[union-attr]
    assert done == ["http_503", "http_503"]


def _worker(monkeypatch: pytest.MonkeyPatch, now: list[float]) -> tuple[Worker, list[Any]]:
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: now[0])
    target = parse_endpoint("http://127.0.0.1:1", "http")
    plan = WorkerPlan(index=0, count=1, protocol="http", target=target, endpoint="x", model="m", payload=b"",
                      mode="open", rate=1.0, concurrency=None, poisson=False, seed=None, start_at=0.0, warmup_s=0.0,
                      window_s=1000.0, max_windows=1, timeout_s=10.0, dead_after_s=10.0)
    sent: list[Any] = []

    class Pool:
        def submit(self, callback: Any) -> None:
            sent.append(callback)

    worker = Worker(plan, lambda record: None, lambda: False)
    worker.pool = Pool()  # type: ignore[assignment]
    return worker, sent


def test_worker_buckets_latencies_as_record_us(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    worker, sent = _worker(monkeypatch, now)
    expected: dict[int, int] = {}
    latencies = [0.0, 1e-7, 0.000_5, 0.002_047, 0.002_048, 0.002_049, 0.123_456_7, 7.5, 4000.0]
    for i, latency in enumerate(latencies):
        intended = 10.0 + i
        worker._submit(intended)
        now[0] = intended + latency
        sent[-1](None, intended)  # sent on time: timed from the intended send
        record_us(expected, latency)
    window = worker.windows[0]
    assert window.histogram == expected and window.ok == len(latencies) and window.late == 0
    # Open loop: a late send is still timed from its intended time, and counted late.
    worker._submit(100.0)
    now[0] = 100.5
    sent[-1](None, 100.01)
    record_us(expected, 0.5)
    assert window.histogram == expected and window.late == 1


def test_grpc_call_bytes_are_the_two_frames(loop: asyncio.AbstractEventLoop) -> None:
    payload = b"\x0a\x06simple" + bytes(range(40))
    pool = RawGrpcPool(loop, "127.0.0.1", 1, "/inference.GRPCInferenceService/ModelInfer", payload, 10.0,
                       "simple", 8, None)
    conn = _Connection(pool)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    pool.conn = conn
    for sid in (1, 3, 5):
        pool.submit(lambda k, sent: None)
        block = header_block("127.0.0.1:1", "/inference.GRPCInferenceService/ModelInfer", "simple", 10.0)
        assert conn.transport.written[-1] == (  # type: ignore[union-attr]
            frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, END_STREAM, sid, grpc_message(payload)))
    pool.sweeper.cancel()  # type: ignore[union-attr]


def _answer_frames(encoder: Encoder, sid: int, status: bytes = b"0", message: bytes = b"\x0a\x06simple",
                   extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    head = encoder.encode([(":status", "200"), ("content-type", "application/grpc"), *extra])
    trailers = encoder.encode([("grpc-status", status)])
    return (frame(HEADERS, END_HEADERS, sid, head) + frame(DATA, 0, sid, grpc_message(message))
            + frame(HEADERS, END_HEADERS | END_STREAM, sid, trailers))


def _grpc(loop: asyncio.AbstractEventLoop) -> tuple[RawGrpcPool, _Connection]:
    pool = RawGrpcPool(loop, "127.0.0.1", 1, "/p", b"x", 10.0, "simple", 8, lambda raw: None if raw else "empty")
    conn = _Connection(pool)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    pool.conn = conn
    return pool, conn


@pytest.mark.parametrize("split", [0, 1, 9, 10, 30])
def test_grpc_answers_in_one_read_or_torn(loop: asyncio.AbstractEventLoop, split: int) -> None:
    pool, conn = _grpc(loop)
    encoder = Encoder()
    done: list[Any] = []
    for status in (b"0", b"0", b"14", b"x"):  # the repeats come from the header cache
        sid = conn.next_id
        pool.submit(lambda k, sent: done.append(k))
        data = _answer_frames(encoder, sid, status)
        cut = split or len(data)
        conn.data_received(data[:cut])
        if cut < len(data):
            conn.data_received(data[cut:])
        assert not conn.streams and not conn.buffer
    # A non-numeric grpc-status is UNKNOWN (it used to raise inside data_received).
    assert done == [None, None, "grpc_UNAVAILABLE", "grpc_UNKNOWN"]
    pool.sweeper.cancel()  # type: ignore[union-attr]


def test_grpc_a_repeated_answer_is_taken_whole_until_the_hpack_table_changes(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import grpc_raw

    cut: list[int] = []  # frames cut one by one
    head = grpc_raw._FRAME_HEAD
    monkeypatch.setattr(grpc_raw, "_FRAME_HEAD", lambda data, at: (cut.append(at), head(data, at))[1])
    pool, conn = _grpc(loop)
    encoder = Encoder()
    done: list[Any] = []
    window = conn.send_window

    def answer(data: bytes) -> None:
        pool.submit(lambda k, sent: done.append(k))
        conn.data_received(data + frame(8, 0, 0, (100).to_bytes(4, "big")))  # with the server's WINDOW_UPDATE

    answer(_answer_frames(encoder, 1))  # first: HPACK inserts, nothing cached yet
    answer(_answer_frames(encoder, 3))  # second: cached blocks, learnt as a whole answer
    assert conn.answer is not None
    before = len(cut)
    answer(_answer_frames(encoder, 5))  # third: the same bytes but for the stream id
    assert len(cut) == before and done == [None, None, None] and not conn.streams  # no frame cut one by one
    assert conn.send_window == window - 3 * len(grpc_message(b"x")) + 300
    # A header that enters the HPACK table changes what the cached blocks mean: everything cached goes.
    answer(_answer_frames(encoder, 7, extra=(("x-new", "1"),)))
    assert conn.answer is None and done[-1] is None
    answer(_answer_frames(encoder, 9, status=b"13"))
    assert done[-1] == "grpc_INTERNAL" and not conn.streams
    pool.sweeper.cancel()  # type: ignore[union-attr]


_WINDOW_UPDATE = frame(8, 0, 0, (7).to_bytes(4, "big"))  # the server's grant after each answer, as Triton's


def _repeating(loop: asyncio.AbstractEventLoop, checked: list[bytes]) -> tuple[RawGrpcPool, _Connection, Encoder]:
    """A connection that has learnt a whole answer (the second read of the same answer)."""
    pool, conn = _grpc(loop)
    pool.checker = lambda raw: (checked.append(raw), None)[1]
    encoder = Encoder()
    for _ in range(2):
        sid = conn.next_id
        pool.submit(lambda k, sent: None)
        conn.data_received(_answer_frames(encoder, sid) + _WINDOW_UPDATE)
    assert conn.answer is not None and conn.answer.tail == _WINDOW_UPDATE
    return pool, conn, encoder


def test_grpc_a_repeated_answer_runs_no_other_method_and_checks_one_body_object(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[bytes] = []
    pool, conn, encoder = _repeating(loop, checked)
    calls: list[str] = []
    for name in ("_finish", "_answer", "_frame", "_headers", "_data"):
        method = getattr(_Connection, name)
        monkeypatch.setattr(_Connection, name, lambda self, *a, _m=method, _n=name: (calls.append(_n), _m(self, *a))[1])
    done: list[Any] = []
    window = conn.send_window
    data = b""
    for _ in range(3):  # three answers in one read, each followed by the server's WINDOW_UPDATE
        data += _answer_frames(encoder, conn.next_id) + _WINDOW_UPDATE
        pool.submit(lambda k, sent: done.append(k))
    conn.data_received(data)
    assert done == [None] * 3 and not conn.streams and calls == []
    assert conn.send_window == window - 3 * len(grpc_message(b"x")) + 3 * 7
    # The checker is given the learnt body itself (its hash is computed once), the message's bytes.
    assert len({id(raw) for raw in checked[-3:]}) == 1 and checked[-1] == b"\x0a\x06simple"
    pool.sweeper.cancel()  # type: ignore[union-attr]


@pytest.mark.parametrize("split", [1, 5, 9, 13, 20, -13, -5, -1])
def test_grpc_repeated_answers_torn_across_reads(loop: asyncio.AbstractEventLoop, split: int) -> None:
    checked: list[bytes] = []
    pool, conn, encoder = _repeating(loop, checked)
    done: list[Any] = []
    window = conn.send_window
    for _ in range(3):
        data = _answer_frames(encoder, conn.next_id) + _WINDOW_UPDATE
        pool.submit(lambda k, sent: done.append(k))
        conn.data_received(data[:split])
        conn.data_received(data[split:])
        assert not conn.buffer
    assert done == [None] * 3 and not conn.streams
    assert conn.send_window == window - 3 * len(grpc_message(b"x")) + 3 * 7
    pool.sweeper.cancel()  # type: ignore[union-attr]


def test_grpc_streams_reused_only_when_no_frame_touched_them(loop: asyncio.AbstractEventLoop) -> None:
    pool, conn, encoder = _repeating(loop, [])
    pool.submit(lambda k, sent: None)
    first = conn.streams[conn.next_id - 2]
    conn.data_received(_answer_frames(encoder, conn.next_id - 2) + _WINDOW_UPDATE)
    pool.submit(lambda k, sent: None)
    assert conn.streams[conn.next_id - 2] is first  # the repeated answer left it as new
    sid = conn.next_id - 2
    conn.data_received(_answer_frames(encoder, sid)[:30])  # torn: HEADERS cut on its own
    assert first.headers_seen
    conn.data_received(_answer_frames(encoder, sid)[30:])
    pool.submit(lambda k, sent: None)
    again = conn.streams[conn.next_id - 2]
    assert again is not first and not again.headers_seen and again.chunks is None
    pool.sweeper.cancel()  # type: ignore[union-attr]


def test_grpc_window_granted_back_from_repeated_answers(loop: asyncio.AbstractEventLoop,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import grpc_raw

    # RFC 9113 section 6.9.1: DATA counts against our connection window, which we open by
    # WINDOW_UPDATE; repeated answers are counted as their frames would be.
    monkeypatch.setattr(grpc_raw, "WINDOW_REFILL", 40)
    pool, conn, encoder = _repeating(loop, [])
    transport: Any = conn.transport
    before = len(transport.written)
    data = b""
    for _ in range(3):
        data += _answer_frames(encoder, conn.next_id) + _WINDOW_UPDATE
        pool.submit(lambda k, sent: None)
    conn.data_received(data)
    grants = [w for w in transport.written[before:] if w[3] == 8]
    assert grants and conn.unacked == 0
    granted = sum(int.from_bytes(w[9:13], "big") for w in transport.written if w[3] == 8 and len(w) == 13)
    assert granted == 5 * len(grpc_message(b"\x0a\x06simple"))  # every DATA byte of the 5 answers
    pool.sweeper.cancel()  # type: ignore[union-attr]


def test_grpc_calls_go_out_only_while_the_connection_may_open_streams(loop: asyncio.AbstractEventLoop) -> None:
    """`submit` tests a kept `ready` flag instead of the connection's whole state: each change of
    that state must reach the flag (RFC 9113 sections 5.1.1, 6.5.2, 6.8)."""
    from harness.load.grpc_raw import GOAWAY, MAX_STREAM_ID, SETTINGS

    done: list[Any] = []
    pool, conn = _grpc(loop)
    assert conn.ready
    conn.next_id = MAX_STREAM_ID  # the last stream id a client may use
    pool.submit(lambda k, sent: done.append(k))
    assert MAX_STREAM_ID in conn.streams and not conn.ready
    pool.submit(lambda k, sent: done.append(k))
    assert len(pool.waiting) == 1 and len(conn.streams) == 1
    pool.sweeper.cancel()  # type: ignore[union-attr]

    pool, conn = _grpc(loop)
    conn.data_received(frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (3).to_bytes(4, "big")))  # a 3-byte window
    assert not conn.ready
    pool.submit(lambda k, sent: done.append(k))
    assert done == ["grpc_RESOURCE_EXHAUSTED"] and not conn.streams  # can never fit: failed, not kept waiting
    conn.data_received(frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (65_535).to_bytes(4, "big")))
    assert conn.ready

    conn.data_received(frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") + (0).to_bytes(4, "big")))
    assert not conn.ready and pool.conn is None
    assert pool.connecting is None  # nothing waits: no new connection yet
    _, conn = _grpc(loop)
    conn.connection_lost(None)
    assert not conn.ready


def test_grpc_a_read_of_one_repeated_answer_alone(loop: asyncio.AbstractEventLoop,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import grpc_raw

    checked: list[bytes] = []
    pool, conn, encoder = _repeating(loop, checked)
    cut: list[int] = []
    head = grpc_raw._FRAME_HEAD
    monkeypatch.setattr(grpc_raw, "_FRAME_HEAD", lambda data, at: (cut.append(at), head(data, at))[1])
    done: list[Any] = []
    window = conn.send_window
    pool.submit(lambda k, sent: done.append(k))
    conn.data_received(_answer_frames(encoder, conn.next_id - 2) + _WINDOW_UPDATE)
    assert done == [None] and cut == [] and not conn.streams and checked[-1] is conn.answer.body  # type: ignore[union-attr]
    assert conn.send_window == window - len(grpc_message(b"x")) + 7
    # The same size but other bytes (another message): cut frame by frame, the checker sees them.
    pool.submit(lambda k, sent: done.append(k))
    conn.data_received(_answer_frames(encoder, conn.next_id - 2, message=b"\x0a\x06simplf") + _WINDOW_UPDATE)
    assert done == [None, None] and cut and checked[-1] == b"\x0a\x06simplf" and not conn.streams
    # A stream id that is no call of ours: nothing is finished, and the window still counts.
    pool.submit(lambda k, sent: done.append(k))
    conn.data_received(_answer_frames(encoder, conn.next_id + 40) + _WINDOW_UPDATE)
    assert done == [None, None] and len(conn.streams) == 1
    pool.sweeper.cancel()  # type: ignore[union-attr]


def test_grpc_an_answer_learnt_without_the_grant_learns_it_from_a_later_read(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton sends its connection WINDOW_UPDATE after most answers but not all: when the answer was
    learnt from a read without one, the next read of the answer and a grant alone teaches it the
    grant, and the reads after it take the one-comparison shortcut (no frame cut, no startswith)."""
    from harness.load import grpc_raw

    pool, conn = _grpc(loop)
    encoder = Encoder()
    for _ in range(2):  # learnt from reads without the grant
        pool.submit(lambda k, sent: None)
        conn.data_received(_answer_frames(encoder, conn.next_id - 2))
    assert conn.answer is not None and conn.answer.tail is None
    window = conn.send_window
    pool.submit(lambda k, sent: None)
    conn.data_received(_answer_frames(encoder, conn.next_id - 2) + _WINDOW_UPDATE)
    assert conn.answer.tail == _WINDOW_UPDATE and conn.answer.alone_size == len(
        _answer_frames(encoder, 1) + _WINDOW_UPDATE)
    cut: list[int] = []
    head = grpc_raw._FRAME_HEAD
    monkeypatch.setattr(grpc_raw, "_FRAME_HEAD", lambda data, at: (cut.append(at), head(data, at))[1])
    done: list[Any] = []
    pool.submit(lambda k, sent: done.append(k))
    conn.data_received(_answer_frames(encoder, conn.next_id - 2) + _WINDOW_UPDATE)
    assert done == [None] and cut == [] and not conn.streams
    assert conn.send_window == window - 2 * len(grpc_message(b"x")) + 2 * 7
    pool.sweeper.cancel()  # type: ignore[union-attr]
