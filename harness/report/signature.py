"""Signed evidence: an HMAC-SHA256 of report.json, kept beside it as `report.json.sig`.

The run signs the report it wrote when a key is configured; `harness gate --require-signature`
refuses a report without a signature or whose bytes changed since. The MAC covers the file's exact
bytes, which are the canonical serialization the harness writes (`dump_report`): any change, even of
one byte of whitespace, refuses it, and nothing re-serializes a report between run and gate.

Who holds the key (docs/report.md, "Signed reports"): the CI system, as a secret available only to
the job that runs the e2e lane and the release job that gates; never the people who could edit the
artifact. The key comes from a file (`--key-file`, `$HARNESS_REPORT_KEY_FILE`) or from
`$HARNESS_REPORT_KEY` itself; it is never printed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.safeyaml import read_text

KEY_ENV = "HARNESS_REPORT_KEY"
KEY_FILE_ENV = "HARNESS_REPORT_KEY_FILE"
ALGORITHM = "hmac-sha256"
SUFFIX = ".sig"
# A shorter key is guessable; 32 random bytes (64 hex characters) is what `openssl rand -hex 32` gives.
MIN_KEY_BYTES = 16
_MAX_KEY_FILE = 4096


def signature_path(report: Path) -> Path:
    return report.with_name(report.name + SUFFIX)


def load_key(key_file: str | Path | None = None) -> bytes | None:
    """The signing key: `key_file`, else `$HARNESS_REPORT_KEY_FILE`, else `$HARNESS_REPORT_KEY`; None when
    none is configured. A key that is too short is one `UsageError` line (the key itself is never shown)."""
    source = str(key_file) if key_file else os.environ.get(KEY_FILE_ENV) or None
    if source:
        key = read_text(Path(source), "signing key file", limit=_MAX_KEY_FILE).strip().encode("utf-8")
        where = source
    elif os.environ.get(KEY_ENV):
        key, where = os.environ[KEY_ENV].strip().encode("utf-8"), f"${KEY_ENV}"
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise UsageError(f"{where}: the signing key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
                         "(e.g. `openssl rand -hex 32`)")
    return key


def mac(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign(report: Path, key: bytes) -> Path:
    """Write `report.json.sig` for the report's current bytes; returns its path."""
    out = signature_path(report)
    write_atomic(out, f"{ALGORITHM} {mac(report.read_bytes(), key)}\n")  # never through a planted symlink
    return out


def verify(report: Path, key: bytes, signature: Path | None = None) -> str | None:
    """None when `signature` (default: beside the report) is a valid MAC of the report's bytes; else
    why not, as one line for the gate's refusal."""
    sig = signature or signature_path(report)
    if not sig.is_file():
        return f"no signature ({sig} does not exist); the report cannot be shown to be the one the run wrote"
    try:
        text = read_text(sig, "signature file", limit=256).strip()
    except UsageError as exc:
        return str(exc)
    algorithm, _, recorded = text.partition(" ")
    if algorithm != ALGORITHM or len(recorded) != 64:
        return f"{sig}: expected '{ALGORITHM} <64 hex digits>'"
    try:
        data = report.read_bytes()
    except OSError as exc:
        return f"{report}: cannot be read ({exc.strerror})"
    if not hmac.compare_digest(mac(data, key), recorded.lower()):
        return (f"the signature in {sig} does not match the report's bytes: the report was changed after the "
                "run signed it, or signed with another key")
    return None
