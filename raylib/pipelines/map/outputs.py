"""Where a map's rows go, one strategy per mode (``run_map`` does not branch on it).

``FullOutput``: the whole map at ``out`` as one sequence of parts over the global tile index;
a re-run of the same job (same settings, same scene versions) into the same ``out`` resumes
it, another job starts over (``--overwrite`` to replace a finished map).

``IncrementalOutput`` (``--incremental``): each scene in parts of its own, and a state record
(``formats.mapstate``) of what was mapped with which model: a run maps only new, changed or
failed scenes, then records them and removes the parts they replace.
"""

from __future__ import annotations

from raylib.config import MapConfig
from raylib.errors import ConfigError
from raylib.formats import embstore, mapfile, mapstate, parts
from raylib.formats.mapfile import MARKER, SUCCESS
from raylib.io import storage


class FullOutput:
    """A map written whole; an unfinished run of the same job is resumed."""

    def __init__(self, cfg: MapConfig):
        self.cfg = cfg

    def open(self) -> None:
        """Checks before the model is resolved (nothing to check for a whole map)."""

    def check_store(self, store) -> None:
        """A whole map writes its store anew."""

    def scenes(self, scenes: list[str], model_id: str, grid: dict) -> tuple[list[str], dict | None]:
        """The scenes to plan, and fingerprints already known (none)."""
        return scenes, None

    def chunks(self, plans, job: str) -> tuple[list[parts.Chunk], bool]:
        """The parts this job consists of, and whether an earlier run of it may have written some."""
        chunks = parts.global_chunks(sum(p.n_tiles for p in plans), self.cfg.rows_per_part)
        return chunks, mapfile.prepare_output(self.cfg.out, job, self.cfg.overwrite)

    def quicklook_tag(self, i: int, uri: str) -> str:
        return f"{i:03d}"

    def finish(self, plans, run, quicklooks: dict, model_id: str, grid: dict, store) -> dict:
        """After the parts are committed; returns what the summary adds (nothing)."""
        return {}


class IncrementalOutput:
    """Scenes in parts of their own and a state record: later runs map only what changed."""

    def __init__(self, cfg: MapConfig):
        self.cfg = cfg
        self.state: mapstate.MapState | None = None
        self.increment = None

    def open(self) -> None:
        cfg = self.cfg
        if cfg.overwrite:  # start the incremental map over
            storage.clear_own_folder(cfg.out, MARKER, "a landcover map")
        storage.check_own_folder(cfg.out, MARKER, "a landcover map")
        if storage.exists(storage.join(cfg.out, SUCCESS)) and not storage.exists(storage.join(cfg.out, mapstate.STATE)):
            raise ConfigError(f"{cfg.out} holds a map made without --incremental.",
                              "choose another --out for incremental runs, or pass --overwrite without --incremental.")
        self.state = mapstate.MapState.load(cfg.out)

    def check_store(self, store) -> None:
        """Tiles added to an existing store must be made the same way."""
        root = store.root(self.cfg.out)
        if embstore.part_files(root):
            embstore.check_same(embstore.read_meta(root), store.meta, root)

    def scenes(self, scenes: list[str], model_id: str, grid: dict) -> tuple[list[str], dict | None]:
        self.increment = mapstate.plan_increment(self.state, scenes, model_id, grid, self.cfg.remap, self.cfg.out)
        return self.increment.pending, self.increment.fingerprints

    def chunks(self, plans, job: str) -> tuple[list[parts.Chunk], bool]:
        chunks = []
        for p in plans:
            tag = parts.digest([p.fingerprint, job])[:8]
            mine = parts.scene_chunks(f"part-{mapstate.scene_key(p.uri)}-{tag}", p.start, p.n_tiles,
                                      self.cfg.rows_per_part)
            p.parts = [c.name for c in mine]
            chunks += mine
        mapstate.remove_debris(self.state, self.cfg.out, keep={c.name for c in chunks})
        return chunks, True

    def quicklook_tag(self, i: int, uri: str) -> str:
        return mapstate.scene_key(uri)

    def finish(self, plans, run, quicklooks: dict, model_id: str, grid: dict, store) -> dict:
        """Record the mapped scenes (the record first), then remove the parts they replace."""
        state, out = self.state, self.cfg.out
        replaced = []
        for i, p in enumerate(plans):
            replaced += mapstate.record(
                state, p.uri, fingerprint=p.fingerprint, parts=p.parts, tiles=p.n_tiles,
                quicklook=quicklooks.get(i), counts=run.scene_counts.get(p.uri),
                failed=p.failure[0] if p.failure else None)
        state.model_id, state.grid = model_id, grid
        state.save(out)
        for name in replaced:
            storage.delete_prefix(storage.join(out, name))
            if store:
                storage.delete_prefix(storage.join(store.root(out), name))
        inc = self.increment
        return {"unchanged": len(inc.unchanged), "reasons": inc.reasons, "map_scenes": len(state.scenes),
                "map_tiles": sum(v["tiles"] for v in state.scenes.values())}


def output_for(cfg: MapConfig) -> FullOutput | IncrementalOutput:
    return IncrementalOutput(cfg) if cfg.incremental else FullOutput(cfg)
