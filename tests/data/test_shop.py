"""The built-in shop data: schema, determinism, caching, and the properties that make it a benchmark.

The probe tests train small, seeded models on simple features (HOG-style gradient histograms for pixels, bag of words
for titles), fit on the train split and scored on the test split, to show that the label needs both modalities and
that zoom direction needs more than one frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_bench.data.sources.builtin import cache, shop
from mtl_bench.data.sources.builtin.cache import load_shop
from mtl_bench.data.sources.builtin.shop import CATEGORY_NAMES, DEFAULT_SIZES, TAG_NAMES, generate_shop
from mtl_bench.data.sources.cache import content_fingerprint
from mtl_bench.errors import UserError

SMALL = {"classification": (24, 8, 8), "captioning": (16, 8, 8), "video": (12, 6, 6)}
SHAPE_WORDS = {"top", "shirt", "trousers", "pants", "dress", "shoe", "boot", "bag", "hat"}


@pytest.fixture(scope="module")
def small() -> dict:
    return generate_shop(seed=0, sizes=SMALL)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Probes run single-threaded: deterministic and not slowed by oversubscribed shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def _arrays(subsets: dict) -> dict[str, np.ndarray]:
    """Every column of every split as numpy arrays / lists, keyed "subset/split/column"."""
    out = {}
    for name, dsd in subsets.items():
        for split, ds in dsd.items():
            for col, values in ds.with_format("numpy")[:].items():
                out[f"{name}/{split}/{col}"] = values
    return out


def _as_lists(x: np.ndarray) -> object:
    return [np.asarray(v).tolist() for v in x] if x.dtype == object else x


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Equal keys and, per key, equal arrays (numbers, strings) or equal lists (ragged tag lists)."""
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k]) if a[k].dtype != object else _as_lists(a[k]) == _as_lists(b[k]) for k in a
    )


# --- schema ---------------------------------------------------------------------------------------------------------


def test_default_sizes_and_names() -> None:
    assert DEFAULT_SIZES == {"classification": (4000, 500, 500), "captioning": (3000, 500, 500),
                             "video": (800, 200, 200)}  # fmt: skip
    assert min(DEFAULT_SIZES, key=lambda k: sum(DEFAULT_SIZES[k])) == "video"
    assert len(CATEGORY_NAMES) == 18 == len(set(CATEGORY_NAMES))
    assert len(TAG_NAMES) == len(set(TAG_NAMES))
    assert {t.split(":")[0] for t in TAG_NAMES} == {"motion", "shape", "colour", "event"}
    assert {"motion:zoom-in", "motion:zoom-out", "shape:top", "colour:red", "event:flash"} <= set(TAG_NAMES)


def test_splits_columns_and_dtypes(small: dict) -> None:
    assert set(small) == {"classification", "captioning", "video"}
    for name, dsd in small.items():
        assert list(dsd) == ["train", "validation", "test"]
        assert [len(dsd[s]) for s in dsd] == list(SMALL[name])
    latents = ["shape", "colour", "pattern", "material", "brand"]
    assert small["classification"].column_names["train"] == ["image", "title", "label", *latents]
    assert small["captioning"].column_names["train"] == ["image", "title", "caption", *latents]
    assert small["video"].column_names["train"] == ["frames", "tags", "caption", "shape", "colour", "motion"]
    assert small["classification"]["train"].features["label"].names == CATEGORY_NAMES
    assert small["video"]["train"].features["tags"].feature.names == TAG_NAMES
    image = small["classification"]["train"].with_format("numpy", dtype=np.uint8)[:]["image"]
    assert image.shape == (24, 32, 32, 3) and image.dtype == np.uint8 and image.std() > 10
    frames = small["video"]["test"].with_format("numpy", dtype=np.uint8)[:]["frames"]
    assert frames.shape == (6, 8, 32, 32, 3)


def test_image_size_and_frames_are_configurable() -> None:
    out = generate_shop(seed=1, sizes={"classification": (2, 0, 1), "captioning": (0, 0, 0), "video": (2, 1, 0)},
                        image_size=16, num_frames=4)  # fmt: skip
    assert np.asarray(out["classification"]["train"][0]["image"]).shape == (16, 16, 3)
    assert np.asarray(out["video"]["train"][0]["frames"]).shape == (4, 16, 16, 3)
    assert len(out["captioning"]["train"]) == 0


def test_label_and_tags_follow_latents(small: dict) -> None:
    cls = small["classification"]["train"].with_format("numpy")[:]
    assert np.array_equal(cls["label"], cls["shape"] * 3 + cls["material"])
    for row in small["video"]["train"]:
        names = {TAG_NAMES[t] for t in row["tags"]}
        motion = small["video"]["train"].features["motion"].int2str(row["motion"])
        shape, colour = shop.SHAPES[row["shape"]], shop.COLOURS[row["colour"]]
        assert {f"motion:{motion}", f"shape:{shape}", f"colour:{colour}"} <= names
        assert row["caption"] == row["caption"].lower()


def test_text_says_what_each_modality_should(small: dict) -> None:
    """Titles never name the shape (the image shows it); captions never name the material (the image cannot)."""
    words = re.compile(r"^[a-z0-9-]+( [a-z0-9-]+)*$")
    for split in ("train", "test"):
        for title in small["classification"][split]["title"][:] + small["captioning"][split]["title"][:]:
            assert words.match(title) and not SHAPE_WORDS & set(title.split())
        for caption in small["captioning"][split]["caption"][:]:
            assert words.match(caption) and not {"cotton", "leather", "wool"} & set(caption.split())


def test_bad_sizes_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown subset 'videos'"):
        generate_shop(sizes={"videos": (1, 1, 1)})
    with pytest.raises(UserError, match="three non-negative ints"):
        generate_shop(sizes={"video": (1, -1, 1)})


# --- determinism -----------------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(small: dict) -> None:
    again = generate_shop(seed=0, sizes=SMALL)
    assert _same(_arrays(small), _arrays(again))
    assert content_fingerprint(small) == content_fingerprint(again)
    other = generate_shop(seed=1, sizes=SMALL)
    assert content_fingerprint(other) != content_fingerprint(small)
    a, b = _arrays(small), _arrays(other)
    assert not np.array_equal(a["classification/train/image"], b["classification/train/image"])
    assert a["captioning/test/title"].tolist() != b["captioning/test/title"].tolist()


def test_sizes_of_one_split_do_not_change_another(small: dict) -> None:
    bigger = generate_shop(seed=0, sizes={**SMALL, "classification": (30, 8, 8)})
    a, b = _arrays(small), _arrays(bigger)
    keep = [k for k in a if not k.startswith("classification/train/")]
    assert _same({k: a[k] for k in keep}, {k: b[k] for k in keep})
    assert not _same({"x": a["classification/train/image"]}, {"x": b["classification/train/image"][:24]})


# --- cache -----------------------------------------------------------------------------------------------------------


def test_cache_reused_and_fingerprint_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subsets, fingerprint = load_shop(tmp_path, seed=0, sizes=SMALL)
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    (cache_dir,) = tmp_path.iterdir()  # exactly one directory: no temporary leftovers
    assert cache_dir.name.startswith(f"shop-v{shop.GENERATOR_VERSION}-")
    assert fingerprint == content_fingerprint(subsets) == content_fingerprint(generate_shop(seed=0, sizes=SMALL))

    def boom(**_: object) -> None:
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(shop, "generate_shop", boom)
    again, fingerprint2 = load_shop(tmp_path, seed=0, sizes=SMALL)
    assert fingerprint2 == fingerprint and _same(_arrays(subsets), _arrays(again))
    monkeypatch.undo()
    _, other = load_shop(tmp_path, seed=1, sizes=SMALL)
    assert other != fingerprint and len(list(tmp_path.iterdir())) == 2


def test_empty_splits_round_trip(tmp_path: Path) -> None:
    sizes = {"classification": (3, 0, 1), "captioning": (0, 0, 0), "video": (2, 1, 0)}
    subsets, fingerprint = load_shop(tmp_path, seed=0, sizes=sizes)
    assert {k: tuple(len(d) for d in v.values()) for k, v in subsets.items()} == sizes
    assert load_shop(tmp_path, seed=0, sizes=sizes).fingerprint == fingerprint == content_fingerprint(subsets)


def test_crash_while_writing_leaves_nothing_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(path: Path, *_: object) -> None:
        (path / "classification").mkdir(parents=True)  # a half-written cache ...
        raise KeyboardInterrupt  # ... then the process dies

    monkeypatch.setattr(cache, "write_subsets", crash)
    with pytest.raises(KeyboardInterrupt):
        load_shop(tmp_path, seed=0, sizes=SMALL)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    # a directory under the final name without fingerprint.txt (not ours) is moved aside, never loaded
    bogus = tmp_path / cache.cache_dir_name(0, SMALL, 32, 8)
    bogus.mkdir()
    _, fingerprint = load_shop(tmp_path, seed=0, sizes=SMALL)
    assert (bogus / cache.FINGERPRINT_FILE).read_text().strip() == fingerprint


# --- probes: the data properties the benchmark is built on ----------------------------------------------------------


def _hog(images: np.ndarray, cells: int = 4, bins: int = 8) -> torch.Tensor:
    """Histograms of gradient orientation per cell (of the strongest colour channel), L2-normalised per image."""
    x = images.astype(np.float32) / 255.0
    gx, gy = np.zeros_like(x), np.zeros_like(x)
    gx[:, :, 1:-1], gy[:, 1:-1] = x[:, :, 2:] - x[:, :, :-2], x[:, 2:] - x[:, :-2]
    channel = np.sqrt(gx**2 + gy**2).argmax(-1)[..., None]
    gx, gy = np.take_along_axis(gx, channel, -1)[..., 0], np.take_along_axis(gy, channel, -1)[..., 0]
    angle_bin = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(int), bins - 1)
    n, h, w = gx.shape
    hist = np.zeros((n, h, w, bins), dtype=np.float32)
    np.put_along_axis(hist, angle_bin[..., None], np.sqrt(gx**2 + gy**2)[..., None], -1)
    feats = hist.reshape(n, cells, h // cells, cells, w // cells, bins).sum((2, 4)).reshape(n, -1)
    return torch.from_numpy(feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-6))


def _bag_of_words(train: list[str], test: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = {w: i for i, w in enumerate(sorted({w for t in train for w in t.split()}))}

    def encode(texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), len(vocab))
        for row, text in enumerate(texts):
            out[row, [vocab[w] for w in text.split() if w in vocab]] = 1.0
        return out

    return encode(train), encode(test)


def _probe(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray) -> float:
    """Test accuracy of a small MLP trained full-batch on standardised features of the train split."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y = torch.as_tensor(y_train)
    model = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, int(y.max()) + 1))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-4)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(model(x_train), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model(x_test).argmax(1) == torch.as_tensor(y_test)).float().mean().item()


def test_label_needs_image_and_title(one_thread: None) -> None:
    data = generate_shop(seed=0, sizes={"classification": (1500, 0, 500), "captioning": (0, 0, 0),
                                        "video": (0, 0, 0)})["classification"]  # fmt: skip
    train, test = (data[s].with_format("numpy", dtype=np.uint8)[:] for s in ("train", "test"))
    y_train, y_test = np.asarray(data["train"]["label"][:]), np.asarray(data["test"]["label"][:])
    img_train, img_test = _hog(train["image"]), _hog(test["image"])
    txt_train, txt_test = _bag_of_words(list(train["title"]), list(test["title"]))
    image = _probe(img_train, y_train, img_test, y_test)
    title = _probe(txt_train, y_train, txt_test, y_test)
    both = _probe(torch.cat([img_train, txt_train], 1), y_train, torch.cat([img_test, txt_test], 1), y_test)
    print(f"label accuracy: image {image:.3f}, title {title:.3f}, both {both:.3f}")
    assert image < 0.45 and title < 0.45
    assert both >= max(image, title) + 0.2


def test_zoom_direction_needs_two_frames(one_thread: None) -> None:
    data = generate_shop(seed=0, sizes={"classification": (0, 0, 0), "captioning": (0, 0, 0),
                                        "video": (2000, 0, 600)})["video"]  # fmt: skip
    splits = {}
    for split in ("train", "test"):
        cols = data[split].with_format("numpy", dtype=np.uint8)[:]
        zoom = np.asarray(data[split]["motion"][:]) < 2  # motion 0: zoom-in, 1: zoom-out
        splits[split] = (cols["frames"][zoom], np.asarray(data[split]["motion"][:])[zoom])
    (f_train, y_train), (f_test, y_test) = splits["train"], splits["test"]
    last, mid = f_train.shape[1] - 1, f_train.shape[1] // 2
    single = _probe(_hog(f_train[:, mid]), y_train, _hog(f_test[:, mid]), y_test)
    pair = _probe(torch.cat([_hog(f_train[:, 0]), _hog(f_train[:, last])], 1), y_train,
                  torch.cat([_hog(f_test[:, 0]), _hog(f_test[:, last])], 1), y_test)  # fmt: skip
    print(f"zoom-in vs zoom-out accuracy: middle frame {single:.3f}, first+last frames {pair:.3f}")
    assert single < 0.65 and pair > 0.85
