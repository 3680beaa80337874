"""How a map's rows are cut into output parts, and which parts a run still owes.

The tiles of a run have one global index, scene after scene, each scene's tiles in
row-major grid order. A *chunk* is a contiguous index range that becomes one Parquet part
with a name fixed by the job (its settings and its scenes' versions), so a re-run of the
same job computes the same names. A part is written whole or not at all (an atomic local
rename, a single S3 PUT) under ``_tmp/``, and moved into place when the run ends: a part
that exists is complete, and a re-run owes only the chunks whose part is absent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from raylib.io import storage
from raylib.raster.bands import MAX_STAT_BANDS as max_stats

TMP = "_tmp"


@dataclass(frozen=True)
class Chunk:
    name: str  # part file name, e.g. part-00003.parquet
    lo: int  # global tile index range [lo, hi)
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


def digest(obj) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def global_chunks(n_tiles: int, rows_per_part: int) -> list[Chunk]:
    """Chunks over the whole run (parts may hold several scenes)."""
    return [Chunk(f"part-{k:05d}.parquet", lo, min(n_tiles, lo + rows_per_part))
            for k, lo in enumerate(range(0, n_tiles, rows_per_part))]


def scene_chunks(prefix: str, start: int, n: int, rows_per_part: int) -> list[Chunk]:
    """Chunks of one scene (incremental maps keep each scene in parts of its own)."""
    return [Chunk(f"{prefix}-{k:05d}.parquet", lo, min(start + n, lo + rows_per_part))
            for k, lo in enumerate(range(start, start + n, rows_per_part))]


def existing(out: str) -> dict[str, str]:
    """Part name -> URI of every ``part-*.parquet`` at ``out`` and under ``out/_tmp``."""
    found: dict[str, str] = {}
    base = storage.as_prefix(out)
    for uri in storage.folder_files(out):
        rel = uri[len(base):]
        name = rel.split("/")[-1]
        if rel in (name, f"{TMP}/{name}") and name.startswith("part-") and name.endswith(".parquet"):
            found.setdefault(name, uri)
    return found


def remove_tmp_debris(out: str, keep: set[str]) -> list[str]:
    """Delete what ``_tmp/`` holds besides the parts in ``keep`` (a killed run's leftovers)."""
    gone = []
    for uri in storage.folder_files(storage.join(out, TMP)):
        if storage.basename(uri) not in keep:
            storage.delete_prefix(uri)
            gone.append(uri)
    return gone


def commit(out: str, names: list[str], after_each=None) -> None:
    """Move the parts ``names`` from ``_tmp/`` into place (those already there stay)."""
    for name in names:
        src = storage.join(out, TMP, name)
        if storage.exists(src):
            storage.move(src, storage.join(out, name))
        if after_each:
            after_each(name)


STAT_COLUMNS = ("band_mean", "band_std", "n_stats", "ndvi", "ndwi", "ood")


class Buffer:
    """Results of one chunk while its rows come back from the pipeline (in any order)."""

    def __init__(self, chunk: Chunk, n_classes: int, embedding_dim: int | None = None):

        n = chunk.size
        self.embedding = np.zeros((n, embedding_dim or 0), np.float16)  # store runs only
        self.chunk = chunk
        self.probs = np.full((n, n_classes), np.nan, np.float32)
        self.fill = np.ones(n, np.float32)
        self.status = np.full(n, "error", dtype=object)
        self.error = np.full(n, "", dtype=object)
        self.band_mean = np.full((n, max_stats), np.nan, np.float32)
        self.band_std = np.full((n, max_stats), np.nan, np.float32)
        self.n_stats = np.zeros(n, np.int8)
        self.ndvi = np.full(n, np.nan, np.float32)
        self.ndwi = np.full(n, np.nan, np.float32)
        self.ood = np.full(n, np.nan, np.float32)
        self.done = np.zeros(n, bool)

    def stats(self) -> dict:
        return {k: getattr(self, k) for k in STAT_COLUMNS}

    def put(self, idx: np.ndarray, **cols) -> None:
        """Rows at global indices ``idx``; a row that arrives twice is a bug, not data."""
        pos = idx - self.chunk.lo
        if self.done[pos].any():
            raise RuntimeError(f"a tile of {self.chunk.name} came back twice from the pipeline")
        self.done[pos] = True
        for k, v in cols.items():
            if k == "embedding":
                if v.shape[1] == 0:  # a block without readable tiles: nothing to store
                    continue
                if self.embedding.shape[1] != v.shape[1]:
                    self.embedding = np.zeros((len(self.done), v.shape[1]), np.float16)
            getattr(self, k)[pos] = v

    @property
    def complete(self) -> bool:
        return bool(self.done.all())
