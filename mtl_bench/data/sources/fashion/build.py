"""Processing of the fashion source: from raw rows to the four subsets (see ``load.py`` for what they hold).

Each row is checked (fields, id, image present, not a duplicate photo, decodable), its photo squared and filmed once,
then the kept products get one grouped split, rare classes are folded or dropped, and every subset is built as a
``datasets.DatasetDict`` with the same feature types as the built-in shop (Array3D images, Array4D clips, ClassLabel
targets, lists of ClassLabel tags), so ``prepare.py`` reads it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from typing import Any

import datasets
import numpy as np

from mtl_bench.data.sources.arrow import to_dataset
from mtl_bench.data.sources.fashion.images import MOTIONS, camera_path, clip, decode_square, still
from mtl_bench.data.sources.fashion.rows import (
    COLOUR_WORDS,
    LABEL,
    TITLE,
    attribute_tags,
    fold_rare_tags,
    grouped_split,
    is_empty,
    mask_title,
    normalise_title,
    rare_values,
)
from mtl_bench.data.sources.fashion.types import SUBSETS, VERSION, Catalogue
from mtl_bench.data.sources.types import Loaded, Skipped
from mtl_bench.errors import UserError

SPLITS = ("train", "validation", "test")


def _named(values: list[str], limit: int = 8) -> str:
    """``a (5), b (2), ...``: the distinct values with their counts, most frequent first."""
    counts = Counter(values)
    shown = [f"{v} ({n})" for v, n in sorted(counts.items(), key=lambda vn: (-vn[1], vn[0]))]
    return ", ".join(shown[:limit]) + (f", ... ({len(shown) - limit} more)" if len(shown) > limit else "")


def build(catalogue: Catalogue, params: dict[str, Any]) -> Loaded:
    """Clean the rows, render pixels and split; returns every subset (fingerprint left empty: the cache adds it)."""
    size, frames, seed = params["image_size"], params["num_frames"], params["seed"]
    common = Skipped()
    for line in catalogue.malformed:
        common.add("malformed CSV line (fewer fields than the header)", f"line {line}")
    rows: list[dict[str, Any]] = []
    pixels: list[tuple[np.ndarray, np.ndarray, str]] = []  # still image, clip, motion
    ids: set[str] = set()
    photos: dict[str, str] = {}  # sha256 of the image bytes -> id of the product kept with it
    for row in catalogue.rows:
        rid = str(row["id"])
        if is_empty(rid) or is_empty(row[TITLE]) or is_empty(row[LABEL]):
            common.add(f"empty id, {TITLE} or {LABEL}", rid or "?")
            continue
        if rid in ids:
            common.add("repeated id", rid)
            continue
        ids.add(rid)
        data = catalogue.read_image(row)
        if data is None:
            common.add("image missing", rid)
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in photos:
            common.add("duplicate photo (same bytes as a kept product)", f"{rid} (= {photos[digest]})")
            continue
        square = decode_square(data, size)
        if square is None:
            common.add("image cannot be decoded", rid)
            continue
        photos[digest] = rid
        rng = np.random.default_rng([seed, zlib.crc32(rid.encode())])  # per product: independent of row order
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
        pixels.append((still(square, size), clip(square, camera_path(motion, frames, rng), size), motion))
        rows.append(row)
    if not rows:
        raise UserError(f"{catalogue.name}: no usable rows ({common.counts or 'the table is empty'})")

    colours = COLOUR_WORDS | {w for r in rows for w in str(r["baseColour"]).lower().split()}
    split = grouped_split([normalise_title(r[TITLE], colours) for r in rows], tuple(params["split"]), seed)
    min_count, mode = params["min_class_count"], params["rare_classes"]
    verb = "folded into 'other'" if mode == "fold" else "dropped"
    labels = rare_values([str(r[LABEL]) for r in rows], min_count, mode)
    tags, rare_tags = fold_rare_tags([attribute_tags(r) for r in rows], min_count, mode)
    sizes = Counter(split)
    notes = [
        f"fashion: {len(rows)} products kept of {len(catalogue.rows)} rows; split "
        f"{sizes[0]}/{sizes[1]}/{sizes[2]} (train/validation/test, seed {seed}), grouped by normalised title "
        f"({len(set(normalise_title(r[TITLE], colours) for r in rows))} groups)",
        f"fashion: images padded to square on white and resized to {size} px; video: {frames} frames of camera "
        f"motion ({', '.join(MOTIONS)}) over each photo",
    ]
    if labels.rare:
        notes.append(
            f"fashion classification: {len(labels.rare)} article types with fewer than {min_count} products "
            f"{verb}: {_named([r[LABEL] for r, v in zip(rows, labels.values, strict=True) if v != r[LABEL]])}"
        )
    if rare_tags:
        rare_rows = [t for r in rows for t in attribute_tags(r) if t in set(rare_tags)]
        notes.append(
            f"fashion tags: {len(rare_tags)} tag values seen fewer than {min_count} times "
            f"{'folded into <attribute>:other' if mode == 'fold' else 'dropped'}: {_named(rare_rows)}"
        )

    skipped = {name: Skipped(dict(common.counts), {k: list(v) for k, v in common.examples.items()}) for name in SUBSETS}
    keep_label = [v is not None for v in labels.values]
    for r, keep in zip(rows, keep_label, strict=True):
        if not keep:
            skipped["classification"].add(f"rare article type (fewer than {min_count} products), dropped", r["id"])
    columns = {
        "id": [str(r["id"]) for r in rows],
        "image": [p[0] for p in pixels],
        "frames": [p[1] for p in pixels],
        "motion": [MOTIONS.index(p[2]) for p in pixels],
        "title": [mask_title(r[TITLE], r[LABEL]) for r in rows],
        "caption": [" ".join(str(r[TITLE]).lower().split()) for r in rows],
    }
    subsets = _datasets(columns, split, labels.values, tags, params)
    return Loaded(subsets, "", skipped, notes)


def _datasets(
    columns: dict[str, list[Any]],
    split: list[int],
    labels: list[str | None],
    tags: list[list[str]],
    params: dict[str, Any],
) -> dict[str, Any]:
    """{subset: DatasetDict} from the per-product columns, the split index and the targets."""
    size, frames = params["image_size"], params["num_frames"]
    label_names = sorted({v for v in labels if v is not None})
    tag_names = sorted({t for ts in tags for t in ts})
    video_names = tag_names + [f"motion:{m}" for m in MOTIONS]
    image = datasets.Array3D((size, size, 3), "uint8")
    text, ident = datasets.Value("string"), datasets.Value("string")
    features = {
        "attributes": datasets.Features(
            {"id": ident, "image": image, "tags": datasets.List(datasets.ClassLabel(names=tag_names))}
        ),
        "captioning": datasets.Features({"id": ident, "image": image, "caption": text}),
        "classification": datasets.Features(
            {"id": ident, "image": image, "title": text, "label": datasets.ClassLabel(names=label_names)}
        ),
        "video": datasets.Features(
            {
                "id": ident,
                "frames": datasets.Array4D((frames, size, size, 3), "uint8"),
                "tags": datasets.List(datasets.ClassLabel(names=video_names)),
                "motion": datasets.ClassLabel(names=MOTIONS),
            }
        ),
    }
    targets = {
        "label": [label_names.index(v) if v is not None else -1 for v in labels],
        "tags": [[tag_names.index(t) for t in ts] for ts in tags],
        "video_tags": [
            [video_names.index(t) for t in ts] + [len(tag_names) + m]
            for ts, m in zip(tags, columns["motion"], strict=True)
        ],
    }
    out = {}
    for subset, feats in features.items():
        splits = {}
        for index, name in enumerate(SPLITS):
            rows = [i for i, s in enumerate(split) if s == index and (subset != "classification" or labels[i])]
            cols: dict[str, Any] = {}
            for column in feats:
                source = {"label": "label", "tags": "video_tags" if subset == "video" else "tags"}.get(column)
                values = targets[source] if source else columns[column]
                picked = [values[i] for i in rows]
                if column in ("image", "frames"):
                    shape = (size, size, 3) if column == "image" else (frames, size, size, 3)
                    picked = np.stack(picked) if picked else np.zeros((0, *shape), np.uint8)
                cols[column] = picked
            key = f"fashion|v{VERSION}|{params['content']}|{json.dumps(params, sort_keys=True)}|{subset}|{name}"
            splits[name] = to_dataset(cols, feats, name, hashlib.sha256(key.encode()).hexdigest()[:32])
        out[subset] = datasets.DatasetDict(splits)
    return out
