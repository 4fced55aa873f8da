"""``mtl-bench distill``: a plain and a distilled student of a smoke teacher, and the report's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mtl_bench.commands.distill import student_config
from mtl_bench.commands.run import run
from mtl_bench.config.load import build_config
from mtl_bench.errors import UserError
from mtl_bench.losses.distillation import Distillation
from mtl_bench.training.system import MultiTaskSystem
from tests.conftest import run_cli

STUDENT = ["--student", "tiny", "--set", "model.dim=16", "--set", "train.progress=false"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, data_dir, tracking_uri) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("distill")
    cfg = build_config("ecommerce", "smoke", sets=[f"data.dir={data_dir}", "train.progress=false"])
    run(cfg, root / "teacher", tracking_uri=tracking_uri)
    result = run_cli("distill", "--teacher", str(root / "teacher"), *STUDENT, "--output-dir", str(root / "d"),
                     "--tracking-uri", tracking_uri)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| product-search |" in result.stdout
    return root / "teacher", root / "d", json.loads((root / "d" / "distill.json").read_text())


def test_report_matches_the_runs(distilled):
    teacher_dir, out, summary = distilled
    runs = {key: json.loads((d / "results.json").read_text())
            for key, d in {"teacher": teacher_dir, "student": out / "student", "distilled": out / "distilled"}.items()}
    assert set(summary["tasks"]) == set(runs["teacher"]["tasks"])
    for name, row in summary["tasks"].items():
        main = runs["teacher"]["tasks"][name]["main_score"]
        for key, results in runs.items():
            assert row[key] == results["tasks"][name]["metrics"][main]
        if row["teacher"]:
            assert row["retained"] == pytest.approx(row["distilled"] / row["teacher"])
        assert row["distillation_gain"] == pytest.approx(row["distilled"] - row["student"])
    costs = summary["costs"]
    assert costs["student"]["params"] == costs["distilled"]["params"] == runs["student"]["cost"]["params"]
    assert summary["size_ratio"] == pytest.approx(costs["teacher"]["params"] / costs["student"]["params"])
    assert summary["size_ratio"] > 2  # dim 32 -> 16
    assert all(c["latency_ms_batch1"] > 0 and c["latency_ms_batch64"] > 0 for c in costs.values())
    assert (out / "distill.md").read_text().count("\n| ") >= 4 + 3


def test_distillation_reaches_training(distilled):
    """Same seed, same data, same architecture: only the teacher's term differs, so the weights must too."""
    _, out, _ = distilled
    plain, student = (torch.load(out / k / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
                      for k in ("student", "distilled"))
    assert not any(k.startswith("model.") and k not in plain for k in student)
    assert any(not torch.equal(plain[k], student[k]) for k in plain if k.startswith("model."))


class _Task:
    def loss(self, model, batch):
        return torch.tensor(2.0)

    def distill_loss(self, student, teacher, batch, temperature):
        assert not teacher.training and temperature == 3.0
        return torch.tensor(4.0)


def test_distilled_loss_mixes_ground_truth_and_teacher():
    """The student's loss is alpha * distillation + (1 - alpha) * ground truth, with the teacher in eval mode."""
    teacher = nn.Linear(1, 1).train()
    system = SimpleNamespace(tasks={"t": _Task()}, model=None, distillation=None)
    assert MultiTaskSystem.task_loss(system, "t", {}).item() == 2.0
    system.distillation = Distillation(teacher, temperature=3.0, alpha=0.25)
    assert MultiTaskSystem.task_loss(system, "t", {}).item() == pytest.approx(0.25 * 4.0 + 0.75 * 2.0)


def test_student_config_keeps_the_teachers_data():
    teacher = build_config("ecommerce", "smoke")
    cfg = student_config(teacher, "small", None, [])
    assert (cfg.model.dim, cfg.model.heads, cfg.model.image_channels) == (64, 2, (16, 32))
    assert cfg.data == teacher.data and cfg.train == teacher.train
    with pytest.raises(UserError, match="expected one of small, tiny"):
        student_config(teacher, "huge", None, [])
    with pytest.raises(UserError, match="data"):
        student_config(teacher, "small", None, ["data.image_size=16"])
