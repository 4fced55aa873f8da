"""The retrieval task type: metrics against hand-ranked cases, head and loss, JSON predictions, chance baseline, and
a short end-to-end run of product-search alone."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import nn

from mtl_bench.config.load import build_config
from mtl_bench.core.types import Fused
from mtl_bench.data.batches import TaskData
from mtl_bench.errors import UserError
from mtl_bench.heads import HEADS
from mtl_bench.losses.contrastive import LogitScale
from mtl_bench.metrics.retrieval import RETRIEVAL_METRICS, RetrievalScore, retrieval_score
from mtl_bench.tasks.base import TaskContext
from mtl_bench.tasks.catalog import all_tasks, get_task, tasks_root
from mtl_bench.tasks.retrieval import Retrieval

TASK = "product-search"


def unit(degrees: list[float]) -> torch.Tensor:
    """2-d unit vectors at these angles: cosine similarity orders candidates by angular distance."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1).float()


def scores(text: torch.Tensor, item: torch.Tensor) -> dict[str, float]:
    ids = torch.arange(len(text))
    return {name: float(retrieval_score(text, item, ids, name)) for name in RETRIEVAL_METRICS}


def test_four_samples_ranked_by_hand() -> None:
    """Items at 0, 90, 180, 270 degrees; texts at 10, 20, 300, 85 degrees.

    t2i, each text's own item: t0 nearest (10 deg) -> rank 1; t1: item0 20 < item1 70 -> 2; t2: item3 30, item0 60 <
    item2 120 -> 3; t3: own item at 175 deg is last -> 4, with a negative cosine (still counted).
    i2t, each item's own text: item0: t0 -> 1; item1: t3 5 < t1 70 -> 2; item2: t3 95 < t2 120 -> 2; item3: t2 30,
    t0 100, t1 110 < t3 175 -> 4.
    """
    got = scores(unit([10, 20, 300, 85]), unit([0, 90, 180, 270]))
    expected = {
        "t2i_r1": 1 / 4, "t2i_r5": 1.0, "t2i_r10": 1.0, "t2i_mrr": (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4,
        "i2t_r1": 1 / 4, "i2t_r5": 1.0, "i2t_r10": 1.0, "i2t_mrr": (1 + 1 / 2 + 1 / 2 + 1 / 4) / 4,
        "mean_recall": (1 / 4 + 1 + 1 + 1 / 4 + 1 + 1) / 6,
    }  # fmt: skip
    assert got == pytest.approx(expected, abs=1e-6)


def test_rank_five_counts_for_r5_and_rank_six_does_not() -> None:
    """Six items every 60 degrees, texts on their items except t0 at 175 degrees: item0 is t0's farthest item
    (rank 6); for item0, t1, t5 (60), t2, t4 (120) are nearer than t0 (175), t3 (180) farther: rank 5."""
    items = unit([0, 60, 120, 180, 240, 300])
    got = scores(unit([175, 60, 120, 180, 240, 300]), items)
    assert got["t2i_r1"] == pytest.approx(5 / 6) and got["t2i_r5"] == pytest.approx(5 / 6)
    assert got["t2i_r10"] == 1.0 and got["t2i_mrr"] == pytest.approx((5 + 1 / 6) / 6)
    assert got["i2t_r1"] == pytest.approx(5 / 6) and got["i2t_r5"] == 1.0
    assert got["i2t_mrr"] == pytest.approx((5 + 1 / 5) / 6)


def test_metric_accumulates_the_whole_split_and_ignores_repeated_samples() -> None:
    """Batches add up to one gallery; a sample seen twice (a distributed sampler's padding) counts once."""
    text, item = unit([10, 20, 300, 85]), unit([0, 90, 180, 270])
    preds, ids = torch.stack([text, item], dim=1), torch.arange(4)
    for name in RETRIEVAL_METRICS:
        metric = RetrievalScore(name)
        metric.update(preds[:3], ids[:3])
        metric.update(preds[3:], ids[3:])
        metric.update(preds[:1], ids[:1])  # repeated
        assert float(metric.compute()) == pytest.approx(scores(text, item)[name]), name
    with pytest.raises(ValueError, match=r"preds \[B, 2, D\]"):
        RetrievalScore("t2i_r1").update(text, ids)


@pytest.fixture(scope="module")
def task() -> Retrieval:
    return Retrieval(get_task(TASK), TaskContext(label_names=[], vocab_size=10, max_text_len=8))


class PairModel(nn.Module):
    """``model(task, {"text": x})`` -> x and ``model(task, {"image": x})`` -> x: the batch holds the embeddings."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({TASK: nn.Module()})
        self.heads[TASK].logit_scale = LogitScale(temperature=1 / scale)

    def forward(self, task: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        (value,) = inputs.values()
        return value


def test_embedding_head_shape_and_temperature() -> None:
    head = HEADS.get("embedding")(16, 8, dropout=0.0)
    out = head(Fused(torch.randn(5, 16), torch.randn(5, 3, 16), torch.ones(5, 3, dtype=torch.bool)))
    assert out.shape == (5, 8)
    assert float(head.logit_scale()) == pytest.approx(1 / 0.07)  # CLIP's initial temperature


def test_info_nce_of_matching_pairs_by_hand_and_below_shuffled(task) -> None:
    """Orthonormal pairs, scale s: matched, each row's logits are (s, 0, 0) with the pair first, so cross-entropy =
    log(1 + 2 exp(-s)); shuffled (no sample keeps its item), the pair's logit is 0 among (s, 0, 0): log(2 + exp(s))."""
    model, eye = PairModel(scale=2.0), torch.eye(3)
    matched = float(task.loss(model, {"text": eye, "image": eye}))
    assert matched == pytest.approx(math.log(1 + 2 * math.exp(-2.0)), rel=1e-5)
    shuffled = float(task.loss(model, {"text": eye, "image": eye[[1, 2, 0]]}))
    assert shuffled == pytest.approx(math.log(2 + math.exp(2.0)), rel=1e-5) and shuffled > matched


def test_predict_gives_unit_embeddings_of_both_sides(task) -> None:
    text, item = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, -2.0]])
    out = task.predict(PairModel(1.0), {"text": text, "image": item, "target": torch.tensor([0])})
    assert torch.allclose(out, torch.tensor([[[0.6, 0.8], [0.0, -1.0]]]))


def test_predictions_round_trip_json(task) -> None:
    preds = task.trivial_predictions(TaskData({}, torch.arange(3)), TaskData({}, torch.arange(5)))
    rows = json.loads(json.dumps(task.predictions_to_json(preds)))
    assert set(rows[0]) == {"text", "image"}
    assert torch.equal(task.predictions_from_json(rows), preds)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([[1.0], [1.0]], "expected an object with keys ['image', 'text']"),
        ({"text": [1.0, 0.0]}, "expected an object with keys"),
        ({"text": [1.0, 0.0], "image": [1.0]}, "'image' must be a list of 2 finite numbers"),
        ({"text": [1.0, 0.0], "image": [1.0, float("nan")]}, "'image' must be a list of 2 finite numbers"),
        ({"text": [1.0, "x"], "image": [1.0, 0.0]}, "'text' must be a list of 2 finite numbers"),
        ({"text": [True, 0.0], "image": [1.0, 0.0]}, "'text' must be a list"),
        ({"text": [0.0, 0.0], "image": [1.0, 0.0]}, "not all 0"),
    ],
)
def test_predictions_from_json_rejects_bad_rows(task, row, message) -> None:
    with pytest.raises(ValueError) as err:
        task.predictions_from_json([{"text": [0.5, 0.5], "image": [0.5, 0.5]}, row])
    assert str(err.value).startswith("sample 1:") and message in str(err.value)
    with pytest.raises(ValueError, match=r"sample 0: 'image' must be a list of D >= 1 finite numbers"):
        task.predictions_from_json([{"text": [], "image": []}])


def test_trivial_baseline_is_chance(task) -> None:
    """Random embeddings, 400 samples: R@K near K/N, MRR near (ln N + 0.58) / N; the same numbers every time."""
    n = 400
    test = TaskData({}, torch.arange(n))
    first, again = task.trivial_baseline(test, test), task.trivial_baseline(test, test)
    assert first == again
    for direction in ("t2i", "i2t"):
        assert first[f"{direction}_r10"] == pytest.approx(10 / n, abs=0.03)  # binomial sd ~0.01
        assert first[f"{direction}_r1"] <= 0.02
        assert first[f"{direction}_mrr"] == pytest.approx((math.log(n) + 0.58) / n, abs=0.02)


def test_retrieval_needs_text_and_one_item(tmp_path, monkeypatch) -> None:
    text = (tasks_root() / "ecommerce" / "product_search.yaml").read_text()
    (tmp_path / "s.yaml").write_text(text.replace("  text: caption\n", ""))
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path))
    with pytest.raises(UserError, match=r"s.yaml: field 'inputs' has \['image'\]: a retrieval task needs exactly"):
        all_tasks()


def test_product_search_alone_end_to_end(tmp_path, monkeypatch, data_dir) -> None:
    """A suite of product-search only: results carry every retrieval metric and the chance baseline, no robustness
    ablation, FLOPs of both towers, and predictions.json rescores to exactly the reported test metrics."""
    from mtl_bench.commands.run import run
    from mtl_bench.data.prepare import prepare_suite
    from mtl_bench.tasks.catalog import suite_tasks

    (tmp_path / "tasks" / "suites").mkdir(parents=True)
    shutil.copy(tasks_root() / "ecommerce" / "product_search.yaml", tmp_path / "tasks")
    (tmp_path / "tasks" / "suites" / "search.yaml").write_text(
        "name: search\nversion: 1\ndescription: d\ntasks: [product-search]\n"
    )
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path / "tasks"))
    sets = [f"data.dir={data_dir}", "train.epochs=1", "train.limit_train_batches=2", "train.progress=false"]
    cfg = build_config("search", "smoke", sets=sets)
    results = run(cfg, tmp_path / "run", f"sqlite:///{tmp_path / 'm.db'}")
    got = results.tasks[TASK]
    assert got.type == "retrieval" and got.main_score == "mean_recall"
    assert set(got.metrics) == set(got.trivial_baseline) == set(RETRIEVAL_METRICS)
    assert results.robustness == {TASK: {}} and results.cost.flops_per_sample[TASK] > 0
    rows = json.loads((tmp_path / "run" / "predictions.json").read_text())[TASK]
    prepared = prepare_suite(suite_tasks("search"), cfg.data)
    test = prepared.splits[TASK]["test"]
    assert len(rows) == len(test) == 64 and len(rows[0]["text"]) == cfg.model.dim
    again = prepared.tasks[TASK].score_predictions(prepared.tasks[TASK].predictions_from_json(rows), test)
    assert again == pytest.approx(got.metrics, rel=1e-5, abs=1e-6)
