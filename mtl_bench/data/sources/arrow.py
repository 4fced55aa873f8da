"""Building a ``datasets.Dataset`` straight from column arrays, shared by every source.

Each source hands over its columns (numpy pixel arrays, lists of ints and strings) with the ``datasets.Features``
they must have; building from Arrow arrays is several times faster than ``Dataset.from_dict`` on pixel arrays, and
gives every source the same storage (Array3D images, Array4D clips), so ``prepare.py`` reads them all alike.
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa


def _nested_list(arr: np.ndarray) -> pa.Array:
    """A fixed-shape array [N, ...] as nested arrow lists (the storage of datasets' ArrayND), without copying rows."""
    flat = pa.array(arr.reshape(-1))
    for n in reversed(arr.shape[1:]):
        flat = pa.ListArray.from_arrays(pa.array(np.arange(0, len(flat) + 1, n, dtype=np.int32)), flat)
    return flat


def to_dataset(cols: dict[str, object], feats: datasets.Features, split: str, fingerprint: str) -> datasets.Dataset:
    """Build the Dataset straight from arrow arrays: several times faster than `Dataset.from_dict` on pixel arrays."""
    schema = feats.arrow_schema
    arrays = []
    for name in feats:
        typ, values = schema.field(name).type, cols[name]
        if isinstance(typ, pa.ExtensionType):
            arrays.append(pa.ExtensionArray.from_storage(typ, _nested_list(values)))
        else:
            arrays.append(pa.array(values, type=typ))
    table = pa.Table.from_arrays(arrays, schema=schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=feats), split=split, fingerprint=fingerprint)
