"""Every registered sharing strategy: per-task forward, parameter bookkeeping, and which gradients flow where."""

from __future__ import annotations

import pytest
import torch

from mtl_bench.errors import UserError
from mtl_bench.models.backbone import Backbone, build_backbone
from mtl_bench.models.types import IMAGE, TEXT
from mtl_bench.sharing import SHARINGS

from .tiny import BATCH, DIM, VOCAB, raw_input

TASKS = ["a-task", "b-task"]


def make_backbone() -> Backbone:
    return build_backbone([IMAGE, TEXT], DIM, VOCAB, image_size=16, image_channels=(8, 16), max_text_len=8, heads=2)


def inputs() -> dict[str, torch.Tensor]:
    return {IMAGE: raw_input(IMAGE), TEXT: raw_input(TEXT)}


@pytest.mark.parametrize("name", SHARINGS.names())
def test_sharing_bookkeeping_covers_every_parameter_once(name: str) -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get(name)(make_backbone, TASKS)
    assert sharing("a-task", inputs()).pooled.shape == (BATCH, DIM)
    groups = [sharing.shared_parameters()] + [sharing.task_parameters(t) for t in TASKS]
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in sharing.parameters()}
    with pytest.raises(UserError, match="unknown task"):
        sharing("c-task", inputs())
    with pytest.raises(UserError, match="unknown options"):
        SHARINGS.get(name)(make_backbone, TASKS, bogus=1)


@pytest.mark.parametrize("name", SHARINGS.names())
def test_a_task_loss_reaches_shared_params_and_not_other_tasks(name: str) -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get(name)(make_backbone, TASKS)
    sharing("a-task", inputs()).pooled.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sharing.shared_parameters()
               if p.requires_grad and p.ndim > 1)  # fmt: skip
    assert all(p.grad is None or not p.grad.any() for p in sharing.task_parameters("b-task"))
    assert any(p.grad is not None for p in sharing.parameters())


def test_hard_sharing_uses_one_backbone_for_every_task() -> None:
    sharing = SHARINGS.get("hard")(make_backbone, TASKS)
    assert len(sharing.shared_parameters()) == len(list(sharing.backbone.parameters())) > 0
    sharing.eval()
    x = inputs()
    assert torch.equal(sharing("a-task", x).pooled, sharing("b-task", x).pooled)


def test_single_task_builds_independent_backbones() -> None:
    sharing = SHARINGS.get("single-task")(make_backbone, TASKS)
    assert sharing.shared_parameters() == []
    a, b = sharing.backbones["a-task"], sharing.backbones["b-task"]
    assert a is not b and not set(map(id, a.parameters())) & set(map(id, b.parameters()))
    sharing.eval()
    x = inputs()
    assert not torch.allclose(sharing("a-task", x).pooled, sharing("b-task", x).pooled)
