"""The settings of how a scene is read (bands, fill, radiometric scaling, spectral roles,
fill share), declared once: the flags of ``map`` and ``embed --scenes`` (flat, as users
write them) are these types, and an embedding store records them as one ``SceneRead``, from
which a later read of its tiles (``export-tiles``, ``train-head --pixels``) rebuilds the map's
settings."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from raylib.config.base import _Config

MAX_FILL_FRACTION = 0.9

Bands = Annotated[Union[list[int], str, None], Field(
    description="1-based band indices in the model's channel order (e.g. [3,2,1]) or a preset")]
FillValue = Annotated[Union[float, None], Field(description="fill value when the scene has no nodata tag (e.g. 0)")]
Scaling = Annotated[Literal["auto", "match", "dtype", "reflectance"], Field(
    description="radiometric scaling: auto (reflectance where the sensor is known and the model records its "
                "reflectance stretch, else match), match, dtype or reflectance (see README)")]
Sensor = Annotated[Union[str, None], Field(
    description="sensor preset for scaling: reflectance (default: the file name's, else a STAC item's own "
                "properties; landsat-oli-l1, landsat-etm-l1, landsat-tm-l1, landsat-c2-l2, sentinel2-l1c, "
                "sentinel2-l2a, naip, ...)")]
SpectralBands = Annotated[Union[dict[str, int], None], Field(
    description="1-based file bands of red, green, nir, swir16 for the per-tile indices (default: band "
                "descriptions, colour interpretation, the sensor's usual layout)")]
SunElevation = Annotated[Union[float, None], Field(
    gt=0, le=90, description="sun elevation in degrees for Landsat Level-1 scenes without an MTL or product id")]
Scale = Annotated[Union[float, None], Field(gt=0, description="divisor for scaling: dtype (default: dtype maximum)")]
MaxFillFraction = Annotated[float, Field(
    ge=0, le=1, description="a tile with more than this share of fill among its pixels in the scene is an error "
                            "row (reason mostly_fill)")]


class SceneRead(_Config):
    """How a job read its scenes: the record an embedding store keeps (``preprocessing``)."""

    bands: Bands = None
    fill_value: FillValue = None
    scaling: Scaling = "auto"
    sensor: Sensor = None
    spectral_bands: SpectralBands = None
    sun_elevation: SunElevation = None
    scale: Scale = None
    max_fill_fraction: MaxFillFraction = MAX_FILL_FRACTION

    @classmethod
    def of(cls, cfg) -> "SceneRead":
        """The read settings of a job's config (``MapConfig``, ``EmbedConfig``)."""
        return cls(**{k: getattr(cfg, k) for k in READ_FIELDS})

    @classmethod
    def recorded(cls, pre: dict) -> "SceneRead":
        """From a store's ``preprocessing`` (a store made before a setting was recorded has
        its default)."""
        return cls(**{k: pre[k] for k in READ_FIELDS if pre.get(k) is not None})


READ_FIELDS = ("bands", "fill_value", "scaling", "sensor", "spectral_bands", "sun_elevation", "scale",
               "max_fill_fraction")
