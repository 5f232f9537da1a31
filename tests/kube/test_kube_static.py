"""House rules for harness/kube and harness/providers, checked on the source: no sleeping waits, and
every subprocess call has a timeout (and an argument list, never a shell)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*(ROOT / "harness" / "kube").glob("*.py"), *(ROOT / "harness" / "providers").glob("*.py")])
SUBPROCESS = {"run", "call", "check_call", "check_output", "Popen"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_sleep_and_subprocess_with_timeout(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        assert node.func.attr != "sleep", f"{path.name}:{node.lineno}: sleeping is not a wait"
        if owner == "subprocess" and node.func.attr in SUBPROCESS:
            keywords = {k.arg: k.value for k in node.keywords}
            assert node.func.attr != "Popen", f"{path.name}:{node.lineno}: Popen has no timeout; use ToolRunner"
            assert "timeout" in keywords, f"{path.name}:{node.lineno}: subprocess call without a timeout"
            shell = keywords.get("shell")
            assert shell is None or (isinstance(shell, ast.Constant) and shell.value is False)
            assert isinstance(node.args[0], (ast.List, ast.Name)), f"{path.name}:{node.lineno}: argument list"
