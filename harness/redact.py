"""Redaction of secrets in anything the harness writes (reports, evidence, logs it copies).

Bearer tokens, kubeconfig key material, storage credentials (in `key: value` text, env entries and
`scheme://user:password@host` URIs) and private keys are replaced by `<redacted>`. Used by the
evidence collector on every file and by the report writer on every string of the report.
"""

from __future__ import annotations

import re
from typing import Any

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s\"']+"), r"\1<redacted>"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-_.=:/+]{8,}"), r"\1<redacted>"),
    (re.compile(r"(?i)((?:client-key-data|client-certificate-data|token|password|secret|"
                r"secret_access_key|access_key_id|aws_secret_access_key|aws_access_key_id|"
                r"service_account_credentials|account_key|sas_token|rclone_config[a-z_]*)"
                r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1<redacted>"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     "<redacted private key>"),
    # Any URI scheme (https, s3, gs, ...) with user:password@ in its authority.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@\"']+:)[^@/\s\"']+@"), r"\1<redacted>@"),
]
_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|credential|key|rclone_config)")


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def redact_env(entry: Any) -> Any:
    """An env entry whose name looks secret keeps its name and loses its value."""
    if isinstance(entry, dict) and "value" in entry and _SECRET_NAME.search(str(entry.get("name", ""))):
        return {**entry, "value": "<redacted>"}
    return entry


def redact_tree(obj: Any) -> Any:
    """Every string in a JSON-like tree redacted; env lists and Secret data blanked structurally."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            lowered = str(key).lower()
            if lowered in ("data", "stringdata") and obj.get("kind") == "Secret" and isinstance(value, dict):
                out[key] = {k: "<redacted>" for k in value}
            elif lowered == "env" and isinstance(value, list):
                out[key] = [redact_tree(redact_env(e)) for e in value]
            else:
                out[key] = redact_tree(value)
        return out
    if isinstance(obj, list):
        return [redact_tree(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj
