"""``landcover similar``: the tiles of an embedding store most like a few example tiles.

The query is one vector: the mean of the positives' L2-normalised embeddings minus the mean
of the negatives' (Rocchio's relevance feedback), normalised; a tile's score is its cosine
similarity to it. One vector keeps a query to one pass over the store (or one index probe),
and negatives push it away from what the user does not want; a vote of each positive's
nearest neighbours would follow several modes of a class better, at one search per example.

Search is exact (float32 dot products over the store, in chunks) by default; ``--index ivf``
uses an approximate inverted-file index from faiss (``faiss-cpu``), built once per store and
kept beside it (``<store>/_index/``), for stores of millions of tiles.
"""

from __future__ import annotations

import hashlib
import io
import json
import time

import numpy as np

from raylib.config import SimilarConfig
from raylib.errors import InputError
from raylib.eval import reference
from raylib.formats import embstore
from raylib.formats.mapfile import geo_metadata
from raylib.io import storage
from raylib.models.unit_rows import unit_rows

CHUNK = 200_000


def resolve_tiles(spec: list[str] | None, table, what: str) -> np.ndarray:
    """Store rows named by ``spec``: tile ids, or a points/polygons file (the tiles they meet)."""
    if not spec:
        return np.zeros(0, np.int64)

    ids = table.column("tile_id").to_pylist()
    if len(spec) == 1 and reference.is_vector(spec[0]):
        import shapely

        gdf = reference.read_vector(spec[0], None)
        geoms = table.column("geometry").to_pylist()
        has = [i for i, g in enumerate(geoms) if g is not None]
        tree = shapely.STRtree(shapely.from_wkb([geoms[i] for i in has]))
        hit = sorted({has[int(j)] for g in gdf.geometry.values for j in tree.query(g, predicate="intersects")})
        if not hit:
            raise InputError(f"The {what} {spec[0]} meet no tile of the store.", "give places inside the store's area.")
        return np.asarray(hit, np.int64)
    pos = {t: i for i, t in enumerate(ids)}
    missing = [t for t in spec if t not in pos]
    if missing:
        raise InputError(f"{len(missing)} {what} tile id(s) are not in the store (e.g. {missing[:2]}).",
                         "give tile ids of this store (its tile_id column), or a points/polygons file.")
    return np.asarray([pos[t] for t in spec], np.int64)


def query_vector(emb: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    q = unit_rows(emb[pos]).mean(axis=0)
    if len(neg):
        q = q - unit_rows(emb[neg]).mean(axis=0)
    n = np.linalg.norm(q)
    if n < 1e-12:
        raise InputError("The positives and negatives cancel out: the query is empty.", "give other examples.")
    return (q / n).astype(np.float32)


def exact_search(emb: np.ndarray, q: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` rows by cosine to ``q`` (rows in ``exclude`` left out)."""
    scores = np.empty(len(emb), np.float32)
    for i in range(0, len(emb), CHUNK):
        scores[i:i + CHUNK] = unit_rows(emb[i:i + CHUNK]) @ q
    scores[exclude] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, np.int64)
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, scores[top]


class IVFIndex:
    """faiss inner-product IVF index over L2-normalised embeddings."""

    def __init__(self, index):
        self.index = index

    @classmethod
    def build(cls, emb: np.ndarray, nlist: int | None = None, seed: int = 0) -> "IVFIndex":
        import faiss

        x = unit_rows(emb)
        d = x.shape[1]
        nlist = nlist or int(max(16, min(4096, 4 * np.sqrt(len(x)))))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x[rng.choice(len(x), size=min(len(x), 50 * nlist), replace=False)]
        index.train(train)
        for i in range(0, len(x), CHUNK):
            index.add(x[i:i + CHUNK])
        return cls(index)

    def search(self, q: np.ndarray, k: int, nprobe: int = 16) -> tuple[np.ndarray, np.ndarray]:
        self.index.nprobe = nprobe
        s, i = self.index.search(q[None].astype(np.float32), k)
        keep = i[0] >= 0
        return i[0][keep].astype(np.int64), s[0][keep]

    def to_bytes(self) -> bytes:
        import faiss

        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "IVFIndex":
        import faiss

        return cls(faiss.deserialize_index(np.frombuffer(data, np.uint8)))


def run_similar(cfg: SimilarConfig, argv: list[str] | None = None) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.time()
    store = embstore.locate(cfg.store)  # the store's folder, or a map folder holding one
    embstore.read_meta(store)
    table = embstore.read(store, columns=list(embstore.TILE_COLUMNS) + ["embedding", "status"])
    ok = np.asarray(table.column("status").to_pylist(), dtype=object) == "ok"
    if not ok.any():
        raise InputError(f"The embedding store {store} has no tile with an embedding.",
                         "build it from readable scenes.")
    pos = resolve_tiles(cfg.positives, table, "positive")
    neg = resolve_tiles(cfg.negatives, table, "negative")
    bad = [table.column("tile_id")[int(i)].as_py() for i in np.concatenate([pos, neg]) if not ok[i]]
    if bad:
        raise InputError(f"{len(bad)} example tile(s) are error tiles without an embedding (e.g. {bad[:2]}).",
                         "give tiles with status ok.")
    ok_pos = np.cumsum(ok) - 1  # row of the whole store -> row among the tiles with an embedding
    pos, neg = ok_pos[pos], ok_pos[neg]
    table = table.filter(ok)
    emb = embstore.embeddings_of(table)
    q = query_vector(emb, pos, neg)
    exclude = np.concatenate([pos, neg])
    t_load = time.time() - t0
    t1 = time.time()
    if cfg.index == "ivf":
        index = _cached_index(store, emb)
        t1 = time.time()
        idx, score = index.search(q, cfg.k + len(exclude))
        keep = ~np.isin(idx, exclude)
        idx, score = idx[keep][:cfg.k], score[keep][:cfg.k]
    else:
        idx, score = exact_search(emb, q, cfg.k, exclude)
    t_query = time.time() - t1
    out = table.select(list(embstore.TILE_COLUMNS)).take(pa.array(idx))
    out = out.append_column("score", pa.array(score.astype(np.float32)))
    out = out.append_column("rank", pa.array(np.arange(1, len(idx) + 1, dtype=np.int32)))

    md = {b"geo": json.dumps(geo_metadata(None)).encode(),
          b"landcover": json.dumps({"kind": "similar", "embeddings": store, "positives": cfg.positives,
                                    "negatives": cfg.negatives, "query": "mean(positives) - mean(negatives), cosine",
                                    "index": cfg.index, "created_by": " ".join(argv or [])}).encode()}
    buf = io.BytesIO()
    pq.write_table(out.replace_schema_metadata(md), buf)
    storage.write_bytes(cfg.out, buf.getvalue())
    return {"out": cfg.out, "k": int(len(idx)), "positives": int(len(pos)), "negatives": int(len(neg)),
            "tiles": int(len(emb)), "index": cfg.index, "load_seconds": round(t_load, 3),
            "query_seconds": round(t_query, 4), "top_score": float(score[0]) if len(score) else None}


def _cached_index(store: str, emb: np.ndarray) -> IVFIndex:
    key = hashlib.sha256(json.dumps(sorted(storage.basename(f) for f in embstore.part_files(store))).encode()
                         + str(len(emb)).encode()).hexdigest()[:16]
    uri = storage.join(store, "_index", f"ivf-{key}.faiss")
    if storage.exists(uri):
        return IVFIndex.from_bytes(storage.read_bytes(uri))
    index = IVFIndex.build(emb)
    storage.write_bytes(uri, index.to_bytes())
    return index
