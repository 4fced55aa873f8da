"""Cross-stitch networks: a backbone per task whose modality features are mixed across tasks by learned weights.

Misra et al. 2016, "Cross-stitch Networks for Multi-task Learning" (CVPR). A cross-stitch unit takes the same
feature map from every task's network and gives each task a learned linear combination of them
(``x~_i = sum_j alpha_ij x_j``), so the network learns how much to share at that point.

Stitch points: after each modality encoder (one T x T unit per modality), before the per-task fusion. Nothing is
stitched inside the encoders or the fusion; that keeps the unit independent of the encoder architecture. The paper
initialises alpha to 0.9 on the diagonal and 0.1 off it (two tasks); with T tasks the off-diagonal is 0.1/(T-1) so
each row sums to 1. (The paper also scales the units' learning rate up by 10^2-10^3; we use the common one.)

Cost: a batch of any task runs the encoders of EVERY task backbone, i.e. T times the encoder compute of single-task.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.sharing import SHARINGS, check_task
from mtl_bench.sharing.base import Sharing

SELF_WEIGHT = 0.9  # the paper's initial alpha_ii; the remaining 0.1 is spread evenly over the other tasks


def stitch_init(num_tasks: int, index: int) -> Tensor:
    """Row ``index`` of the initial alpha matrix.

    >>> stitch_init(3, 1)
    tensor([0.0500, 0.9000, 0.0500])
    >>> stitch_init(1, 0)
    tensor([1.])
    """
    if num_tasks == 1:
        return torch.ones(1)
    row = torch.full((num_tasks,), (1 - SELF_WEIGHT) / (num_tasks - 1))
    row[index] = SELF_WEIGHT
    return row


@SHARINGS.register("cross-stitch")
class CrossStitch(Sharing):
    """``backbones[t]`` per task plus, per task and modality, its row of the stitch matrix ``stitch[t][m]`` [T].

    ``forward(t, inputs)`` encodes each present modality with every task's encoder, mixes the T token tensors with
    ``stitch[t][m]`` (masks depend only on the inputs, so they agree) and runs ``backbones[t].fusion`` on the mix.
    Storing alpha by rows makes the bookkeeping exact: task t's loss reaches every task's encoders (shared) but
    only its own fusion and its own alpha rows (task parameters). ``alpha(m)`` gives the full T x T matrix.
    Inside each backbone the image and video encoders still share one frame encoder, as in every backbone.
    """

    def __init__(self, make_backbone: Callable[[], Backbone], tasks: list[str], **opts: object) -> None:
        super().__init__()
        reject_options("sharing 'cross-stitch'", opts)
        self.tasks = sorted(tasks)
        self.backbones = nn.ModuleDict({task: make_backbone() for task in self.tasks})
        modalities = sorted(self.backbones[self.tasks[0]].encoders)
        self.stitch = nn.ModuleDict(
            {
                task: nn.ParameterDict({m: nn.Parameter(stitch_init(len(self.tasks), i)) for m in modalities})
                for i, task in enumerate(self.tasks)
            }
        )

    def alpha(self, modality: str) -> Tensor:
        """The T x T cross-stitch matrix of ``modality``: row i mixes the features that task i's fusion sees."""
        return torch.stack([self.stitch[t][modality] for t in self.tasks])

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        check_task(task, self.tasks)
        unknown = sorted(set(inputs) - set(self.stitch[task]))
        if unknown:
            raise UserError(f"cross-stitch has no encoder for {unknown}; it was built for {sorted(self.stitch[task])}")
        mixed = {}
        for m in sorted(inputs):
            encoded = [self.backbones[t].encoders[m](inputs[m]) for t in self.tasks]
            stacked = torch.stack([e.x for e in encoded])  # [T, B, N, D]
            weights = self.stitch[task][m].view(-1, 1, 1, 1)
            mixed[m] = Tokens((weights * stacked).sum(dim=0), encoded[self.tasks.index(task)].mask)
        return self.backbones[task].fusion(mixed)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for t in self.tasks for p in self.backbones[t].encoders.parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        check_task(task, self.tasks)
        return list(self.backbones[task].fusion.parameters()) + list(self.stitch[task].parameters())
