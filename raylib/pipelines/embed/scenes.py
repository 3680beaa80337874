"""``landcover embed --scenes``: the map job writing only the embedding store (the one job
that builds on another: the import contract puts ``embed`` above ``map``)."""

from __future__ import annotations

from raylib.config import ACTOR_FIELDS, READ_FIELDS, EmbedConfig, MapConfig
from raylib.pipelines.map.run import run_map


def embed_scenes(cfg: EmbedConfig, argv: list[str] | None = None) -> dict:
    """``landcover embed --scenes``: the map job's read stage and backbone, writing only the
    embedding store (at ``out``, resumable like a map)."""
    fields = ("scenes", "out", "model", "tile_size", "gsd", *READ_FIELDS, *ACTOR_FIELDS, "read_batch_size",
              "overwrite", "ray_address")
    mcfg = MapConfig(**{k: getattr(cfg, k) for k in fields}, quicklook=False)
    summary = run_map(mcfg, argv, store_only=True)
    return {**summary, "store": True}
