"""The CLI contract for bad input: one line naming what is wrong, exit code 2, no traceback, nothing written, and
no heavy import before the answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtl_bench.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "ecomerce"], "unknown suite 'ecomerce': did you mean 'ecommerce'?"),
        (["--suite", "ecommerce", "--sharing", "hardd"], "unknown sharing 'hardd': did you mean 'hard'?"),
        (["--suite", "ecommerce", "--fusion", "erly"], "unknown fusion 'erly': did you mean 'early'?"),
        (["--suite", "ecommerce", "--weighting", "eww"], "unknown weighting 'eww': did you mean 'ew'?"),
        (["--suite", "ecommerce", "--set", "train.batch_sise=4"], "train has no field 'batch_sise'"),
        (["--suite", "ecommerce", "--set", "train.epochs=many"], "field 'train.epochs' = 'many'"),
        (["--suite", "ecommerce", "--profile", "fast"], "unknown profile 'fast'"),
        (
            ["--suite", "ecommerce", "--profile", "smoke", "--set", "sharing.options.foo=1"],
            "sharing 'hard' got unknown options ['foo']",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, data_dir, capsys, args, message):
    out = tmp_path / "out"
    db = tmp_path / "mlflow.db"
    code = main(["run", *args, "--output-dir", str(out), "--tracking-uri", f"sqlite:///{db}", "--set",
                 f"data.dir={data_dir}"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists() and not db.exists()


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["run", "--suite", "ecommerce", "--output-dir", str(tmp_path / "taken" / "run")]) == 2
    assert f"{tmp_path / 'taken'} exists and is not a folder" in capsys.readouterr().err


def test_malformed_task_yaml_is_reported_with_its_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken.yaml").write_text("name: x\nversion: 1\ndescription: d\ntype: tagging\n")
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path))
    assert main(["tasks"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'broken.yaml'}: field 'dataset'" in err
    assert len(err.strip().splitlines()) == 1


def test_tasks_lists_suites_tasks_and_components(capsys):
    assert main(["tasks"]) == 0
    from mtl_bench.fusion import FUSIONS
    from mtl_bench.sharing import SHARINGS
    from mtl_bench.weighting import WEIGHTINGS

    stdout = capsys.readouterr().out
    listed = set(stdout.replace(",", " ").split())
    for name in ("ecommerce", "product-classification", "product-captioning", "product-search", "video-tagging",
                 "classification", "captioning", "tagging", "retrieval",
                 *FUSIONS.names(), *SHARINGS.names(), *WEIGHTINGS.names()):
        assert name in listed, name
    assert "weighting (gradient-based): alignedmtl, cagrad" in stdout


# Bad input is answered before any heavy import (issue 14), by the real entry point: every case runs as
# ``python -m mtl_bench ARGS`` does (``runpy`` on ``mtl_bench.__main__``, sys.argv set), all in one fresh
# interpreter, which reports after each case its exit code, its stderr, whether an exception escaped (Python would
# print its traceback) and which heavy packages had been imported. The cases above run in this process.
HEAVY = ("torch", "lightning", "mlflow", "torchmetrics", "pandas", "datasets")
EARLY_CASES = {
    "sharing": (["run", "--suite", "ecommerce", "--sharing", "hardd"], "unknown sharing 'hardd': did you mean 'hard'?"),
    "fusion": (["run", "--suite", "ecommerce", "--fusion", "erly"], "unknown fusion 'erly': did you mean 'early'?"),
    "weighting": (["run", "--suite", "ecommerce", "--weighting", "eww"], "unknown weighting 'eww': did you mean 'ew'?"),
    "set key": (["run", "--suite", "ecommerce", "--set", "train.batch_sise=4"],
                "--set train.batch_sise=4: train has no field 'batch_sise': did you mean 'batch_size'?"),
    "set type": (["run", "--suite", "ecommerce", "--set", "train.epochs=many"],
                 "--set: field 'train.epochs' = 'many': Input should be a valid integer"),
    "suite": (["run", "--suite", "ecomerce"], "unknown suite 'ecomerce': did you mean 'ecommerce'?"),
    "profile": (["run", "--suite", "ecommerce", "--profile", "fast"], "unknown profile 'fast': did you mean"),
    "config file field": (["run", "--suite", "ecommerce", "--config", "{tmp}/bad.yaml"],
                          "bad.yaml: field 'train.epochz' = 3: Extra inputs are not permitted"),
    "config file yaml": (["run", "--suite", "ecommerce", "--config", "{tmp}/broken.yaml"], "broken.yaml: cannot read"),
    "compare name": (["compare", "--suite", "ecommerce", "--grid", "weighting=ew,eww"],
                     "unknown weighting 'eww': did you mean 'ew'?"),
    "compare key": (["compare", "--suite", "ecommerce", "--grid", "model.dimm=8,16"], "model has no field 'dimm'"),
    "pretrain suite": (["pretrain", "--suite", "ecomerce"], "unknown suite 'ecomerce': did you mean 'ecommerce'?"),
    "pretrain profile": (["pretrain", "--suite", "ecommerce", "--profile", "fast"], "unknown profile 'fast'"),
    "distill student": (["distill", "--teacher", "{tmp}/teacher", "--student", "huge"],
                        "--student 'huge': expected one of small, tiny"),
    "distill set": (["distill", "--teacher", "{tmp}/teacher", "--set", "weighting.name=eww"],
                    "unknown weighting 'eww': did you mean 'ew'?"),
    "distill profile": (["distill", "--teacher", "{tmp}/teacher", "--profile", "fast"], "unknown profile 'fast'"),
    "distill teacher": (["distill", "--teacher", "{tmp}/nothing"], "--teacher {tmp}/nothing: no results.json"),
}
_EARLY_SCRIPT = """
import contextlib, io, json, runpy, sys
out = {}
for label, argv in json.loads(sys.argv[1]).items():
    err, escaped, rc = io.StringIO(), None, None
    sys.argv = ["mtl-bench", *argv]
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_module("mtl_bench", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            rc = exc.code
        except BaseException as exc:
            escaped = repr(exc)
    out[label] = {"rc": rc, "stderr": err.getvalue(), "escaped": escaped,
                  "heavy": [m for m in HEAVY if m in sys.modules]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def early_answers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("early")
    (tmp / "bad.yaml").write_text("train:\n  epochz: 3\n")
    (tmp / "broken.yaml").write_text("train: [unclosed\n")
    teacher = tmp / "teacher"
    (teacher / "checkpoints").mkdir(parents=True)
    (teacher / "checkpoints" / "best.ckpt").write_bytes(b"")  # never opened: the checks fail first
    (teacher / "results.json").write_text("{}")
    from mtl_bench.config.load import build_config

    (teacher / "config.json").write_text(build_config("ecommerce", "smoke").model_dump_json())
    before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    cases = {label: [a.replace("{tmp}", str(tmp)) for a in argv] for label, (argv, _) in EARLY_CASES.items()}
    script = f"HEAVY = {HEAVY!r}\n{_EARLY_SCRIPT}"
    done = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], cwd=tmp, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(tmp) for p in tmp.rglob("*")) == before  # nothing written
    return tmp, json.loads(done.stdout)


@pytest.mark.parametrize("label", list(EARLY_CASES))
def test_bad_input_is_answered_before_heavy_imports(early_answers, label):
    tmp, answers = early_answers
    answer = answers[label]
    expected = EARLY_CASES[label][1].replace("{tmp}", str(tmp))
    lines = answer["stderr"].strip().splitlines()
    assert answer["escaped"] is None and answer["rc"] == 2, answer
    assert len(lines) == 1 and lines[0].startswith("mtl-bench: error: ") and expected in lines[0], answer
    assert answer["heavy"] == [], f"{label}: imported {answer['heavy']} before answering"
