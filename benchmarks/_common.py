"""What every benchmark script shares: the common flags, the suite set-up, interleaved timing and the machine line.

Every benchmark compares things measured side by side in one process: the contenders run in rounds, the order
rotating each round (so no contender always runs first, right after a warm cache or a quiet moment), and each
contender's median over the rounds is compared. Ratios of medians survive a shared machine far better than absolute
times do. ``--threads 1`` makes them steadier still on a busy machine: with as many OpenMP threads as cores, a
parallel region waits for its slowest thread, so any other process on the machine stalls every operator.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mtl_bench.config.load import build_config
from mtl_bench.config.schema import RunConfig
from mtl_bench.data.prepare import PreparedSuite, prepare_suite
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.trainer import quiet_libraries


def parser(doc: str, steps: int, warmup: int, repeats: int) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes; ``doc`` is the script's module docstring."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--suite", default="ecommerce")
    p.add_argument("--profile", default="default")
    p.add_argument("--steps", type=int, default=steps, help="timed steps per contender per round")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed steps before the timed ones")
    p.add_argument("--repeats", type=int, default=repeats, help="rounds; each contender's median is compared")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    return p


def setup(args: argparse.Namespace) -> tuple[RunConfig, PreparedSuite]:
    """The resolved config (progress bar off) and the prepared suite; sets the thread count first."""
    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config(args.suite, args.profile, sets=[*args.set, "train.progress=false"])
    return cfg, prepare_suite(suite_tasks(args.suite), cfg.data, cfg.model.text_encoder)


def interleaved(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each contender's measurements (whatever its callable returns, e.g. seconds per step) over ``repeats`` rounds.

    Round ``r`` runs the contenders in their order rotated by ``r``.
    """
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(contenders[name]())
    return out


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def timed(step: Callable[[], Any], steps: int, warmup: int) -> float:
    """Seconds per call of ``step`` over ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def positive_finite(x: float) -> bool:
    return math.isfinite(x) and x > 0


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming what the figures were measured on, with the load average that says how busy it was."""
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:  # not on every platform
        load = "load average n/a"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    return (f"{device}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{load} at the end")
