"""The probe ships the installed nvidia-ml-py's pynvml.py, pinned and checked by hash; nothing vendored."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.gpu import bindings, probe_files

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.fast


def test_the_pin_in_pyproject_is_the_version_the_hash_belongs_to() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert f"{bindings.PACKAGE}=={bindings.VERSION}" in deps
    assert metadata.version(bindings.PACKAGE) == bindings.VERSION


def test_the_configmap_carries_the_installed_file_unchanged() -> None:
    text = probe_files()["pynvml.py"]
    assert text == bindings.installed_path().read_text(encoding="utf-8")
    assert hashlib.sha256(text.encode()).hexdigest() == bindings.SHA256


def test_bindings_that_differ_from_the_pin_name_what_to_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = tmp_path / "pynvml.py"
    edited.write_text(bindings.installed_path().read_text(encoding="utf-8") + "# local edit\n", encoding="utf-8")
    monkeypatch.setattr(bindings, "installed_path", lambda: edited)
    with pytest.raises(UsageError) as err:
        probe_files()
    message = str(err.value)
    assert "\n" not in message and str(edited) in message
    assert message.endswith(f"reinstall them with pip install --force-reinstall 'nvidia-ml-py=={bindings.VERSION}'")


def test_without_the_package_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(bindings.metadata, "distribution", absent)
    with pytest.raises(UsageError, match=r"^nvidia-ml-py is not installed; .* reinstall it with pip install"):
        bindings.verified_text()


def test_no_tracked_file_is_a_copy_of_an_installed_package_file() -> None:
    """Vendored code shows up as a tracked file byte-identical to one some installed wheel records
    (RECORD lists each file's sha256); the bindings the probe ships are read from the package instead."""
    recorded: dict[str, str] = {}
    # The RECORD files read as text: `metadata.distributions()[].files` builds an object per file of
    # every package, which took a minute on the shared machine.
    site = Path(bindings.installed_path()).parent
    for record in site.glob("*.dist-info/RECORD"):
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            path, _, rest = line.partition(",")
            digest, _, size = rest.partition(",")
            if digest.startswith("sha256=") and size.isdigit() and int(size) > 512:
                recorded[digest[len("sha256="):]] = f"{record.parent.name}: {path}"
    assert recorded, f"no wheel RECORD found under {site}"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=30, check=True)
    copies = []
    for rel in tracked.stdout.decode().split("\0"):
        path = ROOT / rel
        if rel and path.is_file() and not path.is_symlink():
            digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
            if digest in recorded:
                copies.append(f"{rel} = {recorded[digest]}")
    assert copies == []
