"""Every registered sharing (default fusion) and fusion (hard sharing) trains on a shortened smoke run and writes the
cost, robustness and Δ fields; so does one weighting of each kind. Every registered weighting builds and takes one
step on a tiny model in ``test_every_weighting_takes_one_step``.

The weightings' rules are checked against float64 references in ``tests/weighting/``; what an end-to-end run adds is
the system's side of each kind's contract, so one run per kind covers it (``WEIGHTING_KINDS``): a plain weighted sum
(``ew``, the default of every sharing and fusion run), learnable weights the optimiser updates (``uw``), per-epoch
history (``dwa``), extra gradient norms through the last shared layer (``gradnorm``), losses re-scored after the
optimiser step (``famo`` with ``after=same_batch``), a TorchJD aggregator on the Jacobian (``upgrad``), a stateful
aggregator with its own solver (``nashmtl``) and a gradient-based method of its own (``dbmtl``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_bench.cli import main
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.results.schema import Results
from mtl_bench.sharing import SHARINGS
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting

WEIGHTING_KINDS = {
    "uw": [], "dwa": [], "gradnorm": [], "famo": ["weighting.options.after=same_batch"], "upgrad": [],
    "nashmtl": [], "dbmtl": [],
}  # fmt: skip
CASES = (
    [("sharing", name, []) for name in SHARINGS.names()]
    + [("fusion", name, []) for name in FUSIONS.names() if name != "early"]  # hard + early is sharing=hard's run
    + [("weighting", name, sets) for name, sets in WEIGHTING_KINDS.items()]
)
SHORT = ["train.epochs=1", "train.limit_train_batches=2", "train.progress=false"]
TASKS = 4


def smoke_run(out: Path, data_dir: Path, tracking_uri: str, *args: str, sets: list[str] = ()) -> dict:
    """``mtl-bench run`` on the shortened smoke profile, in this process; its results.json."""
    settings = [f"data.dir={data_dir}", *SHORT, *sets]
    code = main(["run", "--suite", "ecommerce", "--profile", "smoke", "--output-dir", str(out), "--tracking-uri",
                 tracking_uri, *args, *(a for s in settings for a in ("--set", s))])
    assert code == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("kind,name,sets", CASES, ids=[f"{k}={n}" for k, n, _ in CASES])
def test_strategy_trains_and_reports_cost(kind, name, sets, data_dir, tracking_uri, tmp_path):
    results = smoke_run(tmp_path / "run", data_dir, tracking_uri, f"--{kind}", name, sets=sets)
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


TINY_TASKS = ["a", "b", "c"]
HOOKS = ("backward", "on_epoch_end", "after_step", "get_extra_state")


def kind_of(name: str) -> tuple[str, tuple[str, ...], bool]:
    """What the system sees of a weighting: loss- or gradient-based, the hooks it overrides, learnable weights."""
    cls = WEIGHTINGS.get(name)
    hooks = tuple(h for h in HOOKS if getattr(cls, h) is not getattr(Weighting, h))
    return cls.kind, hooks, any(True for _ in cls(TINY_TASKS).parameters())


def test_every_kind_of_weighting_has_an_end_to_end_run():
    """A weighting that uses the system differently from all those run above (a new hook, say) needs a case in
    WEIGHTING_KINDS."""
    covered = {kind_of(name) for name in [*WEIGHTING_KINDS, "ew"]}
    missing = {name: kind_of(name) for name in WEIGHTINGS.names() if kind_of(name) not in covered}
    assert not missing, f"add one of these to WEIGHTING_KINDS: {missing}"


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_weighting_takes_one_step(name):
    """Three tasks that agree exactly (the same head, data and target): whatever the rule, the shared update is a
    positive multiple of their common gradient, every head is moved along its own gradient, one SGD step lowers
    every loss, and the weighting reports the backward passes of its kind."""
    torch.manual_seed(0)
    trunk, head = nn.Linear(4, 3), nn.Linear(3, 1)
    heads = nn.ModuleDict({t: nn.Linear(3, 1) for t in TINY_TASKS})
    for h in heads.values():
        h.load_state_dict(head.state_dict())
    x, y = torch.randn(8, 4), torch.randn(8, 1)

    def losses() -> dict[str, torch.Tensor]:
        z = torch.tanh(trunk(x))
        return {t: (heads[t](z) - y).square().mean() for t in TINY_TASKS}

    shared, head_params = list(trunk.parameters()), list(heads["a"].parameters())
    common = torch.autograd.grad(losses()["a"], shared + head_params)
    weighting = WEIGHTINGS.get(name)(TINY_TASKS)
    weighting.bind(shared, [p for h in heads.values() for p in h.parameters()], shared)
    before = losses()
    try:
        weighting.backward(before)
    except UserError as exc:  # an aggregator whose optional solver (mtl-bench[solvers]) is not installed
        if "needs packages that are missing" not in str(exc):
            raise
        pytest.skip(str(exc))

    def cosine(params: list[nn.Parameter], reference: tuple[torch.Tensor, ...]) -> float:
        got = torch.cat([p.grad.flatten() for p in params]).double()
        ref = torch.cat([g.flatten() for g in reference]).double()
        return float(got @ ref / (got.norm() * ref.norm()))

    assert cosine(shared, common[:2]) == pytest.approx(1.0, abs=1e-5)
    for t in TINY_TASKS:
        assert cosine(list(heads[t].parameters()), common[2:]) == pytest.approx(1.0, abs=1e-5), t
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in weighting.parameters())
    assert weighting.backward_passes(len(TINY_TASKS)) == (len(TINY_TASKS) if weighting.kind == "gradient" else 1)

    torch.optim.SGD([*trunk.parameters(), *heads.parameters(), *weighting.parameters()], lr=1e-2).step()
    with torch.no_grad():
        after = losses()
    if weighting.needs_losses_after_step:
        weighting.after_step(after)
    weighting.on_epoch_end({t: float(v) for t, v in after.items()})
    assert all(float(after[t]) < float(before[t]) for t in TINY_TASKS), (before, after)


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
        smoke_run(tmp_path / str(weight), data_dir, tracking_uri, "--sharing", "soft",
                  sets=[f"sharing.options.weight={weight}"])
        distances[weight] = backbone_distance(tmp_path / str(weight) / "checkpoints" / "best.ckpt")
    assert distances[10.0] < 0.5 * distances[0.0]
