"""Status conditions, and each success condition the harness waits for beside its give-up rule.

Pure functions over Kubernetes-shaped dicts. A wait (harness/kube/wait.py) takes a success predicate
and, where the awaited state can stop being possible, a give-up rule that names why; keeping the two
side by side here means a change of one is seen next to the other.

Seldon's conditions follow knative's LivingConditionSet (knative.dev/pkg apis/condition_set.go at
efddeac3ec35, the version Seldon v2.10.2 pins): `Ready` for a Server, `ModelReady` for a Model, with
the operator's texts as reasons (operator/controllers/reconcilers/server/statefulset_reconciler.go,
scheduler/pkg/store/memory_status.go).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


def condition(obj: Mapping[str, Any] | None, kind: str) -> Obj | None:
    """A copy of the condition of type `kind` in `obj.status.conditions`, or None."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def condition_status(obj: Mapping[str, Any] | None, kind: str) -> str | None:
    """"True", "False", "Unknown" (as written), or None without such a condition."""
    cond = condition(obj, kind)
    return None if cond is None else str(cond.get("status"))


def condition_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    return condition_status(obj, kind) == "True"


# --- a Node --------------------------------------------------------------------------------------------
def node_ready(node: Mapping[str, Any]) -> bool:
    """Ready True; a node without conditions at all (a snapshot without status) is not held against it."""
    if (node.get("status") or {}).get("conditions") is None:
        return True
    return condition_true(node, "Ready")


# --- a Seldon Server: Ready, or the operator cannot make its StatefulSet ---------------------------------
# The two messages of StatefulSetOrDeploymentReady when the operator could make the StatefulSet. Any other
# text in a False condition is an error it met making it (the server controller's updateStatusFromError:
# the StatefulSet refused by the API server, a missing ServerConfig).
STATEFULSET_READY = "StatefulSet replicas matches desired replicas"
STATEFULSET_NOT_READY = "StatefulSet replicas does not match desired replicas"


def server_ready(server: Mapping[str, Any] | None) -> bool:
    return condition_true(server, "Ready")


def server_refusal(server: Mapping[str, Any] | None) -> str | None:
    """Why the operator could not make this Server's StatefulSet, from its status; None when it could.

    The operator writes these texts as the condition's reason (knative's MarkFalse with an empty
    message), so the reason decides; a message, where one is given, only adds to the text."""
    for cond in ((server or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") != "StatefulSetOrDeploymentReady" or cond.get("status") != "False":
            continue
        reason, message = str(cond.get("reason") or ""), str(cond.get("message") or "")
        if reason in (STATEFULSET_READY, STATEFULSET_NOT_READY) or not (reason or message):
            continue
        return f"the Seldon operator cannot make the Server's StatefulSet: {reason or message}"
    return None


# --- a Seldon Model: ModelReady, or Seldon failed it -------------------------------------------------------
MODEL_FAILED_STATES = ("ModelFailed", "ScheduleFailed")


def model_ready(model: Mapping[str, Any] | None) -> bool:
    return condition_true(model, "ModelReady")


def model_failed(model: Mapping[str, Any] | None) -> str | None:
    """`ModelFailed: <reason>` or `ScheduleFailed: <reason>` when Seldon reports a failure, else None."""
    cond = condition(model, "ModelReady")
    if cond is None or cond.get("status") == "True":
        return None
    text = f"{cond.get('reason') or ''} {cond.get('message') or ''}"
    for state in MODEL_FAILED_STATES:
        if state in text:
            detail = " ".join(str(cond.get(k) or "") for k in ("reason", "message") if cond.get(k) != state)
            return f"{state}: {detail.strip() or state}"
    return None


# --- a Pod: decided by the scheduler, running, finished -----------------------------------------------------
def scheduled_or_unschedulable(pod: Obj | None) -> bool:
    """The scheduler has decided: bound to a node, or marked Unschedulable."""
    if pod is None:
        return False
    if (pod.get("spec") or {}).get("nodeName"):
        return True
    cond = condition(pod, "PodScheduled")
    return cond is not None and cond.get("status") == "False" and cond.get("reason") == "Unschedulable"


def finished(pod: Obj | None) -> bool:
    return pod is not None and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def running(pod: Obj | None) -> bool:
    return pod is not None and (pod.get("status") or {}).get("phase") == "Running"


def condition_text(obj: Mapping[str, Any] | None, kind: str) -> str:
    """One line for messages: the condition's status, reason and message."""
    cond = condition(obj, kind) or {}
    return f"{cond.get('status')} {cond.get('reason') or ''} {cond.get('message') or ''}".strip()
