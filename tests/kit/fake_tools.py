"""The recording fake tools (tests/fakebin: kind, docker, helm, kubectl, nvidia-ctk) and a kind provider on them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.config import Profile, load_profile, parse_profile
from harness.providers import HostProbe, ProviderOptions, get_provider
from harness.providers.kind import KindProvider

ROOT = Path(__file__).resolve().parents[2]


FAKEBIN = ROOT / "tests" / "fakebin"


UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000000"]


def two_gpu_profile(**cluster: Any) -> Profile:
    data = load_profile(ROOT / "profiles" / "kind-gpu.yaml").model_dump(exclude={"source"})
    data["cluster"]["nodes"]["gpu_workers"] = [{"count": 2, "gpus": 1, "product": "NVIDIA-H200",
                                                "memory_mib": 143771}]
    data["cluster"]["local_images"] = ["harness/probe:dev"]
    data["cluster"].update(cluster)
    return parse_profile(data, "two-gpu.yaml")


def install_fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The recording fakes first on PATH; returns the call log."""
    log = tmp_path / "calls.jsonl"
    # The fakes start with `env python3`: point that at this interpreter, not a slow version-manager shim.
    py = tmp_path / "py"
    py.mkdir()
    (py / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # -S: stdlib only, fast start
    (py / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{py}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKEBIN_LOG", str(log))
    for var in ("FAKEBIN_FAIL", "FAKEBIN_STDOUT", "FAKEBIN_KIND_CLUSTERS", "FAKEBIN_DOCKER_RUNTIME",
                "FAKEBIN_DOCKER_DOWN", "FAKEBIN_DOCKER_STORE"):
        monkeypatch.delenv(var, raising=False)
    return log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [[rec["tool"], *rec["argv"]] for rec in map(json.loads, log.read_text().splitlines())]


def host(tmp_path: Path, *, accept: bool = True, watches: int = 524288, instances: int = 8192,
         gpus: list[str] | None = UUIDS, reason: str = "ok") -> HostProbe:
    cfg = tmp_path / "nvidia-config.toml"
    cfg.write_text(f"accept-nvidia-visible-devices-as-volume-mounts = {'true' if accept else 'false'}\n")
    inotify = tmp_path / "inotify"
    inotify.mkdir(exist_ok=True)
    (inotify / "max_user_watches").write_text(f"{watches}\n")
    (inotify / "max_user_instances").write_text(f"{instances}\n")
    return HostProbe(nvidia_runtime_config=cfg, inotify_dir=inotify, gpu_inventory=lambda: (gpus, reason))


def provider(tmp_path: Path, profile: Profile | None = None, keep: bool = False, **host_kw: Any) -> KindProvider:
    options = ProviderOptions(run_id="r1", keep_cluster=keep, workdir=tmp_path / "work", kubeconfig=None, tools=None,
                              host=host(tmp_path, **host_kw))
    p = get_provider(profile or two_gpu_profile(), options)
    assert isinstance(p, KindProvider)
    return p
