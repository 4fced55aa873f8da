"""Each task type's distillation term against hand-computed values at known temperatures, on stand-in models whose
outputs are fixed, so the numbers can be worked out on paper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtl_bench.data.text import BOS_ID, EOS_ID, PAD_ID
from mtl_bench.errors import UserError
from mtl_bench.losses.contrastive import LogitScale
from mtl_bench.losses.distillation import softmax_kl
from mtl_bench.tasks.base import TaskContext
from mtl_bench.tasks.captioning import Captioning
from mtl_bench.tasks.catalog import get_task
from mtl_bench.tasks.classification import Classification
from mtl_bench.tasks.retrieval import Retrieval
from mtl_bench.tasks.tagging import Tagging

LN3 = math.log(3.0)


def ctx(labels: int = 2, vocab: int = 6) -> TaskContext:
    return TaskContext(label_names=[f"c{i}" for i in range(labels)], vocab_size=vocab, max_text_len=8)


class Fixed(nn.Module):
    """``model(task, inputs)`` -> the same logits [B, K] for any inputs (a parameter, so the student gets grads)."""

    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, task: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits.clone()  # an operation, like a real head's output (no_grad applies to operations)


def batch(n: int = 1) -> dict[str, torch.Tensor]:
    return {"image": torch.zeros(n, 3, 8, 8), "text": torch.zeros(n, 4, dtype=torch.long), "target": torch.zeros(n)}


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def softmax(x: list[float]) -> list[float]:
    e = [math.exp(v) for v in x]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        # T=1: teacher (ln 3, 0) -> (3/4, 1/4) against the student's (1/2, 1/2)
        (1.0, 0.75 * math.log(1.5) + 0.25 * math.log(0.5)),
        # T=2: teacher (ln 3 / 2, 0) -> (sqrt 3, 1) / (1 + sqrt 3); times T^2 = 4
        (2.0, 4 * kl([3**0.5 / (1 + 3**0.5), 1 / (1 + 3**0.5)], [0.5, 0.5])),
    ],
)
def test_classification_kl_by_hand(temperature: float, expected: float) -> None:
    task = Classification(get_task("product-classification"), ctx())
    student, teacher = Fixed([[0.0, 0.0]]), Fixed([[LN3, 0.0]])
    loss = task.distill_loss(student, teacher, batch(), temperature)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert student.logits.grad is not None and teacher.logits.grad is None  # the teacher ran under no_grad


def test_classification_batchmean_and_zero_when_student_is_teacher() -> None:
    task = Classification(get_task("product-classification"), ctx(labels=3))
    rows = [[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]
    loss = task.distill_loss(Fixed(rows), Fixed([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), batch(2), 1.0)
    assert float(loss) == pytest.approx(kl([1 / 3] * 3, softmax(rows[0])) / 2, rel=1e-6)  # row 2 agrees: 0
    for t in (0.5, 1.0, 4.0):
        assert float(task.distill_loss(Fixed(rows), Fixed(rows), batch(2), t)) == pytest.approx(0.0, abs=1e-7)


def test_tagging_soft_label_bce_by_hand() -> None:
    """T=2: soft labels sigmoid(ln 3 / 2) = sqrt 3 / (1 + sqrt 3) and sigmoid(0) = 1/2; student probabilities
    sigmoid(0) = 1/2 and sigmoid(1); BCE averaged over the two tags, times 4."""
    task = Tagging(get_task("video-tagging"), ctx(labels=2))
    loss = task.distill_loss(Fixed([[0.0, 2.0]]), Fixed([[LN3, 0.0]]), batch(), 2.0)

    def bce(y: float, p: float) -> float:
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    sig1 = math.e / (1 + math.e)
    expected = 4 * (bce(3**0.5 / (1 + 3**0.5), 0.5) + bce(0.5, sig1)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


class Bigram(nn.Module):
    """A caption "model" whose next-token logits depend on the current token only: ``table[ids]`` [B, L, V]."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, task: str, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_captioning_token_kl_over_real_tokens(temperature: float) -> None:
    """Two captions: BOS 4 EOS PAD PAD and BOS 5 4 EOS PAD. Teacher-forced inputs are ids[:, :-1], targets ids[:, 1:];
    the 5 real targets (4, EOS, 5, 4, EOS) come after inputs BOS, 4, BOS, 5, 4. EOS and PAD as inputs only predict
    padding, and their (very different) rows must not count."""
    vocab = 6
    torch.manual_seed(0)
    teacher, student = torch.randn(vocab, vocab), torch.randn(vocab, vocab)
    teacher[EOS_ID] += 50.0
    teacher[PAD_ID] -= 50.0
    ids = torch.tensor([[BOS_ID, 4, EOS_ID, PAD_ID, PAD_ID], [BOS_ID, 5, 4, EOS_ID, PAD_ID]])
    task = Captioning(get_task("product-captioning"), ctx(labels=0, vocab=vocab))
    loss = task.distill_loss(Bigram(student), Bigram(teacher), {"image": torch.zeros(2, 3, 8, 8), "target": ids},
                             temperature)
    t = temperature
    per_token = [
        kl(softmax((teacher[i] / t).tolist()), softmax((student[i] / t).tolist()))
        for i in (BOS_ID, 4, BOS_ID, 5, 4)
    ]
    assert float(loss) == pytest.approx(t**2 * sum(per_token) / 5, rel=1e-5)
    assert float(task.distill_loss(Bigram(teacher), Bigram(teacher), {"image": torch.zeros(2, 3, 8, 8),
                                                                       "target": ids}, t)) == pytest.approx(0, abs=1e-6)


class Towers(nn.Module):
    """Retrieval stand-in: ``model(task, {"text": _})`` -> fixed text embeddings, any other input -> item ones."""

    def __init__(self, text: list[list[float]], item: list[list[float]], scale: float = 1.0) -> None:
        super().__init__()
        self.text = nn.Parameter(torch.tensor(text, dtype=torch.float32))
        self.item = nn.Parameter(torch.tensor(item, dtype=torch.float32))
        self.heads = nn.ModuleDict({"product-search": nn.Module()})
        self.heads["product-search"].logit_scale = LogitScale(temperature=1 / scale)

    def forward(self, task: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.text if "text" in inputs else self.item


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_retrieval_similarity_kl_both_directions(temperature: float) -> None:
    """Student (2-d): cosines [[1, 0], [0, 1]]. Teacher (3-d, a different width): both items on the first text, cosines
    [[1, 1], [0, 0]]. Rows (text -> items): KL(softmax(1, 1) || softmax(1, 0)) + KL(softmax(0, 0) || softmax(0, 1));
    columns (item -> texts): item 0 agrees (1, 0); item 1: KL(softmax(1, 0) || softmax(0, 1)). Mean of the two
    directions' row means, times T^2."""
    task = Retrieval(get_task("product-search"), ctx(labels=0))
    student = Towers([[1, 0], [0, 1]], [[1, 0], [0, 1]])
    teacher = Towers([[1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 0, 0]])
    t = temperature

    def sm(a: float, b: float) -> list[float]:
        return softmax([a / t, b / t])

    rows = (kl(sm(1, 1), sm(1, 0)) + kl(sm(0, 0), sm(0, 1))) / 2
    columns = (0.0 + kl(sm(1, 0), sm(0, 1))) / 2
    loss = task.distill_loss(student, teacher, {"text": torch.zeros(2, 3), "image": torch.zeros(2, 3)}, t)
    assert float(loss) == pytest.approx(t**2 * (rows + columns) / 2, rel=1e-5)
    loss.backward()
    assert student.text.grad is not None and teacher.text.grad is None


def test_retrieval_kl_is_zero_for_the_same_geometry_at_another_width() -> None:
    """The teacher's embeddings are the student's padded with zeros (wider, same cosines and scale): nothing to
    learn."""
    task = Retrieval(get_task("product-search"), ctx(labels=0))
    torch.manual_seed(0)
    text, item = torch.randn(4, 3), torch.randn(4, 3)
    student = Towers(text.tolist(), item.tolist(), scale=5.0)
    wide = Towers(torch.cat([text, torch.zeros(4, 2)], 1).tolist(), torch.cat([item, torch.zeros(4, 2)], 1).tolist(),
                  scale=5.0)
    loss = task.distill_loss(student, wide, {"text": torch.zeros(4, 1), "image": torch.zeros(4, 1)}, 3.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_every_ecommerce_task_distills_a_wider_teacher(data_dir) -> None:
    """Real models of the smoke suite, teacher twice as wide: every term is finite and positive, reaches only the
    student, and a model distilled from itself (eval mode, so deterministic) gets a KL of 0."""
    from mtl_bench.config.load import build_config
    from mtl_bench.data.batches import task_loader
    from mtl_bench.data.prepare import prepare_suite
    from mtl_bench.models.build import build_model
    from mtl_bench.tasks.catalog import suite_tasks

    cfg = build_config("ecommerce", "smoke", sets=[f"data.dir={data_dir}"])
    wide = build_config("ecommerce", "smoke", sets=[f"data.dir={data_dir}", "model.dim=64"])
    prepared = prepare_suite(suite_tasks("ecommerce"), cfg.data)
    torch.manual_seed(0)
    student = build_model(cfg, prepared.tasks, prepared.vocab_size)
    teacher = build_model(wide, prepared.tasks, prepared.vocab_size).eval()
    assert {type(t).__name__ for t in prepared.tasks.values()} == {"Classification", "Captioning", "Retrieval",
                                                                     "Tagging"}
    for name, task in prepared.tasks.items():
        b = next(iter(task_loader(prepared.splits[name]["train"], 8, shuffle=False, seed=0)))
        loss = task.distill_loss(student, teacher, b, 2.0)
        assert math.isfinite(float(loss)) and float(loss) > 0, name
        loss.backward()
        if not isinstance(task, Tagging):  # soft-label BCE bottoms out at the soft labels' entropy, not 0
            assert float(task.distill_loss(teacher, teacher, b, 2.0)) == pytest.approx(0.0, abs=1e-5), name
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.heads["product-search"].parameters())


def test_temperature_must_be_positive() -> None:
    with pytest.raises(UserError, match="distillation temperature = 0: expected a number > 0"):
        softmax_kl(torch.zeros(1, 2), torch.zeros(1, 2), 0)
