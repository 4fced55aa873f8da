"""Failures during training that the user can act on, turned into one line (the CLI exits with code 1).

Bad input (names, files, values, an unwritable or full output disk) is caught before training and is a
``UserError`` (exit code 2). Once training has started, a run can still fail in two ways the user can fix:

- a NaN or infinite loss (``FloatingPointError`` from the system, naming the task and step);
- the GPU running out of memory (``torch.cuda.OutOfMemoryError``): the line says which batch size to lower.

In both cases the MLflow run is marked FAILED (``commands/phases.py``) and the last epoch checkpoint stays for
``--resume``.

A stop signal (SIGTERM from ``kill`` or a scheduler, SIGINT from Ctrl-C) is not a failure: it raises
``training.signals.Stopped`` (exit code 143 or 130, the MLflow run KILLED, a line saying how to continue).
"""

from __future__ import annotations

from typing import Any


class RunFailed(Exception):
    """Training started and failed for a reason the message states; never shown with a traceback."""


def explain(exc: BaseException, cfg: Any) -> str | None:
    """The one-line message for ``exc``, or None when it is not a failure we know how to explain."""
    import torch

    train = cfg.train
    if isinstance(exc, FloatingPointError):
        return (f"training diverged: {exc}; the MLflow run is marked FAILED (try a lower train.lr, now {train.lr}, "
                f"or train.grad_clip, now {train.grad_clip})")
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        smaller = max(1, train.batch_size // 2)
        return (f"out of GPU memory: lower train.batch_size (now {train.batch_size}, per task), e.g. --set "
                f"train.batch_size={smaller}; the MLflow run is marked FAILED")
    return None
