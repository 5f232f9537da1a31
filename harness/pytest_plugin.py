"""The harness pytest plugin: options, markers and the layered fixtures the suites use."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "GPU serving harness")
    group.addoption("--profile", default=None, help="profile YAML file (default: profiles/sim.yaml)")
