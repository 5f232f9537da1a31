"""The kube layer: one client wrapper, the wait primitive, the node guard and evidence collection."""

from harness.kube.client import Kube
from harness.kube.nodeguard import NodeGuard
from harness.kube.retry import KubeApiError, RetryPolicy
from harness.kube.wait import summarize

__all__ = ["Kube", "KubeApiError", "NodeGuard", "RetryPolicy", "summarize"]
