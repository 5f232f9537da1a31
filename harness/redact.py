"""Redaction of credentials in everything the harness writes: the one place that decides.

Secrets are recognised by shape, not by a list of known variables, because the harness quotes
objects it did not write (other people's Server env, storage URIs, container args, events):
- URIs: userinfo (`user:pass@`, and a bare `TOKEN@`) and the whole query string and fragment are
  removed: presigned S3 URLs, GCS signed URLs and Azure SAS tokens carry their signature there;
- `Basic ...` and `Bearer ...` credentials wherever they appear;
- tokens with a well-known prefix (GitHub, GitLab, Slack, AWS access key ids, Hugging Face, OpenAI,
  Google API keys and OAuth tokens, JWTs) wherever they appear;
- the value next to a secret-looking name (`password`, `secret`, `token`, ... always; `key`, `auth`,
  `credential`, `signature`, ... when the value looks random: long and mixed), in `name: value`,
  `name=value`, `--name value`, env entries (`{name: X, value: Y}`, also in their text form) and
  container args;
- private keys (PEM blocks) and Secret `data`.
Used by the evidence collector on every file, by the report writer on every string of the report
(report.json, junit.xml, report.html) and by the pytest plugin on failure text and captured output.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

MARK = "<redacted>"

# Names whose value is a secret whatever it looks like.
_STRONG = (r"password|passwd|passphrase|pwd|secret|token|client-key-data|client-certificate-data|"
           r"service_account_credentials|sas_token|rclone_config[a-z_]*|private[-_]?key|api[-_]?key|"
           r"access[-_]?key[-_]?id|session[-_]?key")
# Names whose value is a secret when it looks random (a taint `key: pool` is not).
_WEAK = r"key|auth|cred|creds|credential|credentials|signature|sig|cert|apikey|bearer"
_NAME_CHARS = r"[A-Za-z0-9_.-]*"
_STRONG_NAME = re.compile(rf"(?i)^{_NAME_CHARS}(?:{_STRONG}){_NAME_CHARS}$")
_WEAK_NAME = re.compile(rf"(?i)^{_NAME_CHARS}(?:{_WEAK}){_NAME_CHARS}$")

_URI = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}://)([^\s\"'<>/?#@]*@)?([^\s\"'<>?#]*)([?#][^\s\"'<>]*)?")
_BASIC_BEARER = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9\-_.=:/+~]{6,}")
_PREFIXED = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{16,}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[A-Z0-9]{16}|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|"
    r"AIza[A-Za-z0-9_-]{30,}|ya29\.[A-Za-z0-9_-]{20,}|"
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
# `name: value`, `name=value`, `"name": "value"`, `--name=value`.
_ASSIGN = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;}\]]+)"
)
# `--name value`: a flag and its value as separate words.
_FLAG = re.compile(r"(?<![^\s\"'\[,])(?P<name>--?[A-Za-z][A-Za-z0-9_.-]*)(?P<sep>[\"',]*\s+[\"']?)"
                   r"(?P<value>[^\s\"',;}\]-][^\s\"',;}\]]*)")
# An env entry in text form (pytest's repr of a dict, JSON, YAML flow): name first, value next.
_ENV_TEXT = re.compile(
    r"(?P<head>[\"']?name[\"']?\s*[:=]\s*[\"']?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*,\s*"
    r"[\"']?value[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\"',}\n]+)"
)


def _looks_random(value: str) -> bool:
    """Long, mixed and high-entropy: what a generated credential looks like, and words don't."""
    if len(value) < 12 or value.startswith(MARK):
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[+/=_\-]"))
    counts = Counter(value)
    entropy = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())
    return classes >= 3 and entropy >= 3.0


def secret_name(name: str) -> bool:
    return bool(_STRONG_NAME.match(name))


def _secret_value(name: str, value: str) -> bool:
    if value.startswith(MARK) or value.lower() in ("true", "false", "null", "none", ""):
        return False
    if _STRONG_NAME.match(name):
        return True
    return bool(_WEAK_NAME.match(name)) and _looks_random(value)


def _uri(match: re.Match[str]) -> str:
    scheme, userinfo, rest, query = match.group(1), match.group(2), match.group(3), match.group(4)
    return f"{scheme}{MARK + '@' if userinfo else ''}{rest}{'?' + MARK if query else ''}"


_FILE_NAME = re.compile(r"(?i)\.(py|ya?ml|json|txt|log|md|html|xml|toml|cfg|ini|sh)$")


def _assign(match: re.Match[str]) -> str:
    name, sep, value = match.group("name"), match.group("sep"), match.group("value")
    if _FILE_NAME.search(name):
        return match.group(0)  # `test_secrets.py:58` is a file and a line, not a secret
    if _secret_value(name.lstrip("-"), value):
        return f"{name}{sep}{MARK}"
    return match.group(0)


def _env_text(match: re.Match[str]) -> str:
    if _secret_value(match.group("name"), match.group("value")) or secret_name(match.group("name")):
        return f"{match.group('head')}{MARK}"
    return match.group(0)


def redact(text: str) -> str:
    text = _PEM.sub("<redacted private key>", text)
    text = _URI.sub(_uri, text)
    text = _BASIC_BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MARK}", text)
    text = _PREFIXED.sub(MARK, text)
    text = _ENV_TEXT.sub(_env_text, text)
    text = _FLAG.sub(_assign, text)
    return _ASSIGN.sub(_assign, text)


def redact_env(entry: Any) -> Any:
    """An env entry whose name looks secret keeps its name and loses its value."""
    if isinstance(entry, dict) and isinstance(entry.get("value"), str):
        name = str(entry.get("name", ""))
        if secret_name(name) or _secret_value(name, entry["value"]):
            return {**entry, "value": MARK}
    return entry


def redact_args(args: list[Any]) -> list[Any]:
    """Container args/command: the word after a secret-looking flag is its value (`--token T`)."""
    out: list[Any] = []
    hide_next = False
    for arg in args:
        if hide_next and isinstance(arg, str):
            out.append(MARK)
            hide_next = False
            continue
        hide_next = False
        if isinstance(arg, str):
            flag = re.fullmatch(r"-{1,2}([A-Za-z0-9_.-]+)", arg)
            if flag and secret_name(flag.group(1)):
                hide_next = True
            out.append(redact(arg))
        else:
            out.append(redact_tree(arg))
    return out


def redact_tree(obj: Any) -> Any:
    """Every string in a JSON-like tree redacted; env, args and Secret data handled structurally."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            lowered = str(key).lower()
            if lowered in ("data", "stringdata") and obj.get("kind") == "Secret" and isinstance(value, dict):
                out[key] = {k: MARK for k in value}
            elif lowered == "env" and isinstance(value, list):
                out[key] = [redact_tree(redact_env(e)) for e in value]
            elif lowered in ("args", "command") and isinstance(value, list):
                out[key] = redact_args(value)
            elif isinstance(value, str) and _secret_value(str(key), value):
                out[key] = MARK
            else:
                out[key] = redact_tree(value)
        return out
    if isinstance(obj, list):
        return [redact_tree(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj
