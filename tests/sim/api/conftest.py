"""The simulated cluster's API server alone (no controllers, no data plane), one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kit.sim_fixtures import SimApi, client_for, serve_api


@pytest.fixture(scope="module")
def sim_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimApi]:
    yield from serve_api(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def api_client(sim_api: SimApi) -> Iterator[Any]:
    """The official kubernetes client's ApiClient against `sim_api`."""
    yield from client_for(sim_api)
