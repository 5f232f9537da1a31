"""The client wrapper, waits, node guard, run Lease, ownership, evidence and the route to the mesh, against the
simulated cluster over HTTP. Modules that change nodes start a cluster of their own (their `sim`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.kube import Kube, RetryPolicy
from tests.kit.sim_fixtures import kube_against


@pytest.fixture
def kube(sim: Any) -> Iterator[Kube]:
    """A `Kube` on this module's `sim` that retries quickly (the faults the tests inject clear at once)."""
    yield from kube_against(sim, RetryPolicy(attempts=3, base_s=0.01, max_delay_s=0.05))
