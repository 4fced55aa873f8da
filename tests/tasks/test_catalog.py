"""Every task YAML validates; malformed files fail with one line naming the file, field and value."""

import pytest

from mtl_bench.errors import UserError
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.catalog import all_suites, all_tasks, get_suite, get_task, suite_tasks

TASK_NAMES = list(all_tasks())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_validates(name):
    spec = get_task(name)
    task_type = TASK_TYPES.get(spec.type)
    assert set(spec.metrics) <= set(task_type.metric_directions())
    assert spec.main_score in spec.metrics
    assert task_type.metric_directions()[spec.main_score] == spec.higher_is_better
    assert spec.description.strip()


def test_ecommerce_suite_has_the_four_task_types():
    suite = get_suite("ecommerce")
    types = {get_task(t).type for t in suite.tasks}
    assert types >= {"classification", "captioning", "tagging", "retrieval"}
    assert [s.name for s in suite_tasks("ecommerce")] == sorted(suite.tasks)
    assert "ecommerce" in all_suites()


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UserError, match="unknown suite 'ecomerce': did you mean 'ecommerce'"):
        get_suite("ecomerce")
    with pytest.raises(UserError, match="did you mean 'video-tagging'"):
        get_task("video-taging")


GOOD = """name: t1
version: 1
description: a task
type: classification
dataset: {subset: classification}
inputs: {image: image}
target: label
metrics: [accuracy]
main_score: accuracy
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed\n", "malformed YAML at line"),
        (GOOD.replace("version: 1", "version: one"), "field 'version' = 'one'"),
        (GOOD.replace("type: classification", "type: clasification"), "did you mean 'classification'"),
        (GOOD.replace("metrics: [accuracy]", "metrics: [acc]"), "field 'metrics' has 'acc'"),
        (GOOD.replace("main_score: accuracy", "main_score: macro_f1"), "field 'main_score' = 'macro_f1'"),
        (GOOD.replace("{image: image}", "{audio: wav}"), "unknown modality 'audio'"),
        (GOOD.replace("target: label\n", ""), "field 'target' = '(missing)'"),
        (GOOD + "higher_is_better: false\n", "field 'higher_is_better' = False"),
        (GOOD + "colour: red\n", "field 'colour'"),
    ],
)
def test_malformed_task_yaml(tmp_path, monkeypatch, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path))
    with pytest.raises(UserError) as err:
        all_tasks()
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_suite_with_unknown_task(tmp_path, monkeypatch):
    (tmp_path / "t1.yaml").write_text(GOOD)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "s.yaml").write_text("name: s\nversion: 1\ndescription: d\ntasks: [t1, t2]\n")
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path))
    with pytest.raises(UserError, match=r"s.yaml: field 'tasks' has unknown task 't2'"):
        all_suites()


def test_duplicate_task_names(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    monkeypatch.setenv("MTL_BENCH_TASKS", str(tmp_path))
    with pytest.raises(UserError, match="b.yaml: field 'name' = 't1': already defined in"):
        all_tasks()
