"""`--tracking-uri http://...`: a smoke run logs into a real MLflow tracking server (started here, on localhost)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start on {url}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_run_logs_to_a_tracking_server(mlflow_server, data_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    result = run_cli("run", "--suite", "ecommerce", "--profile", "smoke", "--output-dir", str(out),
                     "--tracking-uri", mlflow_server, "--set", f"data.dir={data_dir}", "--set", "train.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mlflow"]["tracking_uri"] == mlflow_server
    client = MlflowClient(mlflow_server)
    run = client.get_run(results["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["profile"] == "smoke"
    assert run.data.metrics["test/product-classification/accuracy"] == pytest.approx(
        results["tasks"]["product-classification"]["metrics"]["accuracy"]
    )
    assert {"results.json", "config.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
