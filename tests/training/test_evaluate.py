"""FLOPs per sample and the missing-modality evaluation, on toy models whose answers are known by hand."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from mtl_bench.data.batches import TaskData
from mtl_bench.evaluation.measures import flops_per_sample, robustness


class ToyTask:
    """A task whose 'score' is the mean of what the model returns for the inputs it is given."""

    ablate_inputs = True  # as every task type but retrieval

    def __init__(self, modalities, higher_is_better=True):
        self.spec = SimpleNamespace(modalities=lambda: modalities, higher_is_better=higher_is_better, main_score="s")

    def loss(self, model, batch):
        return model(batch).sum()

    def make_metrics(self):
        return MetricCollection({"s": MeanMetric()})

    def update_metrics(self, metrics, model, batch):
        metrics.update(model(batch))


class ToyModel(nn.Module):
    """1.0 per sample with a photo and a title, 0.5 with the photo missing, 0.25 with an empty title (all PAD)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, batch):
        n = len(batch["target"])
        score = torch.ones(n)
        if "image" not in batch:
            score = score * 0.5
        if "text" in batch and not batch["text"].any():
            score = score * 0.25
        if "image" in batch:
            score = score + 0 * self.linear(batch["image"].flatten(1)[:, :4]).sum(1)
        return score


def data(n=10):
    return TaskData(inputs={"image": torch.zeros(n, 3, 2, 2, dtype=torch.uint8), "text": torch.ones(n, 5).long()},
                    target=torch.zeros(n))


def test_flops_per_sample_of_one_linear_layer():
    # Linear 4 -> 3 on every sample: 2 * 4 * 3 multiply-adds counted as FLOPs.
    flops = flops_per_sample(ToyModel(), {"t": ToyTask(["image", "text"])}, {"t": data()})
    assert flops == {"t": 2 * 4 * 3}


def test_robustness_reports_the_drop_per_missing_input():
    tasks = {"both": ToyTask(["image", "text"]), "lower": ToyTask(["image", "text"], higher_is_better=False),
             "photo-only": ToyTask(["image"])}
    full = {"both": 1.0, "lower": 1.0, "photo-only": 1.0}
    drops = robustness(ToyModel(), tasks, {k: data() for k in tasks}, batch_size=4, full=full)
    assert drops["both"] == {"no_image": 0.5, "empty_title": 0.75}
    assert drops["lower"] == {"no_image": -0.5, "empty_title": -0.75}  # lower is better: a lower score is a gain
    assert drops["photo-only"] == {}  # removing the only input leaves nothing to score


def test_flops_count_transformer_layers_in_eval_mode_too():
    """PyTorch's fused inference path for encoder layers is invisible to the counter; we must not report it as 0."""
    from mtl_bench.core.layers import TransformerStack

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = TransformerStack(dim=16, heads=2, layers=1, dropout=0.1)

        def forward(self, batch):
            return self.stack(torch.randn(len(batch["target"]), 4, 16))  # 4 tokens of width 16

    model = Stack().eval()
    task = ToyTask(["image"])
    task.loss = lambda m, b: m(b).sum()
    tokens, dim, hidden = 4, 16, 64
    # q, k, v and output projections, the two attention matmuls, the feed-forward block: 2 FLOPs per multiply-add.
    expected = 2 * (4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * hidden)
    state = torch.random.get_rng_state()
    assert flops_per_sample(model, {"t": task}, {"t": data()}) == {"t": expected}
    assert not model.training and torch.equal(torch.random.get_rng_state(), state)
