"""Book-keeping of one map run: the parts it owes and their buffers in flight, counts per
status and reason, quick-look label grids, and where its embedding store goes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raylib.config import MapConfig
from raylib.eval import reports
from raylib.failpoints import failpoint
from raylib.formats import embstore, mapfile, parts
from raylib.io import storage
from raylib.models.model_dir import ModelManifest, local_model_folder
from raylib.pipelines.common.planning import ScenePlan
from raylib.raster import tiling

EMBEDDINGS = "embeddings"  # the embedding store beside a map (landcover map --embeddings)


class MapRun:
    """Book-keeping of one run: the chunks it owes, their buffers, counts and label grids."""

    def __init__(self, cfg: MapConfig, plans: list[ScenePlan], chunks: list[parts.Chunk], grid: tiling.GridSpec,
                 manifest: ModelManifest, extra: dict, store: StoreOutput | None = None):
        self.cfg, self.plans, self.chunks, self.grid, self.manifest, self.extra = cfg, plans, chunks, grid, manifest, extra
        self.store = store
        self.dim: int | None = None  # embedding size, known from the first rows back (store runs)
        self.starts = np.array([p.start for p in plans], np.int64)
        self.chunk_lo = np.array([c.lo for c in chunks], np.int64)
        self.buffers: dict[int, parts.Buffer] = {}
        self.counts: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self.scene_counts: dict[str, dict[str, int]] = {}
        self.scene_index = {p.uri: i for i, p in enumerate(plans)}
        self.labels = {i: np.full((len(p.layout.row_offs), len(p.layout.col_offs)), -1, np.int16)
                       for i, p in enumerate(plans) if p.layout is not None} if cfg.quicklook else {}
        self.written: set[str] = set()
        self.read_retries = 0

    def scenes_in(self, lo: int, hi: int):
        """(scene index, lo, hi) pieces of the global range ``lo..hi``."""
        s = int(np.searchsorted(self.starts, lo, side="right") - 1)
        while s < len(self.plans) and self.plans[s].start < hi:
            p = self.plans[s]
            a, b = max(lo, p.start), min(hi, p.start + p.n_tiles)
            if a < b:
                yield s, a, b
            s += 1

    def account(self, table) -> None:
        """Counts, reasons and quick-look labels of one part's rows."""
        st = table["status"].to_numpy(zero_copy_only=False)
        rs = table["reason"].to_numpy(zero_copy_only=False)
        for v, n in zip(*np.unique(st.astype(str), return_counts=True)):
            self.counts[v] = self.counts.get(v, 0) + int(n)
        for v, n in zip(*np.unique(rs[st != "ok"].astype(str), return_counts=True)):
            self.reasons[v] = self.reasons.get(v, 0) + int(n)
        sc = table["scene"].to_numpy(zero_copy_only=False)
        for uri in np.unique(sc):
            per = self.scene_counts.setdefault(uri, {})
            for v, n in zip(*np.unique(st[sc == uri].astype(str), return_counts=True)):
                per[v] = per.get(v, 0) + int(n)
        if self.labels:
            gr, gc = table["grid_row"].to_numpy(), table["grid_col"].to_numpy()
            li = table["label_index"].fill_null(-1).to_numpy().copy()
            li[np.asarray(table["label"].to_pylist(), dtype=object) == mapfile.UNKNOWN] = reports.UNKNOWN_INDEX
            for uri in np.unique(sc):
                i = self.scene_index.get(uri)
                m = (sc == uri) & (gr >= 0)
                if i in self.labels and m.any():
                    self.labels[i][gr[m], gc[m]] = li[m]

    def open_chunk(self, k: int) -> parts.Buffer:
        """A buffer for chunk ``k``, with the rows of its failed scenes filled in already."""
        buf = self.buffers[k] = parts.Buffer(self.chunks[k], len(self.manifest.classes),
                                             embedding_dim=self.dim if self.store else None)
        for s, a, b in self.scenes_in(buf.chunk.lo, buf.chunk.hi):
            p = self.plans[s]
            if p.failure:
                idx = np.arange(a, b)
                buf.put(idx, status=np.full(len(idx), "error", object),
                        error=np.full(len(idx), f"{p.failure[0]}: {p.failure[1]}", object))
        return buf

    def write(self, k: int) -> None:
        """Write chunk ``k``'s part under ``_tmp/`` (complete or absent) and account for it."""
        import pyarrow as pa

        buf = self.buffers.pop(k)
        c = buf.chunk
        rows = pa.concat_tables([self.plans[s].manifest_rows(self.grid, a, b) for s, a, b in self.scenes_in(c.lo, c.hi)])
        table = mapfile.build_table(rows, buf.probs, buf.status, buf.error, buf.fill, self.manifest.classes,
                                    self.manifest.id, stats=buf.stats(), unknown_below=self.cfg.unknown_below)
        if self.store:  # the store part first: a map part on disk means its store part is there too
            emb = buf.embedding
            if self.dim and emb.shape[1] != self.dim:  # a chunk without one readable tile
                emb = np.zeros((len(emb), self.dim), np.float16)
            st = embstore.build_table(rows, emb, buf.status, buf.error, buf.fill, buf.stats())
            embstore.write_part(st, self.store.part_uri(self.cfg.out, c.name), self.store.meta)
        if not (self.store and self.store.only):
            mapfile.write_part(table, storage.join(self.cfg.out, parts.TMP, c.name), self.manifest.classes,
                               self.manifest.id, self.extra)
        self.account(table)
        self.written.add(c.name)
        failpoint("part_written")

    def read_units(self, pending: list[int]) -> list[dict]:
        """Read units (≤ read_batch_size tiles of one scene, in grid order) of the tiles the
        pending chunks still need from the pipeline."""
        units = []
        specs: dict[int, str] = {}
        step = self.cfg.read_batch_size
        for k in pending:
            c = self.chunks[k]
            for s, a, b in self.scenes_in(c.lo, c.hi):
                p = self.plans[s]
                if p.failure:
                    continue
                if s not in specs:
                    specs[s] = p.read_spec(self.grid.tile_size, self.cfg.max_fill_fraction)
                for u in range(a, b, step):
                    units.append({"spec": specs[s], "base": p.start, "lo": u - p.start,
                                  "hi": min(b, u + step) - p.start})
        return units


@dataclass
class StoreOutput:
    """Where a run writes its embedding store: ``<out>/embeddings/`` beside a map, or ``out``
    itself (``landcover embed --scenes``: the store is the output, its parts resume like a
    map's), and the store's metadata."""

    meta: dict
    only: bool = False

    def root(self, out: str) -> str:
        return out if self.only else storage.join(out, EMBEDDINGS)

    def part_uri(self, out: str, name: str) -> str:
        return storage.join(out, parts.TMP, name) if self.only else storage.join(out, EMBEDDINGS, name)


def store_meta(cfg: MapConfig, manifest: ModelManifest, model_uri: str, grid: dict) -> dict:
    """The store's identity: backbone, weights hash, preprocessing (and its hash)."""

    bb = manifest.backbone
    folder = local_model_folder(model_uri)
    bb_folder = str(folder / bb["path"]) if bb.get("path") else (
        str(folder / manifest.backbone.get("path", "model")) if manifest.kind == "finetuned" else None)
    ref = bb.get("source") or bb.get("ref") or manifest.id
    pre = {"grid": grid, "input_size": bb.get("input_size"), "model_bands": manifest.bands,
           **{k: getattr(cfg, k) for k in ("bands", "scaling", "sensor", "fill_value", "scale", "sun_elevation",
                                           "spectral_bands", "max_fill_fraction")}}
    return {"backbone": ref, "input_size": bb.get("input_size"), "model_id": manifest.id, "model_kind": manifest.kind,
            "model_uri": model_uri,
            "weights_hash": embstore.weights_hash(bb_folder, ref), "preprocessing": pre,
            "preprocessing_hash": embstore.preprocessing_hash(pre), "embedding_dtype": "float16",
            "note": "one row per tile, keyed by the map's tile_id; error tiles have no embedding"}
