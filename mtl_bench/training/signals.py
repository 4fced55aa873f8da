"""Ctrl-C and ``kill`` (SIGINT, SIGTERM) for ``run``, ``compare``, ``pretrain`` and ``distill``.

A stop signal ends the command with one line on stderr (the signal, the last finished epoch, the command that
continues) and exit code 128 + the signal number (143 for SIGTERM, 130 for SIGINT), like a shell reports a process
killed by that signal; a scheduler never records a stopped run as a success. The MLflow run is marked KILLED and no
results.json is written, so an unfinished run never looks finished.

When the stop takes effect:
- during ``trainer.fit``: at the end of the current training or validation batch. Nothing is cut in half;
  ``checkpoints/last.ckpt`` holds the last finished epoch (it is replaced atomically at epoch end). Under DDP the
  stop goes through Lightning's SIGTERM flag, which rank 0 broadcasts at every step, so all processes stop after the
  same step; the processes rank 0 started get the signal too (as Lightning does), so an error a process meets while
  the others shut down is taken for the stop, not reported as a failure;
- in a short block that must finish whole (opening the MLflow run and writing run-state.json, writing the results):
  at the end of the block;
- anywhere else (data preparation, testing, measuring): at once.
A second signal stops at once (on rank 0; other ranks may get one signal from the scheduler and one from rank 0).

Why the signals need handling at all: Lightning turns SIGTERM into ``SIGTERMException``, a ``SystemExit`` with no
code, so without this module a killed run exited with code 0, no message and no results. While a trainer runs, our
handler replaces Lightning's SIGTERM handler (``StopAtStep`` puts it back after Lightning installs its own): that
one broadcasts from inside the signal handler, which under DDP can pair with another collective and break the
processes' shutdown.

The handlers are taken only where nobody else handles the signals: a sweep worker installs its own
(``sweeps/stops.py``) and the runs of its trials leave them alone; a ``compare`` or ``distill`` installs them once
and the runs inside it share them. Python lets only the main thread set handlers.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


class Stopped(BaseException):
    """A stop signal ended the command; carries the one line the CLI prints and the exit code.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on its way swallows it. The layers it
    passes through fill in ``where`` (e.g. "after epoch 3 of 15") and how to go on (``advice``, ``add_resume``).
    """

    def __init__(self, signum: int, rank_zero: bool = True) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.rank_zero = rank_zero  # under DDP only rank 0 prints
        self.epochs: tuple[int, int] | None = None  # (last finished epoch, epochs in all) of the run that stopped
        self.where = ""
        self.advice = "start again with"
        self.add_resume = False
        self.resumable = False  # the run's folder is its own (opened by it): its last.ckpt is what --resume uses

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self, argv: Sequence[str]) -> str:
        """``mtl-bench: stopped by SIGTERM after epoch 3 of 15; continue with: mtl-bench run ... --resume``."""
        where = f" {self.where}" if self.where else ""
        return f"mtl-bench: stopped by {self.name}{where}; {self.advice}: {command(argv, self.add_resume)}"


def command(argv: Sequence[str], add_resume: bool = False) -> str:
    """The command line as the user typed it (``sys.argv[1:]``), quoted for a shell, ``--resume`` added once."""
    args = list(argv)
    if add_resume and "--resume" not in args:
        args.append("--resume")
    return shlex.join(["mtl-bench", *args])


def epochs_phrase(done: int | None, total: int) -> str:
    """"after epoch 3 of 15", or "before epoch 1 of 15 finished" when no epoch has finished."""
    return f"after epoch {done} of {total}" if done else f"before epoch 1 of {total} finished"


def _env_rank_zero() -> bool:
    """Rank 0 by the launcher's variables (Lightning's DDP children get LOCAL_RANK, torchrun RANK, srun SLURM_PROCID);
    replaced by the trainer's own answer once a trainer runs."""
    return all(os.environ.get(name, "0") in ("", "0") for name in _RANK_VARIABLES)


class StopSignals:
    """The installed SIGINT / SIGTERM handler: notes the first signal and raises ``Stopped`` when that is safe."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received
        self.rank_zero = _env_rank_zero()
        self._mode = "now"  # now | step (inside trainer.fit) | later (a block that must finish whole)
        self._trainer: Any = None  # while fitting
        self._launcher: Any = None  # Lightning's DDP launcher: on rank 0 it knows the processes it started
        self.installed: list[int] = []  # the signals this handler took

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            if self._launcher is not None:
                self._launcher.kill(signum)  # the DDP processes this one started stop too
        if self._mode == "now" or (not first and self.rank_zero):
            raise self.stopped()
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and hasattr(trainer, "_signal_connector"):
            # DDP: Lightning broadcasts rank 0's SIGTERM flag at every step so that all processes stop after the
            # same one (SIGTERMException, which `fitting` turns into Stopped); set for SIGINT too.
            trainer._signal_connector.received_sigterm = True

    def attach(self, trainer: Any) -> None:
        """A trainer starts: its rank decides who prints; its launcher (rank 0 of a DDP run) gets the signal too."""
        self.rank_zero = trainer.is_global_zero
        self._launcher = getattr(trainer.strategy, "launcher", None)

    def reclaim(self) -> None:
        """Put this handler back where Lightning installed its own (see the module docstring); Lightning's teardown
        restores the handlers it found, this one."""
        if threading.current_thread() is threading.main_thread():
            for signum in self.installed:
                if signal.getsignal(signum) is not self:
                    signal.signal(signum, self)

    def stopped(self) -> Stopped:
        assert self.signum is not None
        return Stopped(self.signum, self.rank_zero)

    def check(self, resumable: bool = False) -> None:
        """Raise ``Stopped`` when a signal has arrived (at a batch end: the step is complete)."""
        if self.signum is not None:
            stop = self.stopped()
            stop.resumable = resumable
            raise stop

    @contextmanager
    def later(self, check: bool = True) -> Iterator[None]:
        """A short block that must finish whole: a signal during it takes effect at its end, or (``check=False``)
        at the next ``check`` or ``fitting``."""
        previous, self._mode = self._mode, "later"
        try:
            yield
        finally:
            self._mode = previous
        if previous == "now" and check:
            self.check()

    @contextmanager
    def fitting(self, trainer: Any) -> Iterator[None]:
        """Around ``trainer.fit``: a signal stops training at the end of the current batch (``StopAtStep``).

        Lightning's ``SIGTERMException`` (DDP: rank 0's flag broadcast to this process), and any error raised while
        the processes shut down after a signal, become ``Stopped``.
        """
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        self.check()
        self.rank_zero = trainer.is_global_zero
        previous, self._mode, self._trainer = self._mode, "step", trainer
        try:
            yield
        except Stopped:
            raise
        except BaseException as exc:
            if self.signum is None and not isinstance(exc, SIGTERMException):
                raise
            raise Stopped(self.signum or signal.SIGTERM, self.rank_zero) from None
        finally:
            self._mode, self._trainer = previous, None
        self.check()  # a signal during the last step, after which fit returned normally


_active: StopSignals | None = None


def active() -> StopSignals | None:
    """The handler of the command running in this process; None outside one, in a sweep's trial or in a thread."""
    return _active


def _taken_by_someone_else() -> bool:
    handlers = [signal.getsignal(s) for s in SIGNALS]
    return any(callable(h) and h is not signal.default_int_handler for h in handlers)


@contextmanager
def handle_stops() -> Iterator[StopSignals | None]:
    """Handle SIGINT and SIGTERM for the block (a command); nested blocks share the outer handler.

    A signal the process ignores (SIGINT of a job started in the background with ``&``) stays ignored.
    """
    global _active
    if _active is not None:
        yield _active
        return
    if threading.current_thread() is not threading.main_thread() or _taken_by_someone_else():
        yield None
        return
    stops = StopSignals()
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, stops)
            stops.installed.append(signum)
    _active = stops
    try:
        yield stops
    finally:
        _active = None
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def later(check: bool = True) -> Iterator[None]:
    """``StopSignals.later`` of the active handler; nothing when there is none."""
    if _active is None:
        yield
        return
    with _active.later(check):
        yield


def check(resumable: bool = False) -> None:
    """Raise the ``Stopped`` of a signal that arrived during a ``later(check=False)`` block."""
    if _active is not None:
        _active.check(resumable)


@contextmanager
def fitting(trainer: Any) -> Iterator[None]:
    """``StopSignals.fitting`` of the active handler; nothing when there is none."""
    if _active is None:
        yield
        return
    with _active.fitting(trainer):
        yield


def stop_callbacks() -> list[Any]:
    """The Lightning callback that ends training at a batch end after a signal (none without a handler)."""
    if _active is None:
        return []
    from lightning.pytorch import Callback

    stops = _active

    class StopAtStep(Callback):
        """Raises ``Stopped`` after the batch during which a signal arrived (one process; under DDP Lightning's
        broadcast flag stops all processes after the same step); keeps our handler in place of Lightning's."""

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            stops.attach(trainer)

        def on_train_start(self, trainer: Any, *args: Any) -> None:
            stops.reclaim()  # Lightning installed its SIGTERM handler just before

        def on_test_start(self, trainer: Any, *args: Any) -> None:
            stops.reclaim()

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.world_size == 1:
                stops.check()

        def on_validation_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.world_size == 1:
                stops.check()

    return [StopAtStep()]
