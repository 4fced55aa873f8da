"""The worker loop without training (a stand-in objective): the trial budget, reruns, Ctrl-C, surplus trials,
repeated failures, joining checks, objective values, and one-line errors."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from mtl_bench.cli import main
from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.results import baselines
from mtl_bench.sweeps import objectives, report, runner
from mtl_bench.sweeps.runner import SurplusTrial, _claim, sweep
from mtl_bench.sweeps.space import suggest
from tests.results.make import make_results, task_result
from tests.sweeps.conftest import write_sweep

optuna.logging.set_verbosity(optuna.logging.ERROR)


def fake_score(params: dict) -> float:
    return {"hard": 0.1, "mmoe": 0.2}[params["sharing.name"]] + {"early": 0.01, "late": 0.02}[params["fusion.name"]]


@pytest.fixture
def fake_trials(monkeypatch):
    """Replace training by a pure function of the params; ``plan[number]`` may raise instead."""
    plan: dict[int, BaseException] = {}

    def run_trial(trial, ctx):
        params = suggest(trial, ctx.spec.space)
        if trial.number in plan:
            raise plan[trial.number]
        return fake_score(params)

    monkeypatch.setattr(runner, "run_trial", run_trial)
    return plan


@pytest.fixture
def sweep_setup(tmp_path, data_dir, tracking_uri):
    path = write_sweep(tmp_path, data_dir, "fake", n_trials=3)
    kwargs = dict(output_dir=tmp_path / "out", tracking_uri=tracking_uri, heartbeat=1)
    return path, kwargs, f"sqlite:///{tmp_path / 'out' / 'study.db'}"


def states(url: str, name: str = "fake") -> list[tuple[int, str]]:
    return [(t.number, t.state.name) for t in optuna.load_study(study_name=name, storage=url).trials]


def test_exactly_n_trials_then_a_rerun_with_a_larger_budget_continues(fake_trials, sweep_setup):
    path, kwargs, url = sweep_setup
    first = sweep(path, **kwargs)
    assert (first.finished, first.ran) == (3, [0, 1, 2]) and first.best.startswith("best: trial")
    values = [t.value for t in optuna.load_study(study_name="fake", storage=url).trials]
    again = sweep(path, **kwargs)  # already done: nothing runs
    assert again.ran == []
    more = sweep(path, n_trials=5, **kwargs)
    assert more.ran == [3, 4] and states(url) == [(i, "COMPLETE") for i in range(5)]
    study = optuna.load_study(study_name="fake", storage=url)
    assert [t.value for t in study.trials[:3]] == values
    assert all(t.value == pytest.approx(fake_score(t.params)) for t in study.trials)


def test_ctrl_c_fails_the_running_trial_and_a_rerun_retries_its_params(fake_trials, sweep_setup):
    path, kwargs, url = sweep_setup
    fake_trials[1] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        sweep(path, **kwargs)
    assert states(url) == [(0, "COMPLETE"), (1, "FAIL"), (2, "WAITING")]
    del fake_trials[1]
    sweep(path, **kwargs)
    study = optuna.load_study(study_name="fake", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params and study.trials[2].system_attrs["failed_trial"] == 1


def test_failing_trials_are_recorded_and_three_in_a_row_stop_the_worker(fake_trials, sweep_setup):
    path, kwargs, url = sweep_setup
    for number in range(3):
        fake_trials[number] = RuntimeError(f"boom {number}")
    with pytest.raises(UserError, match="3 trials in a row failed.*trial 2: RuntimeError: boom 2"):
        sweep(path, **kwargs)
    assert "boom 0" in (kwargs["output_dir"] / "trials" / "0" / "error.txt").read_text()
    fake_trials.clear()
    assert sweep(path, **kwargs).ran == [3, 4, 5]


def test_a_trial_is_surplus_when_finished_and_lower_running_or_waiting_trials_fill_the_budget():
    study = optuna.create_study()
    done = study.ask()
    study.tell(done, 1.0)
    running = study.ask()
    study.enqueue_trial({"x": 1.0})  # number 2, WAITING
    late = study.ask()  # pops the waiting trial 2
    newest = study.ask()  # number 3
    _claim(study, running, n_trials=2)  # finished 1 + nothing below it: goes
    _claim(study, late, n_trials=3)  # finished 1 + running 1 below it
    with pytest.raises(SurplusTrial):
        _claim(study, late, n_trials=2)
    with pytest.raises(SurplusTrial):
        _claim(study, newest, n_trials=3)  # 1 finished, 1 running and 1 popped below it
    assert newest.user_attrs["surplus"] is True and "surplus" not in running.user_attrs


def test_a_different_sweep_or_tracking_store_cannot_join_a_study(fake_trials, sweep_setup, tmp_path, data_dir):
    path, kwargs, _ = sweep_setup
    sweep(path, **kwargs)
    (tmp_path / "other").mkdir()
    changed = write_sweep(tmp_path / "other", data_dir, "fake", n_trials=3, pruner="none")
    with pytest.raises(UserError, match="created by a different sweep: field 'pruner'"):
        sweep(changed, **kwargs)
    with pytest.raises(UserError, match="is tracked in"):
        sweep(path, **{**kwargs, "tracking_uri": "sqlite:///elsewhere.db"})
    with pytest.raises(UserError, match="--profile smok: did you mean 'smoke'"):
        sweep(path, profile="smok", **kwargs)


def test_objectives_read_validation_scores_and_costs_and_delta_against_the_baselines_validation(tmp_path):
    def results(sharing, acc, cider, test_acc):
        config = RunConfig.model_validate({"suite": "ecommerce", "sharing": {"name": sharing}, "model": {"dim": 32}})
        return make_results(
            config=config.model_dump(mode="json"),
            tasks={"c": task_result("accuracy", {"accuracy": test_acc}, best_val={"accuracy": acc}),
                   "p": task_result("cider", {"cider": 0.3}, type="captioning", best_val={"cider": cider})},
            cost={"params": 100, "step_ms": 2.5, "flops_per_sample": {"c": 10, "p": 30}},
        )

    base, method = results("single-task", 0.5, 0.2, 0.9), results("hard", 0.6, 0.1, 0.1)
    base_file = tmp_path / "base.json"
    base_file.write_text(json.dumps(base.model_dump(mode="json")))
    baselines.store(base, base_file, tmp_path / "store")
    two = [method, results("hard", 0.8, 0.3, 0.1)]
    assert objectives.objective_value("mean_main_score", two) == pytest.approx(((0.6 + 0.1) / 2 + 0.55) / 2)
    assert objectives.objective_value("task:c", two) == pytest.approx(0.7)
    assert objectives.objective_value("flops_per_sample", two) == 40
    assert objectives.objective_value("step_ms", two) == 2.5
    # Δp on validation: classification +20 %, captioning -50 %: mean -15 % (test scores would say otherwise)
    assert objectives.objective_value("delta_p", [method], tmp_path / "store") == pytest.approx(-15.0)
    assert objectives.objective_value("delta_m", [method], tmp_path / "store") == pytest.approx(15.0)
    with pytest.raises(UserError, match="needs a single-task baseline.*mtl-bench run --suite ecommerce"):
        objectives.objective_value("delta_p", [method], tmp_path / "empty")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--storage", "postgresql://postgres:secret@127.0.0.1:1/nowhere"], "cannot open the study storage"),
        (["--storage", "nonsense"], "not a database URL"),
        (["--n-trials", "0"], "--n-trials 0"),
        (["extra"], "expected one sweep FILE"),
    ],
)
def test_sweep_errors_are_one_line(args, message, capsys, tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir, "err", n_trials=2)
    assert main(["sweep", str(path), *args, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "secret" not in err


def test_report_errors_are_one_line(capsys, tmp_path, fake_trials, sweep_setup):
    assert main(["sweep", "report", "fake", "--output-dir", str(tmp_path / "none")]) == 2
    assert "no sweep storage" in capsys.readouterr().err
    assert main(["sweep", "report", "fake", "--storage", f"sqlite:///{tmp_path / 'no.db'}"]) == 2
    assert "no sweep storage" in capsys.readouterr().err and not (tmp_path / "no.db").exists()
    path, kwargs, url = sweep_setup
    sweep(path, **kwargs)
    capsys.readouterr()
    assert main(["sweep", "report", "faek", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "no study 'faek'" in err and "did you mean 'fake'" in err and len(err.strip().splitlines()) == 1
    assert main(["sweep", "report"]) == 2 and "expected a study name" in capsys.readouterr().err
    assert main(["sweep", "report", "fake", "--storage", url, "--output-dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report" / "report.md").read_text()
    assert "## Best trial" in text and math.isfinite(optuna.load_study(study_name="fake", storage=url).best_value)
    assert (tmp_path / "r" / "report" / "history.png").is_file()


def test_report_with_enough_trials_has_importances_and_their_plot(fake_trials, sweep_setup, tmp_path):
    path, kwargs, url = sweep_setup
    sweep(path, n_trials=6, **kwargs)
    written = report.report("fake", output_dir=kwargs["output_dir"])
    text = written[0].read_text()
    importances = text.split("## Parameter importances")[1].split("##")[0]
    assert "| sharing.name |" in importances and "| fusion.name |" in importances
    assert {p.name for p in written} == {"report.md", "trials.csv", "history.png", "importances_mean_main_score.png"}
    assert text.count("| COMPLETE |") == 6


def test_pruning_reports_val_score_per_epoch_of_seed_0_and_marks_the_trial_and_its_runs(
    monkeypatch, tmp_path, data_dir, tracking_uri
):
    """The real trial code with a stand-in for training that logs ``val/score`` per epoch and calls the callbacks
    as Lightning would; the sixth trial scores far below the median and is pruned at epoch 1."""
    import torch

    import mtl_bench.commands.run as training_run
    from mtl_bench.tracking.tracker import EXPERIMENT_PREFIX, Tracker

    def fake_run(cfg, output_dir, tracking_uri, baselines_dir=None, parent_run_id=None, callbacks=None):
        tracker = Tracker(tracking_uri, f"{EXPERIMENT_PREFIX}/{cfg.suite}", "seed0",
                          tags={"mlflow.parentRunId": parent_run_id})
        bad = "trial 5" in tracker.client.get_run(parent_run_id).info.run_name
        try:
            for epoch in range(3):
                score = 0.01 if bad else 0.5 + 0.1 * epoch
                tracker.log_metrics({"val/score": score}, step=epoch)
                metrics = {"val/score": torch.tensor(score)}
                trainer = type("T", (), {"sanity_checking": False, "callback_metrics": metrics})
                for callback in callbacks or []:
                    callback.on_validation_end(trainer, type("M", (), {"current_epoch": epoch}))
        except BaseException:
            tracker.finish("FAILED")  # as commands/phases.py does
            raise
        tracker.finish()
        task = task_result("accuracy", {"accuracy": 0.0}, best_val={"accuracy": score})
        return make_results(tasks={"t": task}, mlflow={"tracking_uri": tracking_uri, "run_id": tracker.run_id})

    monkeypatch.setattr(training_run, "run", fake_run)
    path = write_sweep(tmp_path, data_dir, "prune", n_trials=6, pruner="median")
    summary = sweep(path, output_dir=tmp_path / "out", tracking_uri=tracking_uri, heartbeat=1)
    study = optuna.load_study(study_name="prune", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5 + ["PRUNED"] and summary.finished == 6
    assert study.trials[0].intermediate_values == pytest.approx({0: 0.5, 1: 0.6, 2: 0.7})
    assert study.trials[5].intermediate_values == pytest.approx({0: 0.01, 1: 0.01})  # stopped after epoch 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    pruned = client.get_run(study.trials[5].user_attrs["mlflow_run_id"])
    assert pruned.info.status == "KILLED" and pruned.data.tags["optuna.state"] == "PRUNED"
    seeds = client.search_runs([pruned.info.experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{pruned.info.run_id}'")
    assert [s.info.status for s in seeds] == ["KILLED"]
    assert [m.value for m in client.get_metric_history(pruned.info.run_id, "val/score")] == pytest.approx([0.01] * 2)
    done = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert done.data.metrics["objective/mean_main_score"] == pytest.approx(0.7)
