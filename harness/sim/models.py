"""Where a Model's `storageUri` comes from inside the simulated cluster (no internet).

The public Seldon iris samples map to a small iris sklearn model trained locally and cached in the
work directory; `file://` URIs and plain local paths load as they are; everything else is refused
with a message saying it is not reachable from the simulated cluster (the Model goes ModelFailed).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from harness.localserver import train_iris

# gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn, gs://seldon-models/mlserver/iris-sklearn, ...
_IRIS_SAMPLE = re.compile(r"^(gs|s3|https?)://(storage\.googleapis\.com/)?seldon-models/(.+/)?iris[-_]?sklearn/?$")
_TRAIN_LOCK = threading.Lock()


class ModelUnavailable(Exception):
    """The storageUri cannot be served here; `str()` is the one-line reason for the Model status."""


@dataclass(frozen=True)
class ModelSource:
    uri: str
    path: Path  # a folder with the model artifact (and usually a model-settings.json)
    sample: bool  # True when a public sample was replaced by the local copy


def is_iris_sample(uri: str) -> bool:
    return bool(_IRIS_SAMPLE.match(uri.strip()))


def iris_cache_dir(workdir: Path) -> Path:
    return Path(workdir) / "model-cache" / "iris-sklearn"


def resolve_storage_uri(uri: str, workdir: Path, *, train: bool = True) -> ModelSource:
    """The local folder that stands for `uri`, training the iris sample on first use (unless
    `train` is False: then only reachability is checked and the path may not exist yet).

    Raises `ModelUnavailable` for anything the simulated cluster cannot reach.
    """
    text = (uri or "").strip()
    if not text:
        raise ModelUnavailable("spec.storageUri is empty")
    if is_iris_sample(text):
        if not train:
            return ModelSource(text, iris_cache_dir(workdir), sample=True)
        with _TRAIN_LOCK:
            path = train_iris(iris_cache_dir(workdir), name="iris")
        return ModelSource(text, path, sample=True)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
    elif parsed.scheme == "" and text.startswith("/"):
        local = Path(text)
    else:
        raise ModelUnavailable(
            f"storageUri {text} is not reachable from the simulated cluster (no internet); "
            "use a Seldon iris-sklearn sample URI, a file:// URI or a local path"
        )
    if not local.is_dir():
        raise ModelUnavailable(f"storageUri {text}: {local} is not a folder on this machine")
    return ModelSource(text, local, sample=False)
