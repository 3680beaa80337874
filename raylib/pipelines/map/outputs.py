"""Where a map's rows go, one strategy per mode (``run_map`` does not branch on it).

``FullOutput``: the whole map at ``out`` as parts sized by bytes (``partwriter``), rows of
any scene in the order they come back; a re-run of the same job (same settings, same
scene list) into the same ``out`` resumes it (the parts' recorded contents say which tiles
are done), another job starts over (``--overwrite`` to replace a finished map).

``IncrementalOutput`` (``--incremental``): each scene in parts of its own, and a state record
(``formats.mapstate``) of what was mapped with which model: a run maps only new, changed or
failed scenes, then records them and removes the parts they replace.
"""

from __future__ import annotations

import itertools
import logging
import re

from raylib.config import MapConfig
from raylib.errors import ConfigError
from raylib.formats import embstore, map_folder, mapfile, mapstate, out_folder, parts, partwriter
from raylib.io import storage
from raylib.raster import scenes

log = logging.getLogger(__name__)


class _Output:
    """What both strategies share: the sinks of a part (map, store), the resumed parts."""

    def __init__(self, cfg: MapConfig, store=None):
        self.cfg, self.store = cfg, store
        self.resumed: dict[str, dict] = {}  # part name -> its contents record
        self.resumed_uris: dict[str, str] = {}  # part name -> where it is
        self.written: dict[str, dict] = {}  # parts written by this run -> contents
        self.writer_args: dict = {}
        self._root: str | None = None

    def store_root(self) -> str:
        if self.store.only:
            return self.cfg.out
        if self._root is None:  # asked once: the store's parts grow during the run
            self._root = embstore.beside_map(self.cfg.out)
        return self._root

    def sinks(self, map_meta: dict) -> list[partwriter.Sink]:
        """Where a part goes (its name holds its partition folders, if any)."""
        out = []
        if self.store:  # the store part first (closed first)
            stage = storage.join(self.cfg.out, parts.TMP) if self.store.only else self.store_root()
            out.append(partwriter.Sink(self.store_root(), stage, {"landcover_store": self.store.meta}))
        if not (self.store and self.store.only):
            out.append(partwriter.Sink(self.cfg.out, storage.join(self.cfg.out, parts.TMP), {"landcover": map_meta}))
        return out

    def _read_resumed(self, names: dict[str, str]) -> bool:
        """Contents of the parts a killed run of this job wrote; False when one lacks them."""
        for name, uri in names.items():
            c = partwriter.read_contents(uri)
            if c is None:
                return False
            self.resumed[name] = c
            self.resumed_uris[name] = uri
        return True

    def earlier_rows(self, uri: str):
        """The rows of scene ``uri`` the resumed parts hold (``tile_grid.QUICKLOOK_COLUMNS``), or None."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from raylib.pipelines.common.tile_grid import QUICKLOOK_COLUMNS

        tables = []
        for name, c in self.resumed.items():
            if uri in c["ranges"]:
                t = mapfile.read_part(self.resumed_uris[name], QUICKLOOK_COLUMNS)
                tables.append(t.filter(pc.equal(t.column("scene"), uri)))
        return pa.concat_tables(tables) if tables else None

    def _drop_orphan_store_parts(self, keep: set[str]) -> None:
        """Store parts whose map part never came (a run killed between the two), and the
        parts a killed run left growing beside them."""
        if self.store and not self.store.only:
            partwriter.remove_growing(self.store_root())
            parts = set(embstore.part_files(self.store_root()))
            for name, uri in storage.files_by_name(self.store_root()).items():
                if uri in parts and name not in keep:
                    storage.delete_prefix(uri)

    def done(self) -> dict:
        """Scene URI -> what the resumed parts hold of it (``partwriter.done_scenes``)."""
        return partwriter.done_scenes(list(self.resumed.values()))

    def _on_part(self, name: str, contents: dict) -> None:
        self.written[name] = contents
        from raylib.failpoints import failpoint

        failpoint("part_written")


class FullOutput(_Output):
    """A map written whole; an unfinished run of the same job is resumed."""

    def open(self) -> None:
        """Checks before the model is resolved (nothing to check for a whole map)."""

    def check_store(self) -> None:
        """A whole map writes its store anew."""

    def scenes(self, scenes: list[str], model_id: str, grid: dict) -> tuple[list[str], dict | None]:
        """The scenes to map, and fingerprints already known (none)."""
        return scenes, None

    def prepare(self, job: str) -> None:
        """Make ``out`` ready for ``job``; an unfinished run of it is resumed."""
        cfg = self.cfg
        if map_folder.prepare(cfg.out, job, cfg.overwrite):
            existing = parts.existing(cfg.out)
            why = None
            if not self._read_resumed(existing):
                why = "parts without a contents record"
            else:
                changed = [u for u, d in self.done().items()
                           if d.get("fingerprint") and _fingerprint(u) != d["fingerprint"]]
                if changed:
                    why = f"parts of an earlier version of {changed[0]}"
            if why:
                log.warning("%s holds %s; starting over", cfg.out, why)
                self.resumed = {}
                map_folder.start_over(cfg.out)
        parts.remove_tmp_debris(cfg.out, keep=set(self.resumed))
        self._drop_orphan_store_parts(set(self.resumed))
        self._first = 1 + max([_index(n) for n in self.resumed] + [-1])

    def start(self, map_meta: dict, scene_record) -> None:
        self.map_meta, self.scene_record = map_meta, scene_record
        self._writers: dict[str, partwriter.PartWriter] = {}
        self._count = itertools.count(self._first)  # part numbers are unique across partitions

    def writer_for(self, uri: str, meta: dict) -> partwriter.PartWriter:
        """The writer of the scene's partition (one writer without ``partition_by``)."""
        key = partition_path(self.cfg.partition_by, meta)
        w = self._writers.get(key)
        if w is None:
            w = self._writers[key] = partwriter.PartWriter(
                self.sinks(self.map_meta), part_bytes=int(self.cfg.part_mb * 2**20),
                rows_cap=self.cfg.rows_per_part, row_group_rows=self.cfg.row_group_rows, first_index=0,
                scene_record=self.scene_record, on_part=self._on_part,
                name_for=lambda _k, key=key: _join(key, partwriter.part_name(next(self._count))))
        return w

    def scene_done(self, scene) -> None:
        """Every tile of a scene is back (its rows may still wait in the open part)."""

    def close(self) -> None:
        for w in self._writers.values():
            w.close()

    def quicklook_tag(self, meta: dict) -> str:
        return f"{meta['index']:03d}"

    def part_order(self) -> list[str]:
        return sorted(set(self.resumed) | set(self.written))

    def finish(self, ingest, scenes: dict, quicklooks: dict, model_id: str, grid: dict) -> dict:
        """After the parts are committed; returns what the summary adds (nothing)."""
        return {}


class IncrementalOutput(_Output):
    """Scenes in parts of their own and a state record: later runs map only what changed."""

    def __init__(self, cfg: MapConfig, store=None):
        super().__init__(cfg, store)
        self.state: mapstate.MapState | None = None
        self.increment = None
        self.writers: dict[str, partwriter.PartWriter] = {}
        self.scene_parts: dict[str, list[str]] = {}

    def open(self) -> None:
        cfg = self.cfg
        if cfg.overwrite:  # start the incremental map over
            map_folder.start_over(cfg.out)
        map_folder.check_ours(cfg.out)
        if out_folder.finished(cfg.out) and not mapstate.exists(cfg.out):
            raise ConfigError(f"{cfg.out} holds a map made without --incremental.",
                              "choose another --out for incremental runs, or pass --overwrite without --incremental.")
        self.state = mapstate.MapState.load(cfg.out)

    def check_store(self) -> None:
        """Tiles added to an existing store must be made the same way."""
        root = self.store_root()
        if embstore.part_files(root):
            embstore.check_same(embstore.read_meta(root), self.store.meta, root)

    def scenes(self, scenes: list[str], model_id: str, grid: dict) -> tuple[list[str], dict | None]:
        self.increment = mapstate.plan_increment(self.state, scenes, model_id, grid, self.cfg.refresh, self.cfg.out)
        return self.increment.pending, self.increment.fingerprints

    def _prefix(self, uri: str) -> str:
        return f"part-{mapstate.scene_key(uri)}-{parts.digest([self.increment.fingerprints[uri], self.job])[:8]}"

    def prepare(self, job: str) -> None:
        """Parts of this job a killed run wrote are kept (and resumed); other debris goes."""
        self.job = job
        if not self.increment.pending:  # nothing to map: nothing to clean either (a no-op run lists nothing)
            return
        prefixes = {self._prefix(u) for u in self.increment.pending}
        existing = parts.existing(self.cfg.out)
        mine = {n: u for n, u in existing.items() if n.rsplit("-", 1)[0] in prefixes}
        if not self._read_resumed(mine):
            self.resumed = {}
        mapstate.remove_debris(self.state, self.cfg.out, keep=set(self.resumed))
        parts.remove_tmp_debris(self.cfg.out, keep=set(self.resumed))
        committed = self.state.committed_parts()
        self._drop_orphan_store_parts(set(self.resumed) | committed)
        for name, c in self.resumed.items():
            for uri in c["ranges"]:
                self.scene_parts.setdefault(uri, []).append(name)

    def start(self, map_meta: dict, scene_record) -> None:
        self.map_meta, self.scene_record = map_meta, scene_record

    def writer_for(self, uri: str, meta: dict) -> partwriter.PartWriter:
        w = self.writers.get(uri)
        if w is None:
            prefix = self._prefix(uri)
            first = 1 + max([_index(n) for n in self.scene_parts.get(uri, [])] + [-1])
            w = self.writers[uri] = partwriter.PartWriter(
                self.sinks(self.map_meta), part_bytes=int(self.cfg.part_mb * 2**20), rows_cap=self.cfg.rows_per_part,
                row_group_rows=self.cfg.row_group_rows, first_index=first, scene_record=self.scene_record,
                on_part=lambda name, c, u=uri: self._on_scene_part(u, name, c),
                name_for=lambda k, p=prefix: f"{p}-{k:05d}.parquet")
        return w

    def _on_scene_part(self, uri: str, name: str, contents: dict) -> None:
        self.scene_parts.setdefault(uri, []).append(name)
        self._on_part(name, contents)

    def scene_done(self, scene) -> None:
        w = self.writers.pop(scene.meta["uri"], None)
        if w is not None:
            w.close()

    def close(self) -> None:
        for uri in list(self.writers):
            self.writers.pop(uri).close()

    def quicklook_tag(self, meta: dict) -> str:
        return mapstate.scene_key(meta["uri"])

    def part_order(self) -> list[str]:
        return sorted(set(self.resumed) | set(self.written))

    def finish(self, ingest, scenes: dict, quicklooks: dict, model_id: str, grid: dict) -> dict:
        """Record the mapped scenes (the record first), then remove the parts they replace.
        ``scenes``: every scene's tiles, counts and failure (``Ingest.scenes_with``)."""
        state, out = self.state, self.cfg.out
        replaced = []
        for uri in self.increment.pending:
            rec = scenes[uri]
            replaced += mapstate.record(
                state, uri, fingerprint=self.increment.fingerprints[uri], parts=sorted(self.scene_parts.get(uri, [])),
                tiles=rec["tiles"], quicklook=quicklooks.get(uri), counts=rec["counts"], failed=rec["failed"])
        state.model_id, state.grid = model_id, grid
        state.save(out)
        for name in replaced:
            storage.delete_prefix(storage.join(out, name))
            if self.store:
                storage.delete_prefix(storage.join(self.store_root(), name))
        inc = self.increment
        return {"unchanged": len(inc.unchanged), "reasons": inc.reasons, "map_scenes": state.n_scenes(),
                "map_tiles": state.n_tiles()}


def partition_path(keys: list[str] | None, meta: dict) -> str:
    """Hive partition folders of a scene's rows: ``zone=32614/year=2020`` (``""`` without
    ``partition_by``). ``zone`` is the scene CRS's EPSG code (``zone=none`` for a scene
    without one, ``zone=other`` for a CRS without a code); ``year``/``date`` come from the
    acquisition date (a STAC item's datetime, or the one in the scene's file name: Landsat,
    Sentinel-2, NAIP), else ``unknown``."""
    if not keys:
        return ""
    import datetime as dt

    info = meta.get("info") or {}
    stamp = (meta.get("item") or {}).get("datetime")
    when = dt.datetime.fromtimestamp(stamp, dt.timezone.utc) if stamp is not None else scenes.acquired(meta["uri"])
    out = []
    for k in keys:
        if k == "zone":
            crs = info.get("crs") or ""
            v = crs.split(":", 1)[1] if crs.upper().startswith("EPSG:") else ("none" if not crs else "other")
        elif k == "year":
            v = f"{when:%Y}" if when else "unknown"
        else:
            v = f"{when:%Y-%m-%d}" if when else "unknown"
        out.append(f"{k}={v}")
    return "/".join(out)


def _join(key: str, name: str) -> str:
    return f"{key}/{name}" if key else name


def _fingerprint(uri: str) -> str | None:
    try:
        return storage.fingerprint(uri)
    except Exception:  # gone or unreadable: its rows are redone (and fail again, as rows)
        return None


def _index(name: str) -> int:
    m = re.search(r"-(\d+)\.parquet$", name)
    return int(m.group(1)) if m else -1


def output_for(cfg: MapConfig, store=None) -> FullOutput | IncrementalOutput:
    return IncrementalOutput(cfg, store) if cfg.incremental else FullOutput(cfg, store)
