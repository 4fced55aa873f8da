"""``build_model``: the one path from a RunConfig (plus the prepared tasks) to a MultiTaskModel."""

from __future__ import annotations

from functools import partial

from torch import nn

from mtl_bench.config.schema import RunConfig
from mtl_bench.encoders.settings import EncoderSettings
from mtl_bench.models.backbone import build_backbone
from mtl_bench.models.multitask import MultiTaskModel
from mtl_bench.sharing import SHARINGS
from mtl_bench.tasks.base import TaskType


def build_model(cfg: RunConfig, tasks: dict[str, TaskType], vocab_size: int) -> MultiTaskModel:
    """The sharing strategy (which calls ``make_backbone`` once per backbone it holds), then one head per task."""
    modalities = sorted({mod for task in tasks.values() for mod in task.spec.modalities()})
    settings = EncoderSettings.from_run(cfg, vocab_size)
    make_backbone = partial(
        build_backbone, modalities, settings, cfg.fusion.name, dict(cfg.fusion.options), cfg.model.fusion_layers
    )
    sharing = SHARINGS.get(cfg.sharing.name)(make_backbone, sorted(tasks), **cfg.sharing.options)
    heads = nn.ModuleDict({name: task.build_head(cfg.model) for name, task in sorted(tasks.items())})
    return MultiTaskModel(sharing, heads)
