"""The local MLServer helper against a real MLServer process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from harness.localserver import IRIS_INPUT, MLServerError, MLServerProcess, forkserver, train_iris, write_paced_model
from harness.localserver.process import group_members
from tests.kit.fork_daemon import DaemonInUse

# Fixtures `mlserver` and `iris_model_dir` come from the shared real-MLServer module.
pytestmark = pytest.mark.slow


def _infer(server: MLServerProcess, model: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        body = json.dumps({"inputs": [IRIS_INPUT]})
        conn.request("POST", f"/v2/models/{model}/infer", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_train_iris_is_cached_and_named(tmp_path: Path) -> None:
    folder = train_iris(tmp_path / "flowers", name="iris-x")
    settings = json.loads((folder / "model-settings.json").read_text())
    assert settings["name"] == "iris-x"
    assert settings["implementation"] == "mlserver_sklearn.SKLearnModel"
    stamp = (folder / "model.joblib").stat().st_mtime_ns
    train_iris(folder, name="iris-x")
    assert (folder / "model.joblib").stat().st_mtime_ns == stamp  # reused, not retrained
    train_iris(folder, name="other")  # another name: the settings are renamed, the model is kept
    assert json.loads((folder / "model-settings.json").read_text())["name"] == "other"
    assert (folder / "model.joblib").stat().st_mtime_ns == stamp
    (folder / "model-settings.json").write_text("{broken")
    train_iris(folder, name="other")  # unreadable settings: trained again
    assert json.loads((folder / "model-settings.json").read_text())["name"] == "other"
    assert (folder / "model.joblib").stat().st_mtime_ns != stamp


def test_serves_iris_on_loopback(mlserver: MLServerProcess) -> None:
    assert mlserver.is_alive()
    assert mlserver.http_url.startswith("http://127.0.0.1:")
    assert mlserver.grpc_address.startswith("127.0.0.1:")
    status, body = _infer(mlserver, "iris")
    assert status == 200
    outputs = body["outputs"]
    assert isinstance(outputs, list)
    assert outputs[0]["data"] == [0]  # setosa


def test_load_and_unload_under_another_name(mlserver: MLServerProcess, iris_model_dir: Path) -> None:
    mlserver.load_model("iris-extra", iris_model_dir / "iris", timeout=30)
    assert mlserver.model_ready("iris-extra")
    status, body = _infer(mlserver, "iris-extra")
    assert status == 200 and body["model_name"] == "iris-extra"
    mlserver.unload_model("iris-extra")
    assert not mlserver.model_ready("iris-extra")
    assert _infer(mlserver, "iris-extra")[0] == 404


def test_a_custom_runtime_loads_under_another_name(mlserver: MLServerProcess, tmp_path: Path) -> None:
    """The settings are rewritten into the server's repository under the served name; the folder's
    other files go beside them (as Seldon's agent downloads the whole artifact), so MLServer finds a
    runtime that ships in the model folder. Before, it answered the load with HTTP 500."""
    folder = write_paced_model(tmp_path / "paced", 1.0)
    mlserver.load_model("custom_1", folder, timeout=30)
    try:
        status, body = _infer(mlserver, "custom_1")
        assert status == 200 and body["model_name"] == "custom_1" and body["outputs"][0]["data"] == [0]
        linked = mlserver.repository_dir / "custom_1" / "paced_model.py"
        assert linked.is_symlink() and linked.resolve() == (folder / "paced_model.py").resolve()
    finally:
        mlserver.unload_model("custom_1")
    assert folder.joinpath("paced_model.py").is_file()  # unloading removed the link, not the artifact


def test_early_exit_reports_log_tail(tmp_path: Path) -> None:
    # A port that is already taken makes MLServer exit at startup; fixed ports are not retried.
    # No models: nothing to load before the failing bind, so the failure comes quickly.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server, message = _start_fails_on(tmp_path, taken.getsockname()[1])
    assert "exited with code" in message or "not ready" in message
    assert "mlserver.log" in message
    assert not server.is_alive()


def _start_fails_on(tmp_path: Path, port: int) -> tuple[MLServerProcess, str]:
    """MLServer with no models on a fixed HTTP port: `start` must raise MLServerError; its message."""
    server = MLServerProcess(tmp_path / "srv", models_dir=tmp_path / "none", http_port=port)
    try:
        with pytest.raises(MLServerError) as info:
            server.start(timeout=60)
    finally:
        server.stop()
    return server, str(info.value)


def test_a_foreign_server_on_the_port_is_not_ready_and_never_a_traceback(tmp_path: Path) -> None:
    # Seen in a full run: another process's gRPC server held the kernel-chosen HTTP port for a moment and
    # the readiness poll read its HTTP/2 SETTINGS frame, which raised BadStatusLine out of `start`.
    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\n"
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()

        def answer() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = foreign.accept()
                    with conn:
                        conn.sendall(settings)

        threading.Thread(target=answer, daemon=True).start()
        server, message = _start_fails_on(tmp_path, foreign.getsockname()[1])
    assert "exited with code" in message or "not an HTTP answer" in message
    assert not server.is_alive()


@pytest.mark.parametrize("fork", ["1", "0"], ids=["forked", "plain"])
def test_stop_leaves_no_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: str) -> None:
    # One inference worker process (and multiprocessing's resource tracker) even without models:
    # children that must go down with the parent, whether MLServer was forked or started afresh.
    monkeypatch.setenv(forkserver.ENABLE_ENV, fork)
    server = MLServerProcess(tmp_path / "srv", models_dir=tmp_path / "none", parallel_workers=1)
    server.start(timeout=90)
    pid = server.pid
    assert pid is not None
    assert (_parent(pid) == os.getpid()) == (fork == "0")
    assert len(group_members(pid)) >= 2
    server.stop(timeout=10)
    assert group_members(pid) == []


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def test_mlservers_are_forks_of_one_preloaded_process_each_in_its_own_session(
        iris_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        mlserver_fork_daemon: DaemonInUse | None) -> None:
    monkeypatch.delenv(forkserver.ENABLE_ENV, raising=False)
    first = MLServerProcess(tmp_path / "a", models_dir=iris_model_dir)
    second = MLServerProcess(tmp_path / "b", models_dir=iris_model_dir)
    with first, second:
        assert first.pid is not None and second.pid is not None
        parent = _parent(first.pid)
        assert _parent(second.pid) == parent != os.getpid()
        # The fork server: this process's own child, or this process's session of the daemon that this
        # process started or that the xdist controller which started this worker did.
        if mlserver_fork_daemon is None:
            assert _parent(parent) == os.getpid()
        else:
            assert _parent(parent) == mlserver_fork_daemon.pid
            assert _parent(mlserver_fork_daemon.pid) in (os.getpid(), os.getppid())
        assert b"mlserver fork server" in (Path("/proc") / str(parent) / "cmdline").read_bytes()
        for server in (first, second):
            assert server.pid is not None
            assert os.getsid(server.pid) == os.getpgid(server.pid) == server.pid  # as start_new_session
            status, body = _infer(server, "iris")
            assert status == 200 and body["outputs"] == _infer(server, "iris")[1]["outputs"]
        pid = first.pid
        first.kill()  # a crash: the fork server reaps it and passes on how it ended
        assert not first.is_alive() and group_members(pid) == []
        assert second.is_alive()
    assert "Uvicorn running" in first.log_tail(200) or "HTTP server running" in first.log_tail(200)


def test_paced_model_folder_carries_its_runtime(tmp_path: Path) -> None:
    folder = write_paced_model(tmp_path / "paced", 4.0)
    settings = json.loads((folder / "model-settings.json").read_text())
    assert settings["name"] == "paced" and settings["implementation"] == "paced_model.PacedModel"
    assert settings["parameters"]["extra"] == {"service_ms": 4.0}
    # MLServer imports the implementation from the model's own folder: the file must be there.
    assert "class PacedModel" in (folder / "paced_model.py").read_text()
    with pytest.raises(ValueError, match="service_ms"):
        write_paced_model(tmp_path / "bad", 0)


def test_cached_iris_trains_once_per_cache_and_then_needs_no_sklearn(tmp_path: Path) -> None:
    import subprocess
    import sys

    from harness.localserver import cached_iris

    cache = tmp_path / "cache"
    first = cached_iris(tmp_path / "a", cache_root=cache)
    trained = list((cache / "models").iterdir())
    assert len(trained) == 1 and trained[0].name.startswith("iris-sklearn-")
    assert (first / "model.joblib").read_bytes() == (trained[0] / "model.joblib").read_bytes()
    # A later process copies the cached model: scikit-learn is never imported (seconds of CPU saved
    # in every simulated cluster that serves the iris sample).
    code = ("import sys; from pathlib import Path; from harness.localserver import cached_iris; "
            f"cached_iris(Path({str(tmp_path / 'b')!r}), name='other', cache_root=Path({str(cache)!r})); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr
    assert json.loads((tmp_path / "b" / "model-settings.json").read_text())["name"] == "other"
    # A cache that cannot be written (here: a file where the folder should be) means training in place.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    assert (cached_iris(tmp_path / "c", cache_root=blocked) / "model.joblib").stat().st_size > 0
