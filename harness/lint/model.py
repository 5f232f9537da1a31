"""What lint works on (documents with their origin) and what it reports (findings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]
HELM_VALUES_KIND = "HelmValues"
DEVICE_PLUGIN_CHART = "nvidia-device-plugin"


@dataclass(frozen=True)
class Document:
    """One manifest document and where it came from. Helm values (no apiVersion/kind) carry `chart`."""

    body: dict[str, Any]
    source: str
    index: int = 0
    chart: str | None = None

    @property
    def kind(self) -> str:
        if self.chart is not None:
            return HELM_VALUES_KIND
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        if self.chart is not None:
            return self.chart
        return str((self.body.get("metadata") or {}).get("name", "<unnamed>"))

    @property
    def namespace(self) -> str | None:
        ns = (self.body.get("metadata") or {}).get("namespace")
        return str(ns) if ns else None

    @property
    def ref(self) -> str:
        """`Kind/namespace/name` (or `Kind/name` for cluster-scoped objects and values)."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: `severity id object field: message`."""

    rule: str
    severity: Severity
    object: str
    field: str
    message: str
    source: str = dataclasses.field(default="", compare=False)

    def text(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"{self.severity} {self.rule} {self.object} {self.field}: {self.message}{where}"

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "object": self.object,
            "field": self.field,
            "message": self.message,
            "source": self.source,
        }
