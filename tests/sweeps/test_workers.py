"""``mtl-bench sweep`` end to end: two worker processes on one study (PostgreSQL and sqlite), MLflow nesting,
kill -9 and rerun, and the report of a two-objective study. Each sweep is a few one-epoch smoke trials."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.conftest import ROOT, run_cli
from tests.sweeps.conftest import write_sweep

optuna.logging.set_verbosity(optuna.logging.ERROR)


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtl_bench", "sweep", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false"})


def finish(worker: subprocess.Popen) -> str:
    out, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err[-3000:]
    return out


def trials_run_by(stdout: str) -> set[int]:
    return {int(n) for n in re.findall(r"^trial (\d+): (?!not run)", stdout, re.MULTILINE)}


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_workers_share_one_study(backend, request, tmp_path, data_dir, tracking_uri):
    n_trials = 4
    # Trials of a few seconds, so that the second worker is up before the first could take every trial.
    sets = ["train.epochs=2", "train.limit_train_batches=4", "train.progress=false", "train.num_threads=1",
            f"data.dir={data_dir}"]
    sweep = write_sweep(tmp_path, data_dir, f"two-workers-{backend}", n_trials, set=sets)
    out = tmp_path / "out"
    if backend == "postgresql":
        storage = request.getfixturevalue("postgres_url")
        common = ["--storage", storage]
    else:  # both workers find the default sqlite file in the shared output folder
        storage = f"sqlite:///{out / 'study.db'}"
        common = []
    args = [str(sweep), *common, "--output-dir", str(out), "--tracking-uri", tracking_uri, "--heartbeat", "2"]
    workers = [start_worker(*args), start_worker(*args)]
    outputs = [finish(w) for w in workers]

    study = load(storage, sweep.stem)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == n_trials
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.PRUNED))
    ran = [trials_run_by(o) for o in outputs]
    assert ran[0] and ran[1], outputs  # both workers completed trials
    assert not ran[0] & ran[1]  # no trial number ran twice
    assert ran[0] | ran[1] == {t.number for t in complete}
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    for trial in complete:  # each trial's own folder, one results.json per seed
        assert (out / "trials" / str(trial.number) / "seed0" / "results.json").is_file()

    # MLflow: one parent run for the study; every trial a child of it; every seed run a child of its trial
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == sorted(t.number for t in complete)
    assert {r.data.tags["optuna.study"] for r in children} == {sweep.stem}
    assert {r.info.status for r in children} == {"FINISHED"}
    for trial in complete:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.metrics["objective/mean_main_score"] == pytest.approx(trial.value)
        assert run.data.params == {k: str(v) for k, v in trial.params.items()}
        seeds = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        assert len(seeds) == 1 and seeds[0].data.metrics["val/score"] is not None


def wait_until(worker: subprocess.Popen, storage: str, name: str, ready) -> list:
    """Poll the study until ``ready(trials)`` returns a trial; return (that trial, all trials)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.3)
        if not Path(storage.removeprefix("sqlite:///")).is_file():  # opening it would create it
            continue
        try:
            trials = load(storage, name).get_trials()
        except (KeyError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            continue  # not created yet, busy, or its tables half made (the worker is creating them right now)
        found = ready(trials)
        if found is not None:
            return found, trials
    raise AssertionError(f"the sweep never reached the awaited state: {worker.communicate()[1][-2000:]}")


def training(trials, retry_of=None):
    """A RUNNING trial that has its own MLflow run (so it is training and its heartbeat is in), after at least one
    COMPLETE trial; with ``retry_of``, the retry of that trial number."""
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    runs = {t.number: t.user_attrs.get("mlflow_run_id") for t in trials}
    for t in trials:
        if t.state != TrialState.RUNNING or time.time() - t.datetime_start.timestamp() < 0.5:
            continue
        if retry_of is None and runs[t.number]:
            return t
        if retry_of is not None and t.system_attrs.get("failed_trial") == retry_of and runs[t.number] not in (
                None, runs[retry_of]):  # a retry starts with a copy of the failed trial's attributes
            return t
    return None


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data_dir, tracking_uri):
    """A two-objective sweep stopped by Ctrl-C during a trial, rerun and killed with SIGKILL during the retry of
    that trial, then run a third time to the end."""
    folder = tmp_path_factory.mktemp("resume")
    # Trials long enough (3 epochs of 6 steps, a few seconds) that the poll below sees each one while it trains.
    slow = ["train.epochs=3", "train.limit_train_batches=6", "train.progress=false", "train.num_threads=1",
            f"data.dir={data_dir}"]
    sweep = write_sweep(folder, data_dir, "kill-resume", n_trials=3, objectives=2, set=slow)
    out = folder / "out"
    args = [str(sweep), "--output-dir", str(out), "--tracking-uri", tracking_uri, "--heartbeat", "1"]
    storage = f"sqlite:///{out / 'study.db'}"

    worker = start_worker(*args)
    interrupted, trials = wait_until(worker, storage, sweep.stem, training)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=300)
    assert worker.returncode == 130 and "run the same command again" in err, err[-3000:]
    before = {t.number: (t.values, (out / "trials" / str(t.number) / "seed0" / "results.json").stat().st_mtime)
              for t in trials if t.state == TrialState.COMPLETE}

    worker = start_worker(*args)
    killed, _ = wait_until(worker, storage, sweep.stem, lambda trials: training(trials, interrupted.number))
    worker.kill()  # SIGKILL: no cleanup, the trial stays RUNNING in the storage until its heartbeat is missed
    worker.communicate()

    again = run_cli("sweep", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    return load(storage, sweep.stem), before, interrupted.number, killed.number, again, out


def test_ctrl_c_kill_and_rerun_keep_completed_trials_and_retry_the_stopped_ones(resumed, tracking_uri):
    study, before, interrupted, killed, again, out = resumed
    trials = {t.number: t for t in study.get_trials()}
    complete = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and before
    for number, (values, mtime) in before.items():  # kept, not repeated
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
        assert (out / "trials" / str(number) / "seed0" / "results.json").stat().st_mtime == mtime
        assert f"trial {number}:" not in again.stdout
    # Ctrl-C failed its trial and queued it again; kill -9 left the retry RUNNING until the rerun saw no heartbeat
    assert trials[interrupted].state == trials[killed].state == TrialState.FAIL
    assert f"trial {killed}: its worker stopped beating" in again.stdout
    retried = [t for t in complete if t.system_attrs.get("retry_history") == [interrupted, killed]]
    assert len(retried) == 1 and retried[0].params == trials[interrupted].params == trials[killed].params
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for number in (interrupted, killed):
        assert client.get_run(trials[number].user_attrs["mlflow_run_id"]).info.status == "KILLED"


def test_report_of_a_two_objective_study_has_a_pareto_front_and_goes_to_mlflow(resumed, tracking_uri):
    study, _, _, _, _, out = resumed
    result = run_cli("sweep", "report", study.study_name, "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    text = (out / "report" / "report.md").read_text()
    assert "## Pareto front" in text and "## All trials" in text and "mean_main_score" in text
    assert "parameter importances need at least 5" in text  # 3 trials: said plainly, not computed
    front = text.split("## Pareto front")[1].split("##")[0]
    assert {int(n) for n in re.findall(r"^\| (\d+) \|", front, re.MULTILINE)} == {t.number for t in study.best_trials}
    assert (out / "report" / "pareto_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mlflow.tracking import MlflowClient

    logged = MlflowClient(tracking_uri).list_artifacts(study.user_attrs["mlflow_parent_run_id"], "report")
    assert {Path(a.path).name for a in logged} >= {"report.md", "trials.csv", "pareto_front.png"}
