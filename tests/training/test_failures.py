"""Failures say what happened in one line: a diverged loss names task and step and marks the MLflow run FAILED, GPU
out of memory names the batch size to lower (exit code 1); an unwritable or full output disk fails before training
(exit code 2)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from mtl_bench.cli import main
from mtl_bench.commands.run import run
from mtl_bench.config.load import build_config
from mtl_bench.errors import UserError
from mtl_bench.training.system import MultiTaskSystem
from tests.conftest import run_cli

SMOKE = ["--suite", "ecommerce", "--profile", "smoke", "--set", "train.progress=false"]


def _mlflow_status(out: Path, uri: str) -> str:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((out / "run-state.json").read_text())["mlflow_run_id"]
    return MlflowClient(uri).get_run(run_id).info.status


def test_nan_loss_stops_the_run_naming_task_and_step(tmp_path, data_dir):
    """A real divergence: AdamW's first update at lr 1e30 (5e29 after the 2-step warm-up) moves every weight by
    about 5e29, so the second step's forward overflows (attention scores, layer norms) and the first task in sorted
    order reports a NaN loss at step 1."""
    out, uri = tmp_path / "nan", f"sqlite:///{tmp_path / 'm.db'}"
    result = run_cli("run", *SMOKE, "--set", f"data.dir={data_dir}", "--set", "train.lr=1e30",
                     "--output-dir", str(out), "--tracking-uri", uri)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"mtl-bench: error: training diverged: task product-captioning: loss is (nan|-?inf) at step 1; "
                        r"the MLflow run is marked FAILED \(try a lower train\.lr, now 1e\+30, or train\.grad_clip, "
                        r"now 1\.0\)", last), last
    assert _mlflow_status(out, uri) == "FAILED"
    assert not (out / "results.json").exists()


def test_gpu_out_of_memory_names_the_batch_size_to_lower(tmp_path, data_dir, monkeypatch, capsys):
    def out_of_memory(self, batch, batch_idx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(MultiTaskSystem, "training_step", out_of_memory)
    out, uri = tmp_path / "oom", f"sqlite:///{tmp_path / 'm.db'}"
    code = main(["run", *SMOKE, "--set", f"data.dir={data_dir}", "--output-dir", str(out), "--tracking-uri", uri])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("mtl-bench: error: out of GPU memory: lower train.batch_size (now 32, per task), e.g. --set "
                       "train.batch_size=16; the MLflow run is marked FAILED")
    assert _mlflow_status(out, uri) == "FAILED"


def _assert_refused_before_training(result, out: Path, expected: str) -> None:
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert expected in result.stderr
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not bind root; see the read-only folder test")
def test_unwritable_output_dir_fails_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run_cli("run", *SMOKE, "--output-dir", str(locked / "out"))
    finally:
        locked.chmod(0o755)
    _assert_refused_before_training(result, locked / "out", f"--output-dir {locked / 'out'}: {locked} is not writable")


def test_output_dir_where_nothing_can_be_created_fails_before_training():
    """sysfs refuses new files even to root (the case a permission check alone misses)."""
    import tempfile

    try:
        tempfile.TemporaryFile(dir="/sys").close()
        pytest.skip("/sys accepts files here")
    except OSError:
        pass
    out = Path("/sys/mtl-bench-out")
    _assert_refused_before_training(run_cli("run", *SMOKE, "--output-dir", str(out)), out, "cannot write in /sys")


def _disk_with_free(monkeypatch, free_mb: float) -> None:
    usage = shutil.disk_usage("/")
    fake = type(usage)(usage.total, usage.total - int(free_mb * 2**20), int(free_mb * 2**20))
    monkeypatch.setattr("mtl_bench.training.disk.shutil.disk_usage", lambda path: fake)


def test_full_disk_fails_before_anything_is_generated(tmp_path, monkeypatch):
    _disk_with_free(monkeypatch, 50)
    cfg = build_config("ecommerce", "smoke", sets=[f"data.dir={tmp_path / 'data'}"])
    with pytest.raises(UserError) as err:
        run(cfg, output_dir=tmp_path / "out", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert str(err.value) == (f"--output-dir {tmp_path / 'out'}: 50 MB free on its disk, but a run (train.min_free_mb"
                              "=100) needs about 100 MB; free some space or choose another --output-dir")
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # no data generated either


def test_disk_without_room_for_the_checkpoints_fails_before_training(tmp_path, data_dir, monkeypatch):
    """Enough for the fixed minimum, not for it plus three checkpoints (best, last, one being written)."""
    _disk_with_free(monkeypatch, 100.1)
    cfg = build_config("ecommerce", "smoke", sets=[f"data.dir={data_dir}", "train.progress=false"])
    with pytest.raises(UserError, match=r"MB free on its disk, but this run's checkpoints \(best, last and one being "
                                        r"written\) needs about 10[0-9] MB"):
        run(cfg, output_dir=tmp_path / "out", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.db").exists()  # no MLflow run either
