"""``build_model``: the one path from a RunConfig (plus the prepared tasks) to a MultiTaskModel."""

from __future__ import annotations

from torch import nn

from mtl_bench.config.schema import RunConfig
from mtl_bench.models.backbone import build_backbone
from mtl_bench.models.multitask import MultiTaskModel
from mtl_bench.sharing import SHARINGS
from mtl_bench.tasks.base import TaskType


def build_model(cfg: RunConfig, tasks: dict[str, TaskType], vocab_size: int) -> MultiTaskModel:
    m = cfg.model
    modalities = sorted({mod for task in tasks.values() for mod in task.spec.modalities()})

    def make_backbone() -> nn.Module:
        return build_backbone(
            modalities=modalities,
            dim=m.dim,
            vocab_size=vocab_size,
            fusion=cfg.fusion.name,
            fusion_opts=dict(cfg.fusion.options),
            image_size=cfg.data.image_size,
            image_channels=tuple(m.image_channels),
            num_frames=cfg.data.num_frames,
            max_text_len=cfg.data.max_text_len,
            text_layers=m.text_layers,
            video_layers=m.video_layers,
            fusion_layers=m.fusion_layers,
            heads=m.heads,
            dropout=m.dropout,
            image_encoder=m.image_encoder,
            text_encoder=m.text_encoder,
            freeze_pretrained=m.freeze_pretrained,
        )

    sharing = SHARINGS.get(cfg.sharing.name)(make_backbone, sorted(tasks), **cfg.sharing.options)
    heads = nn.ModuleDict({name: task.build_head(m) for name, task in sorted(tasks.items())})
    return MultiTaskModel(sharing, heads)
