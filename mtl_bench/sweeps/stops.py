"""Ctrl-C and ``kill`` (SIGTERM) for a sweep worker, so a stop never leaves the study half-written.

During a trial's training the signal raises KeyboardInterrupt: Lightning shuts down, the trial is recorded FAIL
and its parameters are queued again. Anywhere else (asking Optuna for a trial, recording a result, waiting for
other workers) the signal is only noted, and the worker stops at the next safe point: a KeyboardInterrupt in the
middle of a storage write could leave a trial RUNNING with no heartbeat, which no worker would ever fail.
``kill -9`` cannot be caught; the heartbeat covers it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stops:
    def __init__(self) -> None:
        self.requested = False  # a stop signal arrived
        self._armed = False  # inside a trial's training: raise at once

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._armed:
            self._armed = False
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Stops]:
        """Handle SIGINT and SIGTERM until the block ends (Python lets only the main thread set handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous: dict[int, Any] = {s: signal.signal(s, self) for s in SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def training(self) -> Iterator[None]:
        """The block a signal may interrupt; a stop requested before it is raised on entry."""
        if self.requested:
            raise KeyboardInterrupt
        self._armed = True
        try:
            yield
        finally:
            self._armed = False
