"""The sim API server's own error output: a client that goes away is not an error worth a traceback."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator

import pytest

from harness.sim.api.server import ApiHttpServer, _Handler
from harness.sim.api.store import MemoryStore
from harness.sim.faults import Faults


@pytest.fixture()
def httpd() -> Iterator[ApiHttpServer]:
    server = ApiHttpServer(MemoryStore(), Faults())
    yield server
    server.server_close()


@pytest.mark.parametrize("gone", [ConnectionResetError, BrokenPipeError, TimeoutError, ssl.SSLEOFError])
def test_client_that_went_away_prints_nothing(httpd: ApiHttpServer, gone: type[BaseException],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise gone("peer went away")
    except OSError:
        httpd.handle_error(None, ("127.0.0.1", 1))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_other_request_failures_are_one_line_without_traceback(httpd: ApiHttpServer,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        httpd.handle_error(None, ("127.0.0.1", 2))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad thing" in err and "Traceback" not in err


@pytest.mark.parametrize("gone", [ConnectionResetError, BrokenPipeError, ssl.SSLEOFError])
def test_a_client_gone_mid_response_is_no_internal_error(gone: type[BaseException], monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # Over TLS a watch client that closes its socket shows up as an SSL EOF on the next write; it
    # was logged as "sim API internal error" with a traceback in `sim up --deploy` output.
    def handle(self: _Handler) -> None:
        raise gone("EOF occurred in violation of protocol")

    monkeypatch.setattr(_Handler, "_handle", handle)
    handler = object.__new__(_Handler)
    handler.close_connection = False
    with caplog.at_level(logging.DEBUG, logger="harness.sim.api.server"):
        handler._dispatch()
    assert handler.close_connection is True
    assert "internal error" not in caplog.text
