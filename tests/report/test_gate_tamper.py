"""Verdicts that cannot be fooled: tampered reports, signatures, skips judged by reason.

Each tampered case edits one recorded conclusion (or one figure) of the passing crafted report so
that the file contradicts itself; the gate recomputes and refuses it with one line naming both sides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.report import format_verdict, gate, load_report, parse_report
from harness.report.allowlist import load_allow_list
from harness.report.signature import KEY_ENV, KEY_FILE_ENV, sign
from harness.report.text import printable
from tests.kit.reports import with_capacity

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "reports"
ALLOW_LIST = ROOT / "allowed-skips.yaml"


def _pass() -> dict[str, Any]:
    return json.loads((DATA / "pass.json").read_text(encoding="utf-8"))


def _latency(data: dict[str, Any]) -> dict[str, Any]:
    return data["latency"][0]["result"]  # type: ignore[no-any-return]


def _p99_over_its_limit(data: dict[str, Any]) -> None:
    _latency(data)["latency_ms"].update(p99=150.0, p99_9=150.0, max=150.0)  # the SLO says 100, ok stays true


def _failing_verdict_removed(data: dict[str, Any]) -> None:
    _p99_over_its_limit(data)
    data["latency"][0]["slo_verdicts"] = [v for v in data["latency"][0]["slo_verdicts"] if v["name"] != "p99_ms"]


def _extra_check(data: dict[str, Any]) -> None:
    data["checks"].append({**data["checks"][0], "id": "suites/test_other.py::test_extra"})


def _duplicate_check(data: dict[str, Any]) -> None:
    data["checks"].append(dict(data["checks"][0]))


def _phase(status: str, error: str | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["phases"].append({"name": "load runs", "started": data["started"], "seconds": None if status ==
                               "running" else 1.0, "status": status, "error": error})
    return edit


def _capacity_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def both(data: dict[str, Any]) -> None:
        with_capacity(data)
        edit(data["capacity"][0])
    return both


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "slo ok beside a p99 above its limit": (_p99_over_its_limit, "SLO verdict p99_ms says ok: true"),
    "slo fail beside figures that pass": (
        lambda d: d["latency"][0]["slo_verdicts"][0].update(ok=False), "SLO verdict p50_ms says ok: false"),
    "failing slo verdict removed": (_failing_verdict_removed, "the SLO verdict p99_ms is missing"),
    "simulated false beside a +harness-sim version": (
        lambda d: d["cluster"].update(kubernetes_version="v1.32.2+harness-sim"),
        "simulated: false beside cluster.kubernetes_version: 'v1.32.2+harness-sim'"),
    "simulated false beside provider sim": (
        lambda d: d.update(provider="sim"), "simulated: false beside provider: sim"),
    "simulated false beside a rehearsal": (
        lambda d: d.update(rehearsal={"provider": "kind", "host_gpus_simulated": True}),
        "simulated: false beside rehearsal of a kind profile"),
    "simulated false beside a simulated reason": (
        lambda d: d["cluster"].update(simulated_reason="the profile's provider is sim"),
        "simulated: false beside cluster.simulated_reason"),
    "whole selection beside deselected tests": (
        lambda d: d["selection"].update(deselected=3), "selection.whole: true beside deselected: 3"),
    "whole selection beside -k": (
        lambda d: d["selection"].update(keyword="latency"), "selection.whole: true beside keyword: 'latency'"),
    "whole selection beside a single test named": (
        lambda d: d["selection"].update(args=["suites/", "suites/test_gpu.py::test_cpu_pod_sees_no_gpu"]),
        "selection.whole: true beside args naming single tests"),
    "a verdict for a test that was not selected": (_extra_check, "is not one of the selected tests"),
    "a selected test outside the arguments": (
        lambda d: d["selection"].update(args=["suites/test_placement.py", "suites/test_gpu.py",
                                              "suites/test_latency.py"]), "lies outside the recorded arguments"),
    "two verdicts for one check": (_duplicate_check, "has more than one verdict"),
    "interrupted false beside its reason": (
        lambda d: d.update(interrupted_reason="interrupted (SIGTERM)"),
        "interrupted: false beside interrupted_reason 'interrupted (SIGTERM)'"),
    "interrupted false beside a phase still running": (_phase("running"), "interrupted: false beside phase"),
    "interrupted false beside a KeyboardInterrupt": (
        _phase("failed", "KeyboardInterrupt: signal 15"), "failed with 'KeyboardInterrupt: signal 15'"),
    "percentiles out of order": (
        lambda d: _latency(d)["latency_ms"].update(p50=9.0), "latency_ms.p50 9 ms is above latency_ms.p90"),
    "more successes than requests": (lambda d: _latency(d).update(ok=3001), "ok 3001 is more than requests 3000"),
    "error rate beside the counts": (
        lambda d: _latency(d).update(error_rate=0.0005), "error_rate 0.0005 beside 0 failed"),
    "late-send fraction beside the counts": (
        lambda d: _latency(d).update(late_sends=2900), "late_send_fraction 0.001 beside 2900 late"),
    "sweep step meets the slo beside a p99 above it": (
        _capacity_edit(lambda c: c["steps"][1].update(meets_slo=True, reasons=[])),
        "says meets_slo: true beside p99 90 ms > 25 ms"),
    "capacity beside its steps": (_capacity_edit(lambda c: c.update(capacity_rps=150.0)),
                                  "capacity_rps 150 beside its steps"),
    "bounded beside steps that never missed": (
        _capacity_edit(lambda c: c.update(steps=c["steps"][:1])), "bounded: true beside steps that never missed"),
    "an overloaded client claimed beside calm figures": (
        _capacity_edit(lambda c: c["steps"][1].update(client_overloaded=True)),
        "the step at 105 req/s says client_overloaded: true beside a calm load client"),
    "an overloaded client claimed beside a pass": (
        _capacity_edit(lambda c: c["steps"][0].update(client_overloaded=True, late_send_fraction=0.5)),
        "the step at 100 req/s says client_overloaded: true beside a pass"),
    "a run id the harness never makes": (lambda d: d.update(run_id="Nightly 1; rm -rf"), "is not one the harness"),
}


def test_the_untampered_report_passes() -> None:
    data = _pass()
    with_capacity(data)
    verdict = gate(parse_report(data, "r.json"), None, 0.10, False)
    assert verdict.passed, verdict.failures


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_report_is_refused_in_one_line(case: str) -> None:
    edit, expected = TAMPERED[case]
    data = _pass()
    edit(data)
    verdict = gate(parse_report(data, "r.json"), None, 0.10, False)
    tampered = [f for f in verdict.failures if f.kind == "tampered"]
    assert tampered and any(expected in f.detail for f in tampered), verdict.failures
    first = format_verdict(verdict, "r.json").splitlines()[0]
    assert first.startswith("REFUSED: r.json: contradictory evidence: ") and tampered[0].detail[:60] in first, first


def test_duplicate_keys_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (DATA / "pass.json").read_text(encoding="utf-8")
    path = tmp_path / "r.json"
    # The last copy would win in json.loads: a hidden `true` behind a shown `false`.
    path.write_text(text.replace('"interrupted": false', '"interrupted": true, "interrupted": false', 1),
                    encoding="utf-8")
    assert main(["gate", "--report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f'error: {path}: duplicate key "interrupted" in one JSON object; a report names each field once ' \
                  "(JSON readers disagree on which copy counts)\n"


def test_a_lone_surrogate_is_refused_and_control_characters_are_never_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pass()
    data["checks"][0].update(status="fail", reason="boom \x1b]0;owned\x07 \x1b[2J\u202e \x9b")
    path = tmp_path / "ansi.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main(["gate", "--report", str(path)]) == 1
    assert main(["report", "--report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\\x1b]0;owned\\x07" in out and not any(
        (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in out)
    data["checks"][0]["reason"] = "\ud800"
    path.write_text(json.dumps(data), encoding="utf-8")  # json.dumps writes the escape `\ud800`
    assert main(["gate", "--report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lone UTF-16 surrogate" in err and len(err.splitlines()) == 1
    assert printable("a\x00b\x1bc\u2066d") == "a\\x00b\\x1bc\\u2066d"


def test_too_many_values_are_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.report.model as model

    monkeypatch.setattr(model, "MAX_REPORT_VALUES", 1000)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": "1", "x": [{}] * 2000}), encoding="utf-8")
    with pytest.raises(model.UsageError, match="JSON values; a report has at most 1000 "):
        model.load_report(path)


# --- signatures ---------------------------------------------------------------------------
KEY = "0123456789abcdef0123456789abcdef"


def _signed(tmp_path: Path) -> tuple[Path, Path]:
    report = tmp_path / "report.json"
    report.write_bytes((DATA / "pass.json").read_bytes())
    key = tmp_path / "key"
    key.write_text(KEY + "\n", encoding="utf-8")
    sign(report, KEY.encode())
    return report, key


def test_a_signed_report_passes_and_one_changed_byte_refuses_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    report, key = _signed(tmp_path)
    assert main(["gate", "--report", str(report), "--require-signature", "--key-file", str(key)]) == 0
    raw = bytearray(report.read_bytes())
    at = raw.index(b'"p99": 12.0') + len(b'"p99": 1')
    raw[at] = ord("1")  # 12.0 -> 11.0: still a valid, passing, self-consistent report
    report.write_bytes(bytes(raw))
    assert load_report(report).latency[0].result.latency_ms.p99 == 11.0
    capsys.readouterr()
    assert main(["gate", "--report", str(report), "--require-signature", "--key-file", str(key)]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"REFUSED: {report}: unverified evidence: the signature in {report}.sig does not match")


def test_a_whitespace_byte_changed_refuses_it_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report, _ = _signed(tmp_path)
    report.write_bytes(report.read_bytes() + b" ")
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(["gate", "--report", str(report), "--require-signature"]) == 1


def test_unsigned_or_keyless_with_require_signature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    report, key = _signed(tmp_path)
    (tmp_path / "report.json.sig").unlink()
    assert main(["gate", "--report", str(report), "--require-signature", "--key-file", str(key)]) == 1
    assert "unverified evidence: no signature" in capsys.readouterr().out.splitlines()[0]
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert main(["gate", "--report", str(report), "--require-signature"]) == 2
    assert capsys.readouterr().err.startswith("error: --require-signature: no signing key")
    key.write_text("short", encoding="utf-8")
    assert main(["gate", "--report", str(report), "--require-signature", "--key-file", str(key)]) == 2
    err = capsys.readouterr().err
    assert "the signing key is 5 bytes; at least 16" in err and "short" not in err.replace(str(key), "")


def test_the_baseline_is_held_to_the_signature_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A release gate compares with a baseline downloaded from an earlier run's artifact: under
    --require-signature an unsigned or edited baseline refuses the gate like an edited report."""
    report, key = _signed(tmp_path)
    base_dir = tmp_path / "baseline"
    base_dir.mkdir()
    baseline = base_dir / "report.json"
    baseline.write_bytes((DATA / "pass.json").read_bytes())
    sign(baseline, KEY.encode())
    args = ["gate", "--report", str(report), "--baseline", str(baseline), "--key-file", str(key)]
    assert main([*args, "--require-signature"]) == 0
    capsys.readouterr()
    # Slower baseline figures would hide a regression: one byte, and the signature no longer matches.
    baseline.write_bytes(baseline.read_bytes().replace(b'"p99": 12.0', b'"p99": 92.0', 1))
    assert main([*args, "--require-signature"]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"REFUSED: {report}: unverified evidence: the baseline: the signature in {baseline}.sig")
    # Without --require-signature a signature that is there is still checked ...
    assert main(args) == 1
    capsys.readouterr()
    # ... and an unsigned baseline is refused only when signatures are required.
    (base_dir / "report.json.sig").unlink()
    assert main(args) == 0
    assert main([*args, "--require-signature"]) == 1
    assert "the baseline: no signature" in capsys.readouterr().out


# --- skips judged by their reason ---------------------------------------------------------------
EVICTION = "test_noexecute_taint_evicts_running_intruders"
OPTED_OUT = ("the eviction test changes nodes of a cluster the harness did not create: set cluster.destructive: "
             "true in the profile to allow it (only nodes running nothing of anyone else are used)")
NO_FREE_NODE = ("no GPU node without Servers runs only this run's pods; the taint would evict others' pods "
                "(gpu-1: other/pod-a)")


def _eviction_skipped(reason: str) -> Any:
    data = _pass()
    data["profile"]["name"] = "existing"
    nodeid = f"suites/test_isolation.py::{EVICTION}"
    data["checks"].append({"id": nodeid, "suite": "isolation", "name": EVICTION, "status": "skip",
                           "reason": reason, "details": {}, "duration_s": 0.1})
    data["selection"]["args"] = ["suites/"]
    data["selection"]["tests"].append(nodeid)
    return parse_report(data, "r.json")


def test_the_eviction_test_skipped_for_no_free_node_fails_the_gate() -> None:
    from harness.checks.shared_nodes import destructive_refusal

    allow = load_allow_list(ALLOW_LIST)
    # The opt-out the allow-list names is exactly what the test says when destructive is off.
    assert f"the eviction test {destructive_refusal('existing', False)}" == OPTED_OUT
    assert gate(_eviction_skipped(OPTED_OUT), None, 0.10, False, allow_list=allow).passed
    verdict = gate(_eviction_skipped(NO_FREE_NODE), None, 0.10, False, allow_list=allow)
    (failure,) = verdict.failures
    assert failure.kind == "skip" and EVICTION in failure.subject
    assert failure.detail.startswith(f"skipped for a reason {ALLOW_LIST} does not allow: {NO_FREE_NODE!r}")
    assert "'set cluster[.]destructive: true in the profile to allow it'" in failure.detail
    line = format_verdict(verdict, "r.json").splitlines()[3]
    assert line.startswith("skip") and EVICTION in line


def test_one_check_may_be_allowed_for_several_reasons(tmp_path: Path) -> None:
    allow = tmp_path / "allow.yaml"
    allow.write_text(f"""allowed_skips:
  - {{profile: existing, check: {EVICTION}, reason: opted out, skip_reason: 'cluster[.]destructive'}}
  - {{profile: existing, check: {EVICTION}, reason: the shared cluster is always full, skip_reason: '^no GPU node'}}
""", encoding="utf-8")
    listed = load_allow_list(allow)
    assert gate(_eviction_skipped(NO_FREE_NODE), None, 0.10, False, allow_list=listed).passed
    assert not gate(_eviction_skipped("something else"), None, 0.10, False, allow_list=listed).passed
    allow.write_text(f"allowed_skips:\n  - {{profile: x, check: {EVICTION}, reason: r, skip_reason: '('}}\n")
    with pytest.raises(Exception, match=r"allowed_skips\[0\]\.skip_reason: not a Python regular expression"):
        load_allow_list(allow)
