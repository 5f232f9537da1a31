"""Deterministic YAML output: same documents in, same bytes out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError

# libyaml's emitter where PyYAML was built with it (its wheels are): the same bytes as the Python
# emitter for everything rendered here (tests/profiles/test_render.py compares them), at a fraction of
# the CPU; the probe's ConfigMap alone took a second of the Python emitter's time per render.
_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    """Safe dumper that writes multi-line strings (the probe script, kubeadm patches) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_documents(documents: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML; keys keep the builders' order (which is fixed), never sorted by the dumper."""
    return yaml.dump_all(
        list(documents), Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True, width=120
    )


def write_rendered(rendered: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | Path) -> list[Path]:
    """Write each file under `out_dir`; returns the paths written, in order."""
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: --out: expected a directory, got an existing file")
    written: list[Path] = []
    for name, documents in rendered.items():
        path = root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump_documents(documents), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: --out: cannot write ({exc.__class__.__name__}: {exc.strerror or exc})") from None
        written.append(path)
    return written
