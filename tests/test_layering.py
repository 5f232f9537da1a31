"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and they would catch a break.

`make lint` runs `lint-imports` too; this test makes CI's `make test` hold the layering as well.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(script), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)})


def test_import_contracts_hold() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert ", 0 broken." in proc.stdout and "Contracts: 0 kept" not in proc.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    checks = tmp_path / "harness" / "checks" / "placement.py"
    checks.write_text(checks.read_text() + "\nfrom harness.kube import Kube  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "harness.checks.placement -> harness.kube" in proc.stdout
