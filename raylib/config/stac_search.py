"""The STAC search setting group, declared once: which items of a catalog become the scenes
(``map --stac``), which of their assets are read, and how their quality asset screens tiles."""

from __future__ import annotations

import json
from typing import ClassVar, Union

from pydantic import Field, field_validator, model_validator

from raylib.config.base import SCENES, _Config


class StacSearch(_Config):
    """``--stac`` and the settings that go with it (refused without it)."""

    section: ClassVar[str] = "STAC input (--stac)"

    stac: str | None = Field(
        None, json_schema_extra=SCENES,
        description="map the items of a STAC API URL, a static catalog / collection / item JSON (local, s3:// "
                    "or http), or a stac-geoparquet file, instead of --scenes")
    collections: list[str] | None = Field(None, json_schema_extra=SCENES,
                                          description="--stac: only items of these collections")
    bbox: Union[list[float], str, None] = Field(
        None, json_schema_extra=SCENES, description="--stac: only items intersecting W,S,E,N in degrees (write "
                                                    "--bbox=W,S,E,N)")
    datetime: str | None = Field(
        None, json_schema_extra=SCENES,
        description="--stac: only items in this date or interval (2020-05-01/2020-09-30, 2020, 2020-05-01/..)")
    max_cloud: float | None = Field(None, ge=0, le=100, json_schema_extra=SCENES,
                                    description="--stac: only items with eo:cloud_cover <= this (%)")
    query: Union[dict, str, None] = Field(
        None, json_schema_extra=SCENES,
        description="--stac with an API: the query extension's filter as JSON, e.g. "
                    "'{\"platform\": {\"eq\": \"landsat-8\"}}'")
    max_items: int | None = Field(None, gt=0, json_schema_extra=SCENES,
                                  description="--stac: map at most this many items (the first by date)")
    stac_bands: list[str] | None = Field(
        None, description="--stac: the band assets to read, in the model's channel order, by common name (red, "
                          "green, blue, nir, ...) or asset key (default: the model's channel names)")
    cloud_asset: str | None = Field(
        None, description="--stac: the items' quality asset, read into per-tile cloud_fraction / shadow_fraction / "
                          "snow_fraction (default: scl, qa_pixel, or an asset whose classification names cloud; "
                          "'none': no cloud screening)")
    max_tile_cloud: float = Field(
        0.3, ge=0, le=1, description="a tile whose cloud and cloud-shadow share of its pixels is above this is an "
                                     "error row (reason cloudy; needs a quality asset)")

    @model_validator(mode="after")
    def _only_with_stac(self):
        if not self.stac:
            given = [k for k in StacSearch.model_fields
                     if k not in ("stac", "max_tile_cloud") and getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} select(s) STAC items: give stac too, or leave them out")
        return self

    @field_validator("query")
    @classmethod
    def _query_json(cls, v):
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError as exc:
                raise ValueError(f"is not JSON ({exc}); give e.g. '{{\"platform\": {{\"eq\": \"landsat-8\"}}}}'")
            if not isinstance(v, dict):
                raise ValueError("must be a JSON object of property: {operator: value}")
        return v
