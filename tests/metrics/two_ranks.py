"""Run a metric test's worker in two gloo processes (spawned, so the worker must be a module-level function)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch


def on_two_ranks(worker: Callable[..., None], tmp_path: Path, *args: Any) -> list[Any]:
    """``worker(rank, init_file, *args, results)`` on ranks 0 and 1; what each put on ``results``, in arrival order."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    init_file = str(tmp_path / "init")
    procs = [ctx.Process(target=worker, args=(rank, init_file, *args, results)) for rank in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert all(proc.exitcode == 0 for proc in procs)
    return [results.get(timeout=5) for _ in procs]
