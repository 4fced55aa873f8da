"""Adapters: one shared backbone plus small per-task modules added to its layers (parameter-efficient MTL).

``kind``:

- ``bottleneck`` (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP"; Pfeiffer et al. 2021,
  "AdapterFusion"): ``h + up(gelu(down(h)))`` on the output ``h`` of every ``nn.TransformerEncoderLayer`` and of
  every encoder that declares ``adapter_output = True`` (the image encoders, scratch CNN and pretrained alike, which
  have no transformer layer; the encoder's ``dim`` is the width), hidden width ``dim // reduction``;
- ``lora`` (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models"): ``W x + (alpha/rank) B A x`` on
  every ``nn.Linear`` the backbone calls as a module (the feed-forward layers, late fusion's projection). Not on
  ``nn.MultiheadAttention``'s ``out_proj`` nor its packed ``in_proj_weight``: MHA uses them through
  ``F.multi_head_attention_forward``, so a hook would never fire.

``up`` and ``B`` start at zero, so at initialisation every task computes exactly the backbone's function.
``freeze_backbone`` turns the backbone's ``requires_grad`` off, leaving only the adapters (and the heads) to train.

How: layers are not copied. Forward hooks on the backbone's modules read ``self._active`` (the task that
``forward`` is running, None otherwise) and add that task's adapter; adapters live in ``self.adapters[task][point]``
(ModuleDicts on this module, so ``state_dict`` and the optimiser see them). A hook on a TransformerEncoderLayer or
on one of its submodules also makes PyTorch skip its fused inference fast path, which would otherwise bypass both
kinds of adapter in eval mode.

Why not PEFT: PEFT switches adapters with ``set_adapter``, one global state that also toggles ``requires_grad``, and
its mixed-adapter batches are inference-only, so it cannot train several task adapters in one optimiser step as a
multi-task step needs; it would also pull transformers and accelerate into the core install.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.sharing import SHARINGS, check_task
from mtl_bench.sharing.base import Sharing

KINDS = ("bottleneck", "lora")


class Bottleneck(nn.Module):
    """The residual branch ``up(gelu(down(h)))`` of a bottleneck adapter; ``up`` starts at zero."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.up(F.gelu(self.down(h)))


class LoRA(nn.Module):
    """The low-rank update ``scale * B A x`` of one Linear layer; ``A`` as nn.Linear's init, ``B`` starts at zero."""

    def __init__(self, d_in: int, d_out: int, rank: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.A = nn.Parameter(torch.empty(rank, d_in))
        self.B = nn.Parameter(torch.zeros(d_out, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.linear(F.linear(x, self.A), self.B)


def adapts_output(module: nn.Module) -> bool:
    """An encoder that declares ``adapter_output``: its output Tokens get a bottleneck adapter of width ``dim``."""
    return bool(getattr(type(module), "adapter_output", False))


def bottleneck_points(backbone: nn.Module) -> dict[str, nn.Module]:
    """Modules whose output gets a bottleneck adapter: transformer encoder layers and the encoders that declare it."""
    return {
        n: m for n, m in backbone.named_modules() if isinstance(m, nn.TransformerEncoderLayer) or adapts_output(m)
    }


def lora_points(backbone: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear that is called as a module: all of them except those inside nn.MultiheadAttention."""
    inside_attention = {
        id(sub) for m in backbone.modules() if isinstance(m, nn.MultiheadAttention) for sub in m.modules()
    }
    return {n: m for n, m in backbone.named_modules() if isinstance(m, nn.Linear) and id(m) not in inside_attention}


def bottleneck_adapters(points: dict[str, nn.Module], reduction: int) -> dict[str, nn.Module]:
    """A fresh Bottleneck per point, sized from the point's width (image encoder ``dim``, layer ``embed_dim``)."""
    dims = {n: m.dim if adapts_output(m) else m.self_attn.embed_dim for n, m in points.items()}
    if dims and min(dims.values()) < reduction:
        raise UserError(
            f"sharing 'adapters' option reduction={reduction}: expected at most the model width "
            f"{min(dims.values())} (the adapter width is dim // reduction)"
        )
    return {n: Bottleneck(d, d // reduction) for n, d in dims.items()}


def lora_adapters(points: dict[str, nn.Linear], rank: int, scale: float) -> dict[str, nn.Module]:
    """A fresh LoRA per Linear point."""
    return {n: LoRA(m.in_features, m.out_features, rank, scale) for n, m in points.items()}


def _int_at_least(name: str, value: object, low: int, kind: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"sharing 'adapters' (kind {kind!r}) option {name}={value!r}: expected an integer >= {low}")
    return value


@SHARINGS.register("adapters")
class Adapters(Sharing):
    """One ``backbone`` for every task plus ``adapters[task]``: shared = backbone, task t = its adapters."""

    def __init__(
        self,
        make_backbone: Callable[[], Backbone],
        tasks: list[str],
        kind: str = "bottleneck",
        freeze_backbone: bool = False,
        **opts: Any,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise UserError(f"sharing 'adapters' option kind={kind!r}: expected one of {', '.join(KINDS)}")
        if not isinstance(freeze_backbone, bool):
            raise UserError(f"sharing 'adapters' option freeze_backbone={freeze_backbone!r}: expected true or false")
        self.tasks = sorted(tasks)
        self.kind = kind
        self.backbone = make_backbone()
        self._active: str | None = None
        if kind == "bottleneck":
            reduction = _int_at_least("reduction", opts.pop("reduction", 4), 1, kind)  # hidden = dim // reduction
            points: dict[str, nn.Module] = bottleneck_points(self.backbone)
            fresh = partial(bottleneck_adapters, points, reduction)
            hook = self._add_to_output
        else:
            rank = _int_at_least("rank", opts.pop("rank", 4), 1, kind)
            alpha = opts.pop("alpha", None)  # None: 2 * rank, i.e. scale alpha / rank = 2 whatever the rank
            alpha = 2 * rank if alpha is None else alpha
            if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
                raise UserError(f"sharing 'adapters' (kind 'lora') option alpha={alpha!r}: expected a number > 0")
            points = lora_points(self.backbone)
            fresh = partial(lora_adapters, points, rank, alpha / rank)
            hook = self._add_low_rank
        reject_options(f"sharing 'adapters' (kind {kind!r})", opts)
        keys = {name: name.replace(".", "-") for name in points}  # ModuleDict keys cannot contain dots
        self.adapters = nn.ModuleDict(
            {task: nn.ModuleDict({keys[n]: a for n, a in fresh().items()}) for task in self.tasks}
        )
        for name, module in points.items():
            module.register_forward_hook(partial(hook, keys[name]))
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def _add_to_output(self, key: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if self._active is None:
            return None
        adapter = self.adapters[self._active][key]
        if isinstance(output, Tokens):
            return Tokens(output.x + adapter(output.x), output.mask)
        return output + adapter(output)

    def _add_low_rank(self, key: str, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor | None:
        if self._active is None:
            return None
        return output + self.adapters[self._active][key](args[0])

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        check_task(task, self.tasks)
        self._active = task
        try:
            return self.backbone(inputs)
        finally:
            self._active = None

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        check_task(task, self.tasks)
        return list(self.adapters[task].parameters())
