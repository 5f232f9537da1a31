"""`Kube`: the one Kubernetes client wrapper of the harness.

Objects go in and come out as plain Kubernetes-shaped dicts. Requests go through the official
client's configured `ApiClient` (auth, TLS, proxies from the kubeconfig) but paths are built here
from API discovery, so built-in kinds and CRDs take the same route and nothing depends on the
client's model classes. Transient failures are retried on idempotent verbs only (see `retry.py`);
the one wait primitive is `wait_for` / `wait_for_list` in `wait.py`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import urllib3
from kubernetes.client.exceptions import ApiException

from harness.config import Timeouts
from harness.errors import UsageError
from harness.kube import wait as waits
from harness.kube.retry import KubeApiError, Retrier, RetryPolicy
from harness.progress import waiting

Obj = dict[str, Any]
ObjList = list[dict[str, Any]]
PatchType = Literal["merge", "strategic", "json"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
# Fields the server owns; sending them back in a patch would fail or fight the server.
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


LIST_PAGE = 500
MAX_PAGES = 1000


def api_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def describe(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


class Kube:
    """Dict-in, dict-out access to one cluster. Thread-safe for concurrent calls."""

    def __init__(self, api_client: Any, timeouts: Timeouts, retry: RetryPolicy | None = None) -> None:
        self._api = api_client
        self.timeouts = timeouts
        self.retrier = Retrier(retry or RetryPolicy())
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}
        self._lock = threading.Lock()

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(cls, path: str | Path | None, context: str | None, timeouts: Timeouts,
                        retry: RetryPolicy | None = None) -> Kube:
        """Attach through a kubeconfig (None: $KUBECONFIG, else ~/.kube/config) and its context."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        from harness.kube.kubeconfig import resolve

        # kubectl's rules: the given file alone, else every $KUBECONFIG file merged (the kubernetes
        # client merges a path list itself, first definition wins), else ~/.kube/config.
        choice = resolve(path, os.environ.get("KUBECONFIG"), Path.home())
        path = os.pathsep.join(str(p) for p in choice.files)
        configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context,
                                    client_configuration=configuration, persist_config=False)
        except ConfigException as exc:
            where = f" context {context!r}" if context else ""
            raise UsageError(f"{path}:{where} unusable kubeconfig: {exc}") from None
        # Our own retry loop counts attempts; urllib3's hidden retries would make that count a lie.
        configuration.retries = False
        return cls(client.ApiClient(configuration), timeouts, retry)

    def close(self) -> None:
        self._api.close()

    def fresh(self) -> Kube:
        """The same cluster, credentials, timeouts and retry policy over a connection pool of its own.

        For work inside a signal handler: the signal may have interrupted this client's thread while it
        held urllib3's pool lock (taking or returning a connection), and that lock is not re-entrant, so
        a request through this client from the handler would wait for its own thread forever."""
        from kubernetes import client

        return Kube(client.ApiClient(self._api.configuration), self.timeouts, self.retrier.policy)

    def websocket_request(self, path: str) -> tuple[Any, str, dict[str, str]]:
        """(client configuration, URL, headers with the credentials) for a websocket to `path` on the API
        server (port-forward: harness.kube.tunnel). Credentials stay in the headers; nothing logs them."""
        headers = {k.lower(): v for k, v in self._headers(None).items()}
        return self._api.configuration, self._url(path, None), headers

    # --- transport ----------------------------------------------------------------------
    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        host: str = self._api.configuration.host.rstrip("/")
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return host + path + (("?" + urlencode(q)) if q else "")

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {**getattr(self._api, "default_headers", {}), "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        self._api.update_params_for_auth(headers, [], ["BearerToken"], "", "", None)
        return headers

    def _send(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
              content_type: str | None = None, timeout: float | tuple[float, float] | None = None,
              stream: bool = False) -> Any:
        """One HTTP request; raises `KubeApiError` for non-2xx answers and connection failures."""
        url = self._url(path, query)
        if body is not None and content_type is None:
            content_type = "application/json"
        try:
            resp = self._api.rest_client.request(
                method, url, headers=self._headers(content_type), body=body,
                _request_timeout=timeout if timeout is not None else self.timeouts.request_s,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeApiError(f"{method} {path}: connection failed: {exc.__class__.__name__}: {exc}") from exc
        except ApiException as exc:  # the client reports TLS failures this way: not transient, not retried
            raise KubeApiError(f"{method} {path}: {exc.reason}".replace("\n", " "), -1, "TLS") from exc
        raw = resp.response
        if stream and 200 <= raw.status < 300:
            return raw
        try:
            data: bytes = raw.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeApiError(f"{method} {path}: connection dropped: {exc.__class__.__name__}: {exc}") from exc
        if 200 <= raw.status < 300:
            return data
        raise _api_error(method, path, raw.status, data, raw.headers.get("Retry-After"))

    def _json(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
              content_type: str | None = None, *, idempotent: bool) -> Any:
        def once() -> Any:
            data = self._send(method, path, query, body, content_type)
            return json.loads(data) if data else None

        return self.retrier.call(f"{method} {path}", once, idempotent)

    # --- discovery ----------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from the API server's discovery (cached)."""
        key = (api_version, kind)
        with self._lock:
            if key in self._resources:
                return self._resources[key]
        try:
            found = self._json("GET", api_path(api_version), idempotent=True)
        except KubeApiError as exc:
            if exc.status == 404:
                raise KubeApiError(f"the API server does not serve {api_version} (is its CRD installed?)",
                                   404, "NotFound") from exc
            raise
        with self._lock:
            for res in (found or {}).get("resources", []):
                if "/" in res.get("name", ""):
                    continue
                self._resources[(api_version, res.get("kind", ""))] = (res["name"], bool(res.get("namespaced")))
            if key not in self._resources:
                raise KubeApiError(f"the API server has no kind {kind} in {api_version}", 404, "NotFound")
            return self._resources[key]

    def path(self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        plural, namespaced = self.resource(api_version, kind)
        parts = [api_path(api_version)]
        if namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def namespaced(self, api_version: str, kind: str) -> bool:
        return self.resource(api_version, kind)[1]

    # --- verbs --------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            obj: Obj = self._json("GET", self.path(api_version, kind, namespace, name), idempotent=True)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def list_with_version(self, api_version: str, kind: str, namespace: str | None = None,
                          label_selector: str | None = None,
                          field_selector: str | None = None) -> tuple[ObjList, str]:
        """Items (with apiVersion/kind filled in, as kubectl shows them) and the list's resourceVersion."""
        query: dict[str, Any] = {"labelSelector": label_selector, "fieldSelector": field_selector,
                                 "limit": LIST_PAGE}
        path = self.path(api_version, kind, namespace)
        items: ObjList = []
        version = ""
        for page in range(MAX_PAGES):  # big clusters answer in pages; the bound keeps a broken server finite
            body = self._json("GET", path, query, idempotent=True) or {}
            meta = body.get("metadata") or {}
            if page == 0:
                version = str(meta.get("resourceVersion", ""))
            for item in body.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            if not meta.get("continue"):
                break
            query["continue"] = meta["continue"]
        return items, version

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> ObjList:
        return self.list_with_version(api_version, kind, namespace, label_selector, field_selector)[0]

    def create(self, obj: Obj, dry_run: bool = False) -> Obj:
        """A bare create: not idempotent, so never retried (a retry after a lost answer could act twice)."""
        meta = obj.get("metadata") or {}
        if "name" not in meta and "generateName" not in meta:
            raise UsageError("object is missing metadata.name (or metadata.generateName) for create")
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        namespace = meta.get("namespace")
        query = {"dryRun": "All"} if dry_run else None
        created: Obj = self._json("POST", self.path(api_version, kind, namespace), query, obj, idempotent=False)
        return created

    def create_only(self, obj: Obj) -> Obj:
        """Create, retrying transient errors; an existing object is a 409 `KubeApiError`, never patched.

        Retrying a create is safe here because the caller decides what a 409 means (a lost create
        of ours that landed carries our run id; anything else is someone else's object).
        """
        api_version, kind, name, namespace = _identity(obj)
        body = _strip_server_fields(obj)
        created: Obj = self.retrier.call(
            f"create {describe(kind, name, namespace)}",
            lambda: self._create_once(api_version, kind, namespace, body, None), idempotent=True)
        return created

    def apply(self, obj: Obj, dry_run: bool = False) -> Obj:
        """Create, or merge-patch what is there: running it twice leaves the same object."""
        api_version, kind, name, namespace = _identity(obj)
        body = _strip_server_fields(obj)
        query = {"dryRun": "All"} if dry_run else None
        for _ in range(3):  # bounded: create can race with another writer creating the same object
            if self.get(api_version, kind, name, namespace) is None:
                try:
                    created: Obj = self.retrier.call(
                        f"create {describe(kind, name, namespace)}",
                        lambda: self._create_once(api_version, kind, namespace, body, query), idempotent=True)
                    return created
                except KubeApiError as exc:
                    if exc.status != 409:
                        raise
                    continue  # it appeared meanwhile (or our lost create landed): patch it instead
            patched: Obj = self._json(
                "PATCH", self.path(api_version, kind, namespace, name), query, body,
                _PATCH_CONTENT_TYPES["merge"], idempotent=True)
            return patched
        raise KubeApiError(f"apply {describe(kind, name, namespace)}: kept flipping between absent and present")

    def _create_once(self, api_version: str, kind: str, namespace: str | None, body: Obj,
                     query: dict[str, Any] | None) -> Obj:
        data = self._send("POST", self.path(api_version, kind, namespace), query, body)
        created: Obj = json.loads(data)
        return created

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, patch: Any,
              patch_type: PatchType = "merge", subresource: str | None = None) -> Obj:
        if patch_type not in _PATCH_CONTENT_TYPES:
            raise UsageError(f"patch_type: expected merge, strategic or json, got {patch_type!r}")
        # A patch is idempotent as long as it does not carry list appends; ours set values, so retry.
        patched: Obj = self._json("PATCH", self.path(api_version, kind, namespace, name, subresource), None, patch,
                                  _PATCH_CONTENT_TYPES[patch_type], idempotent=True)
        return patched

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, wait: bool = True,
               timeout: float | None = None) -> None:
        """Delete (404 counts as done) and, with `wait`, block until the object is gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self._json("DELETE", self.path(api_version, kind, namespace, name), None, body, idempotent=True)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
        if wait:
            waits.wait_for(self, api_version, kind, name, namespace, lambda o: o is None,
                     timeout if timeout is not None else self.timeouts.delete_s,
                     f"{describe(kind, name, namespace)} to be deleted")

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False,
             tail: int | None = None) -> str:
        query = {"container": container, "previous": "true" if previous else None, "tailLines": tail}
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/log"
        data: bytes = self.retrier.call(f"GET {path}", lambda: self._send("GET", path, query), idempotent=True)
        return data.decode("utf-8", errors="replace")

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET `path` on a pod's container port through the API server's pod proxy
        (`pods/<name>:<port>/proxy/...`; needs `get` on `pods/proxy`). How the harness reads a
        server's own endpoints, such as Triton's metrics, that the Seldon mesh does not route."""
        where = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}:{int(port)}/proxy/"
        full = where + path.lstrip("/")
        data: bytes = self.retrier.call(f"GET {full}", lambda: self._send("GET", full), idempotent=True)
        return data.decode("utf-8", errors="replace")

    def events(self, namespace: str | None = None, involved_name: str | None = None,
               involved_kind: str | None = None) -> ObjList:
        """Events sorted oldest first. Filtering is done here, so it works on any API server."""
        items = self.list("v1", "Event", namespace)
        out = [
            e for e in items
            if (involved_name is None or (e.get("involvedObject") or {}).get("name") == involved_name)
            and (involved_kind is None or (e.get("involvedObject") or {}).get("kind") == involved_kind)
        ]
        return sorted(out, key=event_time)

    def server_version(self) -> str:
        return str(self.version_info().get("gitVersion", ""))

    def version_info(self) -> Obj:
        """The API server's `/version` document (gitVersion, gitCommit, platform, ...)."""
        body = self._json("GET", "/version", idempotent=True)
        return dict(body) if isinstance(body, dict) else {}

    def server_time(self) -> dt.datetime:
        """The API server's clock, from the `Date` header of its answer to GET /version.

        Lease expiry is judged by this clock, never by ours: a host whose clock runs ahead must not
        see a live run's Lease as expired (and one whose clock lags must not renew into the past)."""
        try:
            resp = self._api.rest_client.request("GET", self._url("/version", None), headers=self._headers(None),
                                                 _request_timeout=self.timeouts.request_s)
            raw = resp.response
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as exc:
            raise KubeApiError(f"GET /version: connection failed: {exc.__class__.__name__}: {exc}") from exc
        date = raw.headers.get("Date") if 200 <= raw.status < 300 else None
        try:
            when = email.utils.parsedate_to_datetime(str(date)) if date else None
        except (TypeError, ValueError):
            when = None
        if when is None or when.tzinfo is None:
            raise KubeApiError(f"GET /version: the API server sent no usable Date header ({date!r}); its clock "
                               "is what Lease expiry is judged by", raw.status)
        return when.astimezone(dt.UTC)

    def wait_for(self, api_version: str, kind: str, name: str, namespace: str | None,
                 predicate: Callable[[Obj | None], bool], timeout: float, what: str,
                 give_up: waits.GiveUp | None = None) -> Obj | None:
        """See `harness.kube.wait.wait_for`: the one wait primitive."""
        with waiting(what):  # the running phase's heartbeat names what it waits for
            return waits.wait_for(self, api_version, kind, name, namespace, predicate, timeout, what, give_up)

    def wait_for_list(self, api_version: str, kind: str, namespace: str | None,
                      predicate: Callable[[ObjList], bool], timeout: float, what: str,
                      label_selector: str | None = None, field_selector: str | None = None,
                      give_up: waits.GiveUpList | None = None) -> ObjList:
        """See `harness.kube.wait.wait_for_list`."""
        with waiting(what):
            return waits.wait_for_list(self, api_version, kind, namespace, predicate, timeout, what,
                                       label_selector, field_selector, give_up)

    def watch_stream(self, api_version: str, kind: str, namespace: str | None, resource_version: str,
                     timeout_s: float, label_selector: str | None = None,
                     field_selector: str | None = None) -> Iterator[Obj]:
        """Raw watch events from `resource_version` until the server ends the stream or it drops.

        A dropped connection ends the iterator quietly: the caller resumes from the last version it saw.
        """
        query: dict[str, Any] = {
            "watch": "true", "resourceVersion": resource_version or None, "allowWatchBookmarks": "true",
            "timeoutSeconds": max(1, math.ceil(timeout_s)), "labelSelector": label_selector,
            "fieldSelector": field_selector,
        }
        path = self.path(api_version, kind, namespace)
        # The read timeout ends a quiet stream at the caller's deadline (the server's timeoutSeconds is whole
        # seconds) and also stops a silent, half-dead connection from hanging the wait.
        raw = self._send("GET", path, query, timeout=(self.timeouts.request_s, max(0.05, timeout_s)), stream=True)
        buf = b""
        finished = False
        try:
            for chunk in raw.stream(4096, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buf.strip():
                yield json.loads(buf)
            finished = True
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return
        finally:
            if finished:
                raw.release_conn()
            else:
                # Left mid-stream (the wait was satisfied, or the stream broke): unread watch data must never
                # reach the next request on a pooled connection, so this connection is closed, not reused.
                raw.close()


def event_time(event: Obj) -> str:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return str(event[key])
    return str((event.get("metadata") or {}).get("creationTimestamp") or "")


def _identity(obj: Obj) -> tuple[str, str, str, str | None]:
    meta = obj.get("metadata") or {}
    try:
        return str(obj["apiVersion"]), str(obj["kind"]), str(meta["name"]), meta.get("namespace")
    except KeyError as exc:
        raise UsageError(f"object is missing {exc.args[0]!r} (need apiVersion, kind and metadata.name)") from None


def _strip_server_fields(obj: Obj) -> Obj:
    body = dict(obj)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_FIELDS}
    body["metadata"] = meta
    body.pop("status", None)
    return body


def _api_error(method: str, path: str, status: int, data: bytes, retry_after: str | None) -> KubeApiError:
    reason, message = "", ""
    try:
        body = json.loads(data)
        if isinstance(body, dict):
            reason = str(body.get("reason", ""))
            message = str(body.get("message", ""))
    except ValueError:
        message = data[:300].decode("utf-8", errors="replace")
    after: float | None = None
    if retry_after:
        try:
            after = float(retry_after)
        except ValueError:
            after = None
    text = f"{method} {path}: HTTP {status}" + (f" {reason}" if reason else "") + (f": {message}" if message else "")
    return KubeApiError(text, status, reason, 1, after)

