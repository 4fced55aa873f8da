"""The task-type interface (``tasks/base.py``), checked for every registered type on tiny hand-built data and a small
real model (the type's own head on a stand-in trunk), so a new type is tested by adding one entry to ``CASES``:

- ``predict`` output survives ``predictions_to_json`` -> JSON text -> ``predictions_from_json`` unchanged;
- a perfect prediction scores each metric's best value (given by hand per type), and ``directions`` say which way
  is better: the perfect prediction is never worse than the trivial one, and strictly better on the main score;
- ``trivial_baseline`` is exactly the score of ``trivial_predictions``;
- ``loss`` is a finite scalar whose gradient reaches the head;
- ``distill_loss`` of a model against itself is what the formula gives (0 for the KL terms, the soft labels'
  entropy times T**2 for tagging's soft-label BCE: ``losses/distillation.py``);
- ``make_metrics`` holds exactly the spec's metrics, and ``check_spec`` accepts the type's built-in task file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mtl_bench.config.schema import ModelConfig
from mtl_bench.core.types import IMAGE, TEXT, VIDEO, Fused
from mtl_bench.data.batches import TaskData
from mtl_bench.data.text import PAD_ID, caption_text, decode, encode, train_tokenizer
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskContext, TaskType
from mtl_bench.tasks.catalog import get_task

DIM, PIXELS, FRAMES, MAX_LEN, TEMPERATURE = 16, 8, 2, 12, 2.0
MODEL = ModelConfig(dim=DIM, heads=2, dropout=0.0)


@dataclass
class Case:
    """One task type's fixture: a built-in task of that type, tiny train/test splits, a perfect prediction of the
    test split, each metric's best value, and the value of distilling a model into itself."""

    task: str  # a built-in task file of this type (tasks/)
    ctx: TaskContext
    train: TaskData
    test: TaskData
    perfect: Any  # predictions of the test split that match its labels exactly
    best: dict[str, float]  # every metric the type offers -> its value for a perfect prediction
    self_distill: Callable[[TaskType, nn.Module, dict[str, Any]], float]  # distill_loss(model, model) by formula


class Trunk(nn.Module):
    """A stand-in for the multi-task model: ``model(task, inputs, **kw) = heads[task](features(task, inputs), **kw)``
    with one token per image, per video frame and per real title word (learnt projections), pooled by their mean."""

    def __init__(self, heads: dict[str, nn.Module], vocab_size: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.text = nn.Embedding(vocab_size, DIM)
        self.pixels = nn.Linear(3 * PIXELS * PIXELS, DIM)

    def features(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        tokens, masks = [], []
        for name in sorted(inputs):
            value = inputs[name]
            if name == TEXT:
                tokens.append(self.text(value))
                masks.append(value != PAD_ID)
            else:  # image [B, 3, H, W] -> one token; video [B, F, 3, H, W] -> one token per frame
                frames = value.flatten(-3).reshape(len(value), -1, 3 * PIXELS * PIXELS)
                tokens.append(self.pixels(frames))
                masks.append(torch.ones(frames.shape[:2], dtype=torch.bool))
        x, mask = torch.cat(tokens, dim=1), torch.cat(masks, dim=1)
        pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return Fused(pooled, x, mask)

    def forward(self, task: str, inputs: dict[str, Tensor], **head_kwargs: Any) -> Tensor:
        return self.heads[task](self.features(task, inputs), **head_kwargs)


def pixels(n: int, seed: int, frames: int = 0) -> Tensor:
    """uint8 images [n, 3, H, W] (or clips [n, F, 3, H, W]), as the data pipeline stores them."""
    shape = (n, frames, 3, PIXELS, PIXELS) if frames else (n, 3, PIXELS, PIXELS)
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def batch_of(data: TaskData) -> dict[str, Any]:
    """The whole split as one batch, pixels in [0, 1] (what ``data/batches.py`` hands a task)."""
    batch: dict[str, Any] = {k: v.float() / 255 if v.dtype == torch.uint8 else v for k, v in data.inputs.items()}
    batch["target"] = data.target
    if data.references is not None:
        batch["references"] = data.references
    return batch


def kl_is_zero(task: TaskType, model: nn.Module, batch: dict[str, Any]) -> float:
    """KL(p || p) = 0 whatever the logits."""
    return 0.0


def soft_label_entropy(task: TaskType, model: nn.Module, batch: dict[str, Any]) -> float:
    """BCE(z / T, sigmoid(z / T)) * T**2 is the soft labels' mean binary entropy times T**2 (float64, by hand)."""
    with torch.no_grad():
        p = (model(task.spec.name, task.inputs(batch)).double() / TEMPERATURE).sigmoid()
    return float(-(p * p.log() + (1 - p) * (1 - p).log()).mean()) * TEMPERATURE**2


def classification() -> Case:
    """Three classes, every class in both splits; class 0 is the training majority."""
    labels = [f"class{i}" for i in range(3)]
    train_y, test_y = torch.tensor([0, 0, 0, 1, 2, 1]), torch.tensor([0, 1, 2, 2, 1])
    words = torch.tensor([[4, 5, 0], [6, 0, 0], [4, 7, 8], [5, 5, 5], [8, 0, 0], [6, 7, 0]])
    train = TaskData({IMAGE: pixels(6, 0), TEXT: words}, train_y)
    test = TaskData({IMAGE: pixels(5, 1), TEXT: words[:5].flip(0)}, test_y)
    ctx = TaskContext(label_names=labels, vocab_size=10, max_text_len=3)
    return Case("product-classification", ctx, train, test, test_y.clone(), {"accuracy": 1.0, "macro_f1": 1.0},
                kl_is_zero)


CAPTIONS = ["a red shirt with white stripes", "a blue dress on a grey background", "green striped socks, folded",
            "a black leather bag with a red strap", "a red shirt with white stripes"]


def captioning() -> Case:
    """Four distinct test captions (so CIDEr-D's IDF weights are not all 0); the training majority caption
    appears twice. CIDEr-D is scaled by 10: a perfect caption set scores 10."""
    tokenizer = train_tokenizer(CAPTIONS, vocab_size=64)
    tokenize = partial(encode, tokenizer, max_len=MAX_LEN)
    ctx = TaskContext(label_names=[], vocab_size=tokenizer.get_vocab_size(), max_text_len=MAX_LEN,
                      decode=partial(decode, tokenizer))
    refs = [[caption_text(c)] for c in CAPTIONS]
    train = TaskData({IMAGE: pixels(5, 2)}, tokenize(CAPTIONS, bos_eos=True), refs)
    test = TaskData({IMAGE: pixels(4, 3)}, tokenize(CAPTIONS[1:], bos_eos=True), refs[1:])
    best = {"bleu4": 1.0, "bleu4_coco": 1.0, "rougeL": 1.0, "rougeL_coco": 1.0, "cider": 10.0}
    return Case("product-captioning", ctx, train, test, [r[0] for r in refs[1:]], best, kl_is_zero)


def tagging() -> Case:
    """Three tags, each present in some test clips and absent from others (so every tag's AP is defined)."""
    train_y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.float32)
    test_y = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    ctx = TaskContext(label_names=["zoom", "pan", "flash"], vocab_size=4, max_text_len=4)
    train = TaskData({VIDEO: pixels(4, 4, FRAMES)}, train_y)
    test = TaskData({VIDEO: pixels(4, 5, FRAMES)}, test_y)
    return Case("video-tagging", ctx, train, test, test_y.clone(), {"map": 1.0, "micro_f1": 1.0, "macro_f1": 1.0},
                soft_label_entropy)


def retrieval() -> Case:
    """Six text-image pairs; the perfect embeddings put sample i's text and image both on axis i, so every query's
    own item is its only nearest one."""
    from mtl_bench.metrics.retrieval import RETRIEVAL_METRICS

    words = torch.tensor([[4, 5, 0], [6, 0, 0], [4, 7, 8], [5, 5, 5], [8, 0, 0], [6, 7, 0]])
    train = TaskData({IMAGE: pixels(6, 6), TEXT: words}, torch.arange(6))
    test = TaskData({IMAGE: pixels(6, 7), TEXT: words.flip(0)}, torch.arange(6))
    ctx = TaskContext(label_names=[], vocab_size=10, max_text_len=3)
    perfect = torch.eye(6).unsqueeze(1).expand(6, 2, 6).contiguous()  # [N, (text, item), D]
    return Case("product-search", ctx, train, test, perfect, dict.fromkeys(RETRIEVAL_METRICS, 1.0), kl_is_zero)


# One entry per registered task type: a type registered without one fails test_every_task_type_has_a_fixture.
CASES: dict[str, Callable[[], Case]] = {
    "classification": classification,
    "captioning": captioning,
    "tagging": tagging,
    "retrieval": retrieval,
}


def build(type_name: str, metrics: list[str] | None = None) -> tuple[Case, TaskType, Trunk]:
    if type_name not in CASES:
        pytest.fail(f"task type {type_name!r} is registered but {__name__} has no fixture for it: add an entry to "
                    "CASES (a built-in task of the type, tiny splits, a perfect prediction, each metric's best value)",
                    pytrace=False)
    case = CASES[type_name]()
    spec = get_task(case.task)
    if metrics is not None:  # every metric the type offers, not only those the task file picks
        spec = spec.model_copy(update={"metrics": metrics})
    task = TASK_TYPES.get(type_name)(spec, case.ctx)
    torch.manual_seed(0)
    model = Trunk({spec.name: task.build_head(MODEL)}, case.ctx.vocab_size)
    return case, task, model


def same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (a metric undefined on both sides agrees)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


TYPES = TASK_TYPES.names()


@pytest.mark.parametrize("type_name", TYPES)
def test_every_task_type_has_a_fixture(type_name):
    build(type_name)


@pytest.mark.parametrize("type_name", TYPES)
def test_spec_is_accepted_and_make_metrics_holds_exactly_its_metrics(type_name):
    case, task, _ = build(type_name)
    assert task.spec.type == type_name
    assert type(task).check_spec(task.spec) is None
    metrics = task.make_metrics()
    assert sorted(metrics.keys()) == sorted(task.spec.metrics) and len(metrics) == len(task.spec.metrics)
    directions = type(task).metric_directions()
    assert set(directions) == set(task.all_metrics()), "directions must name every metric the type offers"
    assert set(case.best) == set(directions), f"CASES[{type_name!r}] must give the best value of every metric"
    assert directions[task.spec.main_score] == task.spec.higher_is_better


@pytest.mark.parametrize("type_name", TYPES)
def test_predictions_round_trip_through_json_exactly(type_name):
    case, task, model = build(type_name)
    model.eval()
    with torch.no_grad():
        predictions = task.predict(model, batch_of(case.test))
    rows = json.loads(json.dumps(task.predictions_to_json(predictions)))
    assert len(rows) == len(case.test)
    assert same(task.predictions_from_json(rows), predictions)


@pytest.mark.parametrize("type_name", TYPES)
def test_perfect_predictions_score_the_best_value_and_directions_hold(type_name):
    directions = TASK_TYPES.get(type_name).metric_directions()
    case, task, _ = build(type_name, metrics=sorted(directions))
    perfect = task.score_predictions(case.perfect, case.test)
    assert perfect == pytest.approx(case.best, abs=1e-6)
    trivial = task.score_predictions(task.trivial_predictions(case.train, case.test), case.test)
    for metric, higher in directions.items():
        worse = trivial[metric] <= perfect[metric] + 1e-9 if higher else trivial[metric] >= perfect[metric] - 1e-9
        assert worse, f"{metric}: trivial {trivial[metric]} beats perfect {perfect[metric]} (higher_is_better={higher})"
    main, higher = task.spec.main_score, directions[task.spec.main_score]
    assert (perfect[main] > trivial[main]) if higher else (perfect[main] < trivial[main])


@pytest.mark.parametrize("type_name", TYPES)
def test_trivial_baseline_is_the_score_of_the_trivial_predictions(type_name):
    case, task, _ = build(type_name)
    predictions = task.trivial_predictions(case.train, case.test)
    assert len(task.predictions_to_json(predictions)) == len(case.test)
    assert same(task.trivial_baseline(case.train, case.test), task.score_predictions(predictions, case.test))


@pytest.mark.parametrize("type_name", TYPES)
def test_loss_is_a_finite_scalar_whose_gradient_reaches_the_head(type_name):
    case, task, model = build(type_name)
    model.train()
    loss = task.loss(model, batch_of(case.train))
    assert loss.dim() == 0 and loss.dtype.is_floating_point and math.isfinite(float(loss))
    loss.backward()
    head = model.heads[task.spec.name]
    grads = [p.grad for p in head.parameters()]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), "no head parameter got a gradient"
    assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("type_name", TYPES)
def test_distilling_a_model_into_itself_gives_the_formulas_value(type_name):
    case, task, model = build(type_name)
    model.eval()  # deterministic: the teacher and the student are the same function
    batch = batch_of(case.train)
    loss = task.distill_loss(model, model, batch, TEMPERATURE)
    assert loss.dim() == 0
    assert float(loss) == pytest.approx(case.self_distill(task, model, batch), abs=1e-5)
