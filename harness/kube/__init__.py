"""The kube layer: one client wrapper, the wait primitive, the node guard, evidence and the tool runner."""

from harness.kube.client import Kube
from harness.kube.nodeguard import NodeGuard
from harness.kube.retry import KubeApiError, RetryPolicy
from harness.kube.tools import CallRecord, HelmRunner, ToolError, ToolPaths, ToolRunner
from harness.kube.wait import summarize

__all__ = [
    "CallRecord",
    "HelmRunner",
    "Kube",
    "KubeApiError",
    "NodeGuard",
    "RetryPolicy",
    "ToolError",
    "ToolPaths",
    "ToolRunner",
    "summarize",
]
