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
           r"access[-_]?key[-_]?id|session[-_]?key|signature")
# Names whose value is a secret when it looks random (a taint `key: pool` is not).
_WEAK = r"key|auth|cred|creds|credential|credentials|signature|sig|cert|apikey|bearer"
_NAME_CHARS = r"[A-Za-z0-9_.-]*"
_STRONG_NAME = re.compile(rf"(?i)^{_NAME_CHARS}(?:{_STRONG}){_NAME_CHARS}$")
_WEAK_NAME = re.compile(rf"(?i)^{_NAME_CHARS}(?:{_WEAK}){_NAME_CHARS}$")

# Userinfo runs to the last `@` before the end of the URI: AWS secrets carry `/`, `+` and `=`
# (`s3://KEY:SE/CR+ET=@bucket`), which a stricter userinfo grammar would leave in the "path".
_URI = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}://)([^\s\"'<>]*@)?([^\s\"'<>?#@]*)([?#][^\s\"'<>]*)?")
_BASIC_BEARER = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9\-_.=:/+~]{6,}")
# An Authorization header of any scheme (Token, Digest, AWS4-HMAC-SHA256, Negotiate, ApiKey, ...):
# everything after the name, up to the end of the value.
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authori[sz]ation(?:''|\\?[\"']|&quot;|&#x27;|&#39;)?\s*[:=]\s*"
    r"(?:''|\\?[\"']|&quot;|&#x27;|&#39;)?)"
    # the value: up to the end of the line or string; a quoted parameter (`response="..."`, also
    # JSON-escaped) belongs to it
    r"(?=[^\s,;})\]])((?:[^\r\n\"'<>\\]|(?<==)\\?\"(?:[^\"\\\r\n<>]|\\(?!\"))*\\?\")+)")
# Database and other clients that take a password glued to a short flag (`mysql -pPW`) or after one
# (`redis-cli -a PW`, `sqlcmd -P PW`, `sshpass -p PW`).
_CLIENT_PASSWORD = re.compile(
    r"(?i)\b(mysql\w*|mariadb\w*|mysqldump|mysqladmin|mysqlimport|mysqlshow)\b([^\n|;&]*?\s-p)(?!\s)([^\s\"']+)"
    r"|\b(redis-cli|sqlcmd|bcp|sshpass|mongo|mongosh|mongodump|mongorestore)\b([^\n|;&]*?\s-[aPp]\s+)([^\s\"']+)")
# `-p VALUE` and `-p=VALUE` outside those clients: a password unless it is a port (mapping) or a
# pytest plugin switch (`-p no:cacheprovider`).
_SHORT_P = re.compile(r"(?<![\w-])(-p)(\s+|=)([^\s\"',;]+)")
_PORTS = re.compile(r"\d[\d.:]*(?:/(?:tcp|udp|sctp))?")
# `-u user:pass` / `--user=user:pass` (curl, wget): the user stays, the password goes.
_USER_PASS = re.compile(r"(?<![\w-])(-u|--user|--proxy-user)(\s+|=)([^\s:\"']+):([^\s\"']+)")
# Flags whose value is a secret whatever it looks like (`--auth X`, `--pass X`).
_FLAG_STRONG = re.compile(r"(?i)^(?:auth|basic-?auth|pass|passwd|password|pwd|pw|creds?|credentials?|"
                          r"[a-z-]*(?:token|secret|password|passphrase))$")

_PREFIXED = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}|glpat-[A-Za-z0-9_-]{12,}|"
    r"dckr_pat_[A-Za-z0-9_-]{12,}|xox[a-z]-[A-Za-z0-9-]{8,}|(?:AKIA|ASIA)[A-Z0-9]{16}|hf_[A-Za-z0-9]{16,}|"
    r"sk-[A-Za-z0-9_-]{20,}|AIza[A-Za-z0-9_-]{30,}|ya29\.[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{30,}|"
    r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|"
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
# Any PEM block (keys, certificates, requests); one cut short runs to the end of its string.
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?:.*?-----END [A-Z0-9 ]+-----|[^\"<]*)", re.S)
# `name: value`, `name=value`, `"name": "value"`, `--name=value`.
_ASSIGN = re.compile(
    # a name starts where no name character precedes it: without that, a long run of name characters
    # is retried from each of its positions (quadratic: seconds on a report page)
    r"(?:(?<![A-Za-z0-9_.-])|(?<=(?<![A-Za-z0-9_.-])-)|(?<=(?<![A-Za-z0-9_.-])--))(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;}\]]+)"
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
    flag = name.startswith("-") or match.string[max(0, match.start() - 1):match.start()] == "-"
    if flag and _FLAG_STRONG.match(name.lstrip("-")) and not value.startswith(MARK):
        return f"{name}{sep}{MARK}"
    if _secret_value(name.lstrip("-"), value):
        return f"{name}{sep}{MARK}"
    # `message: PGPASSWORD=x`: the value may hold an assignment of its own
    return f"{name}{sep}{_ASSIGN.sub(_assign, value)}" if _ASSIGN.search(value) else match.group(0)


def _env_text(match: re.Match[str]) -> str:
    if _secret_value(match.group("name"), match.group("value")) or secret_name(match.group("name")):
        return f"{match.group('head')}{MARK}"
    return match.group(0)


# A quoted string (JSON, a Python repr) is a text of its own: `"msg": "PASSWORD: x"` holds an
# assignment that the outer `name: value` match would swallow whole.
_QUOTED = re.compile(r"\"([^\"\\\n]*(?:\\.[^\"\\\n]*)*)\"|'([^'\\\n]*(?:\\.[^'\\\n]*)*)'")
# Inline images (the report's plots) are pictures, not text: skipped whole, they are most of a report page.
_DATA_URI = re.compile(r"data:image/[a-z+.-]+;base64,[A-Za-z0-9+/=]+")


def _quoted(match: re.Match[str]) -> str:
    quote = '"' if match.group(1) is not None else "'"
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    if not re.search(r"[:=\s]", inner):
        return match.group(0)
    return f"{quote}{_ASSIGN.sub(_assign, _FLAG.sub(_assign, inner))}{quote}"


def _auth_header(match: re.Match[str]) -> str:
    """The scheme stays (`Authorization: Digest <redacted>`): it says what was sent, not what with."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9-]*)\s+\S", match.group(2))
    return f"{match.group(1)}{scheme.group(1) + ' ' if scheme else ''}{MARK}"


def _client_password(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)}{match.group(2)}{MARK}"
    return f"{match.group(4)}{match.group(5)}{MARK}"


def _short_p(match: re.Match[str]) -> str:
    value = match.group(3)
    if value.startswith(("no:", MARK)) or _PORTS.fullmatch(value):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{MARK}"


def redact(text: str) -> str:
    if "base64," in text:
        parts, at = [], 0
        for image in _DATA_URI.finditer(text):
            parts += [_redact(text[at:image.start()]), image.group(0)]
            at = image.end()
        return "".join([*parts, _redact(text[at:])])
    return _redact(text)


def _redact(text: str) -> str:
    text = _PEM.sub("<redacted private key>", text)
    text = _URI.sub(_uri, text)
    text = _AUTH_HEADER.sub(_auth_header, text)
    text = _BASIC_BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MARK}", text)
    text = _CLIENT_PASSWORD.sub(_client_password, text)
    text = _SHORT_P.sub(_short_p, text)
    text = _USER_PASS.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}:{MARK}", text)
    text = _PREFIXED.sub(MARK, text)
    text = _ENV_TEXT.sub(_env_text, text)
    text = _QUOTED.sub(_quoted, text)
    text = _FLAG.sub(_assign, text)
    return _ASSIGN.sub(_assign, text)


def redact_env(entry: Any) -> Any:
    """An env entry whose name looks secret keeps its name and loses its value."""
    if isinstance(entry, dict) and isinstance(entry.get("value"), str):
        name = str(entry.get("name", ""))
        if secret_name(name) or _secret_value(name, entry["value"]):
            return {**entry, "value": MARK}
    return entry


_DB_CLIENT = re.compile(r"(?i)(?:^|/)(?:mysql\w*|mariadb\w*|redis-cli|sqlcmd|bcp|sshpass|mongo\w*)$")


def redact_args(args: list[Any]) -> list[Any]:
    """Container args/command: the word after a secret-looking flag is its value (`--token T`,
    `--auth T`, `-p T` unless a port), and a password glued to a database client's `-p` goes too."""
    words = [a for a in args if isinstance(a, str)]
    client = any(_DB_CLIENT.search(w) for w in words)
    out: list[Any] = []
    hide_next = False
    for arg in args:
        if hide_next and isinstance(arg, str):
            keep = out and out[-1] == "-p" and (arg.startswith("no:") or _PORTS.fullmatch(arg))
            out.append(arg if keep else MARK)
            hide_next = False
            continue
        hide_next = False
        if isinstance(arg, str):
            flag = re.fullmatch(r"-{1,2}([A-Za-z0-9_.-]+)", arg)
            if flag and (secret_name(flag.group(1)) or _FLAG_STRONG.match(flag.group(1))
                         or (client and arg in ("-a", "-P"))):
                hide_next = True
            elif arg == "-p":
                hide_next = True  # decided on the next word: a port stays
                out.append(arg)
                continue
            elif client and re.fullmatch(r"-p\S+", arg):
                out.append(f"-p{MARK}")
                continue
            out.append(redact(arg))
        else:
            out.append(redact_tree(arg))
    # A secret split over words (`-H`, `Authorization:`, `Token`, `X`): redact the words as one
    # command line and hide each word whose text did not survive that.
    kept = set(redact(" ".join(words)).split())
    return [MARK if isinstance(a, str) and a != MARK and a.split() and not all(w in kept for w in a.split())
            else a for a in out]


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


# A PEM block spans lines: a stream holds its lines back until the block ends.
_OPEN_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?![\s\S]*-----END [A-Z0-9 ]+-----)")


class RedactingStream:
    """A text stream that redacts what passes through it, line by line (a credential split across two
    writes of one line is still seen whole). A partial line goes out, redacted, on flush. Everything
    else (isatty, fileno, encoding) is the wrapped stream's, so terminals and progress lines still work."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    @property
    def wrapped(self) -> Any:
        return self._stream

    def write(self, text: str) -> int:
        self._pending += text
        if ("\n" in self._pending or "\r" in self._pending) and not _OPEN_PEM.search(self._pending):
            cut = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
            done, self._pending = self._pending[:cut], self._pending[cut:]
            self._stream.write(redact(done))
        if len(self._pending) > 65536:  # no newline for ever: do not hold it back without bound
            self.flush()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self._stream.write(redact(pending))
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redacting(stream: Any) -> Any:
    """`stream`, redacting (once: wrapping twice is a no-op)."""
    return stream if isinstance(stream, RedactingStream) else RedactingStream(stream)
