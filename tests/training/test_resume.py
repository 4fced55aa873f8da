"""Resume: a run killed with SIGKILL mid-training and resumed with --resume ends exactly like one that never stopped,
in the same MLflow run, with no temporary file left; and every weighting's state survives a checkpoint."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_bench.weighting import WEIGHTINGS
from tests.conftest import ROOT, run_cli

ARGS = ["--suite", "ecommerce", "--profile", "smoke", "--seed", "5", "--set", "train.epochs=4",
        "--set", "train.limit_train_batches=3", "--set", "train.progress=false"]


def _args(out: Path, uri: str, data_dir: Path) -> list[str]:
    return ["run", *ARGS, "--set", f"data.dir={data_dir}", "--output-dir", str(out), "--tracking-uri", uri]


def _kill_after_first_epoch(out: Path, uri: str, data_dir: Path, log: Path) -> None:
    """Start a run, SIGKILL it as soon as its first epoch checkpoint exists (it is then inside epoch 2)."""
    last = out / "checkpoints" / "last.ckpt"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "mtl_bench", *_args(out, uri, data_dir)], cwd=ROOT,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert last.exists(), log.read_text()[-3000:]
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()  # killed before the end
    assert torch.load(last, weights_only=True)["epoch"] < 3


def test_killed_run_resumes_to_the_same_results_in_the_same_mlflow_run(tmp_path, data_dir):
    from mlflow.tracking import MlflowClient

    full, killed, uri = tmp_path / "full", tmp_path / "killed", f"sqlite:///{tmp_path / 'm.db'}"
    first = run_cli(*_args(full, uri, data_dir))
    assert first.returncode == 0, first.stderr[-3000:]

    _kill_after_first_epoch(killed, uri, data_dir, tmp_path / "killed.log")
    run_id = json.loads((killed / "run-state.json").read_text())["mlflow_run_id"]
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL: nobody could mark it
    resumed = run_cli(*_args(killed, uri, data_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = (json.loads((d / "results.json").read_text()) for d in (full, killed))
    assert b["tasks"] == a["tasks"]  # test metrics, best validation scores, trivial baselines: exactly equal
    assert b["robustness"] == a["robustness"] and b["cost"]["steps"] == a["cost"]["steps"] == 12
    assert (killed / "predictions.json").read_text() == (full / "predictions.json").read_text()
    assert b["mlflow"]["run_id"] == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert {m.step for m in client.get_metric_history(run_id, "val/score")} == {0, 1, 2, 3}
    leftovers = [*killed.glob(".*.tmp"), *(killed / "checkpoints").glob(".*.tmp")]
    assert leftovers == []

    again = run_cli(*_args(killed, uri, data_dir), "--resume")  # a finished run is not run again
    assert again.returncode == 0 and "holds a finished run" in again.stderr
    assert "test split" in again.stdout and f"MLflow run {run_id}" in again.stdout  # its results, read back


def test_resume_without_a_checkpoint_is_one_line_exit_2(tmp_path):
    result = run_cli("run", *ARGS, "--output-dir", str(tmp_path / "never"), "--resume")
    assert result.returncode == 2
    never = tmp_path / "never"
    assert result.stderr.strip() == (f"mtl-bench: error: --resume: no checkpoint to resume from in {never} (expected "
                                     f"{never / 'checkpoints' / 'last.ckpt'}; one is written at the end of every "
                                     "epoch); run without --resume to start")


def test_resume_with_other_settings_is_refused(tmp_path):
    from mtl_bench.config.load import build_config
    from mtl_bench.training.resume import resume_point

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"")
    before = build_config("ecommerce", "smoke").model_dump(mode="json")
    (out / "run-state.json").write_text(json.dumps({"mlflow_run_id": "x", "tracking_uri": "u", "config": before}))
    after = build_config("ecommerce", "smoke", sets=["train.lr=0.5", "train.devices=2"]).model_dump(mode="json")
    with pytest.raises(Exception, match=r"--resume: train.lr is 0.5 but the interrupted run used 0.001 \(1 setting"):
        resume_point(after, out)  # train.devices may change (where it runs), train.lr may not


# --- weighting state through a checkpoint ----------------------------------------------------------------------
STATEFUL = ["ew", "uw", "dwa", "rlw", "gradnorm", "famo", "dbmtl", "pcgrad", "gradvac", "nashmtl"]


def _step(model: nn.ModuleDict, weighting: nn.Module, step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(8, 4, generator=gen)
    losses = {t: F.mse_loss(model[t](torch.tanh(model["shared"](x))), torch.randn(8, 2, generator=gen)) + 0.1
              for t in ("a", "b")}
    for p in [*model.parameters(), *weighting.parameters()]:
        p.grad = None
    torch.manual_seed(100 + step)  # the weightings that draw random numbers (rlw, pcgrad, gradvac) draw the same
    weighting.backward(losses)
    if step % 2:
        weighting.on_epoch_end({t: float(v) for t, v in losses.items()})
    with torch.no_grad():
        for p in [*model.parameters(), *weighting.parameters()]:
            if p.grad is not None:
                p -= 0.05 * p.grad
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _fresh(name: str) -> tuple[nn.ModuleDict, nn.Module]:
    torch.manual_seed(0)
    model = nn.ModuleDict({"shared": nn.Linear(4, 3), "a": nn.Linear(3, 2), "b": nn.Linear(3, 2)})
    weighting = WEIGHTINGS.get(name)(["a", "b"])
    weighting.bind(list(model["shared"].parameters()), [*model["a"].parameters(), *model["b"].parameters()],
                   list(model["shared"].parameters()))
    return model, weighting


@pytest.mark.parametrize("name", STATEFUL)
def test_weighting_state_survives_a_checkpoint(name):
    if name == "nashmtl":
        pytest.importorskip("cvxpy")
    model, weighting = _fresh(name)
    for step in range(4):
        _step(model, weighting, step)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "weighting": weighting.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what Lightning's checkpoint loading accepts
    model2, weighting2 = _fresh(name)
    model2.load_state_dict(saved["model"])
    weighting2.load_state_dict(saved["weighting"])
    for step in range(4, 7):  # the reloaded copy continues exactly like the original
        resumed, original = _step(model2, weighting2, step), _step(model, weighting, step)
        assert all(torch.equal(g, h) for g, h in zip(resumed, original, strict=True)), step
