"""The driver's side of a map run: rows back from the model -> map (and store) tables -> the
part writers, and what the run counts.

The driver keeps no plan and no tile of a finished scene: a small record per scene seen
(version, tile count, failure), and, for scenes in flight only, which of their tiles came
back and their quick-look label grid. A scene's first rows carry its record (``meta``,
``source.scene_meta``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.config import MapConfig
from raylib.formats import embstore, mapfile
from raylib.models.manifest import ModelManifest
from raylib.pipelines.common.tile_grid import TileGrid
from raylib.pipelines.map import row_codec
from raylib.raster import read_block, tiling

STAT_COLUMNS = read_block.ROW_STATS


@dataclass
class SceneInFlight:
    meta: dict
    todo: np.ndarray  # tiles not back yet
    look: TileGrid | None = None  # what its quick-look draws, per grid cell


class Ingest:
    """Rows in (numpy batches from the model stage), tables out to ``writer_for(scene)``."""

    def __init__(self, cfg: MapConfig, grid: tiling.GridSpec, manifest: ModelManifest, writer_for, *,
                 done: dict | None = None, store: bool = False, store_only: bool = False, on_scene_done=None):
        self.cfg, self.grid, self.manifest = cfg, grid, manifest
        self.writer_for = writer_for  # (scene uri, its record) -> PartWriter
        self.done = done or {}  # uri -> tile ranges an earlier run wrote
        self.store, self.store_only = store, store_only
        self.tiles_known = 0  # tiles this run owes, over the scenes met so far (progress)
        self.on_scene_done = on_scene_done  # (SceneInFlight) when every tile of a scene is back
        # (scene URI) -> the rows of it a killed run of the job wrote (``tile_grid.QUICKLOOK_COLUMNS``),
        # for its picture
        self.earlier_rows = None
        self.counts: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self.records: dict[str, dict] = {}  # uri -> {"fingerprint", "tiles", "failed"}: every scene seen
        self.inflight: dict[str, SceneInFlight] = {}
        self.scaling: dict[str, int] = {}
        self.radiometry_examples: dict[str, dict] = {}
        self.radiometry_warnings: dict = {}  # scenes whose scaling deserves a word: how many, a few examples
        self.read_retries = 0
        self.rows = 0
        self.first_row: float | None = None
        self.dim: int | None = None
        self.deferred: list = []  # store runs: rows that came before the embedding size was known
        self.early: dict[str, list] = {}  # scene uri -> rows that came before the scene's record

    # ----------------------------------------------------------------- scenes

    def record(self, uri: str) -> dict:
        """A scene's record for the parts' contents: version, tile count, failure."""
        r = self.records[uri]
        return {"fingerprint": r["fingerprint"], "tiles": r["tiles"], "failed": r["failed"], "message": r["message"]}

    def scenes_with(self, done: dict) -> dict[str, dict]:
        """Every scene of the job so far: this run's records with what resumed parts held
        (``done``: ``partwriter.done_scenes``), counts added."""
        out = {u: {"tiles": d["tiles"], "failed": d["failed"], "message": d.get("message"),
                   "counts": dict(d["counts"])} for u, d in done.items()}
        for u, r in self.records.items():
            o = out.setdefault(u, {"tiles": r["tiles"], "failed": r["failed"], "message": r["message"], "counts": {}})
            for k, v in r["counts"].items():
                o["counts"][k] = o["counts"].get(k, 0) + v
        return out

    def _meet(self, meta: dict) -> SceneInFlight:
        uri = meta["uri"]
        sc = self.inflight.get(uri)
        if sc is not None:
            return sc
        if uri in self.records:
            raise RuntimeError(f"rows of {uri} came back after the scene was complete")
        n = int(meta["tiles"])
        failure = meta["failure"]
        self.read_retries += int(meta.get("retries", 0))
        self.records[uri] = {"fingerprint": meta["fingerprint"], "tiles": n, "failed": failure[0] if failure else None,
                             "message": failure[1] if failure else None, "counts": {}}
        if meta.get("radiometry"):
            mode = meta["radiometry"]["scaling"]
            self.scaling[mode] = self.scaling.get(mode, 0) + 1
            if len(self.radiometry_examples) < 5:
                self.radiometry_examples[uri] = meta["radiometry"]
            if meta["radiometry"].get("warning"):  # match as the last resort, or refused: said per scene
                w = self.radiometry_warnings
                w["scenes"] = w.get("scenes", 0) + 1
                if len(w.setdefault("examples", {})) < 5:
                    w["examples"][uri] = meta["radiometry"]["warning"]
        todo = np.ones(n, bool)
        for lo, hi in self.done.get(uri, ()):
            todo[lo:hi] = False
        self.tiles_known += int(todo.sum())
        look = None
        if self.cfg.quicklook and meta["grid_shape"] and not meta["failure"]:
            look = TileGrid.empty(meta["grid_shape"])
        if look is not None and not todo.all() and self.earlier_rows:  # resumed: the tiles a killed run wrote
            before = self.earlier_rows(uri)
            if before is not None and before.num_rows:
                look.put(TileGrid.cells(before))
        sc = self.inflight[uri] = SceneInFlight(meta, todo, look=look)
        for args in self.early.pop(uri, []):  # Ray Data may return a unit's later rows first
            self._emit_scene(uri, *args)
        return sc

    # ----------------------------------------------------------------- rows

    def add(self, batch: dict) -> None:
        """One block of rows back from the model stage."""
        if self.first_row is None:
            self.first_row = time.time()
        metas = {}
        for m in batch["meta"][batch["meta"] != ""]:
            meta = json.loads(m)
            metas[meta["uri"]] = self._meet(meta)
        self.read_retries += int(np.asarray(batch["retries"]).sum())
        span = np.asarray(batch["span"])
        if self.store and self.dim is None:
            emb = batch.get("embedding")
            if emb is not None and emb.shape[1]:
                self.dim = int(emb.shape[1])
                for b in self.deferred:
                    self._tiles(b)
                self.deferred = []
        tiles = span == 0
        if tiles.any():
            b = {k: np.asarray(v)[tiles] for k, v in batch.items()} if not tiles.all() else batch
            if self.store and self.dim is None:
                self.deferred.append(b)
            else:
                self._tiles(b)
        for i in np.flatnonzero(~tiles):
            self._failure(batch, int(i))

    def check_complete(self, uris: list[str], done: dict) -> None:
        """Every tile of every scene came back (or was written by an earlier run)."""
        if self.inflight:
            some = sorted(self.inflight)[:3]
            raise RuntimeError(f"{len(self.inflight)} scenes never got all their rows from the pipeline ({some}); "
                               "nothing was marked complete")
        if self.early:
            raise RuntimeError(f"rows of {len(self.early)} scenes came back without their scene's record "
                               f"({sorted(self.early)[:3]}); nothing was marked complete")
        lost = [u for u in uris if u not in self.records and u not in done]
        if lost:
            raise RuntimeError(f"{len(lost)} scenes never came back from the pipeline ({lost[:3]}); "
                               "nothing was marked complete")

    def finish(self) -> None:
        """Rows still deferred (a store run in which no tile could be read)."""
        if self.deferred:
            self.dim = 0
            for b in self.deferred:
                self._tiles(b)
            self.deferred = []

    def _tiles(self, b: dict) -> None:
        uris = np.asarray(b["uri"], object)
        n = len(uris)
        man = row_codec.decode_tiles(b)
        stats = {k: b[k] for k in STAT_COLUMNS if k in b}
        stats.setdefault("ood", np.full(n, np.nan, np.float32))
        status = np.asarray(b["status"], object)
        error = np.asarray(b["error"], object)
        table = mapfile.build_table(man, b["probs"], status, error, b["fill_fraction"], self.manifest.classes,
                                    self.manifest.id, stats=stats, unknown_below=self.cfg.unknown_below)
        tables = [] if self.store_only else [table]
        if self.store:
            emb = b["embedding"]
            if self.dim and emb.shape[1] != self.dim:
                emb = np.zeros((n, self.dim), np.float16)
            tables.insert(0, embstore.build_table(man, emb, status, error, b["fill_fraction"], stats))
        self._emit(tables, uris, np.asarray(b["idx"], np.int64), table)

    def _failure(self, batch: dict, i: int) -> None:
        """One record of a scene that cannot be mapped -> its error rows."""
        meta = json.loads(batch["meta"][i]) if batch["meta"][i] else None
        lo, span = int(batch["idx"][i]), int(batch["span"][i])
        if meta is None:  # a later unit of a failed scene: its record came with the first one
            raise RuntimeError("a failed scene's record came back without its meta")
        uri = meta["uri"]
        man = row_codec.decode_failure(meta, self.grid, lo, span)
        n = man.num_rows
        probs = np.full((n, len(self.manifest.classes)), np.nan, np.float32)
        status = np.full(n, "error", object)
        error = np.full(n, batch["error"][i], object)
        fill = np.ones(n, np.float32)
        table = mapfile.build_table(man, probs, status, error, fill, self.manifest.classes, self.manifest.id,
                                    unknown_below=self.cfg.unknown_below)
        tables = [] if self.store_only else [table]
        if self.store:
            tables.insert(0, embstore.build_table(man, np.zeros((n, self.dim or 0), np.float16), status, error,
                                                  fill, mapfile.no_stats(n)))
        self._emit(tables, np.full(n, uri, object), np.arange(lo, lo + n, dtype=np.int64), table)

    def _emit(self, tables: list[pa.Table], uris: np.ndarray, t: np.ndarray, table: pa.Table) -> None:
        st = np.asarray(table.column("status").to_pylist(), object)
        rs = np.asarray(table.column("reason").to_pylist(), object)
        for v, c in zip(*np.unique(st.astype(str), return_counts=True)):
            self.counts[v] = self.counts.get(v, 0) + int(c)
        bad = st != "ok"
        for v, c in zip(*np.unique(rs[bad].astype(str), return_counts=True)):
            self.reasons[v] = self.reasons.get(v, 0) + int(c)
        self.rows += len(st)
        cells = TileGrid.cells(table) if self.cfg.quicklook else None
        order = np.argsort(uris.astype(str), kind="stable")
        su = uris[order].astype(str)
        cut = np.flatnonzero(su[1:] != su[:-1]) + 1
        ready = []  # (uri, rows) of scenes in flight
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(su)]):
            uri, rows = su[a], order[a:b]
            if uri in self.inflight:
                ready.append((uri, rows))
            elif uri in self.records:
                raise RuntimeError(f"rows of {uri} came back after the scene was complete")
            else:  # before the scene's record (its first rows) came: held until it comes
                sub = pa.array(rows)
                self.early.setdefault(uri, []).append(
                    ([tb.take(sub) for tb in tables], t[rows], st[rows],
                     None if cells is None else cells.take(rows)))
        if not ready:
            return
        writers = {id(self._writer(uri)) for uri, _ in ready}
        if len(writers) == 1:  # one writer (a whole map): the rows go as they came, no copy per scene
            rows = np.sort(np.concatenate([r for _, r in ready]))
            whole = len(rows) == len(t)
            sub = None if whole else pa.array(rows)
            self._writer(ready[0][0]).add(tables if whole else [tb.take(sub) for tb in tables], t[rows])
            for uri, r in ready:
                self._account_scene(uri, t[r], st[r], None if cells is None else cells.take(r))
        else:  # a writer per scene (incremental maps)
            for uri, r in ready:
                sub = pa.array(r)
                self._emit_scene(uri, [tb.take(sub) for tb in tables], t[r], st[r],
                                 None if cells is None else cells.take(r))

    def _emit_scene(self, uri: str, tables: list, idx: np.ndarray, st: np.ndarray, drawn) -> None:
        """Rows of one scene in flight, written to its writer, then accounted for."""
        self._writer(uri).add(tables, idx)
        self._account_scene(uri, idx, st, drawn)

    def _writer(self, uri: str):
        return self.writer_for(uri, self.inflight[uri].meta)

    def _account_scene(self, uri: str, idx: np.ndarray, st: np.ndarray, drawn) -> None:
        """Rows of one scene in flight (already given to a writer): checked, counted, drawn;
        the scene is done when its last tile is back."""
        sc = self.inflight[uri]
        if (~sc.todo[idx]).any():
            raise RuntimeError(f"a tile of {uri} came back twice from the pipeline")
        sc.todo[idx] = False
        counts = self.records[uri]["counts"]
        for v, c in zip(*np.unique(st.astype(str), return_counts=True)):
            counts[v] = counts.get(v, 0) + int(c)
        if sc.look is not None and drawn is not None:
            sc.look.put(drawn)
        if not sc.todo.any():
            del self.inflight[uri]
            if self.on_scene_done:
                self.on_scene_done(sc)
