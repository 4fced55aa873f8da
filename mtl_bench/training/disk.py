"""Disk checks made before training, so a run fails at once rather than after hours: a writable output folder
and enough free space for its checkpoints."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from mtl_bench.errors import UserError


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return probe


def check_writable(path: Path) -> None:
    """Fail before training, not after, when results could not be written (permissions or a read-only disk)."""
    probe = _nearest_existing(path)
    if not probe.is_dir():
        raise UserError(f"--output-dir {path}: {probe} exists and is not a folder")
    if not os.access(probe, os.W_OK):
        raise UserError(f"--output-dir {path}: {probe} is not writable")
    try:
        tempfile.TemporaryFile(dir=probe).close()  # root passes os.access everywhere, but not on a read-only disk
    except OSError as err:
        raise UserError(f"--output-dir {path}: cannot write in {probe} ({err.strerror})") from err


def check_free_space(path: Path, need_bytes: int, what: str) -> None:
    """Fail before training when the output folder's disk cannot hold ``what`` (``need_bytes``)."""
    free = shutil.disk_usage(_nearest_existing(path)).free
    if free < need_bytes:
        raise UserError(f"--output-dir {path}: {free / 2**20:.0f} MB free on its disk, but {what} needs about "
                        f"{need_bytes / 2**20:.0f} MB; free some space or choose another --output-dir")


def checkpoint_bytes(module: torch.nn.Module) -> int:
    """Size of one training checkpoint: every parameter and buffer, plus AdamW's two moments per trainable value."""
    tensors = [*module.parameters(), *module.buffers()]
    trainable = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return sum(t.numel() * t.element_size() for t in tensors) + 2 * trainable
