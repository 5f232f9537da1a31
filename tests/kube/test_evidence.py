"""Evidence collection against the simulated cluster: the files, previous logs after restarts, redaction,
and best effort (errors go to errors.txt, nothing raises)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.config import Timeouts
from harness.kube import Kube, RetryPolicy
from harness.kube.evidence import collect_evidence, events_table, pods_wide, redact
from harness.kube.tools import HelmRunner, ToolRunner

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFCQyJ9.payload.signature"


def make_pod(kube: Kube, sim: Any, ns: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": ns},
                "spec": {"containers": [{"name": "main", "image": "busybox",
                                         "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2hunter2"},
                                                 {"name": "MODE", "value": "fast"}]}]}})
    kube.wait_for("v1", "Pod", "app", ns, lambda p: (p or {}).get("status", {}).get("phase") == "Running", 30,
                  "pod app running")
    sim.store.append_log(ns, "app", "main", "first life\n")
    sim.faults.pod_crash(ns, "app", "main")  # the kubelet restarts it: the current log becomes --previous
    kube.wait_for("v1", "Pod", "app", ns,
                  lambda p: any(c.get("restartCount", 0) > 0 for c in (p or {}).get("status", {}).get(
                      "containerStatuses") or []), 30, "a restart")
    sim.store.append_log(ns, "app", "main", f"second life Authorization: Bearer {TOKEN}\n")
    kube.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "app.1", "namespace": ns},
                 "involvedObject": {"kind": "Pod", "name": "app", "namespace": ns}, "reason": "BackOff",
                 "message": "Back-off restarting failed container", "type": "Warning",
                 "lastTimestamp": "2026-01-01T00:00:00Z"})


def test_collects_everything_redacted(kube: Kube, sim: Any, tmp_path: Path) -> None:
    make_pod(kube, sim, "ev-ok")
    out = tmp_path / "evidence"
    written = collect_evidence(kube, out, ["ev-ok"], seldon_namespace="seldon-mesh")
    names = {str(p.relative_to(out)) for p in written}
    assert {"events.txt", "pods-wide.txt", "nodes.yaml", "pods/ev-ok/app/describe.yaml", "pods/ev-ok/app/main.log",
            "pods/ev-ok/app/events.txt"} <= names
    assert "first life" in (out / "pods/ev-ok/app/main.previous.log").read_text()
    assert "Back-off restarting failed container" in (out / "events.txt").read_text()
    assert "app" in (out / "pods-wide.txt").read_text()
    nodes = yaml.safe_load((out / "nodes.yaml").read_text())
    gpu = next(n for n in nodes if n["name"] == "seldon-gpu-gpu-worker")
    assert gpu["allocatable"]["nvidia.com/gpu"] == "2"
    assert any(t["key"] == "seldon-gpu-srv" for t in gpu["taints"])
    every = "".join(p.read_text() for p in written)
    assert TOKEN not in every and "hunter2hunter2" not in every
    assert "fast" in (out / "pods/ev-ok/app/describe.yaml").read_text()  # ordinary env stays readable
    for kind in ("servers", "models", "serverconfigs"):
        assert (out / "seldon" / f"{kind}.yaml").exists() or "Seldon" in (out / "errors.txt").read_text()


def test_best_effort_never_raises_and_records_errors(kube: Kube, sim: Any, tmp_path: Path) -> None:
    make_pod(kube, sim, "ev-bad")
    kube._api.set_default_header("Connection", "close")
    sim.faults.fail_next("list", "nodes", count=100, code=500)
    sim.faults.fail_next("get", "pods/log", count=100, code=500)
    helm = HelmRunner(ToolRunner(default_timeout=5), tmp_path / "no-kubeconfig")
    object.__setattr__(helm.runner.paths, "helm", str(tmp_path / "no-helm"))
    out = tmp_path / "evidence"
    written = collect_evidence(kube, out, ["ev-bad"], seldon_namespace="seldon-mesh", helm=helm)
    errors = (out / "errors.txt").read_text()
    assert "nodes:" in errors and "logs of ev-bad/app/main" in errors and "helm status seldon-core-v2-setup" in errors
    assert out / "events.txt" in written and out / "pods-wide.txt" in written  # the rest still came


def test_unreachable_cluster_still_returns(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    kube = Kube.from_kubeconfig(kc, None, Timeouts(request_s=1), retry=RetryPolicy(attempts=1))
    written = collect_evidence(kube, tmp_path / "e", ["x"], seldon_namespace="seldon-mesh")
    assert (tmp_path / "e" / "errors.txt") in written
    assert "connection failed" in (tmp_path / "e" / "errors.txt").read_text()


def test_redact() -> None:
    assert redact(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer <redacted>"
    assert redact("client-key-data: LS0tLS1CRUdJTi") == "client-key-data: <redacted>"
    assert redact('{"token": "abc123"}') == '{"token": "<redacted>"}'
    assert redact("s3://b and https://user:pa55@example.com/x") == "s3://b and https://<redacted>@example.com/x"
    assert redact("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----") == "<redacted private key>"
    assert redact("phase: Running") == "phase: Running"


def test_tables() -> None:
    pods = [{"metadata": {"name": "p", "namespace": "n", "creationTimestamp": "t"},
             "spec": {"nodeName": "gpu-1", "containers": [{"name": "a"}, {"name": "b"}]},
             "status": {"phase": "Pending", "podIP": "10.0.0.1", "containerStatuses": [
                 {"name": "a", "ready": True, "restartCount": 2},
                 {"name": "b", "ready": False, "restartCount": 1,
                  "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]
    lines = pods_wide(pods).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert lines[1].split() == ["n", "p", "1/2", "CrashLoopBackOff", "3", "t", "10.0.0.1", "gpu-1"]
    events = [{"metadata": {"namespace": "n"}, "type": "Normal", "lastTimestamp": "2", "reason": "B",
               "involvedObject": {}},
              {"metadata": {"namespace": "n"}, "type": "Normal", "lastTimestamp": "1", "reason": "A",
               "involvedObject": {}}]
    body = events_table(events).splitlines()[1:]
    assert [line.split()[3] for line in body] == ["A", "B"]
