"""The ``builtin`` data source: the generated shop's subsets, generated once per parameter set, then read from the
Arrow cache (``cache.py``); what the data hold is in ``shop.py``."""

from __future__ import annotations

from pathlib import Path

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources import SOURCES
from mtl_bench.data.sources.types import Loaded
from mtl_bench.tasks.spec import TaskSpec


@SOURCES.register("builtin")
def load_builtin(specs: list[TaskSpec], cfg: DataConfig) -> Loaded:
    """The generated shop's subsets (generated once, then read from the Arrow cache)."""
    from mtl_bench.data.sources.builtin.cache import load_shop  # heavy import (datasets), only when data is needed

    sizes = {k: tuple(v) for k, v in cfg.sizes.items()} or None
    data_dir = Path(cfg.dir).expanduser()
    subsets, fingerprint = load_shop(
        data_dir, seed=cfg.seed, sizes=sizes, image_size=cfg.image_size, num_frames=cfg.num_frames
    )
    return Loaded(subsets, fingerprint)
