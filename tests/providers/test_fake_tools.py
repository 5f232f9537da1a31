"""The recording fakes themselves: their call log is JSON whatever the arguments, and a plain call stays cheap."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.fake_tools import FAKEBIN

TRICKY = ["plain", "emoji 😀", 'a "quoted" word', "back\\slash", "new\nline\ttab\x01\x1f", "é ü 漢字 \u2028", "",
          "{}[],:"]


def _fake_module() -> object:
    spec = importlib.util.spec_from_file_location("fakebin_fake", FAKEBIN / "_fake.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value", [*TRICKY, TRICKY, {"argv": TRICKY, "env": {"KUBECONFIG": "/tmp/k\"c"}}, True, False,
                                   {"DriverStatus": [["Backing Filesystem", "extfs"]]}])
def test_the_fakes_json_reads_back_as_what_was_written(value: object) -> None:
    assert json.loads(_fake_module()._json(value)) == value  # type: ignore[attr-defined]


def test_a_call_with_awkward_arguments_is_logged_as_one_json_line(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    proc = subprocess.run([sys.executable, "-S", str(FAKEBIN / "kind"), "get", "clusters", *TRICKY],
                          env={"FAKEBIN_LOG": str(log), "KUBECONFIG": "/tmp/kube config"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"tool": "kind", "argv": ["get", "clusters", *TRICKY], "env": {"KUBECONFIG": "/tmp/kube config"}}]


def test_a_plain_call_imports_neither_json_nor_pathlib(tmp_path: Path) -> None:
    """About 400 fake calls per `make test`: json and pathlib more than doubled each one's start."""
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", str(FAKEBIN / "docker"), "info"],
                          env={"FAKEBIN_LOG": str(tmp_path / "calls.jsonl")}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["DefaultRuntime"] == "nvidia"
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"json", "pathlib", "re", "enum"}, sorted(imported)
