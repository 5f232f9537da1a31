"""Shared body of the recording fake tools (kind, helm, kubectl, docker, nvidia-ctk).

Each call appends one JSON line {"tool", "argv", "env"} to the file named by FAKEBIN_LOG, then
answers like the real tool would for the few commands the harness uses. Behaviour switches:
- FAKEBIN_FAIL: JSON list of command prefixes ("kind create cluster") that exit 1 with a stderr line;
- FAKEBIN_STDOUT: JSON object prefix -> stdout text, overriding the default answer;
- FAKEBIN_VERSION_<TOOL>: the version the tool reports (e.g. FAKEBIN_VERSION_KIND=0.20.0);
- FAKEBIN_KIND_CLUSTERS: comma-separated clusters `kind get clusters` lists;
- FAKEBIN_DOCKER_RUNTIME: docker's default runtime (default nvidia); FAKEBIN_DOCKER_DOWN=1: daemon down;
- FAKEBIN_DOCKER_STORE=containerd: `docker info` shows the containerd image store (default: classic overlay2).
Stdlib only, so any python3 on PATH runs it. Only `os` and `sys` are imported for the common call: a
test run makes about 400 of them, and `json` (with `re` and `enum`) and `pathlib` more than doubled
each call's start (85 against 35 million instructions); JSON is written by `_json` and parsed only
where a test set FAKEBIN_FAIL or FAKEBIN_STDOUT.
"""

from __future__ import annotations

import os
import sys

RECORDED_ENV = ("KUBECONFIG", "DOCKER_CONFIG")
# JSON string escapes (RFC 8259 section 7): the quote, the backslash and every control character.
_ESCAPES = {**{c: f"\\u{c:04x}" for c in range(0x20)}, ord('"'): '\\"', ord("\\"): "\\\\"}


def _escape_non_ascii(code: int) -> str:
    if code > 0xFFFF:  # a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
    return f"\\u{code:04x}"


def _json(value: object) -> str:
    """`value` (str, bool, list or dict of them) as JSON text that json.loads reads back as `value`."""
    if isinstance(value, str):
        text = value.translate(_ESCAPES)
        if not text.isascii():  # escaped as json.dumps does: readers split lines on U+2028 and others
            text = "".join(c if c < "\x80" else _escape_non_ascii(ord(c)) for c in text)
        return '"' + text + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json(k)}: {_json(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"fake: cannot write {type(value).__name__} as JSON")


def _version(tool: str, default: str) -> str:
    return os.environ.get(f"FAKEBIN_VERSION_{tool.upper().replace('-', '_')}", default)


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _default(tool: str, argv: list[str]) -> tuple[int, str, str]:
    line = " ".join(argv)
    if tool == "kind":
        if argv[:1] == ["version"]:
            return 0, f"kind v{_version('kind', '0.27.0')} go1.23.6 linux/amd64\n", ""
        if argv[:2] == ["get", "clusters"]:
            names = [n for n in os.environ.get("FAKEBIN_KIND_CLUSTERS", "").split(",") if n]
            return 0, "".join(n + "\n" for n in names), "" if names else "No kind clusters found.\n"
        if argv[:2] in (["create", "cluster"], ["export", "kubeconfig"]):
            kubeconfig = _flag(argv, "--kubeconfig")
            if kubeconfig:
                with open(kubeconfig, "w", encoding="utf-8") as fh:
                    fh.write("apiVersion: v1\nkind: Config\nclusters: []\n")
            return 0, "", ""
        return 0, "", ""
    if tool == "helm":
        if argv[:1] == ["version"]:
            return 0, f"v{_version('helm', '3.16.2')}+g13654a5\n", ""
        return 0, "", ""
    if tool == "kubectl":
        if argv[:1] == ["version"]:
            v = _version("kubectl", "1.32.2")
            return 0, _json({"clientVersion": {"gitVersion": f"v{v}"}}) + "\n", ""
        return 0, "", ""
    if tool == "docker":
        if argv[:1] == ["info"]:
            if os.environ.get("FAKEBIN_DOCKER_DOWN") == "1":
                return 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n"
            info = {"ServerVersion": _version("docker", "27.3.1"),
                    "DefaultRuntime": os.environ.get("FAKEBIN_DOCKER_RUNTIME", "nvidia"),
                    "Architecture": "x86_64"}
            # What `docker info` shows per image store (kubernetes-sigs/kind#3795 quotes both).
            if os.environ.get("FAKEBIN_DOCKER_STORE") == "containerd":
                info |= {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}
            else:
                info |= {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"],
                                                                ["Supports d_type", "true"]]}
            return 0, _json(info) + "\n", ""
        return 0, "", ""
    if tool == "nvidia-ctk":
        if "--version" in argv or argv[:1] == ["--version"]:
            return 0, f"NVIDIA Container Toolkit CLI version {_version('nvidia-ctk', '1.17.3')}\n", ""
        return 0, "", ""
    return 0, "", f"fake {tool}: unhandled {line}\n"


def _env_json(name: str) -> object:
    """The JSON in environment variable `name`, or None where it is unset or empty."""
    text = os.environ.get(name)
    if not text:
        return None
    import json  # only for the tests that set it: see the module's docstring

    return json.loads(text)


def main(tool: str) -> int:
    argv = sys.argv[1:]
    log = os.environ.get("FAKEBIN_LOG")
    if log:
        record = {"tool": tool, "argv": argv, "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ}}
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(_json(record) + "\n")
    line = " ".join([tool, *argv])
    failing = _env_json("FAKEBIN_FAIL")
    for prefix in failing if isinstance(failing, list) else []:
        if line.startswith(prefix):
            sys.stderr.write(f"fake {tool}: failing on purpose: {line}\n")
            return 1
    overrides = _env_json("FAKEBIN_STDOUT")
    overrides = overrides if isinstance(overrides, dict) else {}
    for prefix, text in overrides.items():
        if line.startswith(prefix):
            sys.stdout.write(text)
            return 0
    code, out, err = _default(tool, argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
