"""Bad, hostile or merely odd input gives exit code 2 and one line; outputs never follow planted links.

Issue 13 item 5 (strict profiles) and issue 14 item 5 (bounded everything). Each case here failed
before the change that added it: tracebacks, hangs, silently accepted duplicates or NaNs, a symlink
followed out of the report directory, or a junit.xml that XML parsers refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_profile
from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.report.junit import render_junit, xml_safe
from harness.report.model import load_report, parse_report
from harness.report.outputs import write_outputs

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "profiles" / "sim.yaml"


def _lint(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["lint", "--profile", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _one_line(code: int, err: list[str], *needles: str) -> None:
    assert code == 2, err
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err


# --- strict profiles -------------------------------------------------------------------------------

def test_duplicate_key_is_refused_naming_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SIM.read_text().replace("cluster:\n", "cluster:\n  provider: kind\n", 1)
    assert text.count("provider:") >= 2
    bad = tmp_path / "dup.yaml"
    bad.write_text(text)
    code, err = _lint(bad, capsys)
    _one_line(code, err, "dup.yaml", "duplicate key 'provider'", "first at line")


def test_duplicate_top_level_section_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dup.yaml"
    bad.write_text(SIM.read_text() + "\nslo: {}\n")
    code, err = _lint(bad, capsys)
    _one_line(code, err, "duplicate key 'slo'")


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    from harness.safeyaml import load_one

    assert load_one("a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  q: 3\n", "t") == {"a": {"p": 1, "q": 2},
                                                                        "b": {"p": 1, "q": 3}}


def test_alias_bomb_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1024
    code, err = _lint(bomb, capsys)
    _one_line(code, err, "bomb.yaml", "alias bomb")


def test_recursive_alias_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "loop.yaml"
    bad.write_text("cluster: &c\n  x: *c\n")
    code, err = _lint(bad, capsys)
    _one_line(code, err, "loop.yaml", "recursive")


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_non_regular_files_are_refused_without_hanging(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "fifo":
        path = tmp_path / "profile.yaml"
        os.mkfifo(path)  # nobody writes: a blocking open would hang forever
        expected = "got a FIFO"
    elif kind == "directory":
        path = tmp_path
        expected = "got a directory"
    else:
        path = Path("/dev/zero")
        expected = "got a character device"
    code, err = _lint(path, capsys)
    _one_line(code, err, str(path), expected)


def test_non_utf8_profile_is_refused_with_the_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(SIM.read_bytes().replace(b"# ", b"# caf\xe9 ", 1))
    code, err = _lint(bad, capsys)
    _one_line(code, err, "latin1.yaml", "not UTF-8", "offset")


def test_oversized_profile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as handle:
        handle.write(SIM.read_text())
        handle.write("#" + "x" * (5 * 1024 * 1024) + "\n")
    code, err = _lint(big, capsys)
    _one_line(code, err, "big.yaml", "at most")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_non_finite_numbers_in_a_profile_are_refused(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SIM.read_text()
    assert "server_ready_s: 120" in text
    bad = tmp_path / "inf.yaml"
    bad.write_text(text.replace("server_ready_s: 120", f"server_ready_s: {value}"))
    code, err = _lint(bad, capsys)
    _one_line(code, err, "timeouts.server_ready_s", "finite")


@pytest.mark.parametrize("flag,value", [("--duration", "inf"), ("--warmup", "nan"), ("--rate", "Infinity")])
def test_non_finite_numbers_on_the_command_line_are_usage_errors(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["load", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--duration", "1", "--json", "x.json",
            "--concurrency", "1"]
    if flag == "--rate":
        argv[argv.index("--concurrency"):argv.index("--concurrency") + 2] = ["--rate", value]
    else:
        argv += [flag, value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "finite" in err[0], err


def test_a_fifo_profile_does_not_hang_a_real_process(tmp_path: Path) -> None:
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "harness", "lint", "--profile", str(fifo)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "FIFO" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_manifests_are_read_just_as_strictly(tmp_path: Path) -> None:
    from harness.lint.loader import load_manifests

    bad = tmp_path / "m.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nkind: Node\n")
    with pytest.raises(UsageError, match="duplicate key 'kind'"):
        load_manifests([str(bad)])


@pytest.mark.parametrize(("text", "message"), [
    ("a: *nope\n", "line 1, column 4: found undefined alias 'nope'"),
    ("a: [1, 2\n", "expected ',' or ']', but got '<stream end>'"),
    ("\t a: 1\n", "found character '\\t' that cannot start any token"),
    ("a: \x07\n", "unacceptable character #x0007"),  # once a traceback (the reader raised before the try)
])
def test_yaml_refusals_name_what_is_wrong(text: str, message: str) -> None:
    """libyaml reads the files; what it refuses is read again by PyYAML's Python loader, whose messages
    name the offending token or alias (libyaml's say 'found undefined alias' without the name)."""
    from harness import safeyaml

    assert safeyaml._FastStrictLoader is not safeyaml._StrictLoader, "PyYAML without libyaml"
    with pytest.raises(UsageError) as refused:
        safeyaml.load_all(text, "m.yaml")
    assert str(refused.value).startswith("m.yaml: not valid YAML") and message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_load_profile_still_reads_every_shipped_profile() -> None:
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        assert load_profile(path).source == str(path)


# --- reports ---------------------------------------------------------------------------------------

def _report_data() -> dict[str, object]:
    data: dict[str, object] = json.loads((ROOT / "tests" / "data" / "reports" / "pass.json").read_text())
    return data


def test_deeply_nested_report_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert main(["gate", "--report", str(deep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nested" in err[0], err
    shallow_but_deep = tmp_path / "deep2.json"
    shallow_but_deep.write_text("[" * 500 + "]" * 500)
    with pytest.raises(UsageError, match="levels deep"):
        load_report(shallow_but_deep)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_a_report_are_refused(constant: str, tmp_path: Path) -> None:
    text = (ROOT / "tests" / "data" / "reports" / "pass.json").read_text()
    data = json.loads(text)
    data["latency"][0]["result"]["latency_ms"]["p99"] = 0.0
    text = json.dumps(data).replace('"p99": 0.0', f'"p99": {constant}', 1)
    bad = tmp_path / "r.json"
    bad.write_text(text)
    with pytest.raises(UsageError, match="finite"):
        load_report(bad)
    data["latency"][0]["result"]["latency_ms"]["p99"] = float("nan")
    with pytest.raises(UsageError, match="finite"):
        parse_report(data, "r.json")


def test_report_files_are_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    report = parse_report(_report_data(), "pass.json")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "reports"
    out.mkdir()
    for name in ("report.json", "junit.xml", "report.html"):
        (out / name).symlink_to(victim)
    # the old fixed temp name, too
    (out / ".report.json.tmp").symlink_to(victim)
    written = write_outputs(report, out)
    assert victim.read_text() == "precious"
    for path in written.values():
        assert not path.is_symlink() and path.is_file()
    assert json.loads((out / "report.json").read_text())["run_id"] == report.run_id


def test_write_atomic_refuses_a_directory_and_leaves_no_temp_behind(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "d", "x")
    write_atomic(tmp_path / "f", "one")
    write_atomic(tmp_path / "f", "two")
    assert (tmp_path / "f").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_evidence_files_are_not_written_through_planted_symlinks(tmp_path: Path) -> None:
    from harness.kube.evidence import _Collector

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "evidence"
    out.mkdir()
    (out / "events.txt").symlink_to(victim)
    collector = _Collector(out)
    collector.write("events.txt", "new events")
    assert victim.read_text() == "precious"
    assert (out / "events.txt").read_text() == "new events"


def test_junit_escapes_xml_invalid_characters() -> None:
    data = _report_data()
    checks = data["checks"]
    assert isinstance(checks, list) and checks
    checks[0] = {**checks[0], "status": "fail", "reason": "bad \x1b[31mred\x1b[0m \x00 nul \x07 bell \ufffe"}
    report = parse_report(data, "pass.json")
    text = render_junit(report)
    root = ET.fromstring(text.split("\n", 1)[1])  # parses: no invalid characters left
    failure = root.find(".//failure")
    assert failure is not None and failure.text is not None
    assert "\\x1b[31mred" in failure.text and "\\x00 nul" in failure.text
    assert xml_safe("tab\tok\nline") == "tab\tok\nline"
