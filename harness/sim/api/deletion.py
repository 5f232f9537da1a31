"""Delete options as the API server reads them: pure decisions the store applies.

Upstream sources (kubernetes/kubernetes):
- `rest.BeforeDelete` (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go, commit
  02a7741ebbc83077c05a2c109a9dc8bbd0a0a1dd): preconditions (uid, resourceVersion) answer 409 Conflict;
  a negative grace period counts as 1 s; an object already being deleted may only have its grace
  period shortened (a longer or equal one leaves it pending); a first graceful delete sets
  `deletionTimestamp` to now + grace and `deletionGracePeriodSeconds` to the grace.
- `podStrategy.CheckGracefulDelete` (pkg/registry/core/pod/strategy.go, commit
  008b3652959ca58af8be3fb5b6ecfe9ae7638282): the grace is the option's, else the pod's
  `terminationGracePeriodSeconds` (defaulted to 30 on create); an unscheduled pod or one in phase
  Succeeded/Failed is deleted at once (grace 0). Only pods delete gracefully; other kinds wait only
  for their finalizers.
- the garbage collector's finalizers (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go:
  `FinalizerOrphanDependents = "orphan"`, `FinalizerDeleteDependents = "foregroundDeletion"`):
  Orphan and Foreground deletes put them on the owner, which stays (deletionTimestamp set) until the
  collector has orphaned, or deleted, its dependents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.sim.contracts import ApiError, Obj

ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
POLICIES = ("Background", "Foreground", "Orphan")


@dataclass(frozen=True)
class DeleteOptions:
    """What a DELETE asked for (query parameters and a DeleteOptions body, the body winning)."""

    grace_period: int | None = None
    policy: str | None = None  # None: the kind's default (Background for everything the sim serves)
    uid: str | None = None
    resource_version: str | None = None


def parse_options(query_grace: str | None, query_policy: str | None, body: Any) -> DeleteOptions:
    """DeleteOptions from a request; 400 for values the API server refuses."""
    grace_text: Any = query_grace
    policy = query_policy
    uid = rv = None
    if isinstance(body, dict):
        if body.get("gracePeriodSeconds") is not None:
            grace_text = body["gracePeriodSeconds"]
        policy = body.get("propagationPolicy") or policy
        if body.get("orphanDependents") is True:
            policy = "Orphan"
        pre = body.get("preconditions")
        if isinstance(pre, dict):
            uid = pre.get("uid")
            rv = pre.get("resourceVersion")
    if policy is not None and policy not in POLICIES:
        raise ApiError(400, "BadRequest", f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                       '"Foreground", "Background", "Orphan"')
    grace: int | None = None
    if grace_text is not None and grace_text != "":
        try:
            grace = int(grace_text)
        except (TypeError, ValueError):
            raise ApiError(400, "BadRequest", f"gracePeriodSeconds: Invalid value: {grace_text!r}: "
                           "must be an integer") from None
        if grace < 0:
            grace = 1  # BeforeDelete: negative values are treated as 1s on the delete path
    return DeleteOptions(grace, policy, None if uid is None else str(uid), None if rv is None else str(rv))


def check_preconditions(obj: Obj, options: DeleteOptions, resource: str) -> None:
    """409 Conflict when a precondition does not hold (BeforeDelete's wording)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if options.uid is not None and options.uid != meta.get("uid"):
        raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": the UID in the '
                       f"precondition ({options.uid}) does not match the UID in record ({meta.get('uid')}). "
                       "The object might have been deleted and then recreated", {"name": name, "kind": resource})
    if options.resource_version is not None and options.resource_version != meta.get("resourceVersion"):
        raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": the '
                       f"ResourceVersion in the precondition ({options.resource_version}) does not match the "
                       f"ResourceVersion in record ({meta.get('resourceVersion')}). The object might have been "
                       "modified", {"name": name, "kind": resource})


def pod_grace_period(pod: Obj, options: DeleteOptions) -> int:
    """CheckGracefulDelete: the grace period a pod's deletion gets (0 = delete at once)."""
    spec = pod.get("spec") or {}
    if options.grace_period is not None:
        period = options.grace_period
    else:
        period = int(spec.get("terminationGracePeriodSeconds") or 0)
    if not spec.get("nodeName"):
        return 0
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    return max(period, 0)


def deletion_timestamp(grace: int, now: datetime | None = None) -> str:
    """The deletionTimestamp of a graceful delete: the time by which the object should be gone."""
    at = (now or datetime.now(UTC)) + timedelta(seconds=grace)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def shortened(current: Obj, options: DeleteOptions) -> int | None:
    """A pod already being deleted: the new (shorter) grace period, or None when it stays pending."""
    meta = current.get("metadata") or {}
    old = meta.get("deletionGracePeriodSeconds")
    if old is None or int(old) == 0:
        return 0  # BeforeDelete: no or zero grace recorded means delete now
    if options.grace_period is None or options.grace_period >= int(old):
        return None
    return options.grace_period
