"""Answers are checked, not just counted: pure checks, bounded reads, and `load` against garbage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.load import LoadSpec, run_load
from harness.load.answers import (
    BAD_ANSWER,
    BODY_TOO_LARGE,
    MAX_BODY_BYTES,
    WRONG_ANSWER,
    AnswerChecker,
    Expected,
    check_grpc_answer,
    check_json_answer,
    model_matches,
)
from harness.load.clients import dechunk
from tests.kit.load_servers import StubServer

IRIS_OUT = (Expected("predict", (2,)),)


def _answer(model: str = "iris", data: object = (2,), name: str = "predict") -> bytes:
    return json.dumps({"model_name": model, "outputs": [{"name": name, "datatype": "INT64", "shape": [1],
                                                         "data": list(data)}]}).encode()  # type: ignore[call-overload]


@pytest.mark.parametrize("body", [
    b"", b"<html>502 Bad Gateway</html>", b"null", b"[]", b"{}", b'{"model_name":"iris"}',
    b'{"model_name":"iris","outputs":[]}', b'{"model_name":"iris","outputs":[{"name":"x"}]}',
    b'{"model_name":"other","outputs":[{"name":"predict","data":[2]}]}', b"\xff\xfe",
])
def test_a_body_that_is_not_an_answer_for_the_model_is_a_bad_answer(body: bytes) -> None:
    assert check_json_answer(body, "iris") == BAD_ANSWER


def test_seldon_versioned_model_names_are_the_asked_model() -> None:
    assert model_matches("iris", "iris") and model_matches("iris_1", "iris") and model_matches("iris_12", "iris")
    assert not model_matches("iris_x", "iris") and not model_matches("iris2", "iris")
    assert not model_matches(None, "iris")
    assert check_json_answer(_answer("iris_3"), "iris") is None


def test_values_are_compared_only_when_asked() -> None:
    wrong = _answer(data=(0,))
    assert check_json_answer(wrong, "iris", IRIS_OUT, compare=False) is None
    assert check_json_answer(wrong, "iris", IRIS_OUT, compare=True) == WRONG_ANSWER
    assert check_json_answer(_answer(), "iris", IRIS_OUT, compare=True) is None
    assert check_json_answer(_answer(name="other"), "iris", IRIS_OUT, compare=True) == WRONG_ANSWER
    # Nested (row-major) data equals its flat form; floats compare at fp32 precision.
    nested = json.dumps({"model_name": "m", "outputs": [{"name": "y", "data": [[0.1, 0.2]]}]}).encode()
    assert check_json_answer(nested, "m", (Expected("y", (0.10000000149, 0.2)),), compare=True) is None
    assert check_json_answer(nested, "m", (Expected("y", (0.1, 0.3)),), compare=True) == WRONG_ANSWER


def test_the_checker_samples_value_comparisons() -> None:
    checker = AnswerChecker("iris", IRIS_OUT, check_every=4)
    right, wrong = _answer(), _answer(data=(0,))
    # Values are compared on answers 1, 5, 9, ...; a body not compared yet passes until it is sampled,
    # and from then on every byte-identical body carries the verdict found for it.
    kinds = [checker.http(body) for body in (right, wrong, wrong, wrong, wrong, wrong, right, wrong)]
    assert kinds == [None, None, None, None, WRONG_ANSWER, WRONG_ANSWER, None, WRONG_ANSWER]
    # The shape is checked on every answer, sampled or not.
    assert [checker.http(b"garbage") for _ in range(3)] == [BAD_ANSWER] * 3
    # A memo full of distinct bodies starts again instead of growing.
    assert [checker.http(_answer(model=f"iris_{i}")) for i in range(100)] == [None] * 100
    assert 0 < len(checker.memo) <= 64


def test_grpc_answers_are_checked() -> None:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse(model_name="iris_1")
    out = response.outputs.add(name="predict", datatype="INT64", shape=[1])
    out.contents.int64_contents.extend([2])
    raw = response.SerializeToString()
    assert check_grpc_answer(raw, "iris", IRIS_OUT, compare=True) is None
    assert check_grpc_answer(raw, "other") == BAD_ANSWER
    assert check_grpc_answer(raw, "iris", (Expected("predict", (1,)),), compare=True) == WRONG_ANSWER
    assert check_grpc_answer(b"\xff\xff\xff", "iris") == BAD_ANSWER
    no_outputs = service_pb2.ModelInferResponse(model_name="iris").SerializeToString()
    assert check_grpc_answer(no_outputs, "iris") == BAD_ANSWER
    # Raw output contents (Triton's default) are decoded little-endian by datatype.
    raw_response = service_pb2.ModelInferResponse(model_name="iris")
    raw_response.outputs.add(name="predict", datatype="INT64", shape=[1])
    raw_response.raw_output_contents.append((2).to_bytes(8, "little"))
    assert check_grpc_answer(raw_response.SerializeToString(), "iris", IRIS_OUT, compare=True) is None


def test_dechunk() -> None:
    assert dechunk(b"HEAD4\r\nabcd\r\n2;x=1\r\nef\r\n0\r\n\r\n", 4) == b"abcdef"
    assert dechunk(b"zz\r\nab\r\n", 0) is None


# --------------------------------------------------------------------------------------------
# Against a server
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_garbage_200s_are_all_errors(framing: str) -> None:
    with StubServer(body=b"<html>hello</html>", framing=framing) as server:
        result = run_load(LoadSpec(endpoint=server.url, model="stub", mode="closed", concurrency=2,
                                   duration_s=0.6, warmup_s=0.1))
    assert result.complete and result.requests > 5
    assert result.ok == 0 and result.errors == {BAD_ANSWER: result.requests}


def test_a_body_over_the_bound_is_not_read() -> None:
    huge = b'{"model_name":"stub","outputs":[{"name":"p","data":[0]}],"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    with StubServer(body=huge) as server:
        result = run_load(LoadSpec(endpoint=server.url, model="stub", mode="closed", concurrency=1,
                                   duration_s=0.6, warmup_s=0.0))
    assert result.ok == 0 and set(result.errors) == {BODY_TOO_LARGE}


def test_wrong_answers_on_the_sample_are_errors_of_their_own() -> None:
    with StubServer() as server:  # answers predict=[0]
        result = run_load(LoadSpec(endpoint=server.url, model="stub", mode="closed", concurrency=1,
                                   duration_s=0.6, warmup_s=0.0, expected=(Expected("predict", (1,)),),
                                   check_every=1))
    assert result.ok == 0 and result.errors == {WRONG_ANSWER: result.requests}


def test_cli_against_garbage_reports_every_request_as_an_error_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    with StubServer(body=b"not an inference response") as server:
        code = main(["load", "--endpoint", server.url, "--model", "stub", "--rate", "50", "--duration", "0.6",
                     "--warmup", "0.1", "--json", str(out)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert code == 1
    assert data["requests"] > 0 and data["ok"] == 0 and data["errors"] == {BAD_ANSWER: data["requests"]}
    assert "SLO MISSED: error rate 100.00%" in printed


def test_cli_error_rate_within_the_limit_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StubServer(fail_every=10) as server:
        code = main(["load", "--endpoint", server.url, "--model", "stub", "--concurrency", "2", "--duration", "0.6",
                     "--warmup", "0.1", "--slo-max-error-rate", "20%", "--json", str(tmp_path / "r.json")])
        strict = main(["load", "--endpoint", server.url, "--model", "stub", "--concurrency", "2", "--duration",
                       "0.6", "--warmup", "0.1", "--json", str(tmp_path / "s.json")])
    capsys.readouterr()
    assert code == 0 and strict == 1


def test_cli_expected_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"outputs": [{"name": "predict", "data": [1]}]}))
    with StubServer() as server:
        code = main(["load", "--endpoint", server.url, "--model", "stub", "--concurrency", "1", "--duration", "0.5",
                     "--warmup", "0", "--expected-output", str(expected), "--check-every", "1",
                     "--json", str(tmp_path / "r.json")])
    capsys.readouterr()
    data = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and data["errors"] == {WRONG_ANSWER: data["requests"]}
    expected.write_text(json.dumps({"outputs": [{"name": "predict"}]}))
    try:
        code = main(["load", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--rate", "5", "--duration", "1",
                     "--expected-output", str(expected), "--json", str(tmp_path / "x.json")])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and "outputs[0]" in err and len(err.strip().splitlines()) == 1
