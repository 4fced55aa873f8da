"""InfoNCE against hand-computed values, the learnable temperature, and negatives gathered across 2 processes."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtl_bench.losses.contrastive import MAX_LOGIT_SCALE, LogitScale, gather_with_grad, info_nce


def ce(logits: list[float], target: int) -> float:
    """Cross-entropy of one row, by hand."""
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_matched_orthogonal_pairs():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.e / (math.e + 1))  # every row: logits (1, 0) with the pair first
    assert info_nce(a, a, 1.0).item() == pytest.approx(expected, abs=1e-6)


def test_asymmetric_pairs_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # normalised inside: (0.6, 0.8) and (0, 1)
    # a -> b logits: a @ b_hat.T = [[0.6, 0], [0.8, 1]];  b -> a logits: b_hat @ a.T = [[0.6, 0.8], [0, 1]]
    a_to_b = (ce([0.6, 0.0], 0) + ce([0.8, 1.0], 1)) / 2
    b_to_a = (ce([0.6, 0.8], 0) + ce([0.0, 1.0], 1)) / 2
    assert info_nce(a, b, 1.0).item() == pytest.approx((a_to_b + b_to_a) / 2, abs=1e-6)
    scaled = (ce([6.0, 0.0], 0) + ce([8.0, 10.0], 1) + ce([6.0, 8.0], 0) + ce([0.0, 10.0], 1)) / 4
    assert info_nce(a, b, torch.tensor(10.0)).item() == pytest.approx(scaled, abs=1e-5)


def test_loss_falls_when_pairs_align_and_gradients_reach_both_sides():
    torch.manual_seed(0)
    a = torch.randn(8, 16, requires_grad=True)
    assert info_nce(a, a.detach(), 10.0) < info_nce(a, a.detach()[torch.randperm(8)], 10.0)
    b = torch.randn(8, 16, requires_grad=True)
    info_nce(a, b, 5.0).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_logit_scale_starts_at_clip_temperature_and_is_clamped():
    scale = LogitScale()
    assert scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert scale().item() == MAX_LOGIT_SCALE


def test_without_distributed_nothing_is_gathered():
    x = torch.randn(3, 4)
    gathered, offset = gather_with_grad(x)
    assert gathered is x and offset == 0


def _worker(rank: int, port: int, a: torch.Tensor, b: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        mine = slice(2 * rank, 2 * rank + 2)
        a_local = a[mine].clone().requires_grad_(True)
        loss = info_nce(a_local, b[mine], 3.0)
        loss.backward()
        out[rank] = (loss.item(), a_local.grad.clone())
    finally:
        dist.destroy_process_group()


def test_two_workers_see_each_others_negatives():
    """With 2 gloo workers of 2 rows each, the mean of their losses is the loss of all 4 rows in one process."""
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    with mp.Manager() as manager:
        out = manager.dict()
        port = 29500 + os.getpid() % 1000
        mp.spawn(_worker, args=(port, a, b, out), nprocs=2, join=True)
        results = dict(out)
    a_all = a.clone().requires_grad_(True)
    whole = info_nce(a_all, b, 3.0)
    whole.backward()
    assert (results[0][0] + results[1][0]) / 2 == pytest.approx(whole.item(), abs=1e-6)
    # all_gather's backward sums every worker's use of my rows: d(loss_0 + loss_1) = 2 d(whole); DDP then halves it
    grads = torch.cat([results[0][1], results[1][1]])
    torch.testing.assert_close(grads, 2 * a_all.grad, atol=1e-6, rtol=1e-5)
    assert not math.isclose(results[0][0], info_nce(a[:2], b[:2], 3.0).item(), abs_tol=1e-4)  # not local only
