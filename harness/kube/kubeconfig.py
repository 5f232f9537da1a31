"""Which kubeconfig a run uses, the way kubectl finds and merges it.

kubectl's rules (kubernetes/client-go `tools/clientcmd/loader.go`, `ClientConfigLoadingRules`):
an explicit `--kubeconfig` file is used alone and must exist; otherwise every file named in
`KUBECONFIG` (separated by `os.pathsep`; missing files are skipped) is merged, the first file to
define a cluster, user or context name wins it, and the first `current-context` set wins; without
`KUBECONFIG`, `~/.kube/config`. Relative paths inside a file (certificate-authority, client
certificate and key, token file) are relative to that file.

`resolve()` is pure over its inputs and says what it tried, so "not found" names every place looked
at. `flatten()` builds the merged document in memory; `one_context()` cuts it down to the context the
run uses, and `PrivateKubeconfig` hands that to child tools (kubectl --kubeconfig, helm, the client)
in a private 0600 file removed at the end: no merged kubeconfig is ever written to disk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

_PATH_FIELDS = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}


@dataclass(frozen=True)
class KubeconfigChoice:
    """The files to merge, in precedence order, and how they were chosen (for messages)."""

    files: tuple[Path, ...]
    source: str  # "--kubeconfig", "profile cluster.kubeconfig", "$KUBECONFIG" or "~/.kube/config"
    tried: str

    @property
    def merged(self) -> bool:
        return len(self.files) > 1


def resolve(explicit: str | Path | None, env: str | None, home: Path, *, source: str = "--kubeconfig",
            exists: Callable[[Path], bool] = Path.is_file) -> KubeconfigChoice:
    """The kubeconfig files kubectl would read; `UsageError` naming what was tried when there is none."""
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not exists(path):
            raise UsageError(f"{source} {path}: kubeconfig not found (that file does not exist)")
        return KubeconfigChoice((path,), source, f"{source} {path}")
    if env:
        listed = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        found = tuple(dict.fromkeys(p for p in listed if exists(p)))
        tried = f"$KUBECONFIG ({', '.join(str(p) for p in listed) or 'empty'})"
        if not found:
            raise UsageError(f"kubeconfig not found: tried {tried}; none of those files exists "
                             "(pass --kubeconfig FILE or fix KUBECONFIG)")
        return KubeconfigChoice(found, "$KUBECONFIG", tried)
    default = home / ".kube" / "config"
    if not exists(default):
        raise UsageError(f"kubeconfig not found: tried {default} (KUBECONFIG is not set); "
                         "pass --kubeconfig FILE or set KUBECONFIG")
    return KubeconfigChoice((default,), "~/.kube/config", str(default))


def _absolute(entry: Mapping[str, Any], kind: str, base: Path) -> dict[str, Any]:
    out = dict(entry)
    body_key = "cluster" if kind == "clusters" else "user"
    body = dict(out.get(body_key) or {})
    for field in _PATH_FIELDS[kind]:
        value = body.get(field)
        if isinstance(value, str) and value and not os.path.isabs(value):
            body[field] = str((base / value).resolve())
    exec_config = body.get("exec")
    if isinstance(exec_config, Mapping):
        command = exec_config.get("command")
        # client-go resolves an exec command that contains a path separator relative to its kubeconfig's
        # folder; a bare name is looked up on PATH (kubernetes/client-go tools/clientcmd/loader.go,
        # GetAuthInfoFileReferences). Keep that meaning when the context moves to another file.
        if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
            body["exec"] = {**exec_config, "command": str((base / command).resolve())}
    out[body_key] = body
    return out


def flatten(documents: list[tuple[Path, Mapping[str, Any]]]) -> dict[str, Any]:
    """Merge parsed kubeconfig documents in precedence order with kubectl's first-wins rules."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[str]] = {"clusters": set(), "users": set(), "contexts": set()}
    for path, doc in documents:
        if not isinstance(doc, Mapping):
            raise UsageError(f"{path}: not a kubeconfig (expected a YAML mapping)")
        for kind in ("clusters", "users", "contexts"):
            for entry in doc.get(kind) or []:
                name = str((entry or {}).get("name", ""))
                if not name or name in seen[kind]:
                    continue
                seen[kind].add(name)
                merged[kind].append(_absolute(entry, kind, path.parent) if kind in _PATH_FIELDS else dict(entry))
        if "current-context" not in merged and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
    return merged


def load_merged(choice: KubeconfigChoice) -> dict[str, Any]:
    """Read and merge the chosen files (I/O at the edge; `flatten` decides)."""
    import yaml

    documents = []
    for path in choice.files:
        try:
            documents.append((path, yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: unreadable kubeconfig: {' '.join(str(exc).split())}") from None
    return flatten(documents)


def _named(entries: list[Any], name: str) -> dict[str, Any] | None:
    return next((dict(e) for e in entries if isinstance(e, Mapping) and e.get("name") == name), None)


def one_context(merged: Mapping[str, Any], context: str | None, tried: str) -> dict[str, Any]:
    """The merged configuration cut down to the one context the run uses: its cluster, its user and
    nothing else, so no other context's credentials go anywhere (pure)."""
    name = context or merged.get("current-context")
    if not name:
        raise UsageError(f"kubeconfig {tried}: no context given and no current-context set (pass --context or "
                         "set cluster.context in the profile)")
    ctx = _named(list(merged.get("contexts") or []), str(name))
    if ctx is None:
        raise UsageError(f"kubeconfig {tried}: context {name!r} not found")
    body = ctx.get("context") or {}
    cluster = _named(list(merged.get("clusters") or []), str(body.get("cluster", "")))
    if cluster is None:
        raise UsageError(f"kubeconfig {tried}: context {name!r} names cluster {body.get('cluster')!r}, which no "
                         "file defines")
    user = _named(list(merged.get("users") or []), str(body.get("user", ""))) if body.get("user") else None
    return {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user] if user else [],
            "contexts": [ctx], "current-context": str(name)}


class PrivateKubeconfig:
    """A kubeconfig for child tools (kubectl, helm) that never lands where others can read or plant:
    a file created with O_EXCL|O_NOFOLLOW, mode 0600, in a fresh private (0700) temporary directory,
    removed by `remove()` and at exit. Never in the report directory."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        import atexit
        import tempfile

        import yaml

        self.directory = Path(tempfile.mkdtemp(prefix="harness-kube-"))
        self.path = self.directory / "config"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(dict(document), handle, sort_keys=False)
        atexit.register(self.remove)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()
