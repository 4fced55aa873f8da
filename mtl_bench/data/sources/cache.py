"""The on-disk Arrow cache every source shares, with a content fingerprint for provenance.

A source builds its subsets once per set of parameters and saves them (Arrow files via `save_to_disk`) under
`data.dir/<source>-v<VERSION>-<hash of params>/`; later loads memory-map them with `load_from_disk`. `build_once`
writes the cache into a temporary sibling directory and renames it into place, so a crash never leaves a
half-written directory under the final name, and two processes racing to build it both end up reading one complete
copy. `content_fingerprint` hashes the data themselves (not their Arrow layout), so it names what a result was
computed on.
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

import datasets
import numpy as np
import pyarrow as pa

from mtl_bench.errors import UserError

FINGERPRINT_FILE = "fingerprint.txt"  # written last: its presence marks a complete cache directory
PARAMS_FILE = "params.json"
_SHARD_BYTES = 500 * 2**20  # at most this many bytes per arrow file


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


def write_subsets(path: Path, subsets: dict[str, datasets.DatasetDict], fingerprint: str, params: dict) -> None:
    with quiet_progress():
        for name, dsd in subsets.items():
            # explicit shard counts: datasets would write no shard at all for an empty split, then fail to load it
            shards = {split: max(1, math.ceil(ds.data.nbytes / _SHARD_BYTES)) for split, ds in dsd.items()}
            dsd.save_to_disk(str(path / name), num_shards=shards)
    (path / PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    (path / FINGERPRINT_FILE).write_text(fingerprint + "\n")
