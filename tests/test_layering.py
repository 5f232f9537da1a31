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


def test_one_layer_order_for_harness_and_one_inside_the_sim(tmp_path: Path) -> None:
    """Both `layers` contracts exist, and an upward import breaks each: load importing the report (the
    report reads load results, never the reverse) and the sim's shared protocols importing the cluster."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = [c for c in contracts["contracts"] if c["type"] == "layers"]
    assert [c["layers"][0] for c in layers] == ["harness.__main__", "harness.sim.cluster"]
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, line in (("load/engine.py", "from harness.report import model  # noqa"),
                      ("sim/contracts.py", "from harness.sim import cluster  # noqa")):
        path = tmp_path / "harness" / rel
        path.write_text(path.read_text() + f"\n{line}\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "harness.load.engine -> harness.report" in proc.stdout
    assert "harness.sim.contracts -> harness.sim.cluster" in proc.stdout
    assert "Contracts: 5 kept, 2 broken." in proc.stdout
