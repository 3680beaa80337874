"""``landcover change`` and ``landcover accounts``: land change between maps of one ground
grid, and areas per region."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raylib.config.base import _Config

# The default --min-p-change: measured on the shipped NAIP scenes (BENCHMARKS.md, "Land change")
MIN_P_CHANGE = 0.5


class ChangeConfig(_Config):
    """``landcover change``: what changed between two or more maps of one place."""

    before: str | None = Field(None, description="the earlier map (a map folder, or a composite: <map>/_composite)")
    after: str | None = Field(None, description="the later map (with --before)")
    dates: list[str] | None = Field(None, description="instead of --before/--after: maps of one place "
                                    "in date order (three or more: a change must persist to the next date)")
    out: str = Field(description="output folder: the change map (GeoParquet), _transitions.csv, _quicklook/change.png")
    crosswalk: str | None = Field(None, description="YAML whose 'map:' section maps every class of every date to a "
                                  "common group: for maps of other models or class sets")
    min_p_change: float = Field(MIN_P_CHANGE, ge=0, le=1, description="a tile changed only when the probability "
                                "that its two dates differ (1 - sum of the products of their class probabilities) "
                                "is at least this (default measured: BENCHMARKS.md)")
    min_confidence: float = Field(0.0, ge=0, le=1, description="a tile changed only when both dates' top "
                                  "probabilities are at least this")
    persistence: bool | None = Field(None, description="a change counts only when its new class holds on the next "
                                     "date too (default: on with three or more dates)")
    overwrite: bool = Field(False, description="replace an existing change map at out")
    cog: bool = Field(False, description="at the end, also export the change map (its transitions) as COGs with a "
                                         "STAC Collection under <out>/_cog (landcover export)")
    partition_tiles: int = Field(500_000, gt=0, description="tiles per partition: the tile ids are cut into ranges of "
                                 "about this many tiles, each joined and written by one Ray Data task (one "
                                 "partition runs in the driver's process)")
    ray_address: str | None = Field(None, description="Ray cluster address (default: RAY_ADDRESS or a local "
                                    "cluster, when there are several partitions)")

    @model_validator(mode="after")
    def _inputs(self):
        pair = self.before is not None or self.after is not None
        if pair and self.dates:
            raise ValueError("give --before and --after, or --dates, not both")
        if pair and (self.before is None or self.after is None):
            one = "before" if self.before is not None else "after"
            raise ValueError(f"a change needs two dates and only --{one} was given: give --before and --after "
                             "(or --dates in order)")
        if not pair and not self.dates:
            raise ValueError("a change needs two dates: give --before and --after, or --dates (in date order)")
        if self.dates is not None and len(self.dates) < 2:
            raise ValueError(f"a change needs two dates and --dates gave one map ({self.dates[0]}): give the maps "
                             "of two or more dates in date order, e.g. --dates maps/2010 maps/2020")
        if self.persistence and len(self.maps) < 3:
            raise ValueError("persistence needs three or more --dates (a change into the last date has no later "
                             "date to hold on)")
        return self

    @property
    def maps(self) -> list[str]:
        """The inputs in date order."""
        return list(self.dates) if self.dates else [self.before, self.after]

    @property
    def persist(self) -> bool:
        """Persistence on: asked for, or by default with three or more dates."""
        return len(self.maps) >= 3 if self.persistence is None else self.persistence


class AccountsConfig(_Config):
    """``landcover accounts``: the area of each class (or transition) per region."""

    map: str = Field(description="a map folder, its composite (<map>/_composite) or a change map (landcover change)")
    zones: str = Field(description="regions: polygons (GeoJSON, GeoParquet, GeoPackage; local or s3://)")
    zone_field: str = Field(min_length=1, description="the zones' attribute that names each region")
    assign: Literal["share", "centre"] = Field("share", description="a tile across a zone border counts by its share "
                                               "of area in each zone (share), or wholly in the zone holding its "
                                               "centre (centre)")
    samples: str | None = Field(None, description="a labelled sample of the map (landcover sample, its reference "
                                "column filled in): per zone, area estimates with CI95 (Olofsson et al. 2014)")
    crosswalk: str | None = Field(None, description="with --samples: map: {<map class>: <group>}, reference: "
                                  "{<code or name>: <group>} (default: the same names)")
    out: str = Field(description="output folder: accounts.csv, accounts.parquet, charts/<zone>.png")
    overwrite: bool = Field(False, description="replace earlier accounts at out")
    partition_tiles: int = Field(500_000, gt=0, description="tiles per partition: each range of tile ids is summed by "
                                 "one Ray Data task (one partition runs in the driver's process)")
    ray_address: str | None = Field(None, description="Ray cluster address (default: RAY_ADDRESS or a local "
                                    "cluster, when there are several partitions)")
