"""The settings of how a scene is read (bands, fill, radiometric scaling, spectral roles,
fill share), declared once: the flags of ``map`` and ``embed --scenes`` (flat, as users
write them) are these types, and an embedding store records them as one ``SceneRead``, from
which a later read of its tiles (``export-tiles``, ``train-head --pixels``) rebuilds the map's
settings."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import AfterValidator, Field

from raylib.config.base import _Config

MAX_FILL_FRACTION = 0.9

# Band presets: a sensor's file layout -> the 1-based file bands of (red, green, blue)
BAND_PRESETS: dict[str, list[int]] = {
    "rgb": [1, 2, 3],
    "bgr": [3, 2, 1],
    "naip": [1, 2, 3],  # NAIP: R, G, B, NIR
    "landsat8-b234": [3, 2, 1],  # a 3-band file holding B2 (blue), B3 (green), B4 (red)
    "sentinel2-eurosat": [4, 3, 2],  # EuroSAT MS file order B01..B12, B8A
}
PRESET_NAMES = ", ".join(BAND_PRESETS)


def _known_preset(v, extra: tuple[str, ...] = ()):
    if isinstance(v, str) and v not in BAND_PRESETS and v not in extra:
        raise ValueError(f"{v!r} is no band preset: give 1-based band numbers (e.g. 3,2,1) or one of "
                         f"{', '.join((*BAND_PRESETS, *extra))}")
    return v


Bands = Annotated[Union[list[int], str, None], AfterValidator(_known_preset), Field(
    description=f"1-based file bands in the model's channel order (e.g. 3,2,1: R,G,B) or a preset: {PRESET_NAMES} "
                "(default: colour-interpretation tags, else 1,2,3)")]
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
Scale = Annotated[Union[float, None], Field(
    gt=0, description="divisor to [0,1] with scaling: dtype (default: the dtype's maximum); of embed --data's "
                      "non-uint8 images (default 10000)")]
MaxFillFraction = Annotated[float, Field(
    ge=0, le=1, description="a tile with more than this share of fill among its pixels in the scene is an error "
                            "row (reason mostly_fill)")]


class SceneReadSettings(_Config):
    """The scene-read setting group: declared here once, taken by every verb that reads
    scenes tile by tile (``map``, ``embed --scenes``); its flags stay flat."""

    section: ClassVar[str] = "reading scenes"

    bands: Bands = None
    fill_value: FillValue = None
    scaling: Scaling = "auto"
    sensor: Sensor = None
    spectral_bands: SpectralBands = None
    sun_elevation: SunElevation = None
    scale: Scale = None
    max_fill_fraction: MaxFillFraction = MAX_FILL_FRACTION


READ_FIELDS = tuple(SceneReadSettings.model_fields)


class SceneRead(SceneReadSettings):
    """How a job read its scenes: the record an embedding store keeps (``preprocessing``)."""

    @classmethod
    def of(cls, cfg) -> "SceneRead":
        """The read settings of a job's config (``MapConfig``, ``EmbedConfig``)."""
        return cls(**{k: getattr(cfg, k) for k in READ_FIELDS})

    @classmethod
    def recorded(cls, pre: dict) -> "SceneRead":
        """From a store's ``preprocessing`` (a store made before a setting was recorded has
        its default)."""
        return cls(**{k: pre[k] for k in READ_FIELDS if pre.get(k) is not None})
