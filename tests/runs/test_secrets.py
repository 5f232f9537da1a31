"""Planted secrets (a kubeconfig bearer token, a storage credential in a Server's env, credentials in
a storage URI) never reach the report, the JUnit file, the HTML page or the evidence of a failed run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.kit.simproc import ROOT, existing_profile_for, running_sim

STORAGE_SECRET = "planted-storage-secret-77e2b4"
URI_PASSWORD = "planted-uri-password-3d9e"
# Shapes from issue 14 that the name-based redaction missed.
S3_SLASHED = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYpLaNtEd"
PRESIGNED_SIG = "a1b2c3d4e5f6planted7presigned"
SAS_SIG = "Zm9vYmFyplantedSAS%2Bqux%3D"
URI_TOKEN = "plantedUriToken8c2f"
BASIC = "cGxhbnRlZDpiYXNpYw=="
ARG_TOKEN = "plantedArgTokenX91kQ"
# Issue 26: shapes that still reached an output.
URI_S3_SLASHED = "pLaNtEdUri/SeCrEt+k3y="
TOKEN_HEADER = "plantedTokenHeader5a1"
AUTH_FLAG = "plantedAuthFlag9c"
SHORT_P = "plantedShortP4e"
MYSQL_PW = "plantedMysqlPw7d"
DOCKER_PAT = "dckr_pat_plantedDockerPat0123"
PLANTED = (STORAGE_SECRET, URI_PASSWORD, S3_SLASHED, PRESIGNED_SIG, SAS_SIG, URI_TOKEN, BASIC, ARG_TOKEN,
           URI_S3_SLASHED, TOKEN_HEADER, AUTH_FLAG, SHORT_P, MYSQL_PW, DOCKER_PAT)


@pytest.mark.slow
def test_no_planted_secret_in_any_output(tmp_path: Path) -> None:
    with running_sim(ROOT / "profiles" / "sim.yaml", tmp_path) as sim:
        # The kubeconfig's bearer token is the sim's own (it authenticates every request).
        config = yaml.safe_load(sim.kubeconfig.read_text())
        kube_token = config["users"][0]["user"]["token"]
        planted = (*PLANTED, kube_token)
        kubeconfig = sim.kubeconfig
        profile = existing_profile_for(
            ROOT / "profiles" / "sim.yaml", kubeconfig, tmp_path / "existing.yaml",
            servers=[
                {"name": "mlserver-gpu", "gpus": 1, "pod_spec": {"containers": [{"name": "mlserver", "env": [
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": STORAGE_SECRET},
                    {"name": "S3_CREDS", "value": S3_SLASHED},
                    {"name": "MIRROR", "value": f"https://b.s3.amazonaws.com/m?X-Amz-Signature={PRESIGNED_SIG}"},
                    {"name": "BLOB", "value": f"https://a.blob.core.windows.net/c/m?sv=2022&sig={SAS_SIG}"},
                    {"name": "PROXY_AUTHORIZATION", "value": f"Basic {BASIC}"},
                    {"name": "EXTRA_HEADERS", "value": f"Authorization: Token {TOKEN_HEADER}"},
                    {"name": "REGISTRY", "value": DOCKER_PAT},
                ], "args": ["--api-token", ARG_TOKEN, "--auth", AUTH_FLAG, "-p", SHORT_P,
                            f"mysql -u root -p{MYSQL_PW} db"]}]}},
                {"name": "mlserver-cpu", "gpus": 0, "extra_capabilities": ["model-on-cpu"]},
            ],
            # The model cannot be fetched (and the run fails, so evidence is collected).
            # The first model fails to load, and its failure quotes its storage URI: a token-only
            # userinfo (no ':'), which name-based redaction let through into every output.
            models=[{"name": "private", "storage_uri": f"https://{URI_TOKEN}@host.example/model",
                     "requirements": ["sklearn", "model-on-gpu"]},
                    {"name": "private2", "storage_uri": f"s3://user:{URI_PASSWORD}@bucket/model",
                     "requirements": ["sklearn", "model-on-gpu"]},
                    {"name": "private3", "storage_uri": f"s3://AKIAIOSFODNN7EXAMPLE:{URI_S3_SLASHED}@bucket/m",
                     "requirements": ["sklearn", "model-on-gpu"]}],
            timeouts={"server_ready_s": 60, "model_ready_s": 30},
        )
        report_dir = tmp_path / "report"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "suites/test_placement.py", "--profile", str(profile),
             "--report-dir", str(report_dir), "-q", "-p", "no:cacheprovider", "--run-id", "secrets"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )
    assert proc.returncode == 1, proc.stdout[-3000:]
    files = [p for p in report_dir.rglob("*") if p.is_file() and p.suffix != ".kubeconfig"]
    assert any(p.name == "report.json" for p in files)
    leaks = []
    for path in files:
        text = path.read_text(errors="replace")
        leaks += [f"{path.relative_to(report_dir)}: {s}" for s in planted if s in text]
    for stream in (proc.stdout, proc.stderr):
        leaks += [f"pytest output: {s}" for s in planted if s in stream]
    assert leaks == [], leaks
