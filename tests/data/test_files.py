"""The ``files`` source: a task on the user's own CSV / JSONL / parquet file, from YAML only.

Every test builds tiny data in tmp_path: 14 x 20 px JPEGs (read at 16 px), 4-frame mp4 clips, a few dozen rows.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources.files.build import seeded_split
from mtl_bench.data.sources.files.load import load_files
from mtl_bench.data.sources.files.video import resize_crop, write_clip
from mtl_bench.errors import UserError
from mtl_bench.tasks.spec import TaskSpec
from tests.conftest import run_cli

KINDS = ["shirt", "shoe", "bag"]
SPLIT_OF = ["train"] * 8 + ["validation", "test"]  # row i goes to SPLIT_OF[i % 10]


def spec(
    options: dict,
    name: str = "mine",
    kind: str = "classification",
    inputs: dict | None = None,
    target: str = "category",
    subset: str = "my-products",
) -> TaskSpec:
    metric = {"classification": "accuracy", "tagging": "map", "captioning": "cider"}[kind]
    return TaskSpec(name=name, version=1, description="d", type=kind, target=target, metrics=[metric],
                    main_score=metric, inputs=inputs or {"image": "image_path", "text": "title"},
                    dataset={"source": "files", "subset": subset, "options": options})  # fmt: skip


def cfg(tmp_path: Path, path: Path | None = None, **kw) -> DataConfig:
    return DataConfig(dir=str(tmp_path / "cache"), path=None if path is None else str(path), image_size=16,
                      num_frames=4, **kw)  # fmt: skip


def product_rows(folder: Path, n: int = 20) -> list[dict]:
    """n rows with a JPEG each (img/<i>.jpg, a colour per row), a title, a category and a split."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        pixels = np.zeros((14, 20, 3), np.uint8)
        pixels[:] = (10 * i % 256, 255 - 7 * i % 256, 90)
        pixels[:, :4] = 255  # a band on the left, cropped away at 16 px
        Image.fromarray(pixels).save(folder / "img" / f"{i}.jpg", quality=95)
        rows.append({"id": i, "image_path": f"img/{i}.jpg", "title": f"product {i} in {KINDS[i % 3]} style",
                     "category": KINDS[i % 3], "split": SPLIT_OF[i % 10]})  # fmt: skip
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def titles_by_split(subset: datasets.DatasetDict) -> dict[str, list[str]]:
    return {split: list(ds["title"]) for split, ds in subset.items()}


# --- formats ------------------------------------------------------------------------------------------------------


def test_csv_jsonl_and_parquet_load_to_the_same_features_and_values(tmp_path):
    rows = product_rows(tmp_path)
    fingerprints = set()
    for suffix in (".csv", ".jsonl", ".parquet"):
        write_rows(tmp_path / f"products{suffix}", rows)
        options = {"data_files": f"products{suffix}", "split_column": "split"}
        loaded = load_files([spec(options)], cfg(tmp_path, tmp_path))
        subset = loaded.subsets["my-products"]
        train = subset["train"]
        assert train.features == datasets.Features({
            "category": datasets.ClassLabel(names=sorted(KINDS)), "image_path": datasets.Array3D((16, 16, 3), "uint8"),
            "title": datasets.Value("string")})  # fmt: skip
        assert {s: len(ds) for s, ds in subset.items()} == {"train": 16, "validation": 2, "test": 2}
        assert subset["test"]["title"] == ["product 9 in shirt style", "product 19 in shoe style"]
        first = train.with_format("numpy")[0]
        assert train.features["category"].int2str(int(first["category"])) == "shirt"
        with Image.open(tmp_path / "img" / "0.jpg") as image:
            np.testing.assert_array_equal(first["image_path"], resize_crop(image, 16))
        assert loaded.skipped == {} and "20 of 20 rows kept" in loaded.notes[0]
        fingerprints.add(loaded.fingerprint)
    assert len(fingerprints) == 1  # same content, same fingerprint, whatever the file format


def test_cache_is_keyed_by_file_bytes_not_size_and_mtime(tmp_path, monkeypatch):
    rows = product_rows(tmp_path, 10)
    path = write_rows(tmp_path / "p.csv", rows)
    options = {"data_files": "p.csv", "split_column": "split"}
    first = load_files([spec(options)], cfg(tmp_path, tmp_path))
    from mtl_bench.data.sources.files import build

    monkeypatch.setattr(build, "build", None)  # a second load must come from the cache
    again = load_files([spec(options)], cfg(tmp_path, tmp_path))
    assert again.fingerprint == first.fingerprint and again.notes == first.notes
    monkeypatch.undo()
    stat = path.stat()
    path.write_text(path.read_text().replace("product 3 in", "product 3 on"))  # same size ...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... same mtime
    changed = load_files([spec(options)], cfg(tmp_path, tmp_path))
    assert changed.fingerprint != first.fingerprint
    assert "product 3 on shirt style" in changed.subsets["my-products"]["train"]["title"]
    assert len(list((tmp_path / "cache").glob("files-v*-my-products-*"))) == 2


def test_tasks_sharing_a_subset_get_one_copy_with_every_column(tmp_path):
    rows = product_rows(tmp_path, 10)
    rows[2]["title"] = ""  # an empty caption: the row is left out for both tasks
    write_rows(tmp_path / "p.csv", rows)
    options = {"data_files": "p.csv", "split_column": "split", "labels": {"category": KINDS}}
    caption = spec(options, name="cap", kind="captioning", inputs={"image": "image_path"}, target="title")
    tasks = [spec(options), caption]
    loaded = load_files(tasks, cfg(tmp_path, tmp_path))
    assert list(loaded.subsets) == ["my-products"]
    assert sorted(loaded.subsets["my-products"]["train"].column_names) == ["category", "image_path", "title"]
    assert loaded.skipped["my-products"].examples == {"empty target": ["row 3: title"]}


# --- bad rows -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [KINDS, None])
def test_missing_image_corrupt_jpeg_and_unknown_label_are_skipped_and_reported(tmp_path, labels):
    rows = product_rows(tmp_path)
    rows[4]["image_path"] = "img/gone.jpg"
    (tmp_path / "img" / "broken.jpg").write_bytes((tmp_path / "img" / "5.jpg").read_bytes()[:120])
    rows[5]["image_path"] = "img/broken.jpg"
    rows[9]["category"] = "hat"  # a test row: unknown with the labels list, and never seen in training without it
    write_rows(tmp_path / "data" / "products.csv", rows)
    options = {"data_files": "data/products.csv", "media_root": ".", "split_column": "split"}
    loaded = load_files([spec(options | ({"labels": labels} if labels else {}))], cfg(tmp_path, tmp_path))
    skipped = loaded.skipped["my-products"]
    assert skipped.counts == {"file missing": 1, "image cannot be decoded": 1, "unknown label": 1}
    assert skipped.examples == {"file missing": ["row 5: img/gone.jpg"],
                                "image cannot be decoded": ["row 6: img/broken.jpg"],
                                "unknown label": ["row 10: 'hat'"]}  # fmt: skip
    subset = loaded.subsets["my-products"]
    assert sum(len(ds) for ds in subset.values()) == 17
    assert subset["train"].features["category"].names == (labels or sorted(KINDS))
    assert "product 4 in shoe style" not in subset["train"]["title"]


def test_unreadable_video_is_skipped_and_reported(tmp_path):
    frames = np.stack([np.full((16, 16, 3), 30 * k, np.uint8) for k in range(6)])
    write_clip(tmp_path / "good.mp4", frames)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows = [{"clip": "good.mp4", "tags": "zoom|red", "split": s} for s in ("train", "train", "val", "test")]
    rows.insert(2, {"clip": "bad.mp4", "tags": "zoom", "split": "train"})
    write_rows(tmp_path / "clips.csv", rows)
    options = {"data_files": "clips.csv", "split_column": "split"}
    task = spec(options, kind="tagging", inputs={"video": "clip"}, target="tags")
    loaded = load_files([task], cfg(tmp_path, tmp_path))
    assert loaded.skipped["my-products"].counts == {"video cannot be read": 1}
    assert loaded.skipped["my-products"].examples == {"video cannot be read": ["row 3: bad.mp4"]}
    train = loaded.subsets["my-products"]["train"]
    assert train.features["clip"] == datasets.Array4D((4, 16, 16, 3), "uint8")
    assert train.features["tags"].feature.names == ["red", "zoom"] and train["tags"] == [[1, 0], [1, 0]]
    clip = train.with_format("numpy")[0]["clip"]
    assert clip.shape == (4, 16, 16, 3) and clip[0].mean() < clip[-1].mean()  # frames in order, dark to light


# --- splits and targets -------------------------------------------------------------------------------------------


def test_split_column_is_honoured_with_synonyms_and_unknown_values_skipped(tmp_path):
    rows = [{"title": f"t{i}", "category": KINDS[i % 3], "split": s}
            for i, s in enumerate(["train", "TRAIN", "Training", "val", "dev", "test", "holdout"])]  # fmt: skip
    write_rows(tmp_path / "p.csv", rows)
    options = {"data_files": str(tmp_path / "p.csv"), "split_column": "split", "labels": KINDS}
    loaded = load_files([spec(options, inputs={"text": "title"})], cfg(tmp_path))  # absolute path, no data.path
    assert titles_by_split(loaded.subsets["my-products"]) == {
        "train": ["t0", "t1", "t2"], "validation": ["t3", "t4"], "test": ["t5"]}  # fmt: skip
    assert loaded.skipped["my-products"].examples == {"unknown split value": ["row 7: 'holdout'"]}


def test_seeded_split_is_deterministic_and_ignores_row_order(tmp_path):
    rows = [{"title": f"title {i}", "category": KINDS[i % 3]} for i in range(40)]
    write_rows(tmp_path / "a.jsonl", rows)
    write_rows(tmp_path / "b.jsonl", rows[::-1])
    split = {}
    for name, data_seed in (("a", 0), ("a", 0), ("b", 0), ("a", 1)):
        options = {"data_files": f"{name}.jsonl", "labels": KINDS}
        loaded = load_files([spec(options, inputs={"text": "title"})], cfg(tmp_path / name, tmp_path, seed=data_seed))
        by_split = titles_by_split(loaded.subsets["my-products"])
        assert [len(v) for v in by_split.values()] == [32, 4, 4]
        split[name, data_seed] = {s: sorted(v) for s, v in by_split.items()}
    assert split["a", 0] == split["b", 0] != split["a", 1]
    assert seeded_split(["x", "y", "z"], (0.8, 0.1, 0.1), 0).count(0) == 1  # tiny data: one row each


def test_tagging_targets_from_pipe_strings_and_json_lists(tmp_path):
    tags = [["red", "zoom"], ["blue"], [], ["red", "pan"], ["pan", "blue"], ["zoom"]]
    split = ["train", "train", "train", "train", "validation", "test"]
    as_text = ["red|zoom", "blue", "[]", '["red", "pan"]', " pan | blue ", "zoom"]  # pipes and JSON, in a CSV
    write_rows(tmp_path / "t.csv", [{"title": f"t{i}", "tags": t, "split": s}
                                    for i, (t, s) in enumerate(zip(as_text, split, strict=True))])  # fmt: skip
    write_rows(tmp_path / "t.jsonl", [{"title": f"t{i}", "tags": t, "split": s}
                                      for i, (t, s) in enumerate(zip(tags, split, strict=True))])  # fmt: skip
    with open(tmp_path / "t.jsonl", "a") as f:
        f.write("{not json\n")
    got = []
    for name in ("t.csv", "t.jsonl"):
        task = spec({"data_files": name, "split_column": "split"}, kind="tagging", inputs={"text": "title"},
                    target="tags")  # fmt: skip
        loaded = load_files([task], cfg(tmp_path / name.replace(".", "-"), tmp_path))
        subset = loaded.subsets["my-products"]
        names = subset["train"].features["tags"].feature.names
        assert names == ["blue", "pan", "red", "zoom"]
        got.append([[names[t] for t in row] for s in ("train", "validation", "test") for row in subset[s]["tags"]])
        skipped = loaded.skipped.get("my-products")
        assert (skipped.examples if skipped else {}) == ({"malformed line": ["row 7"]} if name == "t.jsonl" else {})
    assert got[0] == got[1] == tags


# --- data that does not match the YAML ----------------------------------------------------------------------------


def _error_cases(tmp_path: Path) -> list[tuple[list[TaskSpec], str]]:
    ok = {"data_files": "p.csv"}
    text = {"text": "title"}
    return [
        ([spec(ok, inputs={"image": "photo", "text": "title"})],
         "task mine: field 'inputs.image' = 'photo': no such column in p.csv (columns: title, category, tags, "
         "count)"),
        ([spec({"data_files": "nope.csv"})],
         f"task mine: field 'dataset.options.data_files' = 'nope.csv': no such file ({tmp_path / 'nope.csv'}; "
         "relative paths are relative to data.path)"),
        ([spec({"data_files": "p.xlsx"})], "field 'dataset.options.data_files' = 'p.xlsx': unsupported suffix"),
        ([spec({**ok, "lables": KINDS})],
         "task mine: field 'dataset.options.lables': not an option of the files source; did you mean 'labels'"),
        ([spec({**ok, "split": [0.5, 0.5, 0.5]})],
         "field 'dataset.options.split' = [0.5, 0.5, 0.5]: expected three positive fractions"),
        ([spec({**ok, "labels": ["a", "a"]})], "field 'dataset.options.labels' = ['a', 'a']: repeated label 'a'"),
        ([spec({**ok, "split_column": "fold"}, inputs=text)],
         "field 'dataset.options.split_column' = 'fold': no such column in p.csv"),
        ([spec({})], "field 'dataset.options.data_files': give either data_files"),
        ([spec(ok, inputs=text, target="tags")], "field 'target' = 'tags': row 1 holds '[\"a\", \"b\"]'; "
         "classification needs one label per row"),
        ([spec({"data_files": "p.parquet"}, kind="tagging", inputs=text, target="count")],
         "task mine: field 'target' = 'count': row 1 holds 3; tagging needs a list of tags per row: a JSON list "
         '(["a", "b"]) or an "a|b" string'),
        ([spec({**ok, "labels": ["shirt"]}, inputs=text)],
         "task mine: field 'target' = 'category': 1 classes in dataset.options.labels (shirt); need 2 or more"),
        ([spec(ok, inputs=text), spec({**ok, "split_column": "category"}, name="other", inputs=text)],
         "task other: field 'dataset.options' differs from task mine's for subset 'my-products'"),
        ([spec({**ok, "labels": KINDS}, inputs=text),
          spec({**ok, "labels": KINDS}, name="other", kind="tagging", inputs=text, target="tags")],
         "task mine: field 'dataset.options.labels': the subset has 2 label columns (category, tags); give labels as "
         "{column: [labels]}"),
        ([spec(ok, inputs=text), spec(ok, name="other", kind="captioning", inputs=text, target="category")],
         "task other: field 'target' = 'category': read as string here but as label by task mine"),
    ]  # fmt: skip


def test_data_that_does_not_match_the_yaml_is_one_line_naming_the_field(tmp_path):
    rows = [{"title": f"t{i}", "category": KINDS[i % 3], "tags": '["a", "b"]', "count": 3} for i in range(10)]
    write_rows(tmp_path / "p.csv", rows)
    write_rows(tmp_path / "p.parquet", rows)
    for specs, message in _error_cases(tmp_path):
        with pytest.raises(UserError) as err:
            load_files(specs, cfg(tmp_path, tmp_path))
        assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_local_datasets_folder_with_an_image_feature_loads(tmp_path, monkeypatch):
    """``hub:`` goes through ``datasets.load_dataset``; here on a local parquet folder with its own splits."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # not the user's cache
    rows = product_rows(tmp_path / "src", 12)
    for split, picked in (("train", rows[:8]), ("validation", rows[8:10]), ("test", rows[10:])):
        table = {"image": [str(tmp_path / "src" / r["image_path"]) for r in picked],
                 "label": [r["category"] for r in picked]}  # fmt: skip
        ds = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
        ds.to_parquet(str(tmp_path / "hub" / "data" / f"{split}-00000-of-00001.parquet"))
    task = spec({"hub": "hub"}, inputs={"image": "image"}, target="label")
    subset = load_files([task], cfg(tmp_path, tmp_path)).subsets["my-products"]
    assert {s: len(ds) for s, ds in subset.items()} == {"train": 8, "validation": 2, "test": 2}
    with Image.open(tmp_path / "src" / "img" / "10.jpg") as image:
        np.testing.assert_array_equal(subset["test"].with_format("numpy")[0]["image"], resize_crop(image, 16))


# --- end to end ---------------------------------------------------------------------------------------------------

TASK_YAML = """\
name: my-product-classification
version: 1
description: Category of my products from photo and title.
type: classification
dataset:
  source: files
  subset: my-products
  options: {data_files: products.csv, split_column: split}
inputs: {image: image_path, text: title}
target: category
metrics: [accuracy, macro_f1]
main_score: accuracy
"""


def test_a_yaml_only_task_on_own_files_runs_and_reports_the_skipped_rows(tmp_path):
    data = tmp_path / "data"
    rows = product_rows(data, 30)
    rows[4]["image_path"] = "img/gone.jpg"
    (data / "img" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    rows[5]["image_path"] = "img/broken.jpg"
    rows[9]["category"] = "hat"
    write_rows(data / "products.csv", rows)
    tasks = tmp_path / "tasks"
    (tasks / "suites").mkdir(parents=True)
    (tasks / "mine.yaml").write_text(TASK_YAML)
    (tasks / "suites" / "mine.yaml").write_text("name: mine\nversion: 1\ndescription: d\ntasks: [my-product-"
                                                "classification]\n")  # fmt: skip
    out = tmp_path / "out"
    result = run_cli("run", "--suite", "mine", "--profile", "smoke", "--set", "train.epochs=1", "--set",
                     "train.progress=false", "--set", f"data.dir={tmp_path / 'cache'}", "--set", f"data.path={data}",
                     "--output-dir", str(out), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                     env={"MTL_BENCH_TASKS": str(tasks)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())["data_report"]
    assert report["skipped"] == {"my-products": {
        "counts": {"file missing": 1, "image cannot be decoded": 1, "unknown label": 1},
        "examples": {"file missing": ["row 5: img/gone.jpg"], "image cannot be decoded": ["row 6: img/broken.jpg"],
                     "unknown label": ["row 10: 'hat'"]}}}  # fmt: skip
    printed = " ".join(result.stdout.split())
    for line in ("data my-products: skipped 1 row(s), file missing (e.g. row 5: img/gone.jpg)",
                 "data my-products: skipped 1 row(s), image cannot be decoded (e.g. row 6: img/broken.jpg)",
                 "data my-products: skipped 1 row(s), unknown label (e.g. row 10: 'hat')"):  # fmt: skip
        assert line in printed, result.stdout
