"""Every registered sharing strategy: per-task forward, parameter bookkeeping, and which gradients flow where."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.types import IMAGE, MODALITIES, TEXT, VIDEO, Fused, Tokens
from mtl_bench.encoders import ENCODERS
from mtl_bench.errors import UserError
from mtl_bench.models.backbone import build_backbone
from mtl_bench.sharing import SHARINGS
from mtl_bench.sharing.adapters import lora_points
from mtl_bench.sharing.mmoe import mix_experts
from mtl_bench.sharing.soft import pairwise_l2

from .tiny import BATCH, DIM, FRAMES, IMAGE_SIZE, assert_finite_grads, raw_input, settings, subsets

TASKS = ["a-task", "b-task"]


def make_backbone() -> Backbone:
    return build_backbone([IMAGE, TEXT], settings(image_size=16, image_channels=(8, 16), max_text_len=8, heads=2))


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


def all_modalities_backbone() -> Backbone:
    """Image, text and video: the image encoder object is shared with the video frames inside the backbone."""
    return build_backbone(
        list(MODALITIES),
        settings(image_size=IMAGE_SIZE, image_channels=(8, 16), num_frames=FRAMES, max_text_len=8, heads=2),
    )


def randomize(params: list[torch.nn.Parameter], std: float = 0.3) -> None:
    with torch.no_grad():
        for p in params:
            p.normal_(0.0, std)


@pytest.mark.parametrize("name", SHARINGS.names())
def test_sharing_serves_tasks_that_give_only_some_modalities(name: str) -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get(name)(all_modalities_backbone, TASKS)
    ids = [id(p) for group in [sharing.shared_parameters()] + [sharing.task_parameters(t) for t in TASKS]
           for p in group]  # fmt: skip
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in sharing.parameters()}
    for present in subsets():
        sharing.zero_grad()
        out = sharing("b-task", {m: raw_input(m) for m in present})
        assert out.pooled.shape == (BATCH, DIM) and torch.isfinite(out.tokens).all()
        out.pooled.sum().backward()
        assert_finite_grads(sharing)
    with pytest.raises(UserError, match="no encoder for"):
        SHARINGS.get(name)(make_backbone, TASKS)("a-task", {VIDEO: raw_input(VIDEO)})  # built without video


# --- soft ---------------------------------------------------------------------------------------------------------


def test_pairwise_l2_matches_the_sum_over_pairs() -> None:
    groups = [[torch.randn(2, 3), torch.randn(4)] for _ in range(3)]
    by_pairs = sum((a - b).square().sum() for i, g in enumerate(groups) for h in groups[i + 1 :]
                   for a, b in zip(g, h, strict=True))  # fmt: skip
    assert torch.allclose(pairwise_l2(groups), by_pairs)
    assert pairwise_l2(groups[:1]) == 0


def test_soft_regularization_is_hand_computable_and_pulls_backbones_together() -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("soft")(make_backbone, TASKS, weight=0.01)
    a, b = sharing.backbones["a-task"], sharing.backbones["b-task"]
    assert a is not b and sharing.shared_parameters() == []
    assert sharing.regularization() == 0  # every backbone starts from the same weights
    with torch.no_grad():
        b.fusion.cls += 0.5  # [1, 1, DIM]: DIM differences of 0.5
        b.encoders[TEXT].position[0, 0, 0] += 2.0  # one difference of 2
    reg = sharing.regularization()
    assert torch.allclose(reg, torch.tensor(0.01 * (DIM * 0.25 + 4.0)))
    reg.backward()
    # d/da of w * (a - b)^2 = 2w (a - b): gradient descent moves a up towards b and b down towards a
    assert torch.allclose(a.fusion.cls.grad, torch.full_like(a.fusion.cls, -0.01))
    assert torch.allclose(b.fusion.cls.grad, torch.full_like(b.fusion.cls, 0.01))
    assert b.encoders[TEXT].position.grad[0, 0, 0] == pytest.approx(0.04)
    assert not a.fusion.stack.norm.weight.grad.any()  # equal parameters feel no pull


def test_soft_regularization_is_none_when_nothing_is_tied_and_checks_weight() -> None:
    assert SHARINGS.get("soft")(make_backbone, ["a-task"]).regularization() is None
    assert SHARINGS.get("soft")(make_backbone, TASKS, weight=0).regularization() is None
    assert SHARINGS.get("soft")(make_backbone, TASKS).weight == 1e-3
    for bad in (-1.0, "big", True):
        with pytest.raises(UserError, match=f"weight={bad!r}: expected a number >= 0"):
            SHARINGS.get("soft")(make_backbone, TASKS, weight=bad)


# --- cross-stitch -------------------------------------------------------------------------------------------------


def test_cross_stitch_starts_from_the_papers_alpha() -> None:
    two = SHARINGS.get("cross-stitch")(make_backbone, TASKS)
    assert torch.allclose(two.alpha(IMAGE), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    three = SHARINGS.get("cross-stitch")(make_backbone, ["a", "b", "c"])
    expected = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    assert torch.allclose(three.alpha(TEXT), expected)
    assert torch.equal(SHARINGS.get("cross-stitch")(make_backbone, ["a"]).alpha(IMAGE), torch.ones(1, 1))


def test_cross_stitch_mixes_encoder_outputs_and_with_identity_alpha_is_each_backbone_alone() -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("cross-stitch")(make_backbone, TASKS).eval()
    a, b = sharing.backbones["a-task"], sharing.backbones["b-task"]
    x = inputs()
    mixed = {m: Tokens(0.9 * a.encoders[m](x[m]).x + 0.1 * b.encoders[m](x[m]).x, a.encoders[m](x[m]).mask)
             for m in x}  # fmt: skip
    assert torch.allclose(sharing("a-task", x).pooled, a.fusion(mixed).pooled, atol=1e-6)
    assert not torch.allclose(sharing("a-task", x).pooled, a(x).pooled)
    with torch.no_grad():
        for m in x:
            sharing.stitch["a-task"][m].copy_(torch.tensor([1.0, 0.0]))
            sharing.stitch["b-task"][m].copy_(torch.tensor([0.0, 1.0]))
    for task, backbone in (("a-task", a), ("b-task", b)):
        out, alone = sharing(task, x), backbone(x)
        assert torch.allclose(out.pooled, alone.pooled, atol=1e-6) and torch.equal(out.mask, alone.mask)


def test_cross_stitch_task_parameters_are_its_fusion_and_alpha_rows() -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("cross-stitch")(make_backbone, TASKS)
    expected = list(sharing.backbones["a-task"].fusion.parameters()) + list(sharing.stitch["a-task"].parameters())
    assert sharing.task_parameters("a-task") == expected
    sharing("a-task", inputs()).pooled.square().mean().backward()
    assert all(p.grad is not None for p in sharing.task_parameters("a-task"))
    assert all(p.grad is not None for p in sharing.backbones["b-task"].encoders.parameters())  # b's encoders: shared


# --- adapters -----------------------------------------------------------------------------------------------------


def plain_copy(sharing: torch.nn.Module) -> Backbone:
    """A hook-free backbone with the adapters' backbone weights (eval mode may take PyTorch's fused fast path)."""
    plain = make_backbone()
    plain.load_state_dict(sharing.backbone.state_dict())
    return plain.eval()


@pytest.mark.parametrize("kind", ["bottleneck", "lora"])
def test_adapters_start_as_the_backbone_and_make_tasks_differ_in_eval(kind: str) -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("adapters")(make_backbone, TASKS, kind=kind).eval()
    plain, both, text_only = plain_copy(sharing), inputs(), {TEXT: raw_input(TEXT)}
    with torch.no_grad():  # no_grad + eval is when TransformerEncoderLayer would take its fused fast path
        for task in TASKS:
            assert torch.allclose(sharing(task, both).pooled, plain(both).pooled, atol=1e-5)
            randomize(sharing.task_parameters(task))
        for x in (both, text_only):  # text only: no image-encoder adapter, so the layers' adapters must have run
            a, b, expected = sharing("a-task", x).pooled, sharing("b-task", x).pooled, plain(x).pooled
            assert not torch.allclose(a, b, atol=1e-3) and not torch.allclose(a, expected, atol=1e-3)
            assert torch.allclose(sharing.backbone(x).pooled, expected, atol=1e-5)  # outside forward: no adapter


@pytest.mark.parametrize("kind", ["bottleneck", "lora"])
def test_adapters_freeze_backbone_leaves_only_adapters_trainable(kind: str) -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("adapters")(make_backbone, TASKS, kind=kind, freeze_backbone=True)
    trainable = {id(p) for p in sharing.parameters() if p.requires_grad}
    assert trainable == {id(p) for t in TASKS for p in sharing.task_parameters(t)}
    randomize(sharing.task_parameters("a-task"))
    sharing("a-task", inputs()).pooled.square().mean().backward()  # not .sum(): the pooled vector is layer-normed
    assert all(p.grad is None for p in sharing.shared_parameters())
    assert all(p.grad is not None and p.grad.any() for p in sharing.task_parameters("a-task"))  # every hook ran


def test_lora_hooks_only_linear_layers_called_as_modules() -> None:
    names = set(lora_points(make_backbone()))
    layers = ["encoders.text.stack.encoder.layers.0", "fusion.stack.encoder.layers.0"]
    assert names == {f"{layer}.{linear}" for layer in layers for linear in ("linear1", "linear2")}  # no out_proj
    tiny = settings(image_size=IMAGE_SIZE, image_channels=(8, 16), max_text_len=8, heads=2)
    late = build_backbone([IMAGE, TEXT], tiny, fusion="late")
    assert "fusion.project" in lora_points(late)
    sharing = SHARINGS.get("adapters")(make_backbone, TASKS, kind="lora", rank=2)
    lora = sharing.adapters["a-task"]["fusion-stack-encoder-layers-0-linear1"]
    assert lora.A.shape == (2, DIM) and lora.B.shape == (4 * DIM, 2) and lora.scale == 2.0
    assert set(sharing.adapters["b-task"]) == {n.replace(".", "-") for n in names}


def test_bottleneck_adapters_follow_every_transformer_layer_and_the_image_encoder() -> None:
    sharing = SHARINGS.get("adapters")(make_backbone, TASKS, reduction=8)
    keys = {"encoders-image", "encoders-text-stack-encoder-layers-0", "fusion-stack-encoder-layers-0"}
    assert set(sharing.adapters["a-task"]) == keys
    assert sharing.adapters["a-task"]["encoders-image"].down.out_features == DIM // 8


@pytest.mark.parametrize("name", [n for n in ENCODERS.names() if ENCODERS.get(n).modality == IMAGE])
def test_every_image_encoder_declares_an_adapter_point(name: str) -> None:
    """The README promises a bottleneck adapter after every image encoder: each registered one declares the hook."""
    assert ENCODERS.get(name).adapter_output is True


def test_the_pretrained_image_encoder_gets_its_adapter_and_it_changes_only_its_task() -> None:
    """Adapters once found image encoders by the scratch CNN's class, so a pretrained image encoder got none."""
    torch.manual_seed(0)

    def pretrained() -> Backbone:
        chosen = settings(image_size=16, max_text_len=8, heads=2, image_encoder="efficientnet-lite0")
        return build_backbone([IMAGE, TEXT], chosen)

    sharing = SHARINGS.get("adapters")(pretrained, TASKS, reduction=8).eval()
    assert type(sharing.backbone.encoders[IMAGE]).__name__ == "PretrainedImageEncoder"
    assert sharing.adapters["a-task"]["encoders-image"].down.in_features == DIM
    image_only = {IMAGE: raw_input(IMAGE)}
    with torch.no_grad():
        before = {t: sharing(t, image_only).pooled for t in TASKS}
        torch.nn.init.normal_(sharing.adapters["a-task"]["encoders-image"].up.weight)
        after = {t: sharing(t, image_only).pooled for t in TASKS}
    assert not torch.allclose(after["a-task"], before["a-task"], atol=1e-3)  # the image adapter runs
    assert torch.equal(after["b-task"], before["b-task"])  # and only for its own task


def test_adapters_survive_deepcopy() -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("adapters")(make_backbone, TASKS).eval()
    copied = copy.deepcopy(sharing)
    randomize(copied.task_parameters("a-task"))  # the copy's hooks must read the copy's adapters
    x = inputs()
    assert not torch.allclose(copied("a-task", x).pooled, sharing("a-task", x).pooled, atol=1e-3)
    assert torch.allclose(sharing("a-task", x).pooled, sharing.backbone(x).pooled)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"kind": "prefix"}, "kind='prefix': expected one of bottleneck, lora"),
        ({"freeze_backbone": "yes"}, "freeze_backbone='yes': expected true or false"),
        ({"reduction": 0}, "reduction=0: expected an integer >= 1"),
        ({"reduction": 2 * DIM}, f"reduction={2 * DIM}: expected at most the model width {DIM}"),
        ({"kind": "lora", "rank": 1.5}, "rank=1.5: expected an integer >= 1"),
        ({"kind": "lora", "alpha": 0}, "alpha=0: expected a number > 0"),
        ({"kind": "lora", "reduction": 4}, "unknown options"),
        ({"rank": 4}, "unknown options"),
    ],
)
def test_adapters_reject_bad_options(opts: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        SHARINGS.get("adapters")(make_backbone, TASKS, **opts)


# --- mmoe ---------------------------------------------------------------------------------------------------------


def test_mix_experts_is_the_gate_weighted_sum() -> None:
    mask = torch.tensor([[True, False]])
    one = Fused(torch.tensor([[1.0, 2.0]]), torch.ones(1, 2, 2), mask)
    two = Fused(torch.tensor([[3.0, 6.0]]), torch.zeros(1, 2, 2), mask)
    mixed = mix_experts([one, two], torch.tensor([[0.25, 0.75]]))
    assert torch.allclose(mixed.pooled, torch.tensor([[2.5, 5.0]]))
    assert torch.allclose(mixed.tokens, torch.full((1, 2, 2), 0.25)) and mixed.mask is mask
    with pytest.raises(ValueError, match="different token layouts"):
        mix_experts([one, Fused(two.pooled, torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.bool))],
                    torch.tensor([[0.5, 0.5]]))  # fmt: skip


def test_mmoe_gates_sum_to_one_and_one_expert_is_that_experts_fusion() -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("mmoe")(make_backbone, TASKS).eval()
    x = inputs()
    assert len(sharing.experts) == 3 and len({id(e) for e in sharing.experts}) == 3
    tokens = {m: sharing.encoders[m](x[m]) for m in x}
    gates = sharing.gate("a-task", tokens)
    assert gates.shape == (BATCH, 3) and torch.allclose(gates.sum(-1), torch.ones(BATCH))
    assert not torch.allclose(gates, sharing.gate("b-task", tokens))
    single = SHARINGS.get("mmoe")(make_backbone, TASKS, num_experts=1).eval()
    out, alone = single("a-task", x), Backbone(single.encoders, single.experts[0])(x)
    assert torch.allclose(out.pooled, alone.pooled) and torch.allclose(out.tokens, alone.tokens)
    for bad in (0, 2.0):
        with pytest.raises(UserError, match=f"num_experts={bad!r}: expected an integer >= 1"):
            SHARINGS.get("mmoe")(make_backbone, TASKS, num_experts=bad)


def test_mmoe_a_task_loss_reaches_its_gate_only() -> None:
    torch.manual_seed(0)
    sharing = SHARINGS.get("mmoe")(make_backbone, TASKS)
    sharing("a-task", inputs()).pooled.square().mean().backward()
    assert sharing.gates["a-task"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in sharing.gates["b-task"].parameters())
    assert all(p.grad is not None for e in sharing.experts for p in e.parameters())
