"""Reading manifests for lint: files, directories and rendered output become `Document`s.

Unusable input raises `UsageError` naming the file: unreadable, invalid YAML, or a document that is
neither a Kubernetes object nor a recognisable Helm values file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.lint.model import DEVICE_PLUGIN_CHART, Document
from harness.safeyaml import load_all, read_text

# Helm values files are recognised by name (they have no apiVersion/kind): what `render` writes.
_VALUES_CHARTS = (
    ("device-plugin", DEVICE_PLUGIN_CHART),
    ("setup", "seldon-core-v2-setup"),
    ("runtime", "seldon-core-v2-runtime"),
)
_MAX_FILES = 10_000


def chart_for(path: str) -> str | None:
    name = Path(path).name
    if not name.endswith(("values.yaml", "values.yml")):
        return None
    for marker, chart in _VALUES_CHARTS:
        if marker in name:
            return chart
    return None


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise UsageError(f"{path}: directory holds no .yaml/.yml manifests")
            files.extend(found)
        else:
            files.append(path)
        if len(files) > _MAX_FILES:
            raise UsageError(f"{raw}: more than {_MAX_FILES} manifest files; lint a narrower set")
    return files


def documents_from_text(text: str, source: str) -> list[Document]:
    raw_docs = load_all(text, source)
    docs: list[Document] = []
    chart = chart_for(source)
    for index, body in enumerate(raw_docs):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise UsageError(
                f"{source}: document {index + 1}: expected a Kubernetes object (a mapping with apiVersion and kind), "
                f"got a {type(body).__name__}"
            )
        docs.extend(_objects(body, source, index, chart))
    if not docs:
        raise UsageError(f"{source}: holds no documents; expected Kubernetes manifests")
    return docs


def _objects(body: dict[str, Any], source: str, index: int, chart: str | None) -> list[Document]:
    if "apiVersion" not in body or "kind" not in body:
        if chart is not None:
            return [Document(body, source, index, chart)]
        missing = " and ".join(k for k in ("apiVersion", "kind") if k not in body)
        raise UsageError(
            f"{source}: document {index + 1}: not a Kubernetes object (no {missing}); Helm values files are "
            "recognised by name (*device-plugin-values.yaml, *setup-values.yaml, *runtime-values.yaml)"
        )
    if not isinstance(body.get("kind"), str) or not isinstance(body.get("apiVersion"), str):
        raise UsageError(f"{source}: document {index + 1}: apiVersion and kind must be strings")
    if body["kind"].endswith("List") and isinstance(body.get("items"), list):
        items: list[Document] = []
        for item in body["items"]:
            if not isinstance(item, dict):
                raise UsageError(f"{source}: document {index + 1}: items: expected Kubernetes objects")
            items.extend(_objects(item, source, index, None))
        return items
    return [Document(body, source, index)]


def load_manifests(paths: Sequence[str]) -> list[Document]:
    docs: list[Document] = []
    for path in _expand(paths):
        text = read_text(path, "manifest file")
        docs.extend(documents_from_text(text, str(path)))
    return docs


def documents_from_rendered(rendered: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Document]:
    """Rendered output of `harness.render.render_all` (file name -> documents) as lint documents."""
    docs: list[Document] = []
    for name, bodies in rendered.items():
        chart = chart_for(name)
        for index, body in enumerate(bodies):
            is_object = "apiVersion" in body and "kind" in body
            docs.append(Document(dict(body), name, index, None if is_object else chart))
    return docs
