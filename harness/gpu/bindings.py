"""The NVML bindings the probe ships: the `pynvml.py` of the installed nvidia-ml-py, never a copy.

nvidia-ml-py (BSD, module `pynvml`) is a pinned dependency of the harness (pyproject.toml). The probe
ConfigMap carries that package's single-module bindings beside probe.py, because a pod runs the probe
as `python3 -I -S` in an image that has no `pynvml` (design B). The file is read from the installed
distribution when the ConfigMap is rendered and its sha256 is checked against the pin below, so a
cluster never runs bindings other than the ones the probe was tested with; on a mismatch the error
says, in one line, what to reinstall.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

from harness.errors import UsageError

PACKAGE = "nvidia-ml-py"
# Equal to the `nvidia-ml-py==` pin in pyproject.toml (tests/gpu/test_gpu_bindings.py keeps them equal).
VERSION = "13.615.71"
# sha256 of that release's pynvml.py (its wheel RECORD names the same digest, base64-encoded).
SHA256 = "2828e66b483bec218f461314f6da96c1e56330ed4b297a20b3444b4c43cdd14e"
MODULE_FILE = "pynvml.py"
REINSTALL = f"pip install --force-reinstall '{PACKAGE}=={VERSION}'"


def installed_path() -> Path:
    """Where the installed nvidia-ml-py keeps pynvml.py; UsageError when the package is absent."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise UsageError(
            f"{PACKAGE} is not installed; the NVML probe ships its {MODULE_FILE}: reinstall it with {REINSTALL}"
        ) from None
    return Path(str(dist.locate_file(MODULE_FILE)))


def version_line() -> str:
    """What the probe reports as its bindings (`pynvml_version` in its document)."""
    return f"{PACKAGE} {VERSION}"


def verified_text() -> str:
    """The installed pynvml.py, after checking it is byte for byte the pinned release's."""
    path = installed_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read {PACKAGE}'s {MODULE_FILE} ({exc.__class__.__name__}); reinstall it with {REINSTALL}"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise UsageError(
            f"{path}: sha256 {digest[:16]}... is not {PACKAGE} {VERSION}'s {MODULE_FILE} "
            f"({SHA256[:16]}...); the NVML probe ships only the pinned bindings: reinstall them with {REINSTALL}"
        )
    return data.decode("utf-8")
