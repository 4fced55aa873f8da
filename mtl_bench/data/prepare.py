"""From task specs to in-memory tensors: load the datasets, train the tokenizer, encode inputs and targets.

The built-in data are small enough to live in memory as tensors, so batches are plain tensor indexing
(no per-sample Python work), which keeps the data loader far ahead of the training step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtl_bench.config.schema import DataConfig
from mtl_bench.core.types import SCRATCH, TEXT
from mtl_bench.data.batches import TaskData
from mtl_bench.data.sources import load_sources
from mtl_bench.data.sources.types import Skipped
from mtl_bench.data.text import decode, encode, train_tokenizer
from mtl_bench.errors import UserError
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskContext, TaskType
from mtl_bench.tasks.spec import TaskSpec

SPLITS = ("train", "validation", "test")


@dataclass
class PreparedSuite:
    tasks: dict[str, TaskType]  # task name -> task type instance, sorted by name
    splits: dict[str, dict[str, TaskData]]  # task -> split -> data
    fingerprint: str  # content fingerprint of the generated / loaded data
    vocab_size: int
    skipped: dict[str, Skipped] = dataclasses.field(default_factory=dict)  # subset -> rows left out, by reason
    notes: list[str] = dataclasses.field(default_factory=list)  # what the source changed (classes folded, ...)


def _label_names(feature: Any) -> list[str]:
    """Class names of a ClassLabel column, or of the ClassLabel inside a Sequence / List column."""
    inner = getattr(feature, "feature", feature)
    return list(getattr(inner, "names", []) or [])


def _columns(ds: Any, fields: dict[str, str], spec: TaskSpec) -> dict[str, Any]:
    """{field: column values} for the YAML fields naming dataset columns; one clear error for a missing column.

    Reads the columns in one go as numpy (column-at-a-time access through ``datasets`` is ~20x slower).
    """
    for field, column in fields.items():
        if column not in ds.column_names:
            raise UserError(
                f"task {spec.name}: field {field!r} = {column!r}: no such column in dataset subset "
                f"{spec.dataset.subset!r} (columns: {', '.join(ds.column_names)})"
            )
    table = ds.select_columns(sorted(set(fields.values()))).with_format("numpy")[:]
    return {field: table[column] for field, column in fields.items()}


def _fields(spec: TaskSpec) -> dict[str, str]:
    """YAML field -> column: ``inputs.<modality>`` for every input, and ``target``."""
    return {**{f"inputs.{m}": c for m, c in sorted(spec.inputs.items())}, "target": spec.target}


def _pixels(values: Any) -> Tensor:
    """uint8 [N, H, W, 3] or [N, T, H, W, 3] arrays -> channels-first uint8 tensors."""
    array = torch.from_numpy(np.ascontiguousarray(np.asarray(values, dtype=np.uint8)))
    return array.movedim(-1, -3).contiguous()


def _title_tokenizer(text_encoder: str, max_len: int, words: Any) -> Any:
    """Titles go through the pretrained encoder's own tokenizer when there is one; captions always use ours."""
    if text_encoder == SCRATCH:
        return words
    from mtl_bench.encoders.pretrained_text import pretrained_tokenizer

    return pretrained_tokenizer(text_encoder, max_len).encode


def prepare_suite(specs: list[TaskSpec], cfg: DataConfig, text_encoder: str = SCRATCH) -> PreparedSuite:
    """Load every task's splits, fit the tokenizer on training texts, and encode everything as tensors.

    ``text_encoder`` (model.text_encoder): a pretrained one tokenizes the titles its own way.
    """
    loaded = load_sources(specs, cfg)
    subsets, fingerprint = loaded.subsets, loaded.fingerprint
    for spec in specs:
        if spec.dataset.subset not in subsets:
            raise UserError(
                f"task {spec.name}: field 'dataset.subset' = {spec.dataset.subset!r}: "
                f"expected one of {', '.join(sorted(subsets))}"
            )
    texts: list[str] = []  # the tokenizer learns from training-split text only
    for spec in specs:
        fields = {f"inputs.{TEXT}": spec.inputs[TEXT]} if TEXT in spec.inputs else {}
        if spec.type == "captioning":
            fields["target"] = spec.target
        if fields:
            train = subsets[spec.dataset.subset][spec.dataset.splits["train"]]
            texts += [str(t) for values in _columns(train, fields, spec).values() for t in values]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    tokenize = partial(encode, tokenizer, max_len=cfg.max_text_len)
    vocab_size = tokenizer.get_vocab_size()
    tokenize_titles = _title_tokenizer(text_encoder, cfg.max_text_len, tokenize)

    tasks: dict[str, TaskType] = {}
    splits: dict[str, dict[str, TaskData]] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        subset = subsets[spec.dataset.subset]
        train = subset[spec.dataset.splits["train"]]
        ctx = TaskContext(
            label_names=_label_names(train.features.get(spec.target)),
            vocab_size=vocab_size,
            max_text_len=cfg.max_text_len,
            decode=partial(decode, tokenizer),
        )
        task = TASK_TYPES.get(spec.type)(spec, ctx)
        tasks[spec.name] = task
        splits[spec.name] = {}
        for split in SPLITS:
            columns = _columns(subset[spec.dataset.splits[split]], _fields(spec), spec)
            inputs = {
                m: tokenize_titles([str(t) for t in columns[f"inputs.{m}"]]) if m == TEXT
                else _pixels(columns[f"inputs.{m}"])
                for m in spec.modalities()
            }
            target, refs = task.encode_targets(list(columns["target"]), tokenize)
            splits[spec.name][split] = TaskData(inputs, target, refs)
    return PreparedSuite(tasks, splits, fingerprint, vocab_size, loaded.skipped, loaded.notes)
