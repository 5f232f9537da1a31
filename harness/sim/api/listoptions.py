"""List and watch options the API server validates before serving (422 on ListOptions).

Upstream: kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/apis/meta/internalversion/validation/
validation.go `ValidateListOptions` (commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282): resourceVersionMatch
needs a resourceVersion, is not allowed with continue, takes Exact or NotOlderThan, refuses Exact at "0",
and on a watch is allowed only with sendInitialEvents (then NotOlderThan).
"""

from __future__ import annotations

from harness.sim.contracts import ApiError

MATCHES = ("Exact", "NotOlderThan")


def _invalid(errors: list[str]) -> ApiError:
    body = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return ApiError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {body}',
                    {"group": "meta.k8s.io", "kind": "ListOptions",
                     "causes": [{"reason": "FieldValueInvalid", "field": "resourceVersionMatch", "message": e}
                                for e in errors]})


def check_list(resource_version: str | None, match: str | None, continue_token: str | None) -> int | None:
    """Validate a list's options; the resourceVersion to serve exactly, or None for the current state."""
    if not match:
        return None
    errors = []
    if not resource_version:
        errors.append("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is "
                      "provided")
    if continue_token:
        errors.append("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided")
    if match not in MATCHES:
        errors.append(f'resourceVersionMatch: Unsupported value: "{match}": supported values: "Exact", '
                      '"NotOlderThan", ""')
    if match == "Exact" and resource_version == "0":
        errors.append('resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for '
                      'resourceVersion "0"')
    if errors:
        raise _invalid(errors)
    if match != "Exact":
        return None  # NotOlderThan: the current state is never older
    try:
        return int(str(resource_version))
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid resource version: {resource_version!r}") from None


def check_watch(match: str | None, send_initial_events: bool) -> None:
    if not match:
        return
    if not send_initial_events:
        raise _invalid(["resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless "
                        "sendInitialEvents is provided"])
    if match != "NotOlderThan":
        raise _invalid([f'resourceVersionMatch: Unsupported value: "{match}": supported values: "NotOlderThan"'])
