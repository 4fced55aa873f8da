"""The benchmark scripts run end to end at a tiny size and report consistent figures (no timing thresholds: the
machines are shared, so speed is judged from the scripts' printed ratios, never asserted here)."""

from __future__ import annotations

import importlib
import math
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> Iterator[Callable[[str], ModuleType]]:
    """``bench(NAME)`` imports ``benchmarks/NAME.py`` the way ``python benchmarks/NAME.py`` finds its siblings."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def one_task_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A suite holding only product-classification, where tracing the model for torch.compile is quick."""
    (tmp_path / "suites").mkdir()
    shutil.copy(BENCHMARKS.parent / "tasks" / "ecommerce" / "product_classification.yaml", tmp_path)
    (tmp_path / "suites" / "one.yaml").write_text(
        "name: one\nversion: 1\ndescription: product classification alone\ntasks: [product-classification]\n"
    )
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path))
    return "one"


def tiny(data_dir: Path, *extra: str) -> list[str]:
    return ["--profile", "smoke", "--set", f"data.dir={data_dir}", "--set", "train.batch_size=4", *extra]


def positive_finite(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_interleaved_rotates_the_order_every_round(bench) -> None:
    calls: list[str] = []
    out = bench("_common").interleaved(
        {name: (lambda n=name: calls.append(n) or len(calls)) for name in "abc"}, repeats=4
    )
    assert calls == list("abc" "bca" "cab" "abc")
    assert out == {"a": [1, 6, 8, 10], "b": [2, 4, 9, 11], "c": [3, 5, 7, 12]}


def test_train_step(bench, data_dir: Path, capsys) -> None:
    out = bench("train_step").main(tiny(data_dir, "--steps", "1", "--warmup", "0", "--repeats", "2"))
    assert [len(out["rounds"][side]) for side in ("plain", "ours")] == [2, 2]
    assert positive_finite(out["plain_ms"]) and positive_finite(out["ours_ms"])
    assert out["ratio"] == pytest.approx(out["plain_ms"] / out["ours_ms"])
    assert "ratio (plain time / ours time)" in capsys.readouterr().out


def test_task_scaling(bench, data_dir: Path) -> None:
    scaling = bench("task_scaling")
    out = scaling.main(tiny(data_dir, "--tasks", "3", "--steps", "1", "--warmup", "0", "--repeats", "1"))
    assert out["task"] == "product-classification" and out["counts"] == [1, 3]
    assert sorted(out["ms"]) == sorted([*scaling.SHARINGS, scaling.ONCE])
    assert positive_finite(out["base_ms"])
    for sharing, growth in out["growth"].items():  # all against one T = 1 base: every sharing is the same model there
        assert growth == {t: pytest.approx(out["ms"][sharing][t] / out["base_ms"]) for t in (1, 3)}, sharing
        assert out["per_task_ms"][sharing] == pytest.approx((out["ms"][sharing][3] - out["ms"][sharing][1]) / 2)


def test_slope_is_the_least_squares_line(bench) -> None:
    assert bench("task_scaling").slope([1, 2, 4], [1.0, 2.0, 2.0]) == pytest.approx(2 / 7)  # (4/3) / (14/3)


def test_task_copies_are_named_in_numeric_order(bench, data_dir: Path) -> None:
    from mtl_bench.tasks.base import TaskContext
    from mtl_bench.tasks.catalog import suite_tasks
    from mtl_bench.tasks.classification import Classification

    spec = next(s for s in suite_tasks("ecommerce") if s.type == "classification")
    task = Classification(spec, TaskContext(label_names=["a", "b"], vocab_size=10, max_text_len=8))
    made = bench("task_scaling").copies(task, 10)
    assert list(made) == sorted(made) == [f"{spec.name}-{i:02d}" for i in range(1, 11)]
    assert all(t.spec.name == name and t.spec.inputs == spec.inputs and t.ctx is task.ctx for name, t in made.items())


def test_data_loading(bench, data_dir: Path) -> None:
    out = bench("data_loading").main(tiny(data_dir, "--steps", "4", "--warmup", "1", "--repeats", "1"))
    assert positive_finite(out["loader_samples_per_s"]) and positive_finite(out["step_samples_per_s"])
    assert out["ratio"] == pytest.approx(out["loader_samples_per_s"] / out["step_samples_per_s"])


def test_gpu_script_cpu_check(bench, data_dir: Path, one_task_suite: str) -> None:
    gpu = bench("gpu_h200")
    out = gpu.main(["--cpu-check", "--suite", one_task_suite, "--set", f"data.dir={data_dir}", "--warmup", "0"])
    assert out["device"] == "cpu" and out["peak_tflops"] == gpu.H200_BF16_DENSE_TFLOPS
    assert set(out["rows"]) == set(gpu.CONTENDERS) and out["rows"]["fp32-eager"]["speedup"] == 1.0
    for row in out["rows"].values():
        assert positive_finite(row["samples_per_s"]) and positive_finite(row["mfu"])
        assert row["mfu"] == pytest.approx(row["tflops"] / gpu.H200_BF16_DENSE_TFLOPS)
        assert row["tflops"] == pytest.approx(out["step_flops"] / (row["ms_per_step"] / 1000) / 1e12)


def test_profile_step(bench, data_dir: Path) -> None:
    out = bench("profile_step").main(tiny(data_dir, "--steps", "1", "--warmup", "0", "--top", "5"))
    assert len(out["top"]) == 5 and sum(r["share"] for r in out["top"]) <= 1.0
    assert all(r["share"] == pytest.approx(r["ms"] / out["total_ms"]) for r in out["top"])
    tasks = ["product-captioning", "product-classification", "video-tagging"]  # the suite may hold more
    assert {"phase:backward", "phase:optimizer", *(f"phase:forward {t}" for t in tasks)} <= set(out["ranges"])
    assert {"part:sharing.backbone.encoders.image", "part:sharing.backbone.fusion"} <= set(out["ranges"])


class _Scorer:
    """A stand-in item scorer: per-item values (a mean metric) or, with ``mean=False``, a corpus metric (the mean of
    the squared values, so that it has no per-item decomposition)."""

    def __init__(self, values, mean: bool = True) -> None:
        import numpy as np

        self.values = np.asarray(values, dtype=float)
        self.n_items = len(self.values)
        self.per_item = self.values if mean else None

    def score(self, indices):
        return float(self.scores(indices[None])[0])

    def scores(self, index_matrix):
        picked = self.values[index_matrix]
        return picked.mean(1) if self.per_item is not None else (picked**2).mean(1)


def test_noise_components_are_the_anova_ones_for_mean_metrics_and_the_bootstrap_ones_for_corpus_metrics(bench):
    import numpy as np

    from mtl_bench.results import paired, power

    noise = bench("noise")
    values = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    assert noise.components({s: _Scorer(v) for s, v in enumerate(values)}, 50) == power.variance_components(values)
    corpus = {s: _Scorer(v + s, mean=False) for s, v in enumerate(values)}
    _, items = paired.draws(3, {"t": 4}, 50, 0)
    reps = np.stack([corpus[s].scores(items["t"]) for s in range(3)], axis=1)
    observed = np.array([corpus[s].score(np.arange(4)) for s in range(3)])
    assert noise.components(corpus, 50) == power.components_from_bootstrap(observed, reps, 4)
    lines = noise.table({"a": {s: {"t": _Scorer(v)} for s, v in enumerate(values)}}, {"t": "accuracy"}, 50)
    assert lines[2].startswith("| a | t (accuracy) | 3 | 4 | 0.6667 | ")
