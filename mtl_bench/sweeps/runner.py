"""``mtl-bench sweep FILE``: one worker of a study; run it on as many processes or machines as you like.

- The study lives in an RDB storage: a sqlite file in the output folder by default, or ``--storage
  postgresql://...`` shared by every worker. The first worker creates it (the database's unique study name
  decides who is first), enqueues the balanced choices, creates the MLflow parent run and stores its id, the
  tracking URI and the sweep itself as study attributes, then marks the study ready; later workers and reruns
  wait for that mark and reuse all of it. A rerun with a different sweep file is refused.
- Exactly ``n_trials`` finished trials (COMPLETE or PRUNED) in total, whatever the number of workers: a worker
  starts a trial only while finished + running trials are fewer than ``n_trials``; two workers racing past that
  check are told apart by trial number (numbers follow creation order): a new trial whose lower-numbered
  running or waiting trials already fill the budget is a surplus trial, recorded as FAIL without training.
  A worker with nothing left to start waits while other trials run, in case one dies and its retry needs a hand.
- Stopping and rerunning continues the study: finished trials stay. Ctrl-C fails the running trial and enqueues
  its parameters again; a killed worker's trial is found by its missing heartbeat, failed and enqueued again.
- Each worker samples with its own seed (workers with one seed would propose the same points).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mtl_bench.errors import UserError
from mtl_bench.sweeps.load import load_sweep, with_overrides
from mtl_bench.sweeps.space import balanced_queue, directions, make_pruner, make_sampler
from mtl_bench.sweeps.spec import SweepSpec
from mtl_bench.sweeps.stops import Stops
from mtl_bench.sweeps.storage import default_storage, load_study, open_storage, shown
from mtl_bench.sweeps.trial import TrialContext, kill_runs, run_trial, trial_folder

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
READY_WAIT_S = 120  # how long a joining worker waits for the first worker to finish setting the study up
MAX_FAILURES = 3  # consecutive failed trials after which a worker stops (something is wrong with every trial)


class SurplusTrial(Exception):
    """The study's budget was already taken by other trials when this one started."""


class TrialFailed(Exception):
    """Training raised; the error is in the trial's folder and the sweep goes on."""


@dataclass(frozen=True)
class SweepSummary:
    study: str
    storage: str  # for messages (password masked)
    storage_given: bool  # False: the default sqlite file in output_dir
    output_dir: Path
    n_trials: int
    finished: int  # COMPLETE or PRUNED trials in the study
    ran: list[int]  # trial numbers this worker finished
    best: str  # one line: the best trial, or the size of the Pareto front


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sampler_seed(worker: str) -> int:
    """A seed of its own for each worker process (hostname, pid and start time)."""
    return int(hashlib.sha256(f"{worker}:{time.time_ns()}".encode()).hexdigest()[:8], 16)


def spec_record(spec: SweepSpec) -> dict[str, Any]:
    """What must match for a rerun or another worker to join a study: everything but the budget."""
    return {k: v for k, v in spec.model_dump(mode="json", by_alias=True).items() if k not in ("n_trials", "study")}


def sweep(
    path: str | Path,
    n_trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    profile: str | None = None,
    output_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    heartbeat: int = 30,
    baselines_dir: str | Path | None = None,
) -> SweepSummary:
    """Run trials of the sweep in ``path`` until its study has ``n_trials`` finished trials."""
    from mtl_bench.training.disk import check_writable

    if heartbeat < 1:
        raise UserError(f"--heartbeat {heartbeat}: expected at least 1 second")
    spec = with_overrides(load_sweep(path), path, profile=profile, n_trials=n_trials)
    name = study_name or spec.study
    out = Path(output_dir) if output_dir is not None else Path("runs") / "sweeps" / name
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(out)
    _quiet_libraries()
    worker = worker_name()
    uri_box: dict[str, str] = {}  # the tracking URI, known once the study is open; read by the dead-trial hook
    store = open_storage(url, heartbeat, on_dead_trial=lambda study, trial: _dead(uri_box, trial))
    study = _open_study(spec, name, store, url, sampler_seed(worker), tracking_uri)
    attrs = study.user_attrs
    uri = _tracking_uri(attrs, tracking_uri, name)
    uri_box["uri"] = uri
    from mtl_bench.tracking.tracker import EXPERIMENT_PREFIX, Tracker

    parent = Tracker(uri, f"{EXPERIMENT_PREFIX}/{spec.suite}", f"sweep {name}", run_id=attrs["mlflow_parent_run_id"])
    if parent.run_id != attrs["mlflow_parent_run_id"]:  # deleted from the MLflow store: the new one takes over
        study.set_user_attr("mlflow_parent_run_id", parent.run_id)
    ctx = TrialContext(spec, name, out, uri, parent.run_id, worker, Path(baselines_dir) if baselines_dir else None)
    print(f"study {name} in {shown(url)}: {_count(study, FINISHED)}/{spec.n_trials} trials finished; "
          f"worker {worker}; MLflow parent run {parent.run_id}", flush=True)
    try:
        with Stops().installed() as stops:
            ran = _work(study, ctx, spec.n_trials, min(heartbeat, 5), stops)
    except KeyboardInterrupt:
        parent.finish("KILLED")
        raise
    except BaseException:
        parent.finish("FAILED")
        raise
    parent.finish("FINISHED")
    finished = _count(study, FINISHED)
    return SweepSummary(name, shown(url), storage is not None, out, spec.n_trials, finished, ran,
                        _best_line(study, spec))


def _quiet_libraries() -> None:
    """Our own one line per trial instead of Optuna's log (which prints tracebacks of failed trials)."""
    from mtl_bench.training.trainer import quiet_libraries

    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _open_study(
    spec: SweepSpec, name: str, store: Any, url: str, seed: int, tracking_uri: str | None
) -> optuna.Study:
    """Create the study and set it up, or join it once its creator has set it up."""
    sampler, pruner = make_sampler(spec, seed), make_pruner(spec)
    try:
        study = optuna.create_study(storage=store, study_name=name, directions=directions(spec), sampler=sampler,
                                    pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = load_study(name, store, url, sampler=sampler, pruner=pruner)
        _wait_ready(study, url)
        _check_same_sweep(study, spec, name)
        return study
    study.set_metric_names([o.metric for o in spec.objectives])
    study.set_user_attr("sweep", spec_record(spec))
    study.set_user_attr("n_trials", spec.n_trials)
    for params in balanced_queue(spec):
        study.enqueue_trial(params, skip_if_exists=False)
    _set_up(study, spec, name, tracking_uri)
    return study


def _wait_ready(study: optuna.Study, url: str) -> None:
    deadline = time.monotonic() + READY_WAIT_S
    while "mlflow_parent_run_id" not in study.user_attrs:
        if time.monotonic() > deadline:
            raise UserError(f"study {study.study_name!r} in {shown(url)} was created but never set up (its first "
                            f"worker stopped during setup); delete it with: optuna delete-study --study-name "
                            f"{study.study_name} --storage URL, then rerun")
        time.sleep(0.2)


def _check_same_sweep(study: optuna.Study, spec: SweepSpec, name: str) -> None:
    stored, now = study.user_attrs.get("sweep", {}), spec_record(spec)
    for key in sorted(set(stored) | set(now)):
        if stored.get(key) != now.get(key):
            raise UserError(f"study {name!r} was created by a different sweep: field {key!r} was "
                            f"{json.dumps(stored.get(key))}, now {json.dumps(now.get(key))}; use --study-name for "
                            "a new study, or rerun with the same file and options")


def _tracking_uri(attrs: dict[str, Any], given: str | None, name: str) -> str:
    """The study's MLflow store: set by its creator; every worker and rerun must use the same one."""
    stored = attrs.get("tracking_uri")
    if stored is not None and given is not None and given != stored:
        raise UserError(f"--tracking-uri {given}: study {name!r} is tracked in {stored}; leave --tracking-uri out "
                        "or give that URI")
    return stored or given  # type: ignore[return-value]  (the creator stored one in _set_up)


def _dead(uri_box: dict[str, str], trial: optuna.trial.FrozenTrial) -> None:
    print(f"trial {trial.number}: its worker stopped beating; marked failed and its parameters queued again",
          flush=True)
    if "uri" in uri_box:
        kill_runs(uri_box["uri"], trial)


def _set_up(study: optuna.Study, spec: SweepSpec, name: str, tracking_uri: str | None) -> None:
    """The creator's part after the study exists: the MLflow parent run, its id, then the ready mark."""
    from mtl_bench.tracking.tracker import EXPERIMENT_PREFIX, Tracker, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    tags = {"mtl-bench.kind": "sweep", "optuna.study": name}
    parent = Tracker(uri, f"{EXPERIMENT_PREFIX}/{spec.suite}", f"sweep {name}", tags=tags)
    parent.log_params(spec_record(spec) | {"study": name})
    study.set_user_attr("tracking_uri", uri)
    study.set_user_attr("mlflow_parent_run_id", parent.run_id)  # last: joining workers wait for it


def _count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _work(study: optuna.Study, ctx: TrialContext, n_trials: int, poll: float, stops: Stops) -> list[int]:
    """Start trials while the budget allows; wait while others finish it; return the trials finished here."""
    ran: list[int] = []
    failures = 0
    waiting = False
    while True:
        if stops.requested:
            raise KeyboardInterrupt
        optuna.storages.fail_stale_trials(study)
        finished = _count(study, FINISHED)
        if finished >= n_trials:
            return ran
        if finished + _count(study, (TrialState.RUNNING,)) >= n_trials:
            if not waiting:
                print("budget taken by running trials; waiting for them to finish", flush=True)
            waiting = True
            time.sleep(poll)
            continue
        waiting = False
        outcome = _one_trial(study, ctx, n_trials, stops)
        if outcome is not None and outcome.state in FINISHED:
            ran.append(outcome.number)
        failures = failures + 1 if outcome is not None and outcome.state == TrialState.FAIL and \
            not outcome.user_attrs.get("surplus") else 0
        if failures >= MAX_FAILURES:
            error = outcome.user_attrs.get("error", "") if outcome is not None else ""
            raise UserError(f"{failures} trials in a row failed; stopping this worker. Last: trial "
                            f"{outcome.number if outcome else '?'}: {error}")


def _one_trial(
    study: optuna.Study, ctx: TrialContext, n_trials: int, stops: Stops
) -> optuna.trial.FrozenTrial | None:
    """Run one trial; its final state, or None when another worker already failed it as dead."""
    numbers: list[int] = []

    def objective(trial: optuna.Trial) -> float | list[float]:
        numbers.append(trial.number)
        _claim(study, trial, n_trials)
        trial.set_user_attr("worker", ctx.worker)
        trial.set_user_attr("output_dir", str(trial_folder(ctx.out, trial.number).resolve()))
        try:
            with stops.training():
                return run_trial(trial, ctx)
        except (optuna.TrialPruned, KeyboardInterrupt, UserError):
            raise
        except Exception as exc:
            if stops.requested:  # an error while shutting down after Ctrl-C (e.g. a busy MLflow store)
                raise KeyboardInterrupt from exc
            folder = trial_folder(ctx.out, trial.number)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(traceback.format_exc())
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise TrialFailed(str(exc)) from exc

    try:
        study.optimize(objective, n_trials=1, catch=(SurplusTrial, TrialFailed))
    except KeyboardInterrupt:
        if numbers:
            _requeue(study, numbers[-1])
        raise
    except optuna.exceptions.UpdateFinishedTrialError:
        print(f"trial {numbers[-1] if numbers else '?'}: another worker took it for dead (missed heartbeats) and "
              "queued it again; going on", flush=True)
        return None
    if not numbers:
        return None
    trial = _frozen(study, numbers[-1])
    _print_outcome(trial, ctx)
    return trial


def _frozen(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _claim(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> None:
    """Raise SurplusTrial when finished trials plus lower-numbered running or waiting ones fill the budget."""
    trials = study.get_trials(deepcopy=False)
    taken = sum(t.state in FINISHED or (t.number < trial.number and t.state in (TrialState.RUNNING,
                                                                                   TrialState.WAITING))
                for t in trials if t.number != trial.number)
    if taken >= n_trials:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"the study's {n_trials} trials were already finished or running")


def _requeue(study: optuna.Study, number: int) -> None:
    """After Ctrl-C: the interrupted trial (now FAIL) gets its parameters queued again, as a dead one would."""
    trial = _frozen(study, number)
    if trial.state == TrialState.FAIL and not trial.user_attrs.get("surplus"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
        print(f"trial {number}: interrupted; recorded as failed, its parameters queued again", flush=True)


def _print_outcome(trial: optuna.trial.FrozenTrial, ctx: TrialContext) -> None:
    params = _params(trial.params)
    if trial.user_attrs.get("surplus"):
        print(f"trial {trial.number}: not run, the budget was taken by other workers' trials", flush=True)
    elif trial.state == TrialState.COMPLETE:
        values = ", ".join(f"{o.metric}={_number(v)}" for o, v in zip(ctx.spec.objectives, trial.values, strict=True))
        print(f"trial {trial.number}: {params}: {values}", flush=True)
    elif trial.state == TrialState.PRUNED:
        print(f"trial {trial.number}: {params}: pruned at epoch {trial.last_step}", flush=True)
    else:
        print(f"trial {trial.number}: {params}: failed: {trial.user_attrs.get('error', '')} "
              f"(traceback in {trial_folder(ctx.out, trial.number) / 'error.txt'})", flush=True)


def _number(value: float) -> str:
    """4 significant digits, but counts (parameters, FLOPs) in full."""
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1e4 else f"{value:.4g}"


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_number(v) if isinstance(v, float) else v}" for k, v in params.items())


def _best_line(study: optuna.Study, spec: SweepSpec) -> str:
    if not _count(study, (TrialState.COMPLETE,)):
        return "no completed trial yet"
    if len(spec.objectives) == 1:
        best = study.best_trial
        return f"best: trial {best.number}, {spec.objectives[0].metric}={_number(best.value)}, " + \
            _params(best.params)
    return f"Pareto front: {len(study.best_trials)} trial(s): {sorted(t.number for t in study.best_trials)}"
