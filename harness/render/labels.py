"""Labels every object the harness creates carries, so a run's objects can be listed and removed."""

from __future__ import annotations

from harness.config import LABEL_VALUE
from harness.errors import UsageError

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY = "seldon-gpu-harness"
RUN_ID_KEY = "harness.seldon.dev/run-id"
COMPONENT_KEY = "app.kubernetes.io/component"


def labels_for_run(run_id: str | None) -> dict[str, str]:
    """`managed-by` always; the run id when there is one (a plain `render` has none)."""
    labels = {MANAGED_BY_KEY: MANAGED_BY}
    if run_id is not None:
        if not run_id or len(run_id) > 63 or not LABEL_VALUE.match(run_id):
            raise UsageError(
                f"run id {run_id!r}: expected a Kubernetes label value (at most 63 characters: "
                "letters, digits, '-', '_', '.', starting and ending alphanumeric)"
            )
        labels[RUN_ID_KEY] = run_id
    return labels


def object_meta(
    name: str, namespace: str | None, run_id: str | None, component: str | None = None
) -> dict[str, object]:
    labels = labels_for_run(run_id)
    if component is not None:
        labels[COMPONENT_KEY] = component
    meta: dict[str, object] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels
    return meta
