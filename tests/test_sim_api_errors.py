"""The sim API server's own error output: a client that goes away is not an error worth a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.sim.api.server import ApiHttpServer
from harness.sim.api.store import MemoryStore
from harness.sim.faults import Faults


@pytest.fixture()
def httpd() -> Iterator[ApiHttpServer]:
    server = ApiHttpServer(MemoryStore(), Faults())
    yield server
    server.server_close()


@pytest.mark.parametrize("gone", [ConnectionResetError, BrokenPipeError, TimeoutError])
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
