"""DDP: two CPU processes (gloo) make the same run as one process, and rank 0 alone writes results and MLflow.

Why the runs can match: every process cuts the same global batches and takes its half of each (``data/batches.py``),
gradients are averaged over the processes (``training/distributed.py``), gradient-based weightings average each
task's gradient before aggregating (``core/distributed.py``), and the metrics are gathered by torchmetrics. With
dropout 0 (dropout masks are drawn per process) and no BatchNorm in the scratch encoders, the two-process gradient
of a per-sample mean loss equals the one-process gradient up to float rounding: the gloo test below shows that to
1e-6 for ``ew`` and ``pcgrad``.

Captioning's loss is a mean over the target tokens of the GLOBAL batch (each process divides its token sum by the
processes' mean token count, tasks/captioning.py), so it too averages exactly. What is left is float rounding
(sums in another order), which Adam's normalisation can amplify in rarely-updated parameters; the bounds below are ten
times under what a run without gradient averaging gives (parameters 1.1e-2 apart, several metrics 1e-2 to
7e-2 apart).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from mtl_bench.data.batches import EpochOrder, ShardedBatches, part
from mtl_bench.training.distributed import average_gradients
from mtl_bench.weighting import WEIGHTINGS
from tests.conftest import run_cli

SMOKE = ["--suite", "ecommerce", "--profile", "smoke", "--seed", "3", "--set", "model.dropout=0",
         "--set", "train.accelerator=cpu", "--set", "train.progress=false"]
PARAMS_ATOL = 1e-3  # every parameter: Adam turns rounding-sized gradients of rarely used weights into lr-sized steps
HEADS_ATOL = 1e-4  # the heads of the per-sample-loss tasks
METRIC_ATOL = 1e-3  # metrics of the per-sample-loss tasks (measured: within 1e-4 for ew)
CAPTION_ATOL = 1e-3  # captioning's metrics
WEIGHTINGS_UNDER_TEST = ("ew", "pcgrad")


# --- sharding --------------------------------------------------------------------------------------------------
def test_processes_take_disjoint_parts_of_the_same_global_batches():
    order = EpochOrder(10, seed=7, shuffle=True)
    one = list(ShardedBatches(order, 4))
    order.set_epoch(0)
    parts = [list(ShardedBatches(EpochOrder(10, seed=7, shuffle=True), 4, rank=r, world=2)) for r in range(2)]
    assert [len(p) for p in parts] == [3, 3] == [len(ShardedBatches(order, 4, rank=r, world=2)) for r in range(2)]
    for step, batch in enumerate(one):
        assert parts[0][step] + parts[1][step] == batch  # rank 0 the first half, rank 1 the second
        assert not set(parts[0][step]) & set(parts[1][step])


def test_order_depends_only_on_seed_epoch_and_pass():
    a, b = EpochOrder(50, seed=1, shuffle=True), EpochOrder(50, seed=1, shuffle=True)
    first, second = list(a), list(a)  # two passes of epoch 0 (a short task cycled by a long one)
    assert first != second and sorted(first) == list(range(50))
    b.set_epoch(3)
    epoch3 = list(b)
    a.set_epoch(3)
    assert list(a) == epoch3 != first  # the history of ``a`` does not matter, only (seed, epoch, pass)


def test_a_last_batch_too_small_to_split_is_dropped_everywhere():
    sizes = [[len(b) for b in ShardedBatches(EpochOrder(9, 0, False), 4, rank=r, world=2)] for r in range(2)]
    assert sizes == [[2, 2], [2, 2]]  # 4 + 4 + 1: the single leftover sample cannot feed two processes
    assert part(9, 1, 2) == (4, 9)


# --- gradients over gloo ---------------------------------------------------------------------------------------
def _gradients(name: str, rank: int, world: int) -> list[torch.Tensor]:
    """One step of a two-task model on 8 samples per task; this process uses its part of them."""
    torch.manual_seed(0)
    shared, heads = nn.Linear(4, 3), nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 2)})
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    targets = {"a": y, "b": -y + 0.3 * torch.randn(8, 2)}  # conflicting tasks: PCGrad has something to project
    weighting = WEIGHTINGS.get(name)(["a", "b"])
    weighting.bind(list(shared.parameters()), list(heads.parameters()), list(shared.parameters()))
    lo, hi = part(8, rank, world)
    losses = {t: F.mse_loss(heads[t](torch.tanh(shared(x[lo:hi]))), targets[t][lo:hi]) for t in ("a", "b")}
    weighting.backward(losses)
    params = [*shared.parameters(), *heads.parameters()]
    average_gradients(params)
    return [p.grad.clone() for p in params]


def _worker(rank: int, world: int, port: int, result: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        grads = {name: _gradients(name, rank, world) for name in WEIGHTINGS_UNDER_TEST}
        if rank == 0:
            torch.save(grads, result)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_give_the_one_process_gradient(tmp_path):
    result = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(result)), nprocs=2)
    two = torch.load(result, weights_only=True)
    for name in WEIGHTINGS_UNDER_TEST:
        torch.testing.assert_close(two[name], _gradients(name, 0, 1), atol=1e-6, rtol=1e-5)
    # The test can tell: averaging each process's own PCGrad aggregate (no row averaging) is not the same.
    halves = [_gradients("pcgrad", r, 2) for r in range(2)]
    naive = [(a + b) / 2 for a, b in zip(*halves, strict=True)]
    assert max((n - o).abs().max().item() for n, o in zip(naive, two["pcgrad"], strict=True)) > 1e-3


# --- end to end --------------------------------------------------------------------------------------------------
def _pair(root: Path, data_dir: Path, *extra: str) -> tuple[Path, Path, str]:
    one, two, uri = root / "one", root / "two", f"sqlite:///{root / 'ddp.db'}"
    common = [*SMOKE, "--set", f"data.dir={data_dir}", *extra]
    first = run_cli("run", *common, "--output-dir", str(one), "--tracking-uri", f"sqlite:///{root / 'one.db'}")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli("run", *common, "--output-dir", str(two), "--tracking-uri", uri, "--devices", "2",
                     "--strategy", "ddp")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("test split") == 1  # one results table: rank 1 prints nothing
    return one, two, uri


def _assert_same_run(one: Path, two: Path) -> None:
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert a["cost"]["steps"] == b["cost"]["steps"] and b["config"]["train"]["devices"] == 2
    for task, result in a["tasks"].items():
        atol = CAPTION_ATOL if task == "product-captioning" else METRIC_ATOL
        for key in ("metrics", "best_val"):
            for metric, value in result[key].items():
                assert b["tasks"][task][key][metric] == pytest.approx(value, abs=atol), (task, key, metric)
    sa, sb = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (one, two))
    floats = [k for k, v in sa.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    diffs = {k: (sa[k] - sb[k]).abs().max().item() for k in floats}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < PARAMS_ATOL, (worst, diffs[worst])
    heads = [v for k, v in diffs.items() if k.startswith("model.heads.") and "captioning" not in k]
    assert heads and max(heads) < HEADS_ATOL


def _assert_one_mlflow_run(two: Path, uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 1 created no run
    results = json.loads((two / "results.json").read_text())
    assert results["mlflow"]["run_id"] == runs[0].info.run_id
    assert json.loads((two / "run-state.json").read_text())["mlflow_run_id"] == runs[0].info.run_id


def test_ddp_two_processes_match_one_process(tmp_path, data_dir):
    one, two, uri = _pair(tmp_path, data_dir)
    _assert_same_run(one, two)
    _assert_one_mlflow_run(two, uri)


def test_ddp_gradient_based_weighting_matches_one_process(tmp_path, data_dir):
    one, two, uri = _pair(tmp_path, data_dir, "--weighting", "pcgrad", "--set", "train.epochs=1",
                          "--set", "train.limit_train_batches=4")
    _assert_same_run(one, two)
    _assert_one_mlflow_run(two, uri)
