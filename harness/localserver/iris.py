"""The iris sklearn model, trained locally from the data set that ships with scikit-learn."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Per user, like pip's cache: what is built once (the trained iris model, the simulated driver
# library) and may be reused by every later run on this machine.
USER_CACHE = Path.home() / ".cache" / "seldon-gpu-harness"
MODEL_FILE = "model.joblib"
SETTINGS_FILE = "model-settings.json"
IMPLEMENTATION = "mlserver_sklearn.SKLearnModel"

# The Open Inference Protocol input that the public Seldon sample takes: one flower, four features.
IRIS_INPUT: dict[str, Any] = {"name": "predict", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}


def model_settings(name: str, uri: str, version: str = "1") -> dict[str, Any]:
    """MLServer `model-settings.json` content for an sklearn model stored at `uri`."""
    return {
        "name": name,
        "implementation": IMPLEMENTATION,
        "parameters": {"uri": uri, "version": version},
    }


def _settings_ok(model_dir: Path) -> dict[str, Any] | None:
    """The folder's model settings if they describe an sklearn model next to a non-empty model file."""
    settings_path = model_dir / SETTINGS_FILE
    model_path = model_dir / MODEL_FILE
    if not settings_path.is_file() or not model_path.is_file() or model_path.stat().st_size == 0:
        return None
    try:
        settings = json.loads(settings_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(settings, dict) or settings.get("implementation") != IMPLEMENTATION:
        return None
    return settings


def _write_atomic(path: Path, data: bytes) -> None:
    # Parallel test workers may train into the same cache folder; rename keeps readers whole.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def train_iris(model_dir: Path, name: str | None = None) -> Path:
    """Train (or reuse) a deterministic iris classifier in `model_dir`; return `model_dir`.

    Writes `model.joblib` and a `model-settings.json` naming the model `name` (default: the
    folder's name). A folder that already holds a valid model is reused (its settings renamed if
    `name` differs); only a missing or unreadable model is trained again.
    """
    model_dir = Path(model_dir)
    model_name = name or model_dir.name
    settings = _settings_ok(model_dir)
    if settings is not None:
        if settings.get("name") != model_name:
            # Same model under another name: only the settings change, no retraining.
            settings["name"] = model_name
            _write_atomic(model_dir / SETTINGS_FILE, (json.dumps(settings, indent=2) + "\n").encode())
        return model_dir
    # Imported here so that a cache hit costs no scikit-learn import (seconds on a busy machine).
    import io

    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    model_dir.mkdir(parents=True, exist_ok=True)
    features, target = load_iris(return_X_y=True)
    # lbfgs on a fixed data set is deterministic; no random state is involved.
    classifier = LogisticRegression(max_iter=1000)
    classifier.fit(features, target)
    buffer = io.BytesIO()
    joblib.dump(classifier, buffer)
    _write_atomic(model_dir / MODEL_FILE, buffer.getvalue())
    settings = model_settings(model_name, f"./{MODEL_FILE}")
    _write_atomic(model_dir / SETTINGS_FILE, (json.dumps(settings, indent=2) + "\n").encode())
    return model_dir


def _trained_with() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sklearn-{version('scikit-learn')}-joblib-{version('joblib')}"
    except PackageNotFoundError:
        return "unknown-versions"


def cached_iris(model_dir: Path, name: str | None = None, cache_root: Path | None = None) -> Path:
    """`train_iris` through the user cache: the model is trained once per scikit-learn and joblib
    version (under `cache_root`, default `USER_CACHE`) and copied from there, so the process that
    needs it does not import scikit-learn (about 2 s of CPU) or train again. An unwritable cache
    only means training in place."""
    model_dir = Path(model_dir)
    if _settings_ok(model_dir) is None:
        shared = (cache_root or USER_CACHE) / "models" / f"iris-{_trained_with()}"
        try:
            train_iris(shared, name="iris")
            model_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(model_dir / MODEL_FILE, (shared / MODEL_FILE).read_bytes())
            _write_atomic(model_dir / SETTINGS_FILE, (shared / SETTINGS_FILE).read_bytes())
        except OSError:
            pass
    return train_iris(model_dir, name)
