"""results.json read back through the schema: the same ``Results`` as written, and one line naming the file and
the field when a file does not fit."""

from __future__ import annotations

import json
import re

import pytest

from mtl_bench.errors import UserError
from mtl_bench.results.io import read_results, write_json_atomic
from mtl_bench.training.resume import finished_results
from tests.results.make import make_results, task_result


def test_a_written_results_json_reads_back_equal(tmp_path):
    results = make_results(seed=3, tasks={"t": task_result("map", {"map": float("nan"), "micro_f1": 0.25})})
    write_json_atomic(tmp_path / "results.json", results.model_dump(mode="json"))
    back = read_results(tmp_path / "results.json")
    assert back.seed == 3 and back.tasks["t"].metrics["micro_f1"] == 0.25
    assert json.dumps(back.model_dump(mode="json")) == json.dumps(results.model_dump(mode="json"))  # NaN kept
    assert finished_results(tmp_path) == back
    assert finished_results(tmp_path / "elsewhere") is None  # no results.json: not finished


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    ('{"suite": "ecommerce"}', "field 'suite_version' = '(missing)': Field required"),
])
def test_a_file_that_does_not_fit_is_one_line_naming_it(tmp_path, text, message):
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(UserError, match="^" + re.escape(f"{tmp_path / 'results.json'}: ")) as caught:
        read_results(tmp_path / "results.json")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(UserError, match="cannot read results"):
        read_results(tmp_path / "none.json")
