"""Checkpoints written atomically: a crash mid-save never leaves a truncated file that a later run would trust.

The checkpoint goes to ``.NAME.tmp`` beside its final path, is flushed to disk, then renamed over the old one, so
``--resume`` always finds either the previous complete checkpoint or the new one; a leftover ``.tmp`` from a
killed save is removed when the run resumes (``resume.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
