"""``landcover embed``: backbone embeddings of labelled patches (``patches``: an image
folder, or a scene with its label raster -> the embeddings table) or of whole scenes
(``scenes``: the map job writing only its embedding store)."""

from __future__ import annotations

from raylib.config import EmbedConfig


def run_embed(cfg: EmbedConfig, argv: list[str] | None = None) -> dict:
    """``landcover embed``: ``--scenes`` -> an embedding store, else ``--data`` -> an
    embeddings table."""
    if cfg.scenes:
        from raylib.pipelines.embed.scenes import embed_scenes

        return embed_scenes(cfg, argv)
    from raylib.pipelines.embed.patches import embed_patches

    return embed_patches(cfg, argv)
