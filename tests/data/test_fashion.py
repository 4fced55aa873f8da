"""The fashion source: CSV parsing, title rules, the grouped split, rare classes, pixels, and loading real data.

Loading tests use tiny images (16 px, 4 frames): a folder of ~30 real rows (plus a missing, a corrupt and a
duplicate photo) made in tmp_path, and the real 3k folder once per module.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources.fashion.images import MOTIONS, camera_path, clip, decode_square
from mtl_bench.data.sources.fashion.load import load_fashion, resolve_options
from mtl_bench.data.sources.fashion.rows import (
    MASK,
    fold_rare_tags,
    grouped_split,
    mask_title,
    normalise_title,
    parse_styles,
    rare_values,
)
from mtl_bench.data.sources.fashion.types import SUBSETS
from mtl_bench.errors import UserError
from mtl_bench.tasks.spec import TaskSpec
from tests.conftest import ROOT

# The real subset lives beside the checkout (../shared/data/...), never inside it; CI has it, so CI fails without it.
REAL = Path(os.environ.get("MTL_BENCH_FASHION_DATA", ROOT.parent / "shared" / "data" / "fashion-products-3k"))
needs_real = pytest.mark.skipif(
    not (REAL / "styles.csv").is_file() and not os.environ.get("CI"), reason=f"real data not found at {REAL}"
)
HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
TASKS = {  # subset -> (type, inputs, target, metric)
    "classification": ("classification", {"image": "image", "text": "title"}, "label", "accuracy"),
    "captioning": ("captioning", {"image": "image"}, "caption", "cider"),
    "attributes": ("tagging", {"image": "image"}, "tags", "map"),
    "video": ("tagging", {"video": "frames"}, "tags", "map"),
}


def specs(options: dict | None = None, subsets: tuple[str, ...] = SUBSETS) -> list[TaskSpec]:
    out = []
    for subset in subsets:
        kind, inputs, target, metric = TASKS[subset]
        dataset = {"source": "fashion", "subset": subset, "options": options or {}}
        out.append(TaskSpec(name=f"f-{subset}", version=1, description="d", type=kind, dataset=dataset,
                            inputs=inputs, target=target, metrics=[metric], main_score=metric))  # fmt: skip
    return out


def data_cfg(path: Path | str | None, cache: Path) -> DataConfig:
    return DataConfig(path=None if path is None else str(path), dir=str(cache), image_size=16, num_frames=4)


# --- rows ---------------------------------------------------------------------------------------------------------


def test_parser_joins_unquoted_commas_back_into_the_title():
    text = "\n".join([
        HEADER,
        "1163,Men,Apparel,Topwear,Tshirts,Blue,Summer,2011,Sports,Nike Sahara Team India Fanwear Round Neck Jersey",
        "2001,Women,Apparel,Topwear,Tops,Red,Fall,2012,Casual,Jealous 21 Women Red, White Top",
        "2002,Men,Footwear,Shoes,Casual Shoes,Black,Fall,2012,Casual,Puma Men, Black, Sneakers, Shoes",
        "2003,Men,Footwear,Shoes",  # too few fields
    ])  # fmt: skip
    table = parse_styles(text)
    titles = [r["productDisplayName"] for r in table.rows]
    assert titles == ["Nike Sahara Team India Fanwear Round Neck Jersey", "Jealous 21 Women Red, White Top",
                      "Puma Men, Black, Sneakers, Shoes"]  # fmt: skip
    assert [r["usage"] for r in table.rows] == ["Sports", "Casual", "Casual"]
    assert table.malformed == [5]


def test_parser_reads_quoted_titles_before_an_image_column():
    text = HEADER + ',image\n7,Men,Apparel,Topwear,Shirts,Blue,Fall,2012,Formal,"Arrow Men, Blue Shirt",images/7.jpg\n'
    text += "8,Men,Apparel,Topwear,Shirts,Blue,Fall,2012,Formal,Arrow Men, Slim, Shirt,images/8.jpg\n"  # unquoted
    rows = parse_styles(text).rows
    assert [(r["productDisplayName"], r["image"]) for r in rows] == [
        ("Arrow Men, Blue Shirt", "images/7.jpg"), ("Arrow Men, Slim, Shirt", "images/8.jpg")]  # fmt: skip


def test_parser_names_file_and_missing_column():
    with pytest.raises(UserError, match=r"^my/styles.csv: no column 'articleType' \(columns: id,"):
        parse_styles(HEADER.replace("articleType", "type") + "\n", "my/styles.csv")


@pytest.mark.parametrize(
    ("title", "article", "masked"),
    [
        ("Quechua Men Sweat Proof Blue T-shirt", "Tshirts", "Quechua Men Sweat Proof Blue [mask]"),
        ("Fossil Men Black Watch", "Watches", "Fossil Men Black [mask]"),
        ("Spalding Men Grey Flip Flops", "Flip Flops", "Spalding Men Grey [mask]"),
        ("Puma Unisex Flip-Flop", "Flip Flops", "Puma Unisex [mask]"),
        ("Nike Men CASUAL SHOES", "Casual Shoes", "Nike Men [mask]"),
        ("Lakme Perfume and Body Mists", "Perfume and Body Mist", "Lakme [mask] and [mask]"),
        ("Kenneth Cole Men Mother Of Pearl Dial Watch", "Watches", "Kenneth Cole Men Mother Of Pearl Dial [mask]"),
        ("Fabindia Women Kurta Set", "Kurta Sets", "Fabindia Women [mask]"),
        ("Domyos Grey Duffle Bag", "Duffel Bag", "Domyos Grey [mask]"),
        ("Catwalk Women Heeled Black Heels", "Heels", "Catwalk Women [mask] Black [mask]"),
        ("Amante Women Top Bra", "Bra", "Amante Women Top [mask]"),
        ("Deborah HiTech Trio Smoky Eyes Eye Shadow 04", "Eyeshadow", "Deborah HiTech Trio Smoky Eyes [mask] 04"),
        ("Reebok T-shirt White Polo Tshirt", "Tshirts", "Reebok [mask] White Polo [mask]"),
        ("Lino Perros Women Dress (Blue)", "Dresses", "Lino Perros Women [mask] (Blue)"),
    ],
)
def test_mask_title_hides_every_article_type_word(title, article, masked):
    assert mask_title(title, article) == masked


def _leaks(masked: str, article: str) -> list[str]:
    """Title words still built on an article-type word (its singular by the English -s / -es rule); an independent,
    cruder rule than ``mask_title``'s."""
    words = [w for w in re.findall(r"[a-z]+", article.lower()) if w not in ("and", "of")]
    stems = [w[:-2] if re.search(r"(ches|shes|sses|xes)$", w) else w.removesuffix("s") for w in words]
    tokens = re.findall(r"[a-z0-9]+", masked.lower().replace("-", "").replace(MASK, " "))
    return [t for t in tokens for stem in stems if t.startswith(stem)]


@needs_real
def test_no_real_masked_title_contains_an_article_type_word():
    rows = parse_styles((REAL / "styles.csv").read_text()).rows
    leaks = {r["id"]: _leaks(mask_title(r["productDisplayName"], r["articleType"]), r["articleType"]) for r in rows}
    assert {k: v for k, v in leaks.items() if v} == {}
    assert sum(MASK in mask_title(r["productDisplayName"], r["articleType"]) for r in rows) > 0.85 * len(rows)


def test_normalised_titles_group_colour_variants():
    assert normalise_title("Nike Men Navy Blue T-shirt 2012!") == normalise_title("nike men  RED t-shirt 14")
    assert normalise_title("Nike Men Navy Blue T-shirt") == "nike men t shirt"
    assert normalise_title("Nike Men Shorts") != normalise_title("Nike Men T-shirt")


def test_grouped_split_never_straddles_and_follows_the_fractions():
    rng = np.random.default_rng(0)
    keys = [f"title {int(k)}" for k in rng.integers(0, 400, 2000)]  # ~400 groups of varied sizes
    split = grouped_split(keys, (0.7, 0.15, 0.15), seed=3)
    where: dict[str, set[int]] = {}
    for key, s in zip(keys, split, strict=True):
        where.setdefault(key, set()).add(s)
    assert all(len(s) == 1 for s in where.values())
    counts = np.bincount(split, minlength=3) / len(keys)
    assert np.allclose(counts, [0.7, 0.15, 0.15], atol=0.02)
    assert grouped_split(keys, (0.7, 0.15, 0.15), seed=3) == split
    assert grouped_split(keys, (0.7, 0.15, 0.15), seed=4) != split


def test_rare_classes_fold_or_drop():
    values = ["a"] * 5 + ["b"] * 2 + ["c"]
    folded = rare_values(values, min_count=3, mode="fold")
    assert folded.values == ["a"] * 5 + ["other"] * 3 and folded.rare == ["c", "b"]
    assert rare_values(values, min_count=3, mode="drop").values == ["a"] * 5 + [None] * 3
    tags = [["colour:Blue", "gender:Men"], ["colour:Blue", "gender:Men"], ["colour:Rust", "gender:Men"]]
    assert fold_rare_tags(tags, 2, "fold") == ([*tags[:2], ["colour:other", "gender:Men"]], ["colour:Rust"])
    assert fold_rare_tags(tags, 2, "drop")[0] == [*tags[:2], ["gender:Men"]]


def test_options_are_checked_and_must_agree():
    assert resolve_options(specs())["rare_classes"] == "fold"
    assert resolve_options(specs({"rare_classes": "drop"}))["rare_classes"] == "drop"
    with pytest.raises(UserError, match=r"'dataset.options.min_clas_count': unknown .* did you mean 'min_class_count'"):
        resolve_options(specs({"min_clas_count": 3}))
    with pytest.raises(UserError, match=r"'dataset.options.rare_classes' = 'keep': expected 'fold'"):
        resolve_options(specs({"rare_classes": "keep"}))
    with pytest.raises(UserError, match="summing to 1"):
        resolve_options(specs({"split": [0.5, 0.2, 0.2]}))
    mixed = specs({"min_class_count": 5}, ("classification",)) + specs({"min_class_count": 6}, ("video",))
    with pytest.raises(UserError, match="f-video: field 'dataset.options.min_class_count' = 6 differs from task"):
        resolve_options(mixed)


# --- pixels -------------------------------------------------------------------------------------------------------


def _square_photo() -> Image.Image:
    """A black 60 x 90 box on a white 150 x 200 portrait photo, squared by the loader's decoder."""
    img = Image.new("RGB", (150, 200), "white")
    img.paste((0, 0, 0), (45, 55, 105, 145))
    out = io.BytesIO()
    img.save(out, format="PNG")
    square = decode_square(out.getvalue(), 32)
    assert square is not None and square.size == (200, 200)
    return square


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_motion_moves_the_product_as_named(seed):
    square = _square_photo()
    rng = np.random.default_rng(seed)
    for motion in MOTIONS:
        boxes = camera_path(motion, 6, rng)
        assert boxes.min() >= 0 and boxes.max() <= 1
        frames = clip(square, boxes, 24)
        assert frames.shape == (6, 24, 24, 3) and frames.dtype == np.uint8
        ink = 255.0 - frames.mean(-1)  # [T, S, S]: the dark product on white
        area = ink.mean((1, 2))
        centre_x = (ink.sum(1) * np.arange(24)).sum(1) / ink.sum((1, 2))
        if motion == "zoom-in":  # the product grows in every frame
            assert np.all(np.diff(area) > 0), area
        elif motion == "zoom-out":
            assert np.all(np.diff(area) < 0), area
        elif motion == "pan-left":  # the camera moves left: the product drifts right
            assert np.all(np.diff(centre_x) > 0), centre_x
        else:
            assert np.all(np.diff(centre_x) < 0), centre_x


def test_decode_rejects_corrupt_bytes():
    assert decode_square(b"not an image", 16) is None
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(jpeg, format="JPEG")
    assert decode_square(jpeg.getvalue()[: len(jpeg.getvalue()) // 2], 16) is None  # truncated
    assert decode_square(jpeg.getvalue(), 16) is not None


# --- loading ------------------------------------------------------------------------------------------------------


def _real_rows(n: int) -> list[dict[str, str]]:
    with open(REAL / "styles.csv", newline="") as f:
        return list(csv.DictReader(f))[:n]


PLANTED = {  # what tiny_folder plants, skipped in every subset
    "image missing": 1,
    "image cannot be decoded": 1,
    "duplicate photo (same bytes as a kept product)": 1,
}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_folder(tmp_path / "tiny")


def tiny_folder(folder: Path) -> Path:
    """30 real rows, plus one row whose image is missing, one with a corrupt JPEG and one duplicate photo."""
    (folder / "images").mkdir(parents=True)
    rows = _real_rows(30)
    for row in rows:
        shutil.copy(REAL / row["image"], folder / row["image"])
    extra = [dict(rows[0], id="900001", image="images/900001.jpg"),  # no file
             dict(rows[1], id="900002", image="images/900002.jpg"),  # corrupt
             dict(rows[2], id="900003", image="images/900003.jpg")]  # same bytes as rows[2]  # fmt: skip
    jpeg = (REAL / rows[1]["image"]).read_bytes()
    (folder / "images/900002.jpg").write_bytes(jpeg[:200])
    shutil.copy(REAL / rows[2]["image"], folder / "images/900003.jpg")
    with open(folder / "styles.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + extra)
    return folder


@needs_real
def test_tiny_folder_loads_and_reports_what_it_skipped(tiny, tmp_path):
    loaded = load_fashion(specs({"min_class_count": 3}), data_cfg(tiny, tmp_path / "cache"))
    assert sorted(loaded.subsets) == sorted(SUBSETS)
    for subset in SUBSETS:
        skipped = loaded.skipped[subset]
        assert skipped.counts == PLANTED and skipped.examples["image missing"] == ["900001"]
        assert skipped.examples["image cannot be decoded"] == ["900002"]
        rows = _real_rows(3)
        assert skipped.examples["duplicate photo (same bytes as a kept product)"] == [f"900003 (= {rows[2]['id']})"]
        assert sum(len(ds) for ds in loaded.subsets[subset].values()) <= 30
    ids = [i for ds in loaded.subsets["captioning"].values() for i in ds["id"]]
    assert len(ids) == 30 and not {"900001", "900002", "900003"} & set(ids)
    assert any("folded into 'other'" in note for note in loaded.notes)
    video = loaded.subsets["video"]["train"]
    names = video.features["tags"].feature.names
    for row in video:
        assert f"motion:{MOTIONS[row['motion']]}" in [names[t] for t in row["tags"]]
    again = load_fashion(specs({"min_class_count": 3}), data_cfg(tiny, tmp_path / "cache"))  # from the cache
    fresh = load_fashion(specs({"min_class_count": 3}), data_cfg(tiny, tmp_path / "other-cache"))  # rebuilt
    assert loaded.fingerprint == again.fingerprint == fresh.fingerprint and len(loaded.fingerprint) == 64
    assert again.skipped == loaded.skipped and again.notes == loaded.notes
    dropped = load_fashion(specs({"min_class_count": 3, "rare_classes": "drop"}), data_cfg(tiny, tmp_path / "cache"))
    assert dropped.fingerprint != loaded.fingerprint
    assert "other" not in dropped.subsets["classification"]["train"].features["label"].names
    assert any(r.startswith("rare article type") for r in dropped.skipped["classification"].counts)


def test_missing_or_wrong_path_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"--set data.path=DIR"):
        load_fashion(specs(), data_cfg(None, tmp_path))
    with pytest.raises(UserError, match=r"data.path = '/no/such/folder': no such folder"):
        load_fashion(specs(), data_cfg("/no/such/folder", tmp_path))


@needs_real
def test_local_dataset_folder_with_an_image_feature_loads(tmp_path, monkeypatch):
    """The ``datasets.load_dataset`` route (hub ids), on a local parquet folder with an Image column."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # not the user's cache

    rows = _real_rows(8)
    table = {k: [r[k] for r in rows] for k in rows[0] if k != "image"}
    table["image"] = [str(REAL / r["image"]) for r in rows]
    ds = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    loaded = load_fashion(specs(), data_cfg(tmp_path / "hub", tmp_path / "cache"))
    assert sum(len(ds) for ds in loaded.subsets["captioning"].values()) == 8


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    return load_fashion(specs(), data_cfg(REAL, tmp_path_factory.mktemp("fashion-cache")))


@needs_real
def test_real_folder_subsets_have_the_expected_features(real):
    import datasets

    expect = {
        "classification": {"id", "image", "title", "label"},
        "captioning": {"id", "image", "caption"},
        "attributes": {"id", "image", "tags"},
        "video": {"id", "frames", "tags", "motion"},
    }
    for subset, columns in expect.items():
        dsd = real.subsets[subset]
        assert list(dsd) == ["train", "validation", "test"]
        assert set(dsd["train"].column_names) == columns
        sizes = [len(dsd[s]) for s in dsd]
        assert sizes[0] > 3 * sizes[1] > 0 and sizes[2] > 0
    feats = real.subsets["classification"]["train"].features
    assert feats["image"] == datasets.Array3D((16, 16, 3), "uint8")
    assert isinstance(feats["label"], datasets.ClassLabel) and "other" in feats["label"].names
    assert 20 < feats["label"].num_classes < 40
    assert real.subsets["video"]["test"].features["frames"] == datasets.Array4D((4, 16, 16, 3), "uint8")
    tag_names = real.subsets["attributes"]["train"].features["tags"].feature.names
    assert {"colour:Blue", "gender:Men", "season:Summer", "usage:Casual", "usage:other"} <= set(tag_names)
    styles = {r["id"]: r for r in _real_rows(10_000)}
    titles = real.subsets["classification"]["train"].select_columns(["id", "title"]).to_list()
    assert all(not _leaks(t["title"], styles[t["id"]]["articleType"]) for t in titles)
    captions = real.subsets["captioning"]["train"]["caption"]
    assert all(c == c.lower() for c in captions)
    dups = real.skipped["video"].counts.get("duplicate photo (same bytes as a kept product)", 0)
    assert dups == 7
    ids = {s: set(real.subsets["captioning"][s]["id"]) for s in ("train", "validation", "test")}
    assert ids["train"].isdisjoint(ids["test"]) and ids["validation"].isdisjoint(ids["test"])
    assert set(real.subsets["video"]["test"]["id"]) == ids["test"]  # one split for every subset


@needs_real
def test_real_split_keeps_each_normalised_title_in_one_split(real):
    rows = {r["id"]: r for r in _real_rows(10_000)}
    where: dict[str, set[str]] = {}
    for split, ds in real.subsets["captioning"].items():
        for i in ds["id"]:
            where.setdefault(normalise_title(rows[i]["productDisplayName"]), set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    assert sum(len(s) for s in where.values()) < sum(len(ds) for ds in real.subsets["captioning"].values())


@needs_real
def test_real_clips_move_as_their_motion_tag_says(real):
    """On real photos: zoom-in clips end with more product (non-white) than they start with, pan-left clips end with
    the product further right, and so on; the tags carry the motion."""
    ds = real.subsets["video"]["test"]
    table = ds.with_format("numpy")[:]
    frames, motions = table["frames"].astype(float), table["motion"]
    names = ds.features["tags"].feature.names
    assert frames.shape[1:] == (4, 16, 16, 3)
    ink = 255.0 - frames.mean(-1)  # [N, T, S, S]
    area = ink.mean((2, 3))
    centre_x = (ink.sum(2) * np.arange(16)).sum(2) / np.maximum(ink.sum((2, 3)), 1e-6)
    change = {"zoom-in": area[:, -1] - area[:, 0], "zoom-out": area[:, 0] - area[:, -1],
              "pan-left": centre_x[:, -1] - centre_x[:, 0], "pan-right": centre_x[:, 0] - centre_x[:, -1]}  # fmt: skip
    for m, motion in enumerate(MOTIONS):
        rows = motions == m
        assert rows.sum() > 20 and (change[motion][rows] > 0).mean() > 0.9, motion
    for tags, m in zip(table["tags"], motions, strict=True):
        assert [names[t] for t in tags if names[t].startswith("motion:")] == [f"motion:{MOTIONS[m]}"]
