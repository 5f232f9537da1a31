"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and they would catch a break.

`make lint` runs `lint-imports` too; this test makes CI's `make test` hold the layering as well.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


# --- the suites see the harness through the test kit ------------------------------------------------------
def _harness_imports(path: Path) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            found += [node.module] if node.module != "harness" else [f"harness.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "harness"]
    return found


def _allowed_in_suites(module: str) -> bool:
    return module == "harness.testkit" or module == "harness.k8s" or module.startswith("harness.k8s.")


def test_suites_import_only_the_test_kit_and_the_k8s_rules() -> None:
    wrong = {f"{path.name}: {module}" for path in sorted((ROOT / "suites").glob("*.py"))
             for module in _harness_imports(path) if not _allowed_in_suites(module)}
    assert not wrong, sorted(wrong)
    # and the check sees a path into the harness when one is there
    assert not all(_allowed_in_suites(m) for m in ["harness.testkit", "harness.load.sweep"])


def test_every_name_the_kit_exports_resolves() -> None:
    import harness.testkit as kit

    lazy = set(kit._LAZY)
    assert lazy <= set(kit.__all__), sorted(lazy - set(kit.__all__))
    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
