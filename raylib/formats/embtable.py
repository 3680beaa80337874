"""The embeddings table ``landcover embed`` writes (Parquet): reading it back.
"""

from __future__ import annotations

import io
import json

import numpy as np

from raylib.errors import InputError
from raylib.io import storage


def read_embeddings(uri: str):
    """``(X, y, split, classes, meta, table)`` from an embeddings folder or file."""
    import pyarrow.parquet as pq

    path = uri if uri.endswith(".parquet") else storage.join(uri, "embeddings.parquet")
    if not storage.exists(path):
        raise InputError(f"No embeddings at {uri}.", "run landcover embed first (its --out is this folder).")
    table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
    meta = json.loads(table.schema.metadata[b"landcover"])
    col = table.column("embedding").combine_chunks()
    X = col.values.to_numpy().reshape(len(table), -1)
    y = table.column("label_index").to_numpy().astype(np.int64)
    split = np.array(table.column("split").to_pylist())
    return X, y, split, meta["classes"], meta, table
