"""Leaderboards end to end: real submissions from ``compare --submit``, verified, stored, ranked and shown; and every
way a submission is turned away (changed scores or predictions, other data, too few seeds, duplicates, bad files)."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mtl_bench.cli import main
from mtl_bench.errors import UserError
from mtl_bench.leaderboard import store
from mtl_bench.leaderboard.definition import load_leaderboard
from mtl_bench.leaderboard.submission import make_submission
from tests.conftest import run_cli

DIRECTIONS = {"accuracy": True, "macro_f1": True, "bleu4": True, "rougeL": True, "cider": True, "map": True,
              "micro_f1": True} | {f"{way}_{m}": True for way in ("t2i", "i2t") for m in ("r1", "r5", "r10", "mrr")} | {
              "mean_recall": True}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def write(path: Path, submission: dict) -> Path:
    path.write_text(json.dumps(submission))
    return path


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``mtl-bench ARGS`` in this process: exit code, stdout, stderr (tests/test_cli.py runs the real entry point)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def rejected(path: Path, capsys: pytest.CaptureFixture) -> str:
    """Submit through the CLI, expect exit code 2 and one error line without a traceback; return the line."""
    code, out, err = cli(capsys, "leaderboard", "submit", str(path), "--leaderboard", "smoke")
    assert code == 2, (out, err[-2000:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_submission_holds_every_seed_with_predictions_and_provenance(submissions):
    sub = load(submissions["hard"])
    assert [r["results"]["seed"] for r in sub["runs"]] == [0, 1, 2]
    assert sub["name"] == "hard-early-ew" and "seed" not in sub["config"] and sub["config"]["sharing"]["name"] == "hard"
    assert set(sub["environment"]) == {"python", "platform", "torch", "device"} and sub["package_version"]
    predictions = sub["runs"][0]["predictions"]
    assert len(predictions["product-classification"]) == 64 and len(predictions["video-tagging"]) == 48
    assert all(isinstance(c, str) for c in predictions["product-captioning"])
    assert all(isinstance(row, list) and all(0 <= v <= 1 for v in row) for row in predictions["video-tagging"])
    run_dir = submissions["hard"].parents[1] / "runs" / "hard" / "seed0"
    assert load(run_dir / "predictions.json") == predictions  # the run kept them beside results.json


def hand_delta_p(method_runs: list[dict], baseline_runs: list[dict]) -> float:
    """LibMTL Δp per seed against the baseline's mean over seeds, then the mean over seeds (zero baselines skipped)."""
    tasks = baseline_runs[0]["results"]["tasks"]
    base = {t: {m: sum(r["results"]["tasks"][t]["metrics"][m] for r in baseline_runs) / len(baseline_runs)
                for m in tasks[t]["metrics"]} for t in tasks}
    per_seed = []
    for run in method_runs:
        task_means = []
        for t, metrics in base.items():
            gains = [(run["results"]["tasks"][t]["metrics"][m] - b) / b * (1 if DIRECTIONS[m] else -1)
                     for m, b in metrics.items() if b != 0]
            if gains:
                task_means.append(sum(gains) / len(gains))
        per_seed.append(100 * sum(task_means) / len(task_means))
    return sum(per_seed) / len(per_seed)


def test_valid_submissions_are_accepted_ranked_and_shown(board, submissions, tmp_path, capsys):
    """Both submissions fully verified: the first through the real entry point, the second in this process."""
    first = run_cli("leaderboard", "submit", str(submissions["single-task"]), "--leaderboard", "smoke")
    assert first.returncode == 0, first.stderr
    assert "rank 1 of 1" in first.stdout
    moved = load(submissions["hard"])  # the submitter's data cache is not the verifier's: it is not used
    for config in [moved["config"], *(r["results"]["config"] for r in moved["runs"])]:
        config["data"]["dir"] = "/nonexistent/cache"
    code, second, err = cli(capsys, "leaderboard", "submit", str(write(tmp_path / "hard.json", moved)),
                            "--leaderboard", "smoke")
    assert code == 0, err
    assert "accepted 'hard-early-ew'" in second

    code, csv, err = cli(capsys, "leaderboard", "show", "smoke", "--format", "csv")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(csv)).set_index("name")
    assert sorted(frame.index) == ["hard-early-ew", "single-task-early-ew"]
    assert frame.loc["single-task-early-ew", "delta_p"] == 0.0
    hard, single = load(submissions["hard"])["runs"], load(submissions["single-task"])["runs"]
    assert frame.loc["hard-early-ew", "delta_p"] == pytest.approx(hand_delta_p(hard, single), rel=1e-6)
    accuracy = [r["results"]["tasks"]["product-classification"]["metrics"]["accuracy"] for r in hard]
    assert frame.loc["hard-early-ew", "product-classification/accuracy"] == pytest.approx(sum(accuracy) / 3)
    expected_order = sorted(frame.index, key=lambda n: -frame.loc[n, "delta_p"])
    assert [frame.index[int(r) - 1] for r in sorted(frame["rank"])] == list(frame.index)
    assert list(frame.sort_values("rank").index) == expected_order
    rank = int(frame.loc["hard-early-ew", "rank"])
    assert f"rank {rank} of 2" in second

    readme = (board / "smoke" / "README.md").read_text()
    assert "hard-early-ew" in readme and "single-task-early-ew" in readme and "Δp" in readme
    code, table, _ = cli(capsys, "leaderboard", "show", "smoke")
    assert code == 0 and "hard-early-ew" in table and "±" in table
    stored = load(board / "smoke" / "submissions" / "hard-early-ew.json")
    assert stored["accepted"]["digest"] and stored["runs"] == moved["runs"]


def test_a_changed_metric_is_rejected_naming_what_differs(board, submissions, tmp_path, capsys):
    sub = load(submissions["hard"])
    claims = sub["runs"][1]["results"]["tasks"]["product-classification"]["metrics"]
    true_value = claims["accuracy"]
    claims["accuracy"] = true_value + 0.05
    message = rejected(write(tmp_path / "changed.json", sub), capsys)
    assert "seed 1, task product-classification, metric accuracy" in message
    assert f"claimed {true_value + 0.05:.6f}, recomputed {true_value:.6f}" in message
    assert not list(board.rglob("submissions/*.json"))


def test_changed_predictions_no_longer_match_the_claimed_scores(board, submissions, tmp_path, capsys):
    sub = load(submissions["hard"])
    sub["runs"][2]["predictions"]["product-captioning"] = ["a red shirt"] * 64
    message = rejected(write(tmp_path / "changed.json", sub), capsys)
    assert "seed 2, task product-captioning, metric" in message and "recomputed" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update(data_fingerprint="0" * 64), "field 'data_fingerprint' = '0000"),
        (lambda s: s["runs"][0]["results"].update(data_fingerprint="abc"), "field 'runs.0.results.data_fingerprint'"),
        (lambda s: s.update(runs=s["runs"][:2]), "2 seed(s) (0, 1); leaderboard smoke needs at least 3"),
        (lambda s: s["runs"][2]["results"].update(seed=0), "seed 0 appears twice"),
        (lambda s: s.update(suite_version=1), "field 'suite_version' = 1: leaderboard smoke expects 2"),
        (lambda s: s.pop("environment"), "field 'environment' = '(missing)': Field required"),
        (lambda s: s["runs"][0]["predictions"]["product-classification"].__setitem__(3, 999),
         "field 'runs.0.predictions.product-classification': sample 3: 999 is not a class id"),
        (lambda s: s["runs"][0]["predictions"]["video-tagging"].pop(), "47 predictions for 48 test samples"),
        (lambda s: s["runs"][1]["predictions"].pop("video-tagging"), "field 'runs.1.predictions': missing video-tag"),
        (lambda s: s["runs"][1]["results"]["config"]["model"].update(dim=64), "differs from field 'config' beyond"),
    ],
    ids=["fingerprint", "seed-fingerprint", "too-few-seeds", "seed-twice", "suite-version", "schema", "class-id",
         "count", "missing-task", "config"],
)
def test_invalid_submissions_are_rejected_in_one_line(board, submissions, tmp_path, change, expected):
    sub = load(submissions["hard"])
    change(sub)
    path = write(tmp_path / "bad.json", sub)
    with pytest.raises(UserError, match="") as info:
        store.submit(path, "smoke")
    assert expected in str(info.value) and str(path) in str(info.value)


def test_duplicates_and_taken_names_are_rejected(board, submissions, tmp_path, capsys):
    store.submit(submissions["hard"], "smoke")
    assert "duplicate: the same predictions were accepted before as 'hard-early-ew'" in rejected(
        write(tmp_path / "copy.json", load(submissions["hard"]) | {"name": "my-copy"}), capsys)
    with pytest.raises(UserError, match="already has a submission of that name"):
        store.submit(submissions["single-task"], "smoke", name="hard-early-ew")
    assert rejected(tmp_path / "missing.json", capsys).endswith("cannot read submission: No such file or directory\n")


def _variant(sub: dict, i: int) -> dict:
    """A different submission (one classification prediction of seed 0 changed, so another digest); its claimed
    scores are left as they are: the lock test below skips verification."""
    out = copy.deepcopy(sub)
    out["name"] = f"variant-{i}"
    rows = out["runs"][0]["predictions"]["product-classification"]
    rows[i] = (rows[i] + 1) % 18  # product-classification has 18 classes
    return out


# Forks one child per file from an interpreter that imported the store once and ranked one entry without writing it
# (so the children share what ranking imports: the task types, torch); the children wait on a pipe until all exist,
# then submit at once, each with its own lock file handle. Verification is replaced by a no-op: it runs outside the
# lock (store.py) and the tests above check it on real submissions; here only the lock is under test.
_CONCURRENT_SUBMITS = """
import json, os, sys, traceback
from pathlib import Path
from mtl_bench.errors import UserError
from mtl_bench.leaderboard import store
from mtl_bench.leaderboard.definition import load_leaderboard
from mtl_bench.leaderboard.render import board_frame, markdown
from mtl_bench.leaderboard.submission import read_submission
assert callable(store.verify)
store.verify = lambda *args, **kwargs: None
files = json.loads(sys.argv[1])
spec = load_leaderboard("smoke")
markdown(spec, board_frame(spec, [read_submission(Path(files[0]))]))
start, release = os.pipe()
children = {}
for file in files:
    pid = os.fork()
    if pid == 0:
        os.close(release)
        os.read(start, 1)
        try:
            store.submit(file, "smoke")
            code, message = 0, ""
        except UserError as exc:
            code, message = 2, str(exc)
        except BaseException:
            code, message = 1, traceback.format_exc()
        with open(file + ".outcome", "w") as out:
            json.dump([code, message], out)
        os._exit(code)
    children[pid] = file
os.close(start)
os.write(release, b"x" * len(files))
for pid in children:
    os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the concurrent submitters are forked")
def test_twenty_concurrent_submits_leave_twenty_entries_and_no_broken_file(board, submissions, tmp_path):
    sub = load(submissions["hard"])
    paths = [str(write(tmp_path / f"v{i}.json", _variant(sub, i))) for i in range(20)]
    copies = [str(write(tmp_path / f"c{k}.json", _variant(sub, 0) | {"name": f"copy-{k}"})) for k in "ab"]
    done = subprocess.run([sys.executable, "-c", _CONCURRENT_SUBMITS, json.dumps(paths + copies)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = [json.loads(Path(p + ".outcome").read_text()) for p in paths + copies]
    assert not [m for rc, m in outcomes if rc == 1], [m for rc, m in outcomes if rc == 1][0]

    stored = sorted((board / "smoke" / "submissions").glob("*.json"))
    assert len(stored) == 20 and sum(rc == 0 for rc, _ in outcomes) == 20
    names = {load(p)["name"] for p in stored}  # every file parses
    assert names >= {f"variant-{i}" for i in range(1, 20)}
    same = names & {"variant-0", "copy-a", "copy-b"}
    assert len(same) == 1  # three submits of the same predictions: exactly one lands
    assert sum(rc == 2 and "duplicate" in m for rc, m in outcomes) == 2
    assert not [p for p in (board / "smoke").rglob("*") if p.name.endswith(".tmp")]
    readme = (board / "smoke" / "README.md").read_text()
    assert all(name in readme for name in names)
    _, frame = store.show("smoke")
    assert sorted(frame["name"]) == sorted(names)


def test_leaderboard_definition_errors_name_the_field(board, capsys):
    text = (board / "smoke.yaml").read_text()
    (board / "smoke.yaml").write_text(text.replace("cider", "bleu4"))
    with pytest.raises(UserError, match=r"smoke.yaml: field 'tasks.product-captioning' = 'bleu4': the task's main"):
        load_leaderboard("smoke")
    (board / "smoke.yaml").write_text(text.replace("rank_by: delta_p", "rank_by: best"))
    with pytest.raises(UserError, match=r"smoke.yaml: field 'rank_by' = 'best'"):
        load_leaderboard("smoke")
    with pytest.raises(UserError, match="unknown leaderboard 'smok'"):
        load_leaderboard("smok")
    assert cli(capsys, "leaderboard", "show", "nope")[0] == 2


def test_runs_without_predictions_predict_again_from_their_best_checkpoint(submissions, tmp_path):
    run_dir = submissions["hard"].parents[1] / "runs" / "hard" / "seed1"
    copy_dir = tmp_path / "seed1"
    shutil.copytree(run_dir, copy_dir)
    kept = load(copy_dir / "predictions.json")
    (copy_dir / "predictions.json").unlink()
    again = make_submission([copy_dir])["runs"][0]["predictions"]
    assert again == kept  # the checkpoint reproduces the run's own predictions exactly
    assert load(copy_dir / "predictions.json") == kept  # and they are kept for next time
    shutil.rmtree(copy_dir / "checkpoints")
    (copy_dir / "predictions.json").unlink()
    with pytest.raises(UserError, match="no best.ckpt"):
        make_submission([copy_dir])


def test_run_submit_writes_a_one_seed_submission_that_a_three_seed_board_turns_away(board, data_dir, tmp_path,
                                                                                     capsys):
    out = tmp_path / "run"
    code, stdout, err = cli(
        capsys, "run", "--suite", "ecommerce", "--profile", "smoke", "--seed", "4", "--output-dir", str(out),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--submit", "--set", f"data.dir={data_dir}",
        "--set", "train.epochs=1", "--set", "train.limit_train_batches=2", "--set", "train.progress=false")
    assert code == 0, err[-2000:]
    assert f"submission: {out / 'submission.json'}" in stdout
    sub = load(out / "submission.json")
    assert [r["results"]["seed"] for r in sub["runs"]] == [4]
    assert sub["runs"][0]["predictions"] == load(out / "predictions.json")
    assert "1 seed(s) (4); leaderboard smoke needs at least 3" in rejected(out / "submission.json", capsys)
