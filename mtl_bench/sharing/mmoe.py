"""Multi-gate Mixture-of-Experts: shared encoders, several fusion "experts", and one softmax gate per task.

Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts" (KDD).
Every task sees the same experts but mixes them with its own input-dependent gate, so related tasks can use the
same experts and unrelated ones different experts, learned rather than fixed by a sharing pattern.

Here the shared bottom is the modality encoders of one backbone; the experts are ``num_experts`` fusion modules
(each the ``.fusion`` of a fresh backbone, so they have the configured fusion type and independent weights); the
gate of a task is a linear layer on the masked mean of all present encoder tokens, softmaxed over experts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion.functional import concat_tokens, masked_mean
from mtl_bench.sharing import SHARINGS, check_task
from mtl_bench.sharing.base import Sharing


def mix_experts(outputs: list[Fused], gates: Tensor) -> Fused:
    """``sum_e gates[:, e] * outputs[e]`` for pooled and tokens; ``gates`` [B, E] (rows sum to 1).

    The mask is the first expert's: experts of one fusion type lay tokens out identically (checked by shape).

    >>> one = Fused(torch.ones(1, 2), torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))
    >>> mix_experts([one, Fused(3 * one.pooled, 3 * one.tokens, one.mask)], torch.tensor([[0.75, 0.25]])).pooled
    tensor([[1.5000, 1.5000]])
    """
    shapes = {(tuple(o.tokens.shape), tuple(o.mask.shape)) for o in outputs}
    if len(shapes) > 1:
        raise ValueError(f"mmoe experts returned different token layouts {sorted(shapes)}; they must share a type")
    pooled = torch.einsum("be,bed->bd", gates, torch.stack([o.pooled for o in outputs], dim=1))
    tokens = torch.einsum("be,bend->bnd", gates, torch.stack([o.tokens for o in outputs], dim=1))
    return Fused(pooled=pooled, tokens=tokens, mask=outputs[0].mask)


def encoder_width(backbone: Backbone) -> int:
    """The token width of ``backbone``'s encoders (every built-in encoder exposes ``dim``)."""
    widths = {getattr(e, "dim", None) for e in backbone.encoders.values()}
    if len(widths) != 1 or None in widths:
        raise ValueError(f"mmoe needs encoders with one common ``dim`` attribute, found {widths}")
    return widths.pop()


@SHARINGS.register("mmoe")
class MMoE(Sharing):
    """``encoders`` and ``experts`` are shared by every task; ``gates[task]`` is reached only by ``task``'s loss."""

    def __init__(
        self, make_backbone: Callable[[], Backbone], tasks: list[str], num_experts: int = 3, **opts: object
    ) -> None:
        super().__init__()
        reject_options("sharing 'mmoe'", opts)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise UserError(f"sharing 'mmoe' option num_experts={num_experts!r}: expected an integer >= 1")
        self.tasks = sorted(tasks)
        first = make_backbone()
        self.encoders = first.encoders
        self.experts = nn.ModuleList([first.fusion] + [make_backbone().fusion for _ in range(num_experts - 1)])
        width = encoder_width(first)
        self.gates = nn.ModuleDict({task: nn.Linear(width, num_experts) for task in self.tasks})

    def gate(self, task: str, tokens: dict[str, Tokens]) -> Tensor:
        """Softmax weights [B, E] of ``task``'s gate from the masked mean of all present tokens."""
        seq = concat_tokens([tokens[m] for m in sorted(tokens)])
        return self.gates[task](masked_mean(seq.x, seq.mask)).softmax(dim=-1)

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        check_task(task, self.tasks)
        unknown = sorted(set(inputs) - set(self.encoders))
        if unknown:
            raise UserError(f"mmoe has no encoder for {unknown}; it was built for {sorted(self.encoders)}")
        tokens = {m: self.encoders[m](inputs[m]) for m in sorted(inputs)}
        return mix_experts([expert(tokens) for expert in self.experts], self.gate(task, tokens))

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoders.parameters()) + list(self.experts.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        check_task(task, self.tasks)
        return list(self.gates[task].parameters())
