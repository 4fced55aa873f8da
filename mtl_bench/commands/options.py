"""``RunOptions``: how a run is carried out, beside its config; light to import (the CLI's checks use it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtl_bench.losses.distillation import Distillation
    from mtl_bench.training.resume import ResumePoint


@dataclass(frozen=True)
class RunOptions:
    """The arguments of ``commands.run.run`` beside the config and output folder (documented there), plus
    ``resume_from``: the epoch checkpoint ``--resume`` continues from, found by ``run`` in the output folder."""

    tracking_uri: str | None = None
    baselines_dir: Path | None = None
    parent_run_id: str | None = None
    callbacks: list[Any] = field(default_factory=list)
    distillation: Distillation | None = None
    resume_from: ResumePoint | None = None
