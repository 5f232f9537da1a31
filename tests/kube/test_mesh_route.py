"""A mesh the runner can reach, or none needed: `seldon.mesh_endpoint`, the port-forward tunnel when the
Service has no LoadBalancer address, and the lookup only when a test needs the mesh."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import load_profile, parse_profile
from harness.errors import UsageError
from harness.kube import Kube
from harness.lifecycle import ClusterSession, RunOptions
from harness.providers import ProviderOptions, get_provider
from harness.providers.base import MeshEndpoint
from harness.providers.mesh import TUNNEL_NOTE, from_profile, tunnel_target
from harness.report import load_report
from harness.sim.api import portforward
from tests.kit.simproc import ROOT, existing_profile_for, running_sim

SIM_PROFILE = ROOT / "profiles" / "sim.yaml"


def _pod(name: str, labels: dict[str, str], ready: bool = True, ports: list[dict[str, Any]] | None = None) -> Any:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "envoy", "ports": ports or []}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_profile_endpoint_wins_and_keeps_rest_and_grpc_on_one_port() -> None:
    assert from_profile("http://10.0.0.7:8080") == MeshEndpoint("http://10.0.0.7:8080", "10.0.0.7:8080", "profile")
    assert from_profile("http://mesh.internal/").grpc_target == "mesh.internal:80"
    with pytest.raises(UsageError, match=r"seldon\.mesh_endpoint"):
        parse_profile({"seldon": {"mesh_endpoint": "mesh.internal:80"}}, "p.yaml")


def test_kind_uses_the_profile_endpoint_over_its_nodeport(tmp_path: Path) -> None:
    data = load_profile(ROOT / "profiles" / "kind-cpu.yaml").model_dump(exclude={"source"})
    options = ProviderOptions(run_id="r1", keep_cluster=False, workdir=tmp_path, kubeconfig=None, tools=None)
    assert get_provider(parse_profile(data, "k.yaml"), options).mesh_endpoint(None).route == "nodeport"  # type: ignore[arg-type]
    data["seldon"]["mesh_endpoint"] = "http://127.0.0.1:31000"
    mesh = get_provider(parse_profile(data, "k.yaml"), options).mesh_endpoint(None)  # type: ignore[arg-type]
    assert (mesh.http_url, mesh.route) == ("http://127.0.0.1:31000", "profile")


def test_tunnel_target_is_a_ready_pod_behind_the_service() -> None:
    svc = {"spec": {"selector": {"app": "envoy"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    pods = [_pod("other", {"app": "x"}, ports=[{"name": "http", "containerPort": 1}]),
            _pod("starting", {"app": "envoy"}, ready=False, ports=[{"name": "http", "containerPort": 9000}]),
            _pod("envoy-1", {"app": "envoy"}, ports=[{"name": "http", "containerPort": 9000}])]
    assert tunnel_target(svc, pods) == ("envoy-1", 9000)
    numbered = {"spec": {"selector": {"app": "envoy"}, "ports": [{"port": 80, "targetPort": 9000}]}}
    assert tunnel_target(numbered, pods) == ("envoy-1", 9000)  # never a pod that is not ready
    assert tunnel_target({"spec": {"ports": [{"port": 80}]}}, pods) is None  # no selector: nothing to forward to


def test_websocket_frames_round_trip() -> None:
    import io

    key = b"\x01\x02\x03\x04"
    masked = bytes([0x82, 0x80 | 3]) + key + bytes(b ^ key[i] for i, b in enumerate(b"\x00hi"))
    assert portforward.read_frame(io.BytesIO(masked)) == (portforward.OP_BINARY, b"\x00hi")
    big = b"x" * 70000
    assert portforward.read_frame(io.BytesIO(portforward.frame(portforward.OP_BINARY, big))) == (2, big)
    # RFC 6455 section 1.3's worked example.
    assert portforward.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class _NoMeshProvider:
    """A provider whose mesh lookup fails: nothing but a test that needs the mesh may ask for it."""

    def __init__(self) -> None:
        self.asked = 0

    def mesh_endpoint(self, kube: Any) -> MeshEndpoint:
        self.asked += 1
        raise UsageError("Service seldon-mesh/seldon-mesh has no LoadBalancer ingress")


def test_the_mesh_is_looked_up_once_and_only_when_asked(tmp_path: Path) -> None:
    session = ClusterSession(load_profile(SIM_PROFILE), RunOptions(run_id="r1", workdir=tmp_path))
    fake = _NoMeshProvider()
    session.provider = fake  # type: ignore[assignment]
    session.kube = object()  # type: ignore[assignment]
    assert fake.asked == 0 and session.phases == []
    assert session.mesh is None and session.mesh is None
    assert fake.asked == 1 and "has no LoadBalancer ingress" in (session.mesh_error or "")
    assert [(p.name, p.status) for p in session.phases] == [("mesh", "failed")]


def test_existing_cluster_without_ingress_is_reached_through_a_tunnel(tmp_path: Path) -> None:
    """In process: the sim's Service loses its address; the existing provider tunnels to Envoy, and the
    mesh answers through it (an unknown model's 404 is the mesh's own answer)."""
    profile = load_profile(SIM_PROFILE)
    sim = get_provider(profile, ProviderOptions(run_id="r1", keep_cluster=False, workdir=tmp_path / "sim",
                                                kubeconfig=None, tools=None, sim_mlserver=False))
    handle = sim.provision()
    kube = Kube.from_kubeconfig(handle.kubeconfig, handle.context, profile.timeouts)
    existing = None
    try:
        sim.cluster.faults.trigger("mesh_without_ingress")  # type: ignore[attr-defined]
        data = load_profile(ROOT / "profiles" / "existing.yaml").model_dump(exclude={"source"})
        data["timeouts"]["load_balancer_s"] = 1
        existing = get_provider(parse_profile(data, "e.yaml"), ProviderOptions(
            run_id="r1", keep_cluster=False, workdir=tmp_path / "ex", kubeconfig=handle.kubeconfig, tools=None))
        mesh = existing.mesh_endpoint(kube)
        assert mesh.route == "tunnel" and mesh.note.startswith(TUNNEL_NOTE) and "port 9000" in mesh.note
        assert mesh.http_url.startswith("http://127.0.0.1:")
        host, port = mesh.http_url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for _ in range(2):  # one connection, two requests (keep-alive through one stream)
            conn.request("POST", "/v2/models/nosuch/infer", body=b'{"inputs": []}',
                         headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            assert (answer.status, b"not found in the mesh" in answer.read()) == (404, True)
        conn.close()
    finally:
        if existing is not None:
            existing.teardown()
            assert existing.tunnels == []  # type: ignore[attr-defined]
        sim.teardown()
        kube.close()


@pytest.mark.slow
def test_existing_run_without_ingress_runs_placement_nvml_and_latency_through_the_tunnel(tmp_path: Path) -> None:
    """The Done-when run: `sim up --no-mesh-ingress` attached as an existing cluster. Placement and NVML
    suites run whatever the mesh; the latency test of one model goes through the tunnel and says so."""
    shipped = yaml.safe_load(SIM_PROFILE.read_text(encoding="utf-8"))
    keep = {"triton-gpu", "mlserver-cpu"}  # one GPU Server (placement, no MLServer behind it) and iris-cpu's
    servers = [s for s in shipped["servers"] if s["name"] in keep]
    models = [m for m in shipped["models"] if m.get("server", "") in keep or m["name"] in ("tfsimple", "iris-cpu")]
    with running_sim(SIM_PROFILE, tmp_path, extra_args=("--no-mesh-ingress",)) as sim:
        profile_path = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "existing.yaml",
                                            servers=servers, models=models,
                                            load={"rate": 20, "duration_s": 1.5, "warmup_s": 0.5, "window_s": 1,
                                                  "max_trials": 1},
                                            # how long the run waits for a load balancer before tunnelling
                                            timeouts={"load_balancer_s": 5})
        proc = subprocess.run(
            # One test of each suite: placement and NVML need no mesh, latency goes through the tunnel.
            [sys.executable, "-m", "pytest", "suites/test_placement.py::test_gpu_server_pods_run_on_the_gpu_pool",
             "suites/test_gpu_visibility.py::test_pod_that_asked_for_no_gpu_sees_none",
             "suites/test_inference_latency.py::test_latency_meets_the_slo[iris-cpu]", "--profile",
             str(profile_path), "--report-dir", str(tmp_path / "report"), "-q", "-p", "no:cacheprovider",
             "--run-id", "tunnel"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )
    report = load_report(tmp_path / "report" / "report.json")
    assert report.mesh is not None and report.mesh.route == "tunnel", proc.stdout[-3000:]
    assert "latencies include the API server" in report.mesh.note
    by_suite: dict[str, set[str]] = {}
    for check in report.checks:
        by_suite.setdefault(check.suite, set()).add(check.status)
    assert "fail" not in by_suite.get("placement", {"fail"}), proc.stdout[-3000:]
    assert "pass" in by_suite.get("gpu", set()), proc.stdout[-3000:]
    latency = [c for c in report.checks if c.name.startswith("test_latency_meets_the_slo")]
    assert latency and "tunnel" in str(latency[0].details.get("mesh route", "")), latency
    assert report.latency and report.latency[0].result.ok > 0, proc.stdout[-3000:]


def test_a_cluster_without_ingress_never_publishes_one(tmp_path: Path) -> None:
    """`sim up --no-mesh-ingress` withholds the address from the first reconcile on. It used to withhold it
    only after start(), so a busy machine could publish it first and a run read it (the tunnel test then
    saw route `loadbalancer`): every change of the mesh Service is checked, not only the last one."""
    from harness.sim.cluster import SimCluster
    from harness.sim.seldon import HTTP_PORT_ANNOTATION, MESH_SERVICE

    profile = load_profile(SIM_PROFILE)
    cluster = SimCluster(profile, tmp_path, mlserver=False, mesh_ingress=False)
    seen: list[Any] = []

    def mesh_service() -> dict[str, Any] | None:
        svc = cluster.store.get("v1", "Service", MESH_SERVICE, profile.seldon.namespace)
        seen.append(((svc or {}).get("status") or {}).get("loadBalancer"))
        return svc

    cluster.store.add_listener(lambda: mesh_service())
    cluster.start()
    try:
        kube = Kube.from_kubeconfig(cluster.kubeconfig_path, None, profile.timeouts)
        # Envoy running: the Seldon controller has reconciled the mesh Service many times by then.
        kube.wait_for_list("v1", "Pod", profile.seldon.namespace,
                           lambda pods: any((p.get("status") or {}).get("phase") == "Running" for p in pods),
                           timeout=60, what="an Envoy pod running",
                           label_selector="app.kubernetes.io/name=seldon-envoy")
        svc = kube.get("v1", "Service", MESH_SERVICE, profile.seldon.namespace)
        assert svc is not None and not ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        assert HTTP_PORT_ANNOTATION not in (svc["metadata"].get("annotations") or {})
        assert not any((lb or {}).get("ingress") for lb in seen), seen
        kube.close()
    finally:
        cluster.stop()
