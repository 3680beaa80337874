"""``landcover export``: a map's deliverables for GIS users."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raylib.config.base import _Config


class ExportConfig(_Config):
    """``landcover export``: a map (or composite, or change map) as rasters."""

    map: str = Field(description="a map folder, its composite (<map>/_composite) or a change map (landcover change)")
    out: str = Field(description="output folder: classes-<crs>.tif, confidence-<crs>.tif (one per CRS zone), "
                                 "export.json")
    format: Literal["cog"] = Field("cog", description="cog: cloud-optimised GeoTIFFs")
    resolution: float | None = Field(None, gt=0, description="pixel size in the zone's CRS units (metres): finer "
                                     "than the tile grid, each tile's pixels its class (default: one pixel per tile)")
    probabilities: bool = Field(False, description="also the class probabilities: one band per class, 0-100")
    overwrite: bool = Field(False, description="replace an earlier export at out")
    max_pixels: int = Field(100_000_000, gt=0, description="a zone's raster of more pixels is written as blocks of "
                            "rows of at most this many, each a COG written by a Ray Data task from the map's tiles "
                            "there, under a VRT (no process holds the whole map)")
    ray_address: str | None = Field(None, description="Ray cluster address (default: RAY_ADDRESS or a local cluster, "
                                    "when a raster has several blocks)")
