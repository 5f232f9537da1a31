"""Redaction by shape (issue 14 item 3): each credential shape the issue found leaking, and the
ordinary text that must survive untouched (placement messages, taints, flags)."""

from __future__ import annotations

import pytest

from harness.redact import MARK, redact, redact_tree

S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example shape, with '/'


@pytest.mark.parametrize("text,secret", [
    (f"AWS_SECRET_ACCESS_KEY={S3_SECRET}", S3_SECRET),
    (f"{{'name': 'AWS_SECRET_ACCESS_KEY', 'value': '{S3_SECRET}'}}", S3_SECRET),
    (f'{{"name": "S3_CREDS", "value": "{S3_SECRET}"}}', S3_SECRET),
    (f"secret_access_key = {S3_SECRET}", S3_SECRET),
    ("https://b.s3.amazonaws.com/m.tgz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("https://storage.googleapis.com/b/m?X-Goog-Signature=0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7b"),
    ("https://acct.blob.core.windows.net/c/m?sv=2022-11-02&se=2026&sig=Zm9vYmFy%2Bqux%3D", "Zm9vYmFy"),
    ("storageUri: https://ghp_AbCdEfGhIjKlMnOpQrStUvWxYz012345@github.com/o/r", "ghp_AbCdEfGhIj"),
    ("https://justatoken123@host.example/x", "justatoken123"),
    ("s3://AKIAIOSFODNN7EXAMPLE:pa55w0rd@bucket/model", "pa55w0rd"),
    ("PROXY_AUTHORIZATION=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz", "eyJhbGci"),
    ("args: ['--api-token', 'abcDEF123ghiJKL456', '--port', '9000']", "abcDEF123ghiJKL456"),
    ("--hf-token=hf_abcdefghijklmnopqrstuvwxyz", "hf_abcdefghij"),
    ("command: serve --password hunter2", "hunter2"),
    ("log line: using hf_abcdefghijklmnopqrstuvwxyz0123 for downloads", "hf_abcdefghij"),
    ("AKIAIOSFODNN7EXAMPLE in a message", "AKIAIOSFODNN7EXAMPLE"),
    ("xoxb-123456789012-abcdefghij in a message", "xoxb-1234"),
    ('"token": "abc123"', "abc123"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
])
def test_each_credential_shape_is_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert MARK in out or "<redacted private key>" in out


@pytest.mark.parametrize("text", [
    "0/3 nodes are available: 1 node(s) had untolerated taint {seldon-gpu-srv: true}",
    "key: seldon-gpu-srv value: 'true' effect: NoSchedule",
    "nodeSelector: {pool: infer-srv}, key: nvidia.com/gpu.product",
    "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn",
    "--concurrency 8 --rate 10 --duration 3",
    "Model iris-gpu ModelFailed: model not found",
    "run_id: 20261129-a1b2c3",
    "GPU-0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e",
    "tests/runs/test_secrets.py:58: AssertionError",
    "harness/kube/token_cache.py:12",
])
def test_ordinary_text_survives(text: str) -> None:
    assert redact(text) == text


def test_tree_redaction_covers_env_args_and_secret_looking_fields() -> None:
    pod = {
        "kind": "Pod",
        "spec": {"containers": [{
            "name": "mlserver",
            "args": ["--api-token", "abcDEF123ghiJKL456", "--port", "9000"],
            "command": ["sh", "-c", "curl -H 'Authorization: Bearer abc.def.ghi' http://x"],
            "env": [{"name": "PROXY", "value": "Basic dXNlcjpwYXNz"},
                    {"name": "MY_PASSWORD", "value": "hunter2"},
                    {"name": "MLSERVER_HTTP_PORT", "value": "9000"}],
        }]},
        "storageUri": "https://x.blob.core.windows.net/c/m?sig=abcdef",
        "tolerations": [{"key": "seldon-gpu-srv", "value": "true"}],
    }
    out = redact_tree(pod)
    text = repr(out)
    for secret in ("abcDEF123ghiJKL456", "abc.def.ghi", "dXNlcjpwYXNz", "hunter2", "sig=abcdef"):
        assert secret not in text, secret
    container = out["spec"]["containers"][0]
    assert container["args"] == ["--api-token", MARK, "--port", "9000"]
    assert container["env"][2] == {"name": "MLSERVER_HTTP_PORT", "value": "9000"}
    assert out["tolerations"] == pod["tolerations"]
    secret_obj = redact_tree({"kind": "Secret", "data": {"a": "c2VjcmV0"}})
    assert secret_obj["data"] == {"a": MARK}
