"""`make bench` fetches wrk itself where it is missing (Makefile, target `wrk`).

The real target runs `apt-get download` against Debian's archive; here recording fakes of `apt-get` and
`dpkg-deb` stand in for the archive, and the test asserts what was asked of them and what the target
leaves: a wrapper in the venv that runs the unpacked wrk against the unpacked LuaJIT library.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

APT_GET = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
[ -n "$FAKE_APT_FAIL" ] && { echo "E: Unable to locate package" >&2; exit 100; }
[ "$1" = download ] || exit 1
touch wrk_4.1.0-3+b2_amd64.deb libluajit-5.1-2_2.1_amd64.deb
"""
# `dpkg-deb -x DEB DIR`: a wrk that reports the library path it was given, and the library.
DPKG_DEB = """#!/bin/sh
echo "dpkg-deb $*" >> "$FAKE_LOG"
case "$2" in
  wrk_*) mkdir -p "$3/usr/bin"
         printf '#!/bin/sh\\necho "wrk debian/4.1.0-3+b2 lib=$LD_LIBRARY_PATH args=$*"\\n' \\
           > "$3/usr/bin/wrk"
         chmod +x "$3/usr/bin/wrk" ;;
  libluajit*) mkdir -p "$3/usr/lib/x86_64-linux-gnu"; touch "$3/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2" ;;
esac
"""


# Under `make test` the environment carries the outer make's level and flags: the inner make would
# call itself `make[1]` and inherit its options.
OUTSIDE_MAKE = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def _make_wrk(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fakes = tmp_path / "fakes"
    fakes.mkdir(exist_ok=True)
    for name, text in (("apt-get", APT_GET), ("dpkg-deb", DPKG_DEB)):
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    # -o: the venv's install stamp counts as made, so only the wrk target runs.
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "wrk", f"VENV={venv}", "-o", f"{venv}/.installed"],
        env={**OUTSIDE_MAKE, "PATH": f"{fakes}:/usr/bin:/bin", "FAKE_LOG": str(tmp_path / "calls.log"), **env},
        capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _no_wrk_on_path() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH; install make to run this test")
    for where in ("/usr/bin", "/bin"):
        if (Path(where) / "wrk").exists():
            pytest.skip(f"{where}/wrk exists, so the target would use it; run this test where wrk is not installed")


def test_missing_wrk_is_fetched_pinned_and_unpacked_into_the_venv(tmp_path: Path) -> None:
    proc = _make_wrk(tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0] == "download -q wrk=4.1.0-3+b2 libluajit-5.1-2"
    assert sorted(c.split()[2] for c in calls[1:]) == ["libluajit-5.1-2_2.1_amd64.deb", "wrk_4.1.0-3+b2_amd64.deb"]
    wrapper = tmp_path / "venv" / "bin" / "wrk"
    out = subprocess.run([str(wrapper), "-t1", "http://127.0.0.1:1/"], capture_output=True, text=True,
                         timeout=10).stdout
    lib = tmp_path / "venv" / "opt" / "wrk" / "root" / "usr" / "lib" / "x86_64-linux-gnu"
    assert out.strip() == f"wrk debian/4.1.0-3+b2 lib={lib} args=-t1 http://127.0.0.1:1/"
    # Once there, it is not fetched again.
    again = _make_wrk(tmp_path)
    assert again.returncode == 0 and (tmp_path / "calls.log").read_text().splitlines() == calls


def test_a_failed_download_is_exit_2_and_one_line_saying_what_to_do(tmp_path: Path) -> None:
    proc = _make_wrk(tmp_path, FAKE_APT_FAIL="1")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert len(lines) == 1 and "apt-get download wrk=4.1.0-3+b2" in lines[0] and "apt-get update" in lines[0]
    assert not (tmp_path / "venv" / "bin" / "wrk").exists()
