"""On-disk cache of the generated shop data, with a content fingerprint for provenance.

The first `load_shop` call for a set of parameters generates the data and saves it (Arrow files via `save_to_disk`)
under `data_dir/shop-v{GENERATOR_VERSION}-{hash of params}/`; later calls memory-map it with `load_from_disk`. The
cache is written into a temporary sibling directory and renamed into place, so a crash never leaves a half-written
directory under the final name, and two processes racing to build it both end up reading one complete copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import pyarrow as pa

from mtl_bench.data import shop
from mtl_bench.errors import UserError

FINGERPRINT_FILE = "fingerprint.txt"  # written last: its presence marks a complete cache directory
PARAMS_FILE = "params.json"
_SHARD_BYTES = 500 * 2**20  # at most this many bytes per arrow file


class ShopData(NamedTuple):
    """What `load_shop` returns; unpacks as `subsets, fingerprint = load_shop(...)`."""

    subsets: dict[str, datasets.DatasetDict]
    fingerprint: str  # sha256 hex over every generated array and string


def _hash_array(h: hashlib._Hash, arr: pa.Array) -> None:
    """Feed one arrow array's content (not its memory layout or chunking) into the hash."""
    if isinstance(arr, pa.ExtensionArray):  # fixed-shape ArrayND: hash the shape once, then the flat values
        h.update(repr(arr.type.shape).encode())
        arr = arr.storage
        while pa.types.is_list(arr.type):
            arr = arr.flatten()
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        h.update(lengths.tobytes())
        _hash_array(h, arr.flatten())
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        for text in arr.to_pylist():
            data = text.encode()
            h.update(len(data).to_bytes(8, "little") + data)
    else:
        values = arr.to_numpy(zero_copy_only=False)
        h.update(values.dtype.str.encode() + np.ascontiguousarray(values).tobytes())


def content_fingerprint(subsets: dict[str, datasets.DatasetDict]) -> str:
    """sha256 hex over all subsets, splits and columns (names, values, lengths), independent of arrow chunking."""
    h = hashlib.sha256()
    for subset in sorted(subsets):
        for split, ds in subsets[subset].items():
            table = ds.with_format("arrow")[:]  # respects any indices mapping (a shuffled or selected view)
            h.update(f"{subset}/{split}/{table.num_rows}".encode())
            for name in table.column_names:
                h.update(name.encode())
                _hash_array(h, table.column(name).combine_chunks())
    return h.hexdigest()


def cache_dir_name(seed: int, sizes: dict[str, tuple[int, int, int]] | None, image_size: int, num_frames: int) -> str:
    """Directory name for one parameter set: version, then a short hash of the resolved parameters."""
    params = _params(seed, sizes, image_size, num_frames)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"shop-v{shop.GENERATOR_VERSION}-{digest}"


def _params(seed: int, sizes: dict[str, tuple[int, int, int]] | None, image_size: int, num_frames: int) -> dict:
    resolved = {k: list(v) for k, v in shop.resolve_sizes(sizes).items()}
    return {"generator_version": shop.GENERATOR_VERSION, "seed": seed, "sizes": resolved, "image_size": image_size,
            "num_frames": num_frames}  # fmt: skip


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence datasets' progress bars while saving/loading, restoring the caller's setting afterwards."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def build_once(final: Path, write: Callable[[Path], None], what: str) -> Path:
    """The complete cache folder ``final``: used as is when complete, else made by ``write(tmp)`` in a temporary
    sibling (which must end by writing FINGERPRINT_FILE) and renamed into place. A crash never leaves a half-written
    folder under the final name, and two processes racing to build it both end up reading one complete copy."""
    if (final / FINGERPRINT_FILE).is_file():
        return final
    data_dir = final.parent
    if final.exists():  # not written by us (we rename complete dirs only): move it aside rather than trust it
        final.rename(data_dir / f".{final.name}.broken-{uuid.uuid4().hex[:8]}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{what} cache: cannot create data.dir {str(data_dir)!r}: {err}") from err
    tmp = data_dir / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        write(tmp)
        os.rename(tmp, final)  # atomic on one filesystem; fails if another process got there first
    except OSError:
        if not (final / FINGERPRINT_FILE).is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _read(path: Path) -> ShopData:
    try:
        with quiet_progress():
            subsets = {name: datasets.load_from_disk(str(path / name)) for name in shop.SUBSETS}
    except FileNotFoundError as err:
        raise UserError(f"shop cache {str(path)!r} is damaged ({err}); delete that directory to regenerate it") from err
    return ShopData(subsets, (path / FINGERPRINT_FILE).read_text().strip())


def write_subsets(path: Path, subsets: dict[str, datasets.DatasetDict], fingerprint: str, params: dict) -> None:
    with quiet_progress():
        for name, dsd in subsets.items():
            # explicit shard counts: datasets would write no shard at all for an empty split, then fail to load it
            shards = {split: max(1, math.ceil(ds.data.nbytes / _SHARD_BYTES)) for split, ds in dsd.items()}
            dsd.save_to_disk(str(path / name), num_shards=shards)
    (path / PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    (path / FINGERPRINT_FILE).write_text(fingerprint + "\n")


def load_shop(data_dir: str | Path, seed: int = 0, sizes: dict[str, tuple[int, int, int]] | None = None,
              image_size: int = 32, num_frames: int = 8) -> ShopData:
    """Load the shop subsets for these parameters, generating and caching them on first use.

    Returns (subsets, fingerprint); the fingerprint is computed once, at generation, and stored with the cache.
    """
    data_dir = Path(data_dir)
    params = _params(seed, sizes, image_size, num_frames)  # validates sizes before touching the disk

    def write(tmp: Path) -> None:
        subsets = shop.generate_shop(seed=seed, sizes=sizes, image_size=image_size, num_frames=num_frames)
        write_subsets(tmp, subsets, content_fingerprint(subsets), params)

    final = build_once(data_dir / cache_dir_name(seed, sizes, image_size, num_frames), write, "shop")
    return _read(final)
