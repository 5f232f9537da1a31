"""The field table that `make venv` writes (harness/sim/api/fieldcheck.py) says what the client's models
say: the unknown-field check answers the same with it as by importing the models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.sim.api import fieldcheck
from harness.sim.api.resources import STORED


def _fresh(monkeypatch: pytest.MonkeyPatch, *, table: bool, path: Path | None = None) -> None:
    """Forget what this process learnt; read the table from `path` (or none at all)."""
    monkeypatch.setattr(fieldcheck, "_FIELDS", {})
    monkeypatch.setattr(fieldcheck, "_TABLE_LOADED", not table)
    monkeypatch.setattr(fieldcheck, "_TABLE_COMPLETE", False)
    if path is not None:
        monkeypatch.setattr(fieldcheck, "table_path", lambda: path)


POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labelz": {"a": "b"}},
    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always",
                             "resources": {"limits": {"nvidia.com/gpu": "1"}},
                             "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}, "bogus": 1}}]}],
             "tolerations": [{"key": "k", "operator": "Exists", "efect": "NoSchedule"}],
             "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                 "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["x"],
                                                              "extra": True}]}]}}}},
    "status": {"phase": "Running", "what": 1},
}


def test_the_table_is_what_the_models_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "table.json"
    table.write_text(json.dumps(fieldcheck.build_table()), encoding="utf-8")
    answers = {}
    for use_table in (False, True):
        _fresh(monkeypatch, table=use_table, path=table)
        names = [fieldcheck.model_name(rt) for rt in STORED]
        body = json.loads(json.dumps(POD))
        answers[use_table] = (names, fieldcheck.unknown_fields(STORED[[r.kind for r in STORED].index("Pod")], body),
                              body)
        assert fieldcheck._TABLE_COMPLETE is use_table
    assert answers[True] == answers[False]
    names, unknown, _ = answers[True]
    assert "V1Pod" in names and "CoreV1Event" in names
    assert sorted(unknown) == sorted(["metadata.labelz", "spec.containers[0].imagePullPolcy",
                                      "spec.containers[0].env[0].valueFrom.bogus", "spec.tolerations[0].efect",
                                      "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                                      ".nodeSelectorTerms[0].matchExpressions[0].extra", "status.what"])


def test_a_table_of_another_client_version_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "table.json"
    data = fieldcheck.build_table()
    data["kubernetes"] = "0.0.1"
    data["types"]["V1Pod"] = {}  # were it read, every field of a Pod would be unknown
    table.write_text(json.dumps(data), encoding="utf-8")
    _fresh(monkeypatch, table=True, path=table)
    assert fieldcheck.unknown_fields(STORED[[r.kind for r in STORED].index("Pod")], {"spec": {}}) == []
    assert not fieldcheck._TABLE_COMPLETE


def test_make_venv_writes_the_table_where_the_harness_reads_it() -> None:
    makefile = (Path(__file__).resolve().parents[3] / "Makefile").read_text(encoding="utf-8")
    assert "$(BIN)/python -m harness.sim.api.fieldcheck --write-table" in makefile
    proc = subprocess.run([sys.executable, "-m", "harness.sim.api.fieldcheck", "--bogus"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "usage:" in proc.stderr
    assert fieldcheck.table_path().parent == Path(sys.prefix) / "share" / "seldon-gpu-harness"
