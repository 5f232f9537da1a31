"""The one wait primitive: watch-based, with a monotonic deadline and a useful timeout message.

List first (the state now plus a resourceVersion), then watch from that version. A stream that
ends or drops is resumed from the last version seen; `410 Gone` (the version was compacted) or a
failing watch falls back to a fresh list. Between failed attempts the wait backs off on an Event,
never a blind pause. On timeout, `WaitTimeout` names what was awaited, the object, its last observed
state and its recent events.

A wait may also take a `give_up` callable: given the same state as the predicate, it returns a reason
when the awaited state can no longer come (a pod Unschedulable past its budget, a Model Seldon failed),
and the wait raises `WaitGaveUp` with that reason at once instead of running out its timeout. Give-up
reasons are often time-based, so a wait with one re-checks at least every `GIVE_UP_RECHECK_S` even when
no event arrives (the watch is reopened from the last version, not re-listed).

The module talks to the API through the small `WatchSource` protocol (which `harness.kube.client.Kube`
satisfies), so it does not import the client: the client imports it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from harness.errors import WaitGaveUp, WaitTimeout
from harness.k8s.pods import object_key
from harness.kube.retry import KubeApiError, Retrier

Obj = dict[str, Any]
GiveUp = Callable[[Obj | None], str | None]
GiveUpList = Callable[[list[Obj]], str | None]

# Upper bound on list/watch rounds in one wait: a server that ends every watch at once cannot spin us.
MAX_ROUNDS = 10_000
# How often a wait with a give-up callable looks again when nothing happens (time-based reasons).
GIVE_UP_RECHECK_S = 2.0


class WatchSource(Protocol):
    """What a wait needs from the API client."""

    retrier: Retrier

    def list_with_version(self, api_version: str, kind: str, namespace: str | None = None,
                          label_selector: str | None = None,
                          field_selector: str | None = None) -> tuple[list[Obj], str]: ...

    def watch_stream(self, api_version: str, kind: str, namespace: str | None, resource_version: str,
                     timeout_s: float, label_selector: str | None = None,
                     field_selector: str | None = None) -> Iterator[Obj]: ...

    def events(self, namespace: str | None = None, involved_name: str | None = None,
               involved_kind: str | None = None) -> list[Obj]: ...


def summarize(obj: Obj | None) -> str:
    """One or a few lines: phase, conditions, readiness; what a human needs to see why it is stuck."""
    if obj is None:
        return "not found"
    status = obj.get("status") or {}
    parts: list[str] = []
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        parts.append("terminating")
    if status.get("phase"):
        parts.append(f"phase={status['phase']}")
    for key in ("replicas", "readyReplicas", "availableReplicas", "loadedModels"):
        if key in status:
            parts.append(f"{key}={status[key]}")
    for cond in status.get("conditions") or []:
        text = f"{cond.get('type')}={cond.get('status')}"
        detail = cond.get("reason") or ""
        if cond.get("message"):
            detail = f"{detail}: {cond['message']}" if detail else str(cond["message"])
        parts.append(f"{text} ({detail})" if detail else text)
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        parts.append(f"container {cs.get('name')}: ready={cs.get('ready')} restarts={cs.get('restartCount', 0)}"
                     + (f" waiting={waiting}" if waiting else ""))
    if obj.get("kind") == "Node":
        alloc = status.get("allocatable") or {}
        parts.append("allocatable=" + ",".join(f"{k}={v}" for k, v in sorted(alloc.items())))
        taints = (obj.get("spec") or {}).get("taints") or []
        parts.append("taints=" + ",".join(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in taints))
    return "; ".join(parts) if parts else "exists, no status reported"


def _events_text(kube: WatchSource, kind: str, name: str | None, namespace: str | None, limit: int = 5) -> str:
    try:
        events = kube.events(namespace, involved_name=name, involved_kind=kind)
    except Exception as exc:  # the timeout message must not be lost because events could not be read
        return f"(events unavailable: {exc})"
    if not events:
        return "none"
    lines = [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}" for e in events[-limit:]]
    return " | ".join(lines)


class _Backoff:
    def __init__(self, kube: WatchSource) -> None:
        self.kube = kube
        self.failures = 0
        self.event = threading.Event()

    def wait(self, deadline: float, exc: KubeApiError) -> None:
        self.failures += 1
        delay = self.kube.retrier.policy.delay(min(self.failures, 10), exc.retry_after)
        self.event.wait(max(0.0, min(delay, deadline - time.monotonic())))

    def pause(self, deadline: float) -> None:
        self.event.wait(max(0.0, min(0.05, deadline - time.monotonic())))


def wait_for(kube: WatchSource, api_version: str, kind: str, name: str, namespace: str | None,
             predicate: Callable[[Obj | None], bool], timeout: float, what: str,
             give_up: GiveUp | None = None) -> Obj | None:
    """Block until `predicate(obj)` holds (obj is None while absent); return the object that satisfied it.

    `give_up(obj)` returning a reason ends the wait early with `WaitGaveUp`."""
    state: dict[str, Obj | None] = {"obj": None}
    started = time.monotonic()

    def check(items: list[Obj]) -> bool:
        state["obj"] = items[0] if items else None
        return predicate(state["obj"])

    def reason() -> str | None:
        return give_up(state["obj"]) if give_up is not None else None

    ok = _wait(kube, api_version, kind, namespace, None, f"metadata.name={name}", check, timeout,
               None if give_up is None else reason)
    if ok:
        return state["obj"]
    last = state["obj"]
    why = reason()
    if why is not None:
        raise WaitGaveUp(
            f"gave up after {time.monotonic() - started:.0f}s waiting for {what}: {why}; "
            f"{_describe(kind, name, namespace)}: last state: {summarize(last)}"
        )
    raise WaitTimeout(
        f"timed out after {timeout:g}s waiting for {what}: {_describe(kind, name, namespace)}: "
        f"last state: {summarize(last)}; events: {_events_text(kube, kind, name, namespace)}"
    )


def wait_for_list(kube: WatchSource, api_version: str, kind: str, namespace: str | None,
                  predicate: Callable[[list[Obj]], bool], timeout: float, what: str,
                  label_selector: str | None = None, field_selector: str | None = None,
                  give_up: GiveUpList | None = None) -> list[Obj]:
    """Block until `predicate(objects matching the selectors)` holds; return that list (sorted by name).

    `give_up(objects)` returning a reason ends the wait early with `WaitGaveUp`."""
    state: dict[str, list[Obj]] = {"items": []}
    started = time.monotonic()

    def check(items: list[Obj]) -> bool:
        state["items"] = items
        return predicate(items)

    def reason() -> str | None:
        return give_up(state["items"]) if give_up is not None else None

    if _wait(kube, api_version, kind, namespace, label_selector, field_selector, check, timeout,
             None if give_up is None else reason):
        return state["items"]
    items = state["items"]
    why = reason()
    if why is not None:
        raise WaitGaveUp(f"gave up after {time.monotonic() - started:.0f}s waiting for {what}: {why}")
    shown = "; ".join(f"{(o.get('metadata') or {}).get('name')}: {summarize(o)}" for o in items[:8])
    more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
    selector = ",".join(s for s in (label_selector, field_selector) if s) or "all"
    where = f" in {namespace}" if namespace else ""
    raise WaitTimeout(
        f"timed out after {timeout:g}s waiting for {what}: {kind} objects{where} matching {selector}: "
        f"{len(items)} seen: {shown or 'none'}{more}; events: {_events_text(kube, kind, None, namespace)}"
    )


def _describe(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _wait(kube: WatchSource, api_version: str, kind: str, namespace: str | None, label_selector: str | None,
          field_selector: str | None, check: Callable[[list[Obj]], bool], timeout: float,
          give_up: Callable[[], str | None] | None = None) -> bool:
    """True once `check` holds; False at the deadline or as soon as `give_up` (over the state `check` last
    saw) names a reason."""
    deadline = time.monotonic() + timeout
    backoff = _Backoff(kube)
    objects: dict[str, Obj] = {}
    version = ""
    need_list = True
    for _ in range(MAX_ROUNDS):
        remaining = deadline - time.monotonic()
        if need_list:
            try:
                items, version = kube.list_with_version(api_version, kind, namespace, label_selector,
                                                        field_selector)
            except KubeApiError as exc:
                if not exc.transient or remaining <= 0:
                    if remaining <= 0:
                        return False
                    raise
                backoff.wait(deadline, exc)
                continue
            objects = {object_key(o): o for o in items}
            need_list = False
            if check(sorted(objects.values(), key=object_key)):
                return True
        if remaining <= 0 or (give_up is not None and give_up() is not None):
            return False
        try:
            window = remaining if give_up is None else min(remaining, GIVE_UP_RECHECK_S)
            stream = kube.watch_stream(api_version, kind, namespace, version, window, label_selector,
                                       field_selector)
            seen = 0
            for event in stream:
                seen += 1
                etype = event.get("type")
                obj = event.get("object") or {}
                if etype == "ERROR":
                    # 410 Gone: our version was compacted away; anything else: start over from a list.
                    need_list = True
                    break
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    version = str(rv)
                if etype in ("ADDED", "MODIFIED"):
                    objects[object_key(obj)] = obj
                elif etype == "DELETED":
                    objects.pop(object_key(obj), None)
                else:
                    continue  # BOOKMARK: only the version moves
                if check(sorted(objects.values(), key=object_key)):
                    return True
                if time.monotonic() >= deadline or (give_up is not None and give_up() is not None):
                    return False
            if seen == 0 and not need_list:
                # A stream that ends at once with nothing (a flapping proxy) must not become a busy loop.
                backoff.pause(deadline)
        except KubeApiError as exc:
            if exc.status == 410:
                need_list = True
                continue
            if not exc.transient:
                raise
            need_list = True
            backoff.wait(deadline, exc)
    return False
