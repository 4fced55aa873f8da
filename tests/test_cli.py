"""The CLI contract for bad input: one line naming what is wrong, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


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
def test_bad_input_exits_2_with_one_line(tmp_path, data_dir, args, message):
    out = tmp_path / "out"
    db = tmp_path / "mlflow.db"
    result = run_cli(
        "run", *args, "--output-dir", str(out), "--tracking-uri", f"sqlite:///{db}", "--set", f"data.dir={data_dir}",
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not db.exists()


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    result = run_cli("run", "--suite", "ecommerce", "--output-dir", str(tmp_path / "taken" / "run"))
    assert result.returncode == 2
    assert f"{tmp_path / 'taken'} exists and is not a folder" in result.stderr


def test_malformed_task_yaml_is_reported_with_its_file(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: x\nversion: 1\ndescription: d\ntype: tagging\n")
    result = run_cli("tasks", env={"MTL_BENCH_TASKS": str(tmp_path)})
    assert result.returncode == 2
    assert f"{tmp_path / 'broken.yaml'}: field 'dataset'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tasks_lists_suites_tasks_and_components():
    result = run_cli("tasks")
    assert result.returncode == 0, result.stderr
    from mtl_bench.fusion import FUSIONS
    from mtl_bench.sharing import SHARINGS
    from mtl_bench.weighting import WEIGHTINGS

    listed = set(result.stdout.replace(",", " ").split())
    for name in ("ecommerce", "product-classification", "product-captioning", "product-search", "video-tagging",
                 "classification", "captioning", "tagging", "retrieval",
                 *FUSIONS.names(), *SHARINGS.names(), *WEIGHTINGS.names()):
        assert name in listed, name
    assert "weighting (gradient-based): alignedmtl, cagrad" in result.stdout
