import math

import pytest

from mtl_bench.training.system import warmup_cosine


def test_warmup_then_cosine():
    assert warmup_cosine(0, warmup=4, total=20) == pytest.approx(0.25)
    assert warmup_cosine(3, warmup=4, total=20) == pytest.approx(1.0)
    assert warmup_cosine(4, warmup=4, total=20) == pytest.approx(1.0)
    assert warmup_cosine(12, warmup=4, total=20) == pytest.approx(0.5)  # half-way through the decay
    assert warmup_cosine(20, warmup=4, total=20) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(7, warmup=0, total=10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.7)))


def test_selection_score_signs_lower_is_better_tasks():
    from types import SimpleNamespace

    from mtl_bench.training.system import selection_score

    tasks = {
        "a": SimpleNamespace(spec=SimpleNamespace(main_score="accuracy", higher_is_better=True)),
        "b": SimpleNamespace(spec=SimpleNamespace(main_score="error", higher_is_better=False)),
    }
    scores = {"a": {"accuracy": 0.8, "f1": 0.1}, "b": {"error": 0.2}}
    assert selection_score(scores, tasks) == pytest.approx((0.8 - 0.2) / 2)
