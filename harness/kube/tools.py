"""One runner for every external command (kind, helm, kubectl, docker, nvidia-ctk).

Argument lists only (no shell strings), a timeout on every call, output captured, and a failure
that names the command and the tail of its stderr. Every call is also kept in `history`, so a
failure report can say what ran and tests can assert the exact sequence and timeouts.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

STDERR_TAIL = 1500


class ToolError(HarnessError):
    """An external command failed, timed out or was missing. The message names it."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class ToolPaths:
    """Where the tools are; None means: look them up on PATH."""

    kind: str | None = None
    helm: str | None = None
    kubectl: str | None = None
    docker: str | None = None

    def resolve(self, tool: str) -> str | None:
        explicit: str | None = getattr(self, tool, None)
        if explicit:
            return explicit if Path(explicit).exists() else None
        return shutil.which(tool)


@dataclass(frozen=True)
class CallRecord:
    argv: tuple[str, ...]
    timeout: float
    returncode: int | None


@dataclass
class ToolRunner:
    """Runs commands; `default_timeout` applies when a call names none (profile.timeouts.subprocess_s)."""

    default_timeout: float = 120.0
    paths: ToolPaths = field(default_factory=ToolPaths)
    env: dict[str, str] | None = None
    history: list[CallRecord] = field(default_factory=list)

    def which(self, tool: str) -> str | None:
        return self.paths.resolve(tool)

    def run(self, tool: str, args: Sequence[str], timeout: float | None = None, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        exe = self.which(tool)
        limit = float(timeout if timeout is not None else self.default_timeout)
        shown = " ".join([tool, *args])
        if exe is None:
            self.history.append(CallRecord((tool, *args), limit, None))
            raise ToolError(f"`{shown}`: {tool} not found on PATH")
        from harness.progress import waiting

        # The running phase's heartbeat names the tool (minutes of `kind create cluster` or a helm
        # install otherwise pass in silence); two words only: later arguments may be values.
        try:
            with waiting(f"`{' '.join([tool, *[a for a in args if not a.startswith('-')][:2]])}`"):
                proc = subprocess.run(
                    [exe, *args], capture_output=True, text=True, timeout=limit, check=False, input=stdin,
                    env=self.env,
                )
        except subprocess.TimeoutExpired as exc:
            self.history.append(CallRecord((tool, *args), limit, None))
            tail = _tail(exc.stderr)
            raise ToolError(f"`{shown}` timed out after {limit:g}s" + (f": {tail}" if tail else "")) from None
        except OSError as exc:
            self.history.append(CallRecord((tool, *args), limit, None))
            raise ToolError(f"`{shown}` could not start: {exc}") from None
        self.history.append(CallRecord((tool, *args), limit, proc.returncode))
        if check and proc.returncode != 0:
            tail = _tail(proc.stderr) or _tail(proc.stdout)
            raise ToolError(f"`{shown}` failed with exit code {proc.returncode}: {tail or '(no output)'}",
                            proc.returncode, proc.stderr)
        return proc


def _tail(text: str | bytes | None) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text[-STDERR_TAIL:]


@dataclass
class HelmRunner:
    """Helm against one cluster: every call carries the kubeconfig and context explicitly."""

    runner: ToolRunner
    kubeconfig: Path
    context: str | None = None

    def _cluster_args(self) -> list[str]:
        args = ["--kubeconfig", str(self.kubeconfig)]
        if self.context:
            args += ["--kube-context", self.context]
        return args

    def upgrade_install(self, release: str, chart: str, *, repo: str, version: str, namespace: str,
                        timeout_s: float, values: Path | None = None, wait: bool = True,
                        sets: Sequence[str] = (), create_only: bool = False) -> None:
        # create_only: `helm install`, which refuses a release name already in use, so a release
        # someone else installed (found between our preflight and now) is never upgraded.
        verb = ["install"] if create_only else ["upgrade", "--install"]
        args = [*verb, release, chart, "--repo", repo, "--version", version,
                "--namespace", namespace, "--create-namespace"]
        if values is not None:
            args += ["--values", str(values)]
        for s in sets:
            args += ["--set", s]
        if wait:
            args += ["--wait", "--timeout", f"{int(timeout_s)}s"]
        # The process gets a little longer than helm's own --timeout, so helm reports its own error.
        self.runner.run("helm", args + self._cluster_args(), timeout=timeout_s + 30)

    def uninstall(self, release: str, namespace: str, timeout_s: float) -> None:
        self.runner.run("helm", ["uninstall", release, "--namespace", namespace, "--wait", "--timeout",
                                 f"{int(timeout_s)}s", *self._cluster_args()], timeout=timeout_s + 30)

    def status(self, release: str, namespace: str) -> str:
        proc = self.runner.run("helm", ["status", release, "--namespace", namespace, *self._cluster_args()])
        return proc.stdout

    def list_releases(self, namespace: str | None = None) -> str:
        scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
        proc = self.runner.run("helm", ["list", *scope, "--output", "json", *self._cluster_args()])
        return proc.stdout
