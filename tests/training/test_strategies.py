"""Every registered sharing (default fusion), fusion (hard sharing) and weighting trains on a shortened smoke run and
writes the cost, robustness and Δ fields."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_bench.config.load import build_config
from mtl_bench.fusion import FUSIONS
from mtl_bench.results.schema import Results
from mtl_bench.sharing import SHARINGS
from mtl_bench.training.run import run
from mtl_bench.weighting import WEIGHTINGS

CASES = (
    [("sharing", name) for name in SHARINGS.names()]
    + [("fusion", name) for name in FUSIONS.names()]
    + [("weighting", name) for name in WEIGHTINGS.names()]
)
SHORT = ["train.epochs=1", "train.limit_train_batches=2", "train.progress=false"]
TASKS = 4


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}={n}" for k, n in CASES])
def test_strategy_trains_and_reports_cost(kind, name, data_dir, tracking_uri, tmp_path):
    cfg = build_config("ecommerce", "smoke", flags={f"{kind}.name": name}, sets=[f"data.dir={data_dir}", *SHORT])
    results = run(cfg, tmp_path / "run", tracking_uri)
    Results.model_validate(results)
    assert results["config"][kind]["name"] == name
    assert all(math.isfinite(v) for task in results["tasks"].values() for v in task["metrics"].values())
    cost = results["cost"]
    assert cost["steps"] == 2 and cost["step_ms"] > 0
    assert set(cost["flops_per_sample"]) == set(results["tasks"]) and min(cost["flops_per_sample"].values()) > 0
    gradient_based = kind == "weighting" and WEIGHTINGS.get(name).kind == "gradient"
    assert cost["backward_passes"] == (TASKS if gradient_based else 1)
    assert cost["trainable_params"] <= cost["params"]
    # Only classification has two alternative inputs; single-input tasks cannot lose their only one, and search
    # needs both sides of its pairs.
    assert set(results["robustness"]["product-classification"]) == {"no_image", "empty_title"}
    assert results["robustness"]["product-captioning"] == {} == results["robustness"]["video-tagging"]
    assert results["robustness"]["product-search"] == {}


def backbone_distance(checkpoint) -> float:
    """Squared L2 distance between the classification and video-tagging backbones of a soft-sharing checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]

    def backbone(task: str) -> dict[str, torch.Tensor]:
        prefix = f"model.sharing.backbones.{task}."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    a, b = backbone("product-classification"), backbone("video-tagging")
    assert a.keys() == b.keys() and a
    return sum(float((a[k].float() - b[k].float()).square().sum()) for k in a)


def test_soft_sharing_penalty_reaches_training(data_dir, tracking_uri, tmp_path):
    """The trainer adds the sharing's regularisation: a strong tie keeps the task backbones closer than none."""
    distances = {}
    for weight in (0.0, 10.0):
        cfg = build_config("ecommerce", "smoke", flags={"sharing.name": "soft"},
                           sets=[f"data.dir={data_dir}", *SHORT, f"sharing.options.weight={weight}"])
        run(cfg, tmp_path / str(weight), tracking_uri)
        distances[weight] = backbone_distance(tmp_path / str(weight) / "checkpoints" / "best.ckpt")
    assert distances[10.0] < 0.5 * distances[0.0]
