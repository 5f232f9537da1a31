"""A model folder for `runtimes/paced_model.py`: an MLServer model with a known capacity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.localserver.iris import SETTINGS_FILE

RUNTIME = Path(__file__).with_name("runtimes") / "paced_model.py"


def write_paced_model(model_dir: Path, service_ms: float, name: str | None = None) -> Path:
    """Write a model folder whose every request takes `service_ms` of the server's one event loop.

    MLServer imports the implementation from the model's own folder (it puts the folder on
    `sys.path` while reading the settings), so the runtime file is copied beside the settings."""
    if not service_ms > 0:
        raise ValueError(f"service_ms: expected > 0, got {service_ms!r}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RUNTIME, model_dir / RUNTIME.name)
    settings = {
        "name": name or model_dir.name,
        "implementation": f"{RUNTIME.stem}.PacedModel",
        "parameters": {"version": "1", "extra": {"service_ms": service_ms}},
    }
    (model_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    return model_dir
