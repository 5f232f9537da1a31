"""One source, judged by content, not by name: a Kubernetes/Seldon rule constant of harness/k8s written
again as a literal elsewhere in harness/, or a rule function of harness/k8s copied under another name,
fails here (issue 29). tests/rules/test_k8s_rules.py keeps the name-based checks and the upstream pins."""

from __future__ import annotations

import ast
import copy
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "harness" / "k8s"
# A generic field path every API client writes (`metadata.name`), not a rule of the harness.
NOT_RULES = frozenset({"NODE_NAME_FIELD"})
# Labels whose `key=` prefix in a string is a hand-built label selector.
LABELS = frozenset({"SERVER_NAME_LABEL", "GPU_PRESENT_LABEL"})
# Function bodies smaller than this (AST nodes) are too small to call a copy (`return x.get("a")`).
MIN_NODES = 20

pytestmark = pytest.mark.fast


def rule_constants(sources: dict[str, str]) -> dict[str, str]:
    """value -> `module:NAME` for the module-level string constants (8+ characters) of harness/k8s."""
    found: dict[str, str] = {}
    for module, text in sources.items():
        for node in _parse(text).body:
            if isinstance(node, ast.Assign):
                value, targets = node.value, node.targets
            elif isinstance(node, ast.AnnAssign):
                value, targets = node.value, [node.target]
            else:
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and len(value.value) >= 8:
                for target in targets:
                    if isinstance(target, ast.Name) and target.id.isupper() and target.id not in NOT_RULES:
                        found[value.value] = f"{module}:{target.id}"
    return found


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    """Every string constant except docstrings (one breadth-first walk: a docstring's owner comes first)."""
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            docs.add(id(first.value))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node


def literal_copies(constants: dict[str, str], sources: dict[str, str]) -> list[str]:
    """`file:line value (constant)` for each literal equal to a rule constant, or building a selector
    from a rule label (`seldon-server-name=...`), outside harness/k8s."""
    selectors = {f"{value}=": name for value, name in constants.items() if name.split(":")[1] in LABELS}
    out = []
    for where, text in sources.items():
        for node in _strings(_parse(text)):
            name = constants.get(node.value) or next((n for p, n in selectors.items() if node.value.endswith(p)), None)
            if name is not None:
                out.append(f"{where}:{node.lineno} {node.value!r} (use {name})")
    return out


class _Normalise(ast.NodeTransformer):
    """Names and arguments renamed by order of first use: a renamed copy has the same dump."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"n{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id=self._name(node.id), ctx=ast.Load()), node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return ast.copy_location(ast.arg(arg=self._name(node.arg)), node)


def _body(fn: ast.FunctionDef) -> list[ast.stmt]:
    return [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]


def _size(fn: ast.FunctionDef) -> int:
    return sum(1 for stmt in _body(fn) for _ in ast.walk(stmt))


def _shape(fn: ast.FunctionDef) -> str:
    normaliser = _Normalise()
    for arg in fn.args.args:
        normaliser._name(arg.arg)
    # A copy: the transformer rewrites nodes in place, and the parsed trees are cached.
    holder = ast.Module(body=copy.deepcopy(_body(fn)), type_ignores=[])
    return ast.dump(normaliser.visit(holder), annotate_fields=False)


def _functions(text: str) -> Iterator[ast.FunctionDef]:
    yield from (n for n in ast.walk(_parse(text)) if isinstance(n, ast.FunctionDef))


def predicate_copies(rules: dict[str, str], sources: dict[str, str]) -> list[str]:
    """`file:line name = rule` for each function outside harness/k8s whose body is a harness/k8s rule's."""
    shapes: dict[str, str] = {}
    for module, text in rules.items():
        for fn in _functions(text):
            if _size(fn) >= MIN_NODES:
                shapes[_shape(fn)] = f"{module}:{fn.name}"
    sizes = {_size(fn) for text in rules.values() for fn in _functions(text)}
    out = []
    for where, text in sources.items():
        for fn in _functions(text):
            # Only a body of a rule's size can be that rule's: the cheap count spares most dumps.
            if _size(fn) in sizes and _shape(fn) in shapes:
                out.append(f"{where}:{fn.lineno} {fn.name} = {shapes[_shape(fn)]}")
    return out


@functools.cache
def _parse(text: str) -> ast.Module:
    return ast.parse(text)


def _tree(under: Path, skip: Path | None = None) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(under.rglob("*.py"))
            if skip is None or skip not in p.parents}


def test_no_rule_constant_is_written_again_as_a_literal() -> None:
    constants = rule_constants({p.stem: p.read_text(encoding="utf-8") for p in K8S.glob("*.py")})
    assert {"mlops.seldon.io", "seldon-server-name", "nvidia.com/gpu"} <= set(constants)
    copies = literal_copies(constants, _tree(ROOT / "harness", skip=K8S))
    assert copies == [], "rule constants written again (import them from harness/k8s):\n" + "\n".join(copies)


def test_no_rule_predicate_is_copied_under_another_name() -> None:
    copies = predicate_copies(_tree(K8S), _tree(ROOT / "harness", skip=K8S))
    assert copies == [], "harness/k8s rules copied (call them instead):\n" + "\n".join(copies)


def test_the_checks_see_renamed_copies() -> None:
    """What the two checks above must catch: a copy under another name, a selector built by hand."""
    rules = {"harness/k8s/conditions.py": (K8S / "conditions.py").read_text(encoding="utf-8")}
    copy = '''
def _cond_of(thing, which):
    """a renamed copy"""
    for c in ((thing or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == which:
            return dict(c)
    return None
'''
    found = predicate_copies(rules, {"x.py": copy})
    assert [c.split(" = ")[1] for c in found] == ["harness/k8s/conditions.py:condition"]
    constants = {"seldon-server-name": "seldon_api:SERVER_NAME_LABEL", "mlops.seldon.io": "seldon_api:SELDON_GROUP"}
    text = ('G = "mlops.seldon.io"\ndef f(s):\n    """mlops.seldon.io in a docstring is prose"""\n'
            '    return f"seldon-server-name={s}"\n')
    assert [c.split()[0] for c in literal_copies(constants, {"x.py": text})] == ["x.py:1", "x.py:4"]


def test_the_sim_store_has_one_write_path() -> None:
    """Every change of a stored object goes through MemoryStore._write (a new resourceVersion, the bucket,
    then the change event): a second path could store without an event, or send one without storing."""
    import ast

    source = (ROOT / "harness" / "sim" / "api" / "store.py").read_text()
    calls: dict[str, list[str]] = {"_commit": [], "_next_rv": []}
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in calls:
                calls[node.func.attr].append(fn.name)
    assert calls == {"_commit": ["_write"], "_next_rv": ["_write"]}, calls
