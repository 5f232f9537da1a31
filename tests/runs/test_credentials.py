"""Issue 26 item 3: no credential leaves. Every shape the review planted, in each place a profile, a
cluster object, a kubeconfig or an error can carry it: redaction of text in every form it is
written in, the CLI's lines, the report files, and a KUBECONFIG list that is never merged to disk."""

from __future__ import annotations

import html
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import cli
from harness.config import load_profile
from harness.errors import UsageError
from harness.providers.base import ProviderOptions
from harness.providers.existing import ExistingProvider
from harness.redact import MARK, RedactingStream, redact, redact_tree
from harness.report import parse_report, write_outputs

ROOT = Path(__file__).resolve().parents[2]

SHAPES = [
    # URI userinfo, whole, whatever it holds
    ("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY@bucket/model", "wJalrXUtnFEMI/K7MDENG"),
    ("s3://AKIAIOSFODNN7EXAMPLE:ab+cd/ef=gh@bucket/model", "ab+cd/ef=gh"),
    ("storageUri: s3://KEYID:se/cr+et==@models/iris", "se/cr+et=="),
    ("https://user:p%40ss/w0rd@host.example/x", "p%40ss"),
    ("postgresql://admin:Sup3r/Secret@db.internal:5432/app", "Sup3r/Secret"),
    ("mongodb+srv://root:hunter2xyz@cluster0.example.net/db", "hunter2xyz"),
    ("redis://:redispass123@cache:6379/0", "redispass123"),
    ("ftp://anon:ftp-secret-1@files.example/pub", "ftp-secret-1"),
    ("amqp://guest:rabbit=pw@mq:5672/", "rabbit=pw"),
    # Authorization headers of every scheme
    ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "9944b09199c62bcf"),
    ("authorization: token abc123def456", "abc123def456"),
    ("Authorization: Digest username=\"u\", response=\"6629fae49393a05397450978507c4ef1\"", "6629fae49393a053"),
    ("Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
     "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7", "5d672d79c15b1316"),
    ("Proxy-Authorization: Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg", "YIIBhwYGKwYBBQUC"),
    ("{'Authorization': 'ApiKey c2VjcmV0LWFwaS1rZXk='}", "c2VjcmV0LWFwaS1rZXk="),
    ('"authorization": "Bearer sometokenvalue"', "sometokenvalue"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("curl -H 'Authorization: Token tok_live_12345'", "tok_live_12345"),
    ("Bearer abcdef.ghijkl.mnopqr", "abcdef.ghijkl"),
    # flags and their = forms
    ("serve --password hunter2", "hunter2"),
    ("serve --password=hunter2", "hunter2"),
    ("tool --auth s3cr3tvalue", "s3cr3tvalue"),
    ("tool --auth=s3cr3tvalue", "s3cr3tvalue"),
    ("login -p hunter2", "hunter2"),
    ("login -p=hunter2", "hunter2"),
    ("docker login -u bob -p Passw0rdXYZ registry.example", "Passw0rdXYZ"),
    ("tool --pass opensesame", "opensesame"),
    ("tool --token abc", "abc"),
    ("tool --client-secret=xyz789", "xyz789"),
    ("curl -u alice:wonderland123 https://x.example", "wonderland123"),
    ("curl --user=alice:wonderland123 https://x.example", "wonderland123"),
    # database clients
    ("mysql -u root -pPW12345 appdb", "PW12345"),
    ("mysql -h db -u root -pS3cr3t! -e 'select 1'", "S3cr3t!"),
    ("mysqldump -uroot -pdumpsecret db", "dumpsecret"),
    ("redis-cli -h cache -a redisAuthPW ping", "redisAuthPW"),
    ("sqlcmd -S srv -U sa -P SqlPassw0rd", "SqlPassw0rd"),
    ("PGPASSWORD=pgsecret psql -h db", "pgsecret"),
    ("Server=db;User Id=sa;Password=ConnStrPw;", "ConnStrPw"),
    ("MYSQL_ROOT_PASSWORD: rootpw", "rootpw"),
    # token prefixes
    ("using dckr_pat_2b3e36beeb386dfdaacb9b46004 for pulls", "dckr_pat_2b3e36"),
    ("ghp_1234567890abcdefghijABCDEFGHIJ123456", "ghp_1234567890"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_11ABC"),
    ("xoxb-1234-5678-abcdefgh", "xoxb-1234"),
    ("xoxe-1-abcdefghijkl", "xoxe-1-abcd"),
    ("glpat-abcdefghij1234567890", "glpat-abcdefghij"),
    ("hf_abcdefghijklmnopqrstuvwxyzABCD", "hf_abcdefghijkl"),
    ("gho_abcdefghijklmnop1234", "gho_abcdefghij"),
    # JWTs
    ("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl", "eyJpc3MiOiJr"),
    ("token eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "eyJzdWIiOiIx"),
    # PEM blocks
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n-----END PRIVATE KEY-----", "MIIEvQIBADANBgkq"),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----", "MHcCAQEEIBkg"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk", "b3BlbnNzaC1rZXk"),
    ("-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIB\n-----END CERTIFICATE-----", "MIIDdzCCAl+gAwIB"),
]
ORDINARY = [
    "0/3 nodes are available: 1 node(s) had untolerated taint {seldon-gpu-srv: true}",
    "python -m pytest suites/ -p no:cacheprovider -q",
    "docker run -p 8080:80 img; kubectl port-forward svc/x -p 9000",
    "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn",
    "git@github.com:SeldonIO/seldon-core.git",
    "Authorization is checked by the API server",
    "mysql is not used; --authors file",
    '{"status": "pass", "reason": "", "duration_s": 1.2}',
]


def _forms(text: str) -> list[str]:
    """The forms a string is written in: as is, inside JSON, HTML-escaped, a Python repr, a YAML value."""
    return [text, json.dumps({"message": text}), html.escape(text), repr({"msg": text}),
            yaml.safe_dump({"message": text})]


@pytest.mark.parametrize(("text", "secret"), SHAPES, ids=[s[1][:16] for s in SHAPES])
def test_every_shape_is_redacted_in_every_form(text: str, secret: str) -> None:
    for form in _forms(text):
        out = redact(form)
        assert secret not in out, (form, out)
    json.loads(redact(json.dumps({"message": text})))  # JSON stays JSON


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(("args", "hidden", "kept"), [
    (["mysql", "-u", "root", "-pArgPw123", "db"], "ArgPw123", "root"),
    (["tool", "--auth", "ArgAuthValue"], "ArgAuthValue", "tool"),
    (["login", "-p", "ArgShortP"], "ArgShortP", "login"),
    (["docker", "run", "-p", "8080:80", "img"], None, "8080:80"),
    (["redis-cli", "-a", "ArgRedis"], "ArgRedis", "redis-cli"),
    (["sh", "-c", "mysql -pShellPw db"], "ShellPw", "sh"),
])
def test_container_args_in_cluster_objects(args: list[str], hidden: str | None, kept: str) -> None:
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "c", "args": args, "env": [
        {"name": "HEADERS", "value": "Authorization: Token EnvTokenValue"},
        {"name": "REGISTRY", "value": "dckr_pat_EnvDockerPat1234"}]}]}}
    out = json.dumps(redact_tree(pod))
    assert (hidden is None or hidden not in out) and kept in out
    assert "EnvTokenValue" not in out and "EnvDockerPat1234" not in out


def test_the_report_files_carry_no_shape(tmp_path: Path) -> None:
    """A cluster object's status message, a test's failure text and its notes quote every shape."""
    data = json.loads((ROOT / "tests" / "data" / "reports" / "pass.json").read_text())
    quoted = "\n".join(text for text, _ in SHAPES)
    data["checks"][0].update(status="fail", reason=quoted, details={"event": quoted, "args": quoted.split()})
    data["phases"][0].update(status="failed", error=quoted)
    written = write_outputs(parse_report(data, "crafted"), tmp_path)
    for kind, path in written.items():
        text = path.read_text()
        # The HTML's plots are inline SVG: their labels are read with the rest of the page.
        assert "<svg " in text or kind != "html", "the crafted report has latencies: its HTML has plots"
        texts = [text]
        leaks = [secret for _, secret in SHAPES if any(secret in t for t in texts)]
        assert leaks == [], (kind, leaks)
    json.loads(written["json"].read_text())


def test_every_line_the_cli_prints_is_redacted(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Error lines (a kubeconfig's exec plugin stderr, a URI in a profile) and ordinary output."""
    def handler(args: Any) -> int:
        for text, _ in SHAPES:
            print(text)
            sys.stdout.write(text[:7])  # one line written in pieces
            sys.stdout.write(text[7:] + "\n")
        print("partial line without newline " + SHAPES[0][0], end="", file=sys.stderr)
        raise UsageError("exec plugin failed: " + " ".join(text for text, _ in SHAPES if "\n" not in text))

    monkeypatch.setattr(cli, "_resolve", lambda command: handler)
    assert cli.main(["lint", "--profile", "x.yaml"]) == 2
    out, err = capsys.readouterr()
    assert not isinstance(sys.stdout, RedactingStream)  # given back
    leaks = [secret for _, secret in SHAPES if secret in out + err]
    assert leaks == [] and MARK in err


def test_an_exec_plugins_stderr_never_reaches_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "plugin.sh"
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJleGVjIn0.ZXhlY3NpZ25hdHVyZQ"
    plugin.write_text(f"#!/bin/sh\necho 'refresh failed: token {jwt} password=ExecPw123' >&2\nexit 1\n")
    plugin.chmod(0o700)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                  "command": str(plugin), "interactiveMode": "Never"}}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    code = cli.main(["cleanup", "--profile", str(ROOT / "profiles" / "existing.yaml"), "--kubeconfig",
                     str(kubeconfig)])
    out, err = capsys.readouterr()
    assert code != 0
    assert jwt not in out + err and "ExecPw123" not in out + err


def _kubeconfig(path: Path, name: str, token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": f"https://127.0.0.1:9/{name}"}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}]}))
    return path


def test_a_kubeconfig_list_is_never_merged_to_disk_nor_written_through_a_planted_link(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _kubeconfig(tmp_path / "a", "ours", "OurTokenValue123")
    second = _kubeconfig(tmp_path / "b", "theirs", "TheirTokenValue456")
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    work = tmp_path / "report" / "work"
    work.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (work / "kubeconfig.merged").symlink_to(victim)
    profile = load_profile(ROOT / "profiles" / "existing.yaml")
    provider = ExistingProvider(profile, ProviderOptions(run_id="r", keep_cluster=False, workdir=work,
                                                         kubeconfig=None, tools=None))
    handle = provider.provision()
    private = Path(handle.kubeconfig)
    try:
        assert victim.read_text() == "untouched"
        assert tmp_path not in private.parents  # not in the report directory, nor beside the user's files
        mode = private.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600 and stat.S_IMODE(private.parent.stat().st_mode) == 0o700
        doc = yaml.safe_load(private.read_text())
        assert [c["name"] for c in doc["contexts"]] == ["ours"]
        assert "TheirTokenValue456" not in private.read_text()
        for path in (tmp_path / "report").rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert "TokenValue" not in path.read_text()
    finally:
        provider.teardown()
    assert not private.exists() and not private.parent.exists()


def test_the_one_context_keeps_relative_paths_meaning_what_they_meant(tmp_path: Path) -> None:
    from harness.kube.kubeconfig import flatten, one_context

    doc = {"clusters": [{"name": "c", "cluster": {"server": "https://x", "certificate-authority": "ca.crt"}}],
           "users": [{"name": "u", "user": {"exec": {"command": "./bin/plugin"}}},
                     {"name": "v", "user": {"exec": {"command": "kubelogin"}}}],
           "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}
    one = one_context(flatten([(tmp_path / "config", doc)]), None, "test")
    assert one["clusters"][0]["cluster"]["certificate-authority"] == str(tmp_path / "ca.crt")
    assert one["users"] == [{"name": "u", "user": {"exec": {"command": str(tmp_path / "bin" / "plugin")}}}]
    assert flatten([(tmp_path / "config", doc)])["users"][1]["user"]["exec"]["command"] == "kubelogin"  # PATH


@pytest.mark.serial
def test_redaction_stays_linear_on_long_runs_of_name_characters() -> None:
    """A long token-like run used to be retried from each of its positions (20 kB took 78 s): now
    it is one pass. The bound is generous (a quadratic 100 kB run would take half an hour)."""
    import time

    started = time.monotonic()
    for text in ("x" * 100_000, "a-" * 50_000, "a." * 50_000, '"' + "x" * 100_000):
        redact(text)
    assert time.monotonic() - started < 20
