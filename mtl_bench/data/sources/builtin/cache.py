"""On-disk cache of the generated shop data (see ``mtl_bench.data.sources.cache`` for how caches are written).

The first `load_shop` call for a set of parameters generates the data and saves it under
`data_dir/shop-v{GENERATOR_VERSION}-{hash of params}/`; later calls memory-map it with `load_from_disk`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import datasets

from mtl_bench.data.sources.builtin import shop
from mtl_bench.data.sources.cache import (
    FINGERPRINT_FILE,
    build_once,
    content_fingerprint,
    quiet_progress,
    write_subsets,
)
from mtl_bench.errors import UserError


class ShopData(NamedTuple):
    """What `load_shop` returns; unpacks as `subsets, fingerprint = load_shop(...)`."""

    subsets: dict[str, datasets.DatasetDict]
    fingerprint: str  # sha256 hex over every generated array and string


def cache_dir_name(seed: int, sizes: dict[str, tuple[int, int, int]] | None, image_size: int, num_frames: int) -> str:
    """Directory name for one parameter set: version, then a short hash of the resolved parameters."""
    params = _params(seed, sizes, image_size, num_frames)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"shop-v{shop.GENERATOR_VERSION}-{digest}"


def _params(seed: int, sizes: dict[str, tuple[int, int, int]] | None, image_size: int, num_frames: int) -> dict:
    resolved = {k: list(v) for k, v in shop.resolve_sizes(sizes).items()}
    return {"generator_version": shop.GENERATOR_VERSION, "seed": seed, "sizes": resolved, "image_size": image_size,
            "num_frames": num_frames}  # fmt: skip


def _read(path: Path) -> ShopData:
    try:
        with quiet_progress():
            subsets = {name: datasets.load_from_disk(str(path / name)) for name in shop.SUBSETS}
    except FileNotFoundError as err:
        raise UserError(f"shop cache {str(path)!r} is damaged ({err}); delete that directory to regenerate it") from err
    return ShopData(subsets, (path / FINGERPRINT_FILE).read_text().strip())


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
