"""``kill`` (SIGTERM) and Ctrl-C (SIGINT) during training: one line naming the signal, the last finished epoch and the
command that continues; exit code 143 / 130; the MLflow run KILLED; no results.json; last.ckpt intact; and the
printed command finishes the run with the numbers of a run that never stopped.

Real subprocesses (``.venv/bin/mtl-bench``), signalled once the first epoch's checkpoint (or, for ``pretrain``, which
keeps none, the first epoch's MLflow metrics) exists; the polling only waits, it asserts nothing about time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mtl_bench.cli import main
from mtl_bench.training import signals
from mtl_bench.training.signals import Stopped, command, handle_stops
from tests.conftest import ROOT

EXE = str(Path(sys.executable).with_name("mtl-bench"))  # the console script of the venv that runs the tests
SETS = ["--set", "train.epochs=3", "--set", "train.limit_train_batches=3", "--set", "train.num_threads=1",
        "--set", "train.progress=false"]


def _uri(db: Path) -> str:
    return f"sqlite:///{db}"


def _status(uri: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_run(run_id).info.status


def _signal_when(args: list[str], ready: Callable[[], bool], signum: int = signal.SIGTERM) -> tuple[int, str]:
    """Start ``mtl-bench ARGS``, send ``signum`` once ``ready()``; its exit code and stderr."""
    proc = subprocess.Popen([EXE, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 300
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"finished before it was signalled: {proc.stderr.read()[-3000:]}"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


def _last_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> tuple[Path, list[str]]:
    """A run that never stopped (in this process: the same numbers as a subprocess on CPU); also distill's teacher."""
    root = tmp_path_factory.mktemp("reference")
    common = ["--suite", "ecommerce", "--profile", "smoke", *SETS, "--set", f"data.dir={data_dir}"]
    assert main(["run", *common, "--output-dir", str(root / "run"), "--tracking-uri", _uri(root / "m.db")]) == 0
    return root / "run", common


def test_sigterm_stops_a_run_after_its_last_epoch_and_the_printed_command_finishes_it(tmp_path, reference):
    ref, common = reference
    out, uri = tmp_path / "run", _uri(tmp_path / "m.db")
    args = ["run", *common, "--output-dir", str(out), "--tracking-uri", uri]
    last = out / "checkpoints" / "last.ckpt"
    code, err = _signal_when(args, last.exists)

    assert code == 143
    line = _last_line(err)
    match = re.fullmatch(r"mtl-bench: stopped by SIGTERM after epoch (\d) of 3; continue with: (.*)", line)
    assert match, line
    assert match[2] == shlex.join(["mtl-bench", *args, "--resume"])
    epoch = int(match[1])
    assert 1 <= epoch < 3
    assert torch.load(last, weights_only=True)["epoch"] == epoch - 1  # Lightning counts from 0; intact and loads
    assert not (out / "results.json").exists()  # an unfinished run must not look finished
    assert not [*out.glob(".*.tmp"), *(out / "checkpoints").glob(".*.tmp")]
    run_id = json.loads((out / "run-state.json").read_text())["mlflow_run_id"]
    assert _status(uri, run_id) == "KILLED"

    resumed = subprocess.run([EXE, *shlex.split(match[2])[1:]], cwd=ROOT, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert b["tasks"] == a["tasks"] and b["robustness"] == a["robustness"]  # exactly the uninterrupted numbers
    assert b["cost"]["steps"] == a["cost"]["steps"] == 9
    assert b["mlflow"]["run_id"] == run_id and _status(uri, run_id) == "FINISHED"


def test_sigterm_stops_compare_naming_the_run_and_the_same_command_continues_it(tmp_path, reference, capsys):
    ref, common = reference
    out, uri = tmp_path / "cmp", _uri(tmp_path / "m.db")
    args = ["compare", *common[:2], "--grid", "weighting=ew", "--seeds", "1", *common[2:], "--output-dir", str(out),
            "--tracking-uri", uri]
    run_dir = out / "runs" / "ew" / "seed0"
    code, err = _signal_when(args, (run_dir / "checkpoints" / "last.ckpt").exists)

    assert code == 143
    line = _last_line(err)
    match = re.fullmatch(r"mtl-bench: stopped by SIGTERM in run 1 of 1 \(ew, seed 0\) after epoch (\d) of 3; continue "
                         r"with the same command \(finished runs are reused, this one continues after epoch \1\): (.*)",
                         line)
    assert match, line
    assert match[2] == shlex.join(["mtl-bench", *args])
    parent = json.loads((out / "compare_run.json").read_text())["run_id"]
    child = json.loads((run_dir / "run-state.json").read_text())["mlflow_run_id"]
    assert _status(uri, parent) == _status(uri, child) == "KILLED"
    assert not (run_dir / "results.json").exists()

    assert main(shlex.split(match[2])[1:]) == 0  # the printed command, in this process
    assert "ew seed 0: continuing from its last epoch checkpoint" in capsys.readouterr().out
    results = json.loads((run_dir / "results.json").read_text())
    assert results["tasks"] == json.loads((ref / "results.json").read_text())["tasks"]  # continued, not restarted
    assert results["mlflow"]["run_id"] == child
    assert _status(uri, parent) == _status(uri, child) == "FINISHED"


def _pretrain_epoch_logged(db: Path) -> bool:
    """Whether the pre-training MLflow run has logged its first epoch's metrics (read-only; the file may not exist)."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT 1 FROM metrics WHERE key LIKE 'pretrain/%' LIMIT 1").fetchone() is not None
    except sqlite3.Error:  # tables not created yet, or the writer holds the lock
        return False


def test_sigterm_stops_pretrain_which_says_rerunning_starts_over(tmp_path, data_dir):
    out, db = tmp_path / "pre", tmp_path / "m.db"
    args = ["pretrain", "--suite", "ecommerce", "--profile", "smoke", *SETS, "--set", f"data.dir={data_dir}",
            "--output-dir", str(out), "--tracking-uri", _uri(db)]
    code, err = _signal_when(args, lambda: _pretrain_epoch_logged(db))

    assert code == 143
    line = _last_line(err)
    assert re.fullmatch(r"mtl-bench: stopped by SIGTERM after epoch [12] of 3; pretrain keeps no epoch checkpoints "
                        r"and cannot resume; rerunning starts over: (.*)", line), line
    assert line.endswith(": " + shlex.join(["mtl-bench", *args]))
    assert not (out / "pretrained.pt").exists()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("KILLED",)]


def test_sigterm_stops_distill_naming_the_student(tmp_path, reference):
    teacher, _ = reference
    out = tmp_path / "d"
    args = ["distill", "--teacher", str(teacher), "--set", "train.num_threads=1", "--output-dir", str(out),
            "--tracking-uri", _uri(tmp_path / "m.db")]
    code, err = _signal_when(args, (out / "student" / "checkpoints" / "last.ckpt").exists)

    assert code == 143
    line = _last_line(err)
    assert re.fullmatch(r"mtl-bench: stopped by SIGTERM while training the plain student \(1 of 2\), after epoch [12] "
                        r"of 3; distill cannot resume; rerunning trains both students again: (.*)", line), line
    assert line.endswith(": " + shlex.join(["mtl-bench", *args]))
    run_id = json.loads((out / "student" / "run-state.json").read_text())["mlflow_run_id"]
    assert _status(_uri(tmp_path / "m.db"), run_id) == "KILLED"
    assert not (out / "student" / "results.json").exists() and not (out / "distill.json").exists()


def _run_args(tmp_path: Path, reference: tuple[Path, list[str]]) -> tuple[list[str], Path, str]:
    """``run`` arguments for an in-process run of the reference's settings into its own folder and MLflow store."""
    out, uri = tmp_path / "run", _uri(tmp_path / "m.db")
    return ["run", *reference[1], "--output-dir", str(out), "--tracking-uri", uri], out, uri


def _with_callback(monkeypatch: pytest.MonkeyPatch, callback: object) -> Callable[[], list]:
    """Add ``callback`` to the run's stop callbacks (it sends the signal); returns the real ``stop_callbacks``."""
    real = signals.stop_callbacks
    monkeypatch.setattr("mtl_bench.commands.phases.stop_callbacks", lambda: [*real(), callback])
    return real


@pytest.fixture
def sigint_not_ignored():
    """A test process started in the background (`pytest ... &`) inherits SIGINT ignored, and a run rightly leaves an
    ignored signal ignored (``handle_stops``): give this process Python's usual SIGINT handler for the test."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_at_the_next_step_with_exit_code_130(tmp_path, reference, monkeypatch, capsys, sigint_not_ignored):
    """SIGINT sent from the end of epoch 1 (before its checkpoint is saved): training stops after the first step of
    epoch 2, so last.ckpt holds epoch 1 and the run is one --resume away."""
    from lightning.pytorch import Callback

    class CtrlCAfterFirstEpoch(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                os.kill(os.getpid(), signal.SIGINT)

    args, out, uri = _run_args(tmp_path, reference)
    _with_callback(monkeypatch, CtrlCAfterFirstEpoch())
    assert main(args) == 130
    err = capsys.readouterr().err
    assert _last_line(err) == "mtl-bench: stopped by SIGINT after epoch 1 of 3; continue with: " + shlex.join(
        ["mtl-bench", *args, "--resume"])
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0 and state["global_step"] == 3  # epoch 1's three steps; epoch 2's step not saved
    assert _status(uri, json.loads((out / "run-state.json").read_text())["mlflow_run_id"]) == "KILLED"
    assert not (out / "results.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back


def test_a_stop_while_testing_says_the_last_epoch_and_resume_only_tests(tmp_path, reference, monkeypatch, capsys):
    """Training was over (last.ckpt holds epoch 3 of 3): --resume trains nothing and tests, to the same numbers."""
    import mtl_bench.commands.phases as phases

    real = phases.robustness

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the test split is measured: stops at once
        raise AssertionError("not stopped")

    ref, _ = reference
    args, out, uri = _run_args(tmp_path, reference)
    monkeypatch.setattr(phases, "robustness", signalled)
    assert main(args) == 143
    expected = "mtl-bench: stopped by SIGTERM after epoch 3 of 3; continue with: " + shlex.join(["mtl-bench", *args])
    assert _last_line(capsys.readouterr().err) == expected + " --resume"
    assert not (out / "results.json").exists()
    monkeypatch.setattr(phases, "robustness", real)
    assert main([*args, "--resume"]) == 0
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert b["tasks"] == a["tasks"] and b["cost"]["steps"] == 9


def test_a_stop_before_the_first_epoch_says_start_again_without_resume(tmp_path, data_dir, monkeypatch, capsys):
    import mtl_bench.commands.phases as fit

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the data is prepared: stops at once
        raise AssertionError("not stopped")

    monkeypatch.setattr(fit, "prepare_suite", signalled)
    args = ["run", "--suite", "ecommerce", "--profile", "smoke", "--set", f"data.dir={data_dir}", "--output-dir",
            str(tmp_path / "run"), "--tracking-uri", _uri(tmp_path / "m.db")]
    assert main(args) == 143
    assert _last_line(capsys.readouterr().err) == ("mtl-bench: stopped by SIGTERM before epoch 1 of 2 finished; start "
                                                   "again with: " + shlex.join(["mtl-bench", *args]))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_command_line_gets_one_resume_and_shell_quoting():
    assert command(["run", "--suite", "ecommerce", "--set", "data.dir=/a b"], add_resume=True) == (
        "mtl-bench run --suite ecommerce --set 'data.dir=/a b' --resume")
    assert command(["run", "--resume", "--suite", "x"], add_resume=True) == "mtl-bench run --resume --suite x"
    stop = Stopped(signal.SIGTERM)
    stop.where, stop.advice, stop.add_resume = "after epoch 3 of 15", "continue with", True
    assert stop.exit_code == 143 and Stopped(signal.SIGINT).exit_code == 130
    assert stop.line(["run", "--suite", "ecommerce"]) == (
        "mtl-bench: stopped by SIGTERM after epoch 3 of 15; continue with: mtl-bench run --suite ecommerce --resume")


def test_signals_someone_else_handles_are_left_to_them():
    """A sweep worker handles SIGINT/SIGTERM itself (sweeps/stops.py): the runs of its trials must not take them."""
    from mtl_bench.sweeps.stops import Stops

    with Stops().installed() as theirs:
        with handle_stops() as ours:
            assert ours is None and signal.getsignal(signal.SIGTERM) is theirs
    with handle_stops() as outer, handle_stops() as inner:  # compare -> run: one handler, shared
        assert outer is inner is not None and signal.getsignal(signal.SIGTERM) is outer
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
