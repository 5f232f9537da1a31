"""Least privilege and input safety, asserted over everything the harness renders and over its source."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness import render
from harness.config import load_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


def _runtime_pods(path: Path) -> list[dict[str, Any]]:
    """Every pod the harness itself starts: rendered files plus the run-time probe and intruder pods."""
    profile = load_profile(path)
    pods = [d for docs in render.render_all(profile).values() for d in docs if d and d.get("kind") == "Pod"]
    pods.append(render.probe_pod(profile, "probe", "ns", 1, node_name="node-a"))
    pods.append(render.probe_pod(profile, "probe0", "ns", 0, node_name="node-a"))
    pods.append(render.intruder_pod(profile, "intruder", "ns"))
    pods.append(render.intruder_pod(profile, "intruder2", "ns", node_name="node-a"))
    return pods


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_pods_run_without_privileges_host_paths_or_tokens(path: Path) -> None:
    pods = _runtime_pods(path)
    assert len(pods) >= 4
    for pod in pods:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        assert spec.get("automountServiceAccountToken") is False, f"{name}: service-account token mounted"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        assert all("hostPath" not in v for v in spec.get("volumes") or []), f"{name}: hostPath volume"
        pod_ctx = spec.get("securityContext") or {}
        for container in spec["containers"] + (spec.get("initContainers") or []):
            ctx = {**pod_ctx, **(container.get("securityContext") or {})}
            assert ctx.get("privileged") in (None, False), f"{name}/{container['name']}: privileged"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{name}/{container['name']}: may escalate"
            assert ctx.get("runAsNonRoot") is True, f"{name}/{container['name']}: may run as root"
            assert "ALL" in ((ctx.get("capabilities") or {}).get("drop") or []), f"{name}: capabilities kept"
            assert ctx.get("readOnlyRootFilesystem") is True, f"{name}/{container['name']}: writable root"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_servers_ask_for_nothing_beyond_gpus(path: Path) -> None:
    profile = load_profile(path)
    for server in profile.servers:
        obj = render.server(profile, server, profile.seldon.namespace)
        pod_spec = obj["spec"].get("podSpec") or {}
        assert all("hostPath" not in v for v in pod_spec.get("volumes") or []), server.name
        for container in pod_spec.get("containers") or []:
            assert not (container.get("securityContext") or {}).get("privileged"), server.name


def test_rbac_grants_no_wildcards_and_no_secrets() -> None:
    import yaml

    files = sorted((ROOT / "manifests" / "rbac").glob("*.yaml"))
    if not files:
        pytest.fail("manifests/rbac/ holds no role: the existing-cluster provider must ship one")
    rules = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") in ("ClusterRole", "Role"):
                rules += [(f.name, doc["metadata"]["name"], r) for r in doc.get("rules") or []]
    assert rules
    for fname, role, rule in rules:
        assert "*" not in rule.get("verbs", []), f"{fname} {role}: wildcard verb"
        assert "*" not in rule.get("resources", []), f"{fname} {role}: wildcard resource"
        assert "*" not in rule.get("apiGroups", []), f"{fname} {role}: wildcard API group"
        assert "secrets" not in rule.get("resources", []), f"{fname} {role}: grants secrets"
        assert not {"escalate", "impersonate"} & set(rule.get("verbs", [])), f"{fname} {role}"
        if "bind" in rule.get("verbs", []):
            # Only the run-namespace role, which the run binds inside the namespaces it creates
            # (issue 26); binding any other role would let the identity grant itself more.
            assert rule == {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                            "verbs": ["bind"], "resourceNames": ["seldon-gpu-harness-run-namespace"]}, \
                f"{fname} {role}: bind beyond the run-namespace role"


SOURCE_RULES = [
    # yaml.load is fine only with a safe loader named in the call (the C one, or SafeLoader).
    (re.compile(r"\byaml\.(unsafe_load|full_load)\(|\byaml\.(load|load_all)\((?![^\n]*SafeLoader)"),
     "YAML parsed without the safe loader"),
    (re.compile(r"shell\s*=\s*True"), "subprocess through a shell"),
    (re.compile(r"\bos\.(system|popen)\("), "shell command through os"),
    (re.compile(r"\beval\(|\bexec\("), "eval/exec of text"),
    (re.compile(r"\bpickle\.loads?\("), "unpickling"),
]


def test_source_uses_safe_loaders_and_no_shell() -> None:
    problems = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern, what in SOURCE_RULES:
                if pattern.search(code):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}")
    assert not problems, "\n".join(problems)


def test_every_subprocess_call_has_a_timeout() -> None:
    """subprocess.run/check_output/call without `timeout=` can hang a nightly run forever."""
    call = re.compile(r"subprocess\.(run|check_output|check_call|call)\(")
    problems = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        text = path.read_text()
        for match in call.finditer(text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            if "timeout" not in text[match.start(): end]:
                problems.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}")
    assert not problems, "subprocess calls without a timeout: " + ", ".join(problems)


def test_only_documented_environment_variables_are_read() -> None:
    """The profile is the single source of every knob: the harness reads KUBECONFIG and PROFILE only
    (PATH is handed to child processes). The probe and the simulated NVML run inside pods and read
    the container's environment by design."""
    # HARNESS_SELDON_CRDS: where the sim finds Seldon's CRD schemas (docs/architecture.md); the load
    # generator, like the probe, runs in a pod and reads the downward API's variables.
    allowed = {"KUBECONFIG", "PROFILE", "PATH", "HARNESS_SELDON_CRDS"}
    exempt = {"harness/gpu/probe.py", "harness/load/generator.py"}
    read = re.compile(r"os\.environ\.get\(\s*[\"']([A-Z_]+)[\"']|os\.getenv\(\s*[\"']([A-Z_]+)[\"']|"
                      r"os\.environ\[\s*[\"']([A-Z_]+)[\"']\s*\]")
    problems = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in exempt:
            continue
        for match in read.finditer(path.read_text()):
            name = next(g for g in match.groups() if g)
            if name not in allowed:
                problems.append(f"{rel}: reads ${name}")
    assert not problems, problems
