"""Where a number came from: package, commit, torch, device, time; and what the run cost in memory."""

from __future__ import annotations

import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

import mtl_bench
from mtl_bench.results.schema import Provenance


def git_commit() -> str | None:
    """The commit of the mtl-bench checkout in use (None for an installed wheel or without git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(mtl_bench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: str, deterministic: bool) -> Provenance:
    return Provenance(
        package_version=mtl_bench.__version__,
        git_commit=git_commit(),
        torch_version=torch.__version__,
        device=device,
        deterministic=deterministic,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident set size on CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
