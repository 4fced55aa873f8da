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
