"""Writing the harness's output files without following anything planted in the output directory.

Report directories are often shared (CI workspaces, /tmp). A symlink planted at `report.json`, at a
predictable temp name or inside an evidence folder must never make the harness overwrite the file it
points to. So every output is written to a fresh file created with O_CREAT|O_EXCL|O_NOFOLLOW (which
never opens an existing path, link or not) and then renamed over the final name: rename replaces a
symlink itself, never its target. A crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from harness.redact import redact

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def write_atomic(path: str | Path, text: str, mode: int = 0o644, *, credentials: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` as a new file; raises OSError (callers turn it into one line).

    Outputs (report.json, junit.xml, report.html, evidence, load results) pass through redaction
    here, the one writer they share; only a file that is meant to hold credentials (the sim's own
    kubeconfig, 0600) says `credentials=True`."""
    if not credentials:
        text = redact(text)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(21, "is a directory", str(target))
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, _FLAGS, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
