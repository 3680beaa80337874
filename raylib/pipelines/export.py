"""``landcover export``: a map (or its composite, or a change map) as cloud-optimised GeoTIFFs
with a STAC Collection (the work: ``common.exports``, which ``map``, ``remap`` and ``change``
also run with ``--cog``)."""

from __future__ import annotations

from raylib.config import ExportConfig
from raylib.pipelines.common.exports import export_map


def run_export(cfg: ExportConfig, argv: list[str] | None = None) -> dict:
    return export_map(cfg, argv)

