"""The simulated cluster's Kubernetes API over HTTP (127.0.0.1 only).

Speaks enough of the real API for the official `kubernetes` client (typed and dynamic) and for
kubectl: discovery (plain form; aggregated-discovery requests get it too and clients fall back),
`/openapi/v3` (schemas for `kubectl explain`; it also tells kubectl the server validates fields
itself), get/list/watch/create/update/patch/delete(+collection) on every resource in
`resources.RESOURCES`, the pod subresources log/status/binding/eviction, `dryRun=All`,
`fieldValidation` (unknown fields of built-in kinds are dropped, warned about or rejected), Table
output, and `Status` errors with the real codes and reasons. Watches are chunked streams of JSON
lines (bookmarks, `sendInitialEvents`, 410 as an ERROR event). Requests may be failed on purpose
through `Faults` (see harness/sim/faults.py).

Not served: protobuf bodies other than kubectl's Namespace/ConfigMap creates (415), server-side
apply (`application/apply-patch+yaml`, 415 saying so), list pagination (`limit` returns everything at
once), `/openapi/v2` (refused saying so). Seldon objects are checked against Seldon's CRD schemas where
the CRD files are present (harness/sim/api/crdschema.py). docs/architecture.md keeps the fidelity table.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness.k8s.seldon_api import SELDON_GROUP, SELDON_VERSION
from harness.sim.api import discovery, eviction, fieldcheck, listoptions, protobuf, scale
from harness.sim.api.deletion import DeleteOptions, parse_options
from harness.sim.api.resources import ResourceType, by_plural
from harness.sim.api.store import MemoryStore
from harness.sim.api.tables import to_table
from harness.sim.contracts import ApiError, Obj, PatchType
from harness.sim.faults import Faults

log = logging.getLogger(__name__)

PATCH_TYPES: dict[str, PatchType] = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}
# JSON, YAML and protobuf bodies (and the patch and apply flavours of JSON/YAML); nothing else.
BODY_TYPES = frozenset({"application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
                        "application/apply-patch+yaml", *PATCH_TYPES})
DEFAULT_WATCH_TIMEOUT_S = 1800.0
BOOKMARK_EVERY_S = 5.0
MAX_BODY = 16 * 1024 * 1024
# A client that went away mid-response: over TLS a closed socket shows as an SSL EOF, not a reset.
# Ordinary for an API server (a wait that gave up, a killed kubectl); never a 500 or a traceback.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class Route:
    """A parsed resource URL."""

    def __init__(self, rt: ResourceType, namespace: str | None, name: str | None, sub: str | None) -> None:
        self.rt, self.namespace, self.name, self.sub = rt, namespace, name, sub

    @property
    def resource(self) -> str:
        return f"{self.rt.plural}/{self.sub}" if self.sub else self.rt.plural


def parse_route(parts: list[str]) -> Route | Obj | None:
    """A Route for resource URLs, a discovery document, or None for an unknown path."""
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) == 1:
            return {"__discovery__": "api"}
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return discovery.api_group_list()
        if len(parts) == 2:
            return discovery.api_group(parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return discovery.resource_list(group, version)
    if rest[0] == "namespaces" and len(rest) >= 3:
        rt = by_plural(group, version, rest[2])
        if rt is not None and rt.namespaced and len(rest) <= 5 and (len(rest) < 5 or rest[4] in rt.subresources):
            return Route(rt, rest[1], rest[3] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else None)
    rt = by_plural(group, version, rest[0])
    if rt is None or len(rest) > 3 or (len(rest) == 3 and rest[2] not in rt.subresources):
        return None
    return Route(rt, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


# Seldon Core v2.10.2's other CRDs (operator/config/crd/bases): a real install serves them, the sim does not.
UNMODELLED_SELDON = {"pipelines": "Pipeline", "experiments": "Experiment", "seldonruntimes": "SeldonRuntime",
                     "seldonconfigs": "SeldonConfig"}


def _unmodelled_seldon_kind(parts: list[str]) -> str | None:
    """A clear refusal for Seldon kinds the simulated cluster does not model, naming the kind."""
    if parts[:3] != ["apis", SELDON_GROUP, SELDON_VERSION]:
        return None
    rest = parts[3:]
    plural = rest[2] if len(rest) >= 3 and rest[0] == "namespaces" else rest[0] if rest else ""
    kind = UNMODELLED_SELDON.get(plural)
    if kind is None:
        return None
    return (f"the simulated cluster does not model Seldon {kind} (mlops.seldon.io/v1alpha1 {plural}): it serves "
            "Server, ServerConfig and Model only; run this against a real Seldon Core 2 install")


def _flag(query: dict[str, list[str]], key: str) -> bool:
    return (query.get(key) or [""])[-1].lower() in ("1", "true")


def _param(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHttpServer
    _warnings: list[str]

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            # TLS handshake here, in this connection's thread, with a deadline
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        # Without this, a response written as headers + body stalls ~40 ms on delayed ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def end_headers(self) -> None:
        # Say so when this response ends the connection (the client asked for it, or the body could
        # not be drained): a client that believes the socket is reusable sends its next request into
        # a closed connection and fails with "Remote end closed connection without response".
        if self.close_connection:
            self.send_header("Connection", "close")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api %s - " + format, self.address_string(), *args)

    # ------------------------------------------------------------ plumbing
    def _send_json(self, code: int, body: Obj, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for text in self._warnings:
            self.send_header("Warning", '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: ApiError) -> None:
        headers = {}
        retry = err.details.get("retryAfterSeconds") if err.details else None
        if retry is not None:
            headers["Retry-After"] = str(retry)
        self._send_json(err.code, status_body(err.code, err.reason, err.message, err.details or None), headers)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        raw = self.rfile.read(length) if length else b""
        self._body_read = True
        if not raw:
            return None
        # No Content-Type is read as JSON (the kubernetes client sends some bodies that way).
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype not in BODY_TYPES:
            # Only what a Kubernetes client sends: a browser's form or text/plain POST (the shapes a
            # web page can send to 127.0.0.1 without a preflight) never reaches a handler.
            raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json, application/yaml, '
                           f'application/vnd.kubernetes.protobuf (got {ctype or "no Content-Type"!r})')
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(raw)
            except protobuf.Unsupported:
                pass
        if ctype in ("application/vnd.kubernetes.protobuf", "application/cbor"):
            # no general protobuf/CBOR codec here (see protobuf.py): kubectl's -f paths send JSON
            raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json, application/yaml')
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            from harness.errors import UsageError
            from harness.safeyaml import load_one  # only for the rare YAML body

            try:
                return load_one(raw.decode("utf-8", "strict"), "request body")
            except (UsageError, UnicodeDecodeError) as exc:
                raise ApiError(400, "BadRequest", f"the body could not be decoded as YAML: {exc}") from None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body of the request could not be decoded as JSON: {exc}") from None

    def _drain_body(self) -> None:
        """An error answered before the handler read the body (an injected fault, a 404) must still
        consume it: on a kept-alive connection the unread bytes would be parsed as the next request."""
        if getattr(self, "_body_read", False):
            return
        self._body_read = True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length > MAX_BODY:
            self.close_connection = True

    def _dispatch(self) -> None:
        self._body_read = False
        self._warnings = []
        try:
            self._handle()
        except ApiError as err:
            self._drain_body()
            self._send_error(err)
        except CLIENT_GONE:
            self.close_connection = True
        except Exception as exc:  # a bug in the sim must look like an apiserver 500, not a dropped socket
            log.exception("sim API internal error on %s %s", self.command, self.path)
            self._drain_body()
            self._send_error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    # ------------------------------------------------------------ routing
    def _authenticate(self, path: str) -> None:
        """Bearer token of the kubeconfig the sim wrote (0600): any other local process, or a web page
        posting to 127.0.0.1, is refused as a real API server refuses an anonymous write. Like a
        real cluster's public-info role, /version and the health endpoints stay open."""
        token = self.server.token
        if token is None or path.rstrip("/") in ("/version", "/healthz", "/readyz", "/livez"):
            return
        given = self.headers.get("Authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _handle(self) -> None:
        url = urlsplit(self.path)
        self._authenticate(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        parts = [p for p in url.path.split("/") if p]
        if url.path in ("/version", "/version/"):
            self._send_json(200, discovery.SERVER_VERSION)
            return
        if url.path in ("/healthz", "/readyz", "/livez"):
            self._send_text(200, "ok")
            return
        if parts[:2] == ["openapi", "v3"]:
            doc = (discovery.openapi_v3_root() if len(parts) == 2 else
                   discovery.openapi_v3_group_version(*(["", parts[3]] if parts[2] == "api" else parts[3:5]))
                   if len(parts) in (4, 5) else None)
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._send_json(200, doc)
            return
        if parts and parts[0] == "openapi":
            # /openapi/v2 (a real server serves it) is not modelled: say so instead of a bare 404
            raise ApiError(404, "NotFound", "the server could not find the requested resource (the simulated "
                           "cluster serves /openapi/v3 only; /openapi/v2 is not modelled)")
        if len(parts) >= 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
                and parts[6] == "proxy":
            self._do_pod_proxy(parts[3], parts[5], "/" + "/".join(parts[7:]), url.query)
            return
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
                and parts[6] == "portforward":
            self._do_port_forward(parts[3], parts[5], query)
            return
        route = parse_route(parts)
        if route is None:
            unmodelled = _unmodelled_seldon_kind(parts)
            if unmodelled is not None:
                raise ApiError(404, "NotFound", unmodelled)
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not isinstance(route, Route):
            if self.command not in ("GET", "HEAD"):
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            if route.get("__discovery__") == "api":
                route = discovery.api_versions(f"127.0.0.1:{self.server.server_port}")
            self._send_json(200, route)
            return
        verb = self._verb(route, query)
        injected = self.server.faults.check(verb, route.resource, route.name)
        if injected is not None:
            details: dict[str, Any] = {}
            if injected.retry_after is not None:
                details["retryAfterSeconds"] = injected.retry_after
            raise ApiError(injected.code, injected.reason, injected.message, details)
        if verb not in route.rt.verbs:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        getattr(self, f"_do_{verb}")(route, query)

    def _verb(self, route: Route, query: dict[str, list[str]]) -> str:
        method = self.command
        if method in ("GET", "HEAD"):
            if route.name is None:
                return "watch" if _flag(query, "watch") else "list"
            return "get"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if route.name else "deletecollection"
        raise ApiError(405, "MethodNotAllowed", f"method {method} is not allowed")

    # ------------------------------------------------------------ helpers
    @property
    def store(self) -> MemoryStore:
        return self.server.store

    def _wants_table(self) -> bool:
        accept = self.headers.get("Accept") or ""
        return "as=Table" in accept

    def _get_or_404(self, route: Route) -> Obj:
        assert route.name is not None
        obj = self.store.get(route.rt.api_version, route.rt.kind, route.name, route.namespace)
        if obj is None:
            raise ApiError(404, "NotFound", f'{route.rt.qualified_plural} "{route.name}" not found',
                           {"name": route.name, "group": route.rt.group, "kind": route.rt.plural})
        return obj

    def _respond_obj(self, code: int, route: Route, obj: Obj, query: dict[str, list[str]]) -> None:
        if self._wants_table():
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            self._send_json(code, to_table(route.rt.kind, [obj], rv, _param(query, "includeObject") or "Metadata",
                                           route.rt.group))
        else:
            self._send_json(code, obj)

    def _body_object(self, route: Route, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        body.setdefault("apiVersion", route.rt.api_version)
        body.setdefault("kind", route.rt.kind)
        if body["apiVersion"] != route.rt.api_version or body["kind"] != route.rt.kind:
            raise ApiError(400, "BadRequest", f"the API version in the data ({body['apiVersion']}) does not match the "
                           f"expected API version ({route.rt.api_version}) or kind {body['kind']!r} is not "
                           f"{route.rt.kind!r}")
        meta = body.setdefault("metadata", {})
        if route.rt.namespaced:
            if route.namespace is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if meta.get("namespace") and meta["namespace"] != route.namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            meta["namespace"] = route.namespace
        if route.name is not None and meta.get("name") and meta["name"] != route.name:
            raise ApiError(400, "BadRequest", "the name of the object "
                           f"({meta['name']}) does not match the name on the URL ({route.name})")
        if route.name is not None:
            meta["name"] = route.name
        return body

    def _check_fields(self, route: Route, obj: Any, query: dict[str, list[str]]) -> None:
        """Drop unknown fields of built-in kinds; `Strict` rejects them, `Warn` (default) warns."""
        mode = _param(query, "fieldValidation") or "Warn"
        if mode not in ("Ignore", "Warn", "Strict"):
            raise ApiError(400, "BadRequest", f'fieldValidation: Unsupported value: "{mode}": supported values: '
                           '"Ignore", "Warn", "Strict"')
        unknown = fieldcheck.unknown_fields(route.rt, obj, prune=True)
        if not unknown or mode == "Ignore":
            return
        if mode == "Strict":
            fields = ", ".join(f'unknown field "{p}"' for p in unknown)
            raise ApiError(400, "BadRequest", f'{route.rt.kind} in version "{route.rt.version}" cannot be handled '
                           f"as a {route.rt.kind}: strict decoding error: {fields}")
        self._warnings.extend(f'unknown field "{p}"' for p in unknown)

    # ------------------------------------------------------------ verbs
    def _do_get(self, route: Route, query: dict[str, list[str]]) -> None:
        if route.sub == "log":
            self._do_log(route, query)
            return
        if route.sub == "scale":
            self._send_json(200, scale.to_scale(route.rt, self._get_or_404(route)))
            return
        if route.sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._respond_obj(200, route, self._get_or_404(route), query)

    def _do_list(self, route: Route, query: dict[str, list[str]]) -> None:
        exact = listoptions.check_list(_param(query, "resourceVersion"), _param(query, "resourceVersionMatch"),
                                       _param(query, "continue"))
        if exact is not None:
            items = self.store.list_exact(route.rt.api_version, route.rt.kind, route.namespace,
                                          _param(query, "labelSelector"), _param(query, "fieldSelector"), exact)
            rv = str(exact)
        else:
            items, rv = self.store.list_with_version(route.rt.api_version, route.rt.kind, route.namespace,
                                                     _param(query, "labelSelector"), _param(query, "fieldSelector"))
        if self._wants_table():
            self._send_json(200, to_table(route.rt.kind, items, rv, _param(query, "includeObject") or "Metadata",
                                          route.rt.group))
            return
        # `limit` is honoured by returning everything in one page (no `continue` token): allowed by the API
        self._send_json(200, {"kind": f"{route.rt.kind}List", "apiVersion": route.rt.api_version,
                              "metadata": {"resourceVersion": rv}, "items": items})

    def _do_watch(self, route: Route, query: dict[str, list[str]]) -> None:
        initial = _flag(query, "sendInitialEvents")
        listoptions.check_watch(_param(query, "resourceVersionMatch"), initial)
        rv = None if initial else _param(query, "resourceVersion")
        try:
            w = self.store.watch(route.rt.api_version, route.rt.kind, route.namespace,
                                 _param(query, "labelSelector"), _param(query, "fieldSelector"), rv,
                                 initial_events_end=initial)
        except ApiError as err:
            if err.code != 410:
                raise
            # kube-apiserver accepts the watch and reports an expired resourceVersion as an ERROR event
            self._start_stream()
            self._chunk({"type": "ERROR", "object": status_body(err.code, err.reason, err.message)})
            self.wfile.write(b"0\r\n\r\n")
            return
        timeout = float(_param(query, "timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
        bookmarks = _flag(query, "allowWatchBookmarks")
        table = self._wants_table()
        self._start_stream()
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        try:
            while not self.server.stopping.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                event = w.next(min(1.0, deadline - now))
                if event is None:
                    if w.closed:
                        break
                    if bookmarks and time.monotonic() - last_bookmark >= BOOKMARK_EVERY_S:
                        bookmark = self.store.bookmark(route.rt.api_version, route.rt.kind)
                        self._chunk({"type": "BOOKMARK", "object": bookmark})
                        last_bookmark = time.monotonic()
                    continue
                etype, obj = event
                if table and etype != "BOOKMARK":
                    obj = to_table(route.rt.kind, [obj], str(obj["metadata"].get("resourceVersion", "")),
                                   _param(query, "includeObject") or "Metadata", route.rt.group)
                self._chunk({"type": etype, "object": obj})
            # A dropped stream ends like a watch the apiserver closes: clients must re-watch from their last rv.
            self.wfile.write(b"0\r\n\r\n")
        except CLIENT_GONE:
            self.close_connection = True
        finally:
            w.close()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _dry_run(self, query: dict[str, list[str]], body: Any = None) -> bool:
        values = query.get("dryRun") or []
        if isinstance(body, dict) and isinstance(body.get("dryRun"), list):
            values = values + body["dryRun"]
        for v in values:
            if v != "All":
                raise ApiError(400, "BadRequest", f'Invalid value: "{v}": supported values: "All"')
        return bool(values)

    def _do_create(self, route: Route, query: dict[str, list[str]]) -> None:
        body = self._read_body()
        if route.sub == "binding":
            self._do_binding(route, body, query)
            return
        if route.sub == "eviction":
            self._do_eviction(route, query, body)
            return
        if route.name is not None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        obj = self._body_object(route, body)
        self._check_fields(route, obj, query)
        obj["metadata"].pop("resourceVersion", None)
        created = self.store.create(obj, dry_run=self._dry_run(query))
        self._respond_obj(201, route, created, query)

    def _do_scale_write(self, route: Route, query: dict[str, list[str]], patch_type: PatchType | None) -> None:
        """PUT or PATCH of the scale subresource: only spec.replicas of the object changes."""
        current = self._get_or_404(route)
        replicas = scale.wanted_replicas(route.rt, current, self._read_body(), patch_type)
        updated = self.store.patch(route.rt.api_version, route.rt.kind, str(route.name), route.namespace,
                                   {"spec": {"replicas": replicas}}, "merge", dry_run=self._dry_run(query))
        self._send_json(200, scale.to_scale(route.rt, updated))

    def _do_update(self, route: Route, query: dict[str, list[str]]) -> None:
        if route.name is not None and route.sub == "scale":
            self._do_scale_write(route, query, None)
            return
        if route.name is None or route.sub not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        obj = self._body_object(route, self._read_body())
        self._check_fields(route, obj, query)
        dry = self._dry_run(query)
        if route.sub == "status":
            updated = self.store.update_status(obj, dry_run=dry)
        else:
            self._get_or_404(route)
            updated = self.store.update(obj, dry_run=dry)
        self._respond_obj(200, route, updated, query)

    def _do_patch(self, route: Route, query: dict[str, list[str]]) -> None:
        if route.name is None or route.sub not in (None, "status", "scale"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        patch_type = PATCH_TYPES.get(ctype)
        if ctype == "application/apply-patch+yaml":
            # Out of scope (docs/architecture.md, fidelity table): say so instead of a bare 415.
            raise ApiError(415, "UnsupportedMediaType", "server-side apply (application/apply-patch+yaml) is not "
                           "supported by the simulated cluster; use client-side apply (kubectl apply without "
                           "--server-side) or a merge patch")
        if patch_type is None:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, application/merge-patch+json, "
                           "application/strategic-merge-patch+json")
        if route.sub == "scale":
            self._do_scale_write(route, query, patch_type)
            return
        body = self._read_body()
        if patch_type != "json":
            self._check_fields(route, body, query)
        patched = self.store.patch(route.rt.api_version, route.rt.kind, route.name, route.namespace, body,
                                   patch_type, route.sub, dry_run=self._dry_run(query))
        self._respond_obj(200, route, patched, query)

    def _delete_options(self, query: dict[str, list[str]]) -> tuple[bool, DeleteOptions]:
        body = self._read_body()
        options = parse_options(_param(query, "gracePeriodSeconds"), _param(query, "propagationPolicy"), body)
        return self._dry_run(query, body), options

    def _do_delete(self, route: Route, query: dict[str, list[str]]) -> None:
        if route.sub is not None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        assert route.name is not None
        dry, options = self._delete_options(query)
        deleted = self.store.delete(route.rt.api_version, route.rt.kind, route.name, route.namespace,
                                    dry_run=dry, options=options)
        if deleted is None:
            raise ApiError(404, "NotFound", f'{route.rt.qualified_plural} "{route.name}" not found',
                           {"name": route.name, "group": route.rt.group, "kind": route.rt.plural})
        self._respond_obj(200, route, deleted, query)

    def _do_deletecollection(self, route: Route, query: dict[str, list[str]]) -> None:
        dry, options = self._delete_options(query)
        items, rv = self.store.list_with_version(route.rt.api_version, route.rt.kind, route.namespace,
                                                 _param(query, "labelSelector"), _param(query, "fieldSelector"))
        gone = []
        for obj in items:
            meta = obj["metadata"]
            deleted = self.store.delete(route.rt.api_version, route.rt.kind, meta["name"], meta.get("namespace"),
                                        dry_run=dry, options=options)
            if deleted is not None:
                gone.append(deleted)
        self._send_json(200, {"kind": f"{route.rt.kind}List", "apiVersion": route.rt.api_version,
                              "metadata": {"resourceVersion": rv}, "items": gone})

    # ------------------------------------------------------------ pod subresources
    def _do_pod_proxy(self, namespace: str, name_port: str, path: str, query: str) -> None:
        """`pods/<name>[:<port>]/proxy/<path>`: GET forwarded to the container port, as the API server
        proxies to the pod IP. Only ports a simulated server process listens on answer."""
        import http.client

        if self.command != "GET":
            raise ApiError(405, "MethodNotAllowed", "the simulated API server proxies GET requests only")
        name, _, port_text = name_port.partition(":")
        pod = self.store.get("v1", "Pod", name, namespace)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        ip = str((pod.get("status") or {}).get("podIP") or "")
        try:
            port = int(port_text) if port_text else 80
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid port {port_text!r} in {name_port!r}") from None
        local = self.store.pod_ports(namespace, name).get(port)
        if local is None or not ip:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: dial tcp {ip or name}:{port}: "
                           "connect: connection refused")
        conn = http.client.HTTPConnection("127.0.0.1", local, timeout=30)
        try:
            conn.request("GET", path + (f"?{query}" if query else ""))
            answer = conn.getresponse()
            data = answer.read()
            content_type = answer.getheader("Content-Type") or "text/plain"
        except OSError as exc:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from None
        finally:
            conn.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _do_port_forward(self, namespace: str, name: str, query: dict[str, list[str]]) -> None:
        """`pods/<name>/portforward` over a websocket (harness/sim/api/portforward.py), one port per stream;
        the stream reaches what a simulated process listens on for that pod port, as `proxy` does."""
        from harness.sim.api import portforward

        if self.command != "GET" or (self.headers.get("Upgrade") or "").lower() != "websocket":
            raise ApiError(400, "BadRequest", "Upgrade request required")
        offered = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        if portforward.PROTOCOL not in offered:
            raise ApiError(400, "BadRequest", f"the simulated API server speaks {portforward.PROTOCOL} only")
        pod = self.store.get("v1", "Pod", name, namespace)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        ports = [p for p in (_param(query, "ports") or "").split(",") if p]
        if len(ports) != 1 or not ports[0].isdigit():
            raise ApiError(400, "BadRequest", "the simulated API server forwards exactly one port per stream")
        port = int(ports[0])
        if (pod.get("status") or {}).get("phase") != "Running":
            raise ApiError(400, "BadRequest", f"unable to upgrade connection: pod {name} is not running")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", portforward.accept_key(self.headers.get("Sec-WebSocket-Key") or ""))
        self.send_header("Sec-WebSocket-Protocol", portforward.PROTOCOL)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        stream = portforward.Stream(self.rfile, self.wfile, port)  # type: ignore[arg-type]
        stream.open_channels()
        local = self.store.pod_ports(namespace, name).get(port)
        try:
            backend = socket.create_connection(("127.0.0.1", local), timeout=10) if local else None
        except OSError:
            backend = None
        if backend is None:
            stream.refuse(f"error forwarding port {port} to pod {name}: dial tcp 127.0.0.1:{port}: connect: "
                          "connection refused")
            return
        backend.settimeout(None)
        stream.carry(backend)

    def _do_log(self, route: Route, query: dict[str, list[str]]) -> None:
        pod = self._get_or_404(route)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = _param(query, "container")
        if not container:
            if len(containers) != 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod {route.name}, "
                               f"choose one of: [{' '.join(str(c) for c in containers)}]")
            container = str(containers[0])
        elif container not in containers and container not in [
                c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {route.name}")
        previous = _flag(query, "previous")
        text = self.store.read_log(route.namespace or "default", str(route.name), container, previous)
        if text is None:
            if previous:
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod '
                               f'"{route.name}" not found')
            if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                raise ApiError(400, "BadRequest", f'container "{container}" in pod "{route.name}" is waiting to '
                               "start: ContainerCreating")
            text = ""
        tail = _param(query, "tailLines")
        if tail is not None:
            try:
                n = int(tail)
            except ValueError:
                raise ApiError(400, "BadRequest", f"tailLines: Invalid value: {tail!r}") from None
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-n:]) if n > 0 else ""
        self._send_text(200, text)

    def _do_binding(self, route: Route, body: Any, query: dict[str, list[str]]) -> None:
        pod = self._get_or_404(route)
        target = (body or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise ApiError(422, "Invalid", f'Binding "{route.name}" is invalid: target.name: Required value')
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{route.name}": pod '
                           f"{route.name} is already assigned to node \"{current}\"")
        self.store.patch("v1", "Pod", str(route.name), route.namespace, {"spec": {"nodeName": node}}, "merge",
                         "binding", dry_run=self._dry_run(query))
        self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def _do_eviction(self, route: Route, query: dict[str, list[str]], body: Any) -> None:
        self._get_or_404(route)
        eviction.evict(self.store, route.namespace or "default", str(route.name), body, self._dry_run(query, body))
        self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, store: MemoryStore, faults: Faults, port: int = 0, token: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.store = store
        self.faults = faults
        self.token = token
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)
        if tls is not None:
            # handshake in the handler thread, not in the accept loop (a silent client must not stall it)
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that goes away mid-request (a watch closed by a wait that gave up, a killed
        # kubectl) resets the connection: that is ordinary for an API server and must not print
        # a traceback into the test output. Anything else is still reported, as one line.
        exc = sys.exc_info()[1]
        if isinstance(exc, (*CLIENT_GONE, TimeoutError)):
            return
        if isinstance(exc, ssl.SSLError):
            # a client that fails the TLS handshake (plain HTTP, wrong CA): its problem, one debug line
            log.debug("sim API: TLS with %s failed: %r", client_address, exc)
            return
        print(f"sim API: request from {client_address} failed: {exc!r}", file=sys.stderr)


class ApiServer:
    """Owns the HTTP server thread. `start()` binds 127.0.0.1:`port` (0 = a free port)."""

    def __init__(self, store: MemoryStore, faults: Faults, port: int = 0, token: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        # token/tls None: plain, unauthenticated HTTP, only for the API layer's own tests
        # (tests/kit/sim_fixtures.py); SimCluster (sim provider, `sim up`) always passes both.
        self._httpd = ApiHttpServer(store, faults, port, token, tls)
        self._scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        # the client models behind unknown-field checks take seconds to import: load them off the start path
        threading.Thread(target=fieldcheck.warm_up, name="sim-api-warmup", daemon=True).start()
        self._httpd.store.start_watch_cache()
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="sim-api", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._httpd.stopping.set()
        self._httpd.store.drop_watches()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()
