"""The configs of the verbs that make and judge maps: ``map``, ``assess``, ``export-tiles``,
``remap``, ``similar``, ``sample``."""

from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from raylib.config.actors import ModelActors
from raylib.config.base import GRID, MODEL, RUN, SCENES, RayAddress, _Config
from raylib.config.reading import SceneReadSettings
from raylib.config.stac_search import StacSearch


class MapConfig(StacSearch, SceneReadSettings, ModelActors):
    """``landcover map`` / ``jobs/map.py``."""

    # remap is the verb that maps a store; "embeddings" named a flag, a store and a table
    renamed: ClassVar[dict[str, str]] = {"remap": "refresh", "embeddings": "store"}

    scenes: list[str] | None = Field(None, json_schema_extra=SCENES, min_length=1,
                                     description="scene URIs: local paths, s3://bucket/key, or a prefix/folder")
    out: str = Field(json_schema_extra=RUN, description="output dataset folder (local or s3://)")
    aoi: str | None = Field(
        None, description="area of interest: polygons (GeoJSON, GeoParquet, GeoPackage; local or s3://); only tiles "
                          "meeting it are mapped (and with --stac, only items meeting it are searched)")
    composite: Literal["best", "mean"] | None = Field(
        None, description="also write an area map under <out>/_composite, one row per ground tile: the clearest "
                          "observation (best) or the mean class probabilities of the clear ones (mean), with n_obs "
                          "(implies grid: ground)")
    model: str | None = Field(None, json_schema_extra=MODEL, description="model directory (default: the built-in EuroSAT model)")
    tile_size: int | None = Field(None, json_schema_extra=GRID, gt=0, description="tile size in model-input pixels (default: the model's)")
    stride: int | None = Field(None, json_schema_extra=GRID, gt=0, description="grid stride in pixels (default: tile_size)")
    gsd: Union[float, Literal["native", "model"]] = Field(
        "model", json_schema_extra=GRID, description="target ground sampling distance in metres; 'model' (default) or 'native'")
    grid: Literal["scene", "ground"] | None = Field(
        None, json_schema_extra=GRID, description="scene: tiles from each scene's corner, ids per scene; ground: tiles on lines at whole "
                          "multiples of the grid step in the scene's projected CRS, so overlapping scenes and dates "
                          "share tile ids (scenes are resampled to the grid's GSD). Default: ground with --stac or "
                          "--composite, else scene (the ids of maps made before the ground grid)")
    read_batch_size: int = Field(256, json_schema_extra=RUN, gt=0, le=4096, description="tiles per read unit (one scene, grid order)")
    plan_threads: int = Field(4, json_schema_extra=RUN, gt=0, le=64, description="scene headers read at once by a task of the pipeline")
    scenes_per_task: int | None = Field(
        None, json_schema_extra=RUN, gt=0, le=4096, description="scenes planned and read by one task of the pipeline (default: 1, up to 8 "
                                         "when there are more than 16 scenes per CPU of the cluster)")
    read_units_per_task: int = Field(4, json_schema_extra=RUN, gt=0, description="read units (read_batch_size tiles each) one read packs "
                                                          "together (small scenes share one)")
    block_tiles: int | None = Field(
        None, json_schema_extra=RUN, gt=0, le=65536, description="tiles per Ray Data block into the model (default: a read task's tiles, "
                                          "read_batch_size * read_units_per_task, when the model actors have GPUs: an "
                                          "actor's cost per block is fixed; read_batch_size on CPU, where a big block "
                                          "holds the actor for seconds)")
    actor_concurrency: int | None = Field(
        None, json_schema_extra=RUN, gt=0, le=64, description="blocks one model actor takes at once: it fetches, converts and returns "
                                       "blocks while its model runs one (default: 8 when the actors have GPUs, where "
                                       "a block's fixed costs would leave the device idle; 1 on CPU)")
    driver_first_block: bool = Field(
        True, json_schema_extra=RUN, description="the driver maps the first batch_size tiles itself while Ray starts (the first rows in "
                          "seconds); false keeps the model off the driver (a big model on a small head node)")
    part_mb: float = Field(128.0, gt=0, description="target size of an output Parquet part, MB (parts are cut by bytes)")
    row_group_rows: int = Field(8192, json_schema_extra=RUN, gt=0, description="rows per Parquet row group (sorted along a Z-order curve; "
                                                         "a bbox query reads only the row groups it touches)")
    partition_by: list[Literal["zone", "year", "date"]] | None = Field(
        None, description="hive-partition the map's parts by the scenes' CRS (zone=32614), acquisition year (year=2020) "
                          "or date (date=2020-05-18), in this order of folders (not with incremental)")
    rows_per_part: int | None = Field(None, gt=0, description="also cut a part at this many rows (default: by part_mb only)")
    read_timeout: float = Field(60.0, json_schema_extra=RUN, gt=0, description="seconds one read (header, window) may take before it is abandoned")
    read_retries: int = Field(5, json_schema_extra=RUN, ge=0, le=20, description="retries with backoff of a read that failed transiently (network, 5xx, timeout)")
    unknown_below: float | None = Field(
        None, gt=0, lt=1, description="label a tile 'unknown' (status ok) when its top probability is below this")
    max_error_share: float = Field(
        0.05, json_schema_extra=RUN, ge=0, le=1, description="fail the run (exit 3) when more tiles than this share fail (all_nodata, "
                                      "mostly_fill, mostly_outside, cloudy not counted)")
    overwrite: bool = Field(False, json_schema_extra=RUN, description="replace an existing map at out")
    quicklook: bool = Field(True, json_schema_extra=RUN, description="write a PNG class map per scene")
    cog: bool = Field(False, json_schema_extra=RUN, description="at the end, also export the map as COGs with a STAC Collection under "
                                         "<out>/_cog (landcover export)")
    store: bool = Field(False, description="also write the tiles' embeddings as an embedding store under "
                                           "<out>/_embeddings (a folder every reader of the map skips)")
    incremental: bool = Field(False, description="map only scenes that are new or changed since the last run into out")
    refresh: bool = Field(False, json_schema_extra=RUN, description="incremental: map every scene again (after a model or grid change)")
    tta: bool | None = Field(None, description="fine-tuned models: average the 8 dihedral views (default: the model's setting)")
    adapt: bool | None = Field(
        None, description="scene-centre adaptation: re-centre the head on each scene's own mean embedding, from a "
                          "first pass over a sample of its tiles (default: the model's advice; on for the built-in "
                          "model)")
    adapt_sample: int = Field(512, ge=16, le=100_000, description="tiles per scene the adaptation's first pass reads")
    spectral_prior: bool = Field(
        True, description="where a scene has NIR, pool the model's spectral head (NDVI, NDWI) with its image head "
                          "(models that carry one: the built-in model)")
    ray_address: RayAddress = None

    @model_validator(mode="after")
    def _partitions(self):
        if bool(self.scenes) == bool(self.stac):
            raise ValueError("give scenes (files, folders, prefixes) or stac (a catalog to search), one of them")
        if self.stac and (self.bands is not None or self.spectral_bands is not None):
            raise ValueError("bands / spectral_bands are file band numbers: with stac, name the band assets with "
                             "stac_bands (e.g. red,green,blue)")
        if self.composite and self.grid == "scene":
            raise ValueError("composite groups the observations of each ground tile: leave grid out, or set it to "
                             "ground")
        if self.aoi is not None and self.bbox is not None:
            raise ValueError("give aoi (polygons) or bbox (a box), not both: the AOI's box is what the search uses")
        if self.partition_by and self.incremental:
            raise ValueError("partition_by is for whole maps: an incremental map keeps each scene in parts of its own "
                             "(drop one of them)")
        if self.partition_by and len(set(self.partition_by)) != len(self.partition_by):
            raise ValueError("partition_by names a key twice")
        return self

    @field_validator("gsd")
    @classmethod
    def _gsd_positive(cls, v):
        if isinstance(v, float) and v <= 0:
            raise ValueError("must be > 0, 'model' or 'native'")
        return v


class AssessConfig(_Config):
    """``landcover assess``: map accuracy and area estimates against reference land cover."""

    map: str | None = Field(None, description="map folder written by landcover map")
    reference: str | None = Field(
        None, description="reference: a class raster (any CRS/grid) or points/polygons (GeoJSON, GeoPackage, GeoParquet)")
    crosswalk: str | None = Field(
        None, description="YAML: map: {<map class>: <group>}, reference: {<code or name>: <group>} (default: same names)")
    class_column: str = Field("class", min_length=1, description="class column of a points/polygons reference")
    purity: float = Field(0.5, gt=0, le=1, description="a tile is assessed when its majority reference group covers this share")
    samples: str | None = Field(None, description="sample mode: CSV/Parquet with columns map_class (or map), reference (with --map: "
                                "the mapped areas are the map's, in hectares)")
    areas: str | None = Field(None, description="sample mode without --map: CSV with columns class, area (mapped area "
                              "per map class)")
    area_unit: str | None = Field(None, description="sample mode: the unit of the areas table (reported as given)")
    reference_before: str | None = Field(None, description="a change map (landcover change): the reference class raster "
                                         "of its first date (with --reference-after): every tile assessed as a map")
    reference_after: str | None = Field(None, description="a change map: the reference class raster of its last date")
    exclude_training: str | None = Field(
        None, description="model directory from train-head --store: leave out the tiles it was trained on")
    out: str = Field(description="report folder: assessment.json, report.md, confusion.png, comparison.png")
    overwrite: bool = Field(False, description="replace an existing assessment at out")

    @model_validator(mode="after")
    def _mode(self):
        if self.samples is not None and self.reference is not None:
            raise ValueError("give --samples (with --areas, or with the --map they were drawn from) or --map with "
                             "--reference, not both")
        if self.samples is not None and self.map is not None and self.areas is not None:
            raise ValueError("with --samples give --areas or --map (whose mapped areas are taken), not both")
        if (self.reference_before is None) != (self.reference_after is None):
            raise ValueError("a change map is assessed against the reference of both its dates: give "
                             "--reference-before and --reference-after")
        if self.reference_before is not None and (self.map is None or self.reference or self.samples):
            raise ValueError("--reference-before/--reference-after assess a change map: give --map <change folder> "
                             "and not --reference or --samples")
        return self


class ExportTilesConfig(_Config):
    """``landcover export-tiles``: labelled tiles of an embedding store -> an image folder for finetune."""

    renamed: ClassVar[dict[str, str]] = {"embeddings": "store"}
    store: str = Field(description="embedding store whose tiles to export (its scenes must be at hand)")
    labels: str = Field(description="a class raster, points/polygons, or a CSV tile_id,label (as train-head)")
    crosswalk: str | None = Field(None, description="as train-head")
    class_column: str = Field("class", min_length=1, description="class column of points/polygons labels")
    purity: float = Field(0.5, gt=0, le=1, description="raster labels: a tile's majority class must cover this share")
    per_class: int | None = Field(None, gt=0, description="labelled tiles per class, drawn with --seed as train-head draws them (default: all)")
    seed: int = Field(0, description="random seed of the draw")
    out: str = Field(description="image folder to write: <class>/<tile_id>.tif and training_tiles.parquet")
    overwrite: bool = Field(False, description="replace an earlier export at out")


class RemapConfig(_Config):
    """``landcover remap``: a head applied to an embedding store -> a map (no imagery, no backbone)."""

    renamed: ClassVar[dict[str, str]] = {"embeddings": "store"}
    store: str = Field(description="embedding store (landcover map --store, or landcover embed --scenes), or a map "
                                   "folder holding one")
    model: str = Field(description="head model directory trained on embeddings of the store's backbone")
    out: str = Field(description="output map folder (local or s3://)")
    bbox: list[float] | None = Field(None, description="only the tiles meeting W,S,E,N (lon/lat)")
    unknown_below: float | None = Field(None, gt=0, lt=1, description="as landcover map")
    adapt: bool | None = Field(None, description="as landcover map: each scene's centre from the map that wrote the "
                                                 "store; with --adapt, a scene it did not re-centre from all its "
                                                 "tiles in the store")
    spectral_prior: bool = Field(True, description="as landcover map")
    read_cpus: float = Field(1.0, gt=0, description="CPUs per task (one store part each)")
    quicklook: bool = Field(True, description="write a PNG class map per scene")
    cog: bool = Field(False, description="at the end, also export the map as COGs with a STAC Collection under "
                                         "<out>/_cog (landcover export)")
    overwrite: bool = Field(False, description="replace a finished map at out")
    ray_address: RayAddress = None

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, v):
        if v is not None and (len(v) != 4 or v[0] > v[2] or v[1] > v[3]):
            raise ValueError("four numbers W,S,E,N with W <= E and S <= N (lon/lat)")
        return v


class SimilarConfig(_Config):
    """``landcover similar``: the tiles of an embedding store most like a few examples."""

    renamed: ClassVar[dict[str, str]] = {"embeddings": "store"}
    store: str = Field(description="embedding store (or a map folder holding one)")
    positives: list[str] = Field(min_length=1, description="tile ids, or one points/polygons file: what to look for")
    negatives: list[str] | None = Field(None, description="tile ids, or one points/polygons file: what not to find")
    k: int = Field(50, gt=0, description="how many tiles to return")
    index: Literal["exact", "ivf"] = Field("exact", description="exact search, or a faiss IVF index kept beside the store")
    out: str = Field(description="GeoParquet file of the k most similar tiles with their score and rank")


class SampleConfig(_Config):
    """``landcover sample``: a stratified random sample design drawn from a map."""

    map: str = Field(description="map folder written by landcover map")
    out: str = Field(description="GeoParquet file of sample units (an <out>.areas.csv of mapped areas is written beside it)")
    n: int | None = Field(None, gt=0, description="total sample size, allocated over the map classes")
    per_class: Union[int, dict[str, int], None] = Field(
        None, description="units per class instead of --n: one number, or class:n,class:n")
    min_per_class: int = Field(50, gt=0, description="with --n: at least this many units per class (when n allows)")
    seed: int = Field(0, description="random seed")
    overwrite: bool = Field(False, description="replace an existing file at out")
