"""The providers at their boundaries: kind, docker, helm and kubectl are recording fakes (tests/fakebin) that
assert the exact commands; the API calls go to the simulated cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.fake_tools import install_fakes


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The recording fakes first on PATH; the call log they write."""
    return install_fakes(tmp_path, monkeypatch)
