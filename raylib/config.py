"""One typed, validated config per job, from a YAML file and/or CLI flags.

Unknown keys and bad values are rejected with a message naming the field.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raylib.errors import ConfigError
from raylib.io import storage


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Precision = Literal["fp32", "tf32", "bf16"]
PRECISION_HELP = ("the network's arithmetic on GPU actors: fp32 (default: the CPU's answers), tf32 or bf16 (faster, "
                  "a different map: BENCHMARKS.md)")
SCORING_GPUS_HELP = "GPUs of the scoring actor (default: 1 when the cluster has a GPU, else 0)"


def _check_gpu_fields(cfg):
    """GPU settings a job cannot run with, refused at the edge."""
    gpus = cfg.num_gpus
    if gpus is not None and gpus > 1 and not float(gpus).is_integer():
        raise ValueError(f"num_gpus {gpus:g}: more than one GPU per actor must be a whole number (Ray's rule)")
    if cfg.precision != "fp32" and gpus == 0:
        raise ValueError(f"precision {cfg.precision} is for GPU actors, and num_gpus is 0 (on a CPU the network "
                         "runs fp32): give num_gpus, or leave precision out")
    return cfg


class MapConfig(_Config):
    """``landcover map`` / ``jobs/map.py``."""

    scenes: list[str] | None = Field(None, min_length=1,
                                     description="scene URIs: local paths, s3://bucket/key, or a prefix/folder")
    out: str = Field(description="output dataset folder (local or s3://)")
    stac: str | None = Field(
        None, description="map the items of a STAC API URL, a static catalog / collection / item JSON (local, s3:// "
                          "or http), or a stac-geoparquet file, instead of --scenes")
    collections: list[str] | None = Field(None, description="--stac: only items of these collections")
    bbox: Union[list[float], str, None] = Field(
        None, description="--stac: only items intersecting W,S,E,N in degrees (write --bbox=W,S,E,N)")
    aoi: str | None = Field(
        None, description="area of interest: polygons (GeoJSON, GeoParquet, GeoPackage; local or s3://); only tiles "
                          "meeting it are mapped (and with --stac, only items meeting it are searched)")
    datetime: str | None = Field(
        None, description="--stac: only items in this date or interval (2020-05-01/2020-09-30, 2020, 2020-05-01/..)")
    max_cloud: float | None = Field(None, ge=0, le=100, description="--stac: only items with eo:cloud_cover <= this (%)")
    query: Union[dict, str, None] = Field(
        None, description="--stac with an API: the query extension's filter as JSON, e.g. "
                          "'{\"platform\": {\"eq\": \"landsat-8\"}}'")
    max_items: int | None = Field(None, gt=0, description="--stac: map at most this many items (the first by date)")
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
    composite: Literal["best", "mean"] | None = Field(
        None, description="also write an area map under <out>/_composite, one row per ground tile: the clearest "
                          "observation (best) or the mean class probabilities of the clear ones (mean), with n_obs "
                          "(implies grid: ground)")
    model: str | None = Field(None, description="model directory (default: the built-in EuroSAT model)")
    tile_size: int | None = Field(None, gt=0, description="tile size in model-input pixels (default: the model's)")
    stride: int | None = Field(None, gt=0, description="grid stride in pixels (default: tile_size)")
    gsd: Union[float, Literal["native", "model"]] = Field(
        "model", description="target ground sampling distance in metres; 'model' (default) or 'native'")
    grid: Literal["scene", "ground"] | None = Field(
        None, description="scene: tiles from each scene's corner, ids per scene; ground: tiles on lines at whole "
                          "multiples of the grid step in the scene's projected CRS, so overlapping scenes and dates "
                          "share tile ids (scenes are resampled to the grid's GSD). Default: ground with --stac or "
                          "--composite, else scene (the ids of maps made before the ground grid)")
    bands: Union[list[int], str, None] = Field(
        None, description="1-based band indices in the model's channel order (e.g. [3,2,1]) or a preset")
    fill_value: float | None = Field(None, description="fill value when the scene has no nodata tag (e.g. 0)")
    scaling: Literal["auto", "match", "dtype", "reflectance"] = Field(
        "auto", description="radiometric scaling: auto (reflectance where the sensor is known and the model records "
                            "its reflectance stretch, else match), match, dtype or reflectance (see README)")
    sensor: str | None = Field(
        None, description="sensor preset for scaling: reflectance (default: from the file name; "
                          "landsat-oli-l1, landsat-etm-l1, landsat-tm-l1, landsat-c2-l2, sentinel2-l1c, sentinel2-l2a, naip, ...)")
    spectral_bands: dict[str, int] | None = Field(
        None, description="1-based file bands of red, green, nir, swir16 for the per-tile indices "
                          "(default: band descriptions, colour interpretation, the sensor's usual layout)")
    sun_elevation: float | None = Field(
        None, gt=0, le=90, description="sun elevation in degrees for Landsat Level-1 scenes without an MTL or product id")
    scale: float | None = Field(None, gt=0, description="divisor for scaling: dtype (default: dtype maximum)")
    batch_size: int | None = Field(None, gt=0, le=65536, description="tiles per model batch (default: 1024 on GPU "
                                                                      "actors, 64 on CPU)")
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    read_batch_size: int = Field(256, gt=0, le=4096, description="tiles per read unit (one scene, grid order)")
    actors: int | None = Field(None, gt=0, description="model actors (default: 1 per GPU, or 1 on CPU)")
    actor_cpus: float = Field(1.0, gt=0, description="CPUs reserved per model actor")
    read_cpus: float = Field(0.5, gt=0, description="CPUs reserved per read task")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per model actor (0: CPU; 0.5: two actors share a GPU)")
    torch_threads: int | None = Field(None, gt=0, description="torch threads per actor (default: node cores / actors, at most 8)")
    plan_threads: int = Field(4, gt=0, le=64, description="scene headers read at once by a task of the pipeline")
    scenes_per_task: int | None = Field(
        None, gt=0, le=4096, description="scenes planned and read by one task of the pipeline (default: 1, up to 8 "
                                         "when there are more than 16 scenes per CPU of the cluster)")
    read_units_per_task: int = Field(4, gt=0, description="read units (read_batch_size tiles each) one read packs "
                                                          "together (small scenes share one)")
    block_tiles: int | None = Field(
        None, gt=0, le=65536, description="tiles per Ray Data block into the model (default: a read task's tiles, "
                                          "read_batch_size * read_units_per_task, when the model actors have GPUs: an "
                                          "actor's cost per block is fixed; read_batch_size on CPU, where a big block "
                                          "holds the actor for seconds)")
    actor_concurrency: int | None = Field(
        None, gt=0, le=64, description="blocks one model actor takes at once: it fetches, converts and returns "
                                       "blocks while its model runs one (default: 8 when the actors have GPUs, where "
                                       "a block's fixed costs would leave the device idle; 1 on CPU)")
    driver_first_block: bool = Field(
        True, description="the driver maps the first batch_size tiles itself while Ray starts (the first rows in "
                          "seconds); false keeps the model off the driver (a big model on a small head node)")
    part_mb: float = Field(128.0, gt=0, description="target size of an output Parquet part, MB (parts are cut by bytes)")
    row_group_rows: int = Field(8192, gt=0, description="rows per Parquet row group (sorted along a Z-order curve; "
                                                         "a bbox query reads only the row groups it touches)")
    partition_by: list[Literal["zone", "year", "date"]] | None = Field(
        None, description="hive-partition the map's parts by the scenes' CRS (zone=32614), acquisition year (year=2020) "
                          "or date (date=2020-05-18), in this order of folders (not with incremental)")
    rows_per_part: int | None = Field(None, gt=0, description="also cut a part at this many rows (default: by part_mb only)")
    read_timeout: float = Field(60.0, gt=0, description="seconds one read (header, window) may take before it is abandoned")
    read_retries: int = Field(5, ge=0, le=20, description="retries with backoff of a read that failed transiently (network, 5xx, timeout)")
    max_fill_fraction: float = Field(
        0.9, ge=0, le=1, description="a tile with more than this share of fill among its pixels in the scene is an error row (reason mostly_fill)")
    unknown_below: float | None = Field(
        None, gt=0, lt=1, description="label a tile 'unknown' (status ok) when its top probability is below this")
    max_error_share: float = Field(
        0.05, ge=0, le=1, description="fail the run (exit 3) when more tiles than this share fail (all_nodata, "
                                      "mostly_fill, cloudy not counted)")
    overwrite: bool = Field(False, description="replace an existing map at out")
    quicklook: bool = Field(True, description="write a PNG class map per scene")
    embeddings: bool = Field(False, description="also write the tiles' embeddings as an embedding store under "
                                                "<out>/_embeddings (a folder every reader of the map skips)")
    incremental: bool = Field(False, description="map only scenes that are new or changed since the last run into out")
    remap: bool = Field(False, description="incremental: map every scene again (after a model or grid change)")
    tta: bool | None = Field(None, description="fine-tuned models: average the 8 dihedral views (default: the model's setting)")
    ray_address: str | None = Field(None, description="Ray cluster address (default: RAY_ADDRESS or a local cluster)")

    @model_validator(mode="after")
    def _partitions(self):
        _check_gpu_fields(self)
        if bool(self.scenes) == bool(self.stac):
            raise ValueError("give scenes (files, folders, prefixes) or stac (a catalog to search), one of them")
        if not self.stac:
            given = [k for k in ("collections", "bbox", "datetime", "max_cloud", "query", "max_items", "stac_bands",
                                 "cloud_asset")
                     if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} select(s) STAC items: give stac too, or leave them out")
        elif self.bands is not None or self.spectral_bands is not None:
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

    @field_validator("gsd")
    @classmethod
    def _gsd_positive(cls, v):
        if isinstance(v, float) and v <= 0:
            raise ValueError("must be > 0, 'model' or 'native'")
        return v


class TrainHeadConfig(_Config):
    """``landcover train-head``: fit a logistic-regression head on an image-folder set, or on
    labelled tiles of an embedding store."""

    data: str | None = Field(None, description="image folder (<Class>/<file>), local or s3://")
    embeddings: str | None = Field(None, description="embedding store: train on its labelled tiles (with --labels)")
    labels: str | None = Field(
        None, description="with --embeddings: a class raster, points/polygons (GeoJSON, GeoPackage, GeoParquet), or a CSV tile_id,label")
    crosswalk: str | None = Field(None, description="YAML as for assess: the 'reference' section maps label codes to classes")
    class_column: str = Field("class", min_length=1, description="class column of points/polygons labels")
    purity: float = Field(0.5, gt=0, le=1, description="raster labels: a tile's majority class must cover this share")
    features: Literal["embedding", "spectral", "embedding+spectral"] = Field(
        "embedding+spectral", description="with --embeddings: what the head sees (spectral: the per-tile band statistics, NDVI, NDWI)")
    pixels: bool = Field(
        False, description="with --embeddings: also a pixel classifier of the drawn tiles' spectral bands (read from "
                           "their scenes; labelled pixel by pixel from a class raster), averaged with the tile head: "
                           "such a model maps imagery (landcover map), not a store (remap)")
    out: str = Field(description="model directory to write (local or s3://)")
    backbone: str = Field("default", description="hub id, local folder, s3:// folder, or 'default'")
    input_size: int = Field(128, gt=0, description="backbone input size in pixels")
    per_class: int | None = Field(300, gt=0, description="images (or labelled tiles) per class to use, drawn with --seed (None: all)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="stratified hold-out share")
    seed: int = Field(0, description="random seed for the subset and split")
    tile_size: int = Field(64, gt=0, description="tile size the model expects (pixels)")
    gsd: float | None = Field(10.0, gt=0, description="ground sampling distance of the training patches (m)")
    C: float | None = Field(None, gt=0, description="inverse regularisation strength (default: 0.5 on an image "
                                                     "folder, 0.1 on the few labelled tiles of a store)")
    batch_size: int = Field(64, gt=0)
    name: str = Field("eurosat-mobilenetv2-logreg", min_length=1)
    degrade: list[float] | None = Field(
        None, description="resolution augmentation: also embed each training image blurred as if seen at a GSD "
                          "this many times coarser, one factor drawn per image from [min, max] (e.g. [1.5, 4])")
    reflectance: Literal["none", "eurosat-rgb"] = Field(
        "none", description="how the images relate to reflectance: 'eurosat-rgb' records the EuroSAT RGB stretch "
                            "(enables scaling: reflectance)")

    @model_validator(mode="after")
    def _data_or_embeddings(self):
        if (self.data is None) == (self.embeddings is None):
            raise ValueError("give either --data (an image folder) or --embeddings with --labels (an embedding store)")
        if self.embeddings is not None and self.labels is None:
            raise ValueError("--embeddings needs --labels (a class raster, points/polygons, or a CSV tile_id,label)")
        if self.pixels and self.embeddings is None:
            raise ValueError("--pixels trains on tiles of an embedding store: give --embeddings and --labels")
        return self

    @field_validator("degrade")
    @classmethod
    def _degrade(cls, v):
        if v is not None and (len(v) != 2 or not 1 <= v[0] <= v[1]):
            raise ValueError("two factors [min, max] with 1 <= min <= max, e.g. [1.5, 4]")
        return v


class EmbedConfig(_Config):
    """``landcover embed``: labelled patches -> Parquet embeddings (Ray Data actor pool)."""

    data: str | None = Field(None, description="image folder <Class>/<file> (JPG/PNG/TIF), or an image raster with --labels")
    scenes: list[str] | None = Field(
        None, description="scenes to embed tile by tile into an embedding store (instead of --data): as landcover map")
    out: str = Field(description="output folder for the embeddings Parquet, or the embedding store (local or s3://)")
    model: str | None = Field(None, description="--scenes: model directory whose backbone and preprocessing embed (default: built-in)")
    tile_size: int | None = Field(None, gt=0, description="--scenes: tile size (default: the model's)")
    gsd: Union[float, Literal["native", "model"]] = Field("model", description="--scenes: as landcover map")
    fill_value: float | None = Field(None, description="--scenes: as landcover map")
    scaling: Literal["auto", "match", "dtype", "reflectance"] = Field("auto", description="--scenes: as landcover map")
    sensor: str | None = Field(None, description="--scenes: as landcover map")
    sun_elevation: float | None = Field(None, gt=0, le=90, description="--scenes: as landcover map")
    spectral_bands: dict[str, int] | None = Field(None, description="--scenes: as landcover map")
    labels: str | None = Field(None, description="class raster co-registered with data: cut patches from it")
    classes: dict[int, str] | None = Field(None, description="label raster value -> class name (default class_<v>)")
    patch_size: int = Field(32, gt=0, description="patch size in pixels when cutting from a label raster")
    threshold: float = Field(0.85, gt=0, le=1, description="keep a cut patch when one class covers this share")
    backbone: str = Field("default", description="hub id, local folder, s3:// folder, or 'default'")
    input_size: int = Field(128, gt=0, description="backbone input size in pixels")
    bands: Union[list[int], str, None] = Field(None, description="1-based R,G,B bands of multi-band TIFs, or a preset")
    scale: float | None = Field(None, gt=0, description="divisor to [0,1] for non-uint8 data (default 10000)")
    split: Literal["stratified", "group"] = Field("stratified", description="how to split train/test")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of rows (or groups) in the test split")
    seed: int = Field(0, description="random seed for the split")
    batch_size: int | None = Field(None, gt=0, le=65536, description="tiles per model batch (default: 1024 on GPU "
                                                                      "actors, 64 on CPU)")
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    read_batch_size: int = Field(64, gt=0, le=4096)
    actors: int | None = Field(None, gt=0)
    actor_cpus: float = Field(1.0, gt=0)
    read_cpus: float = Field(0.5, gt=0)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per model actor (0: CPU)")
    torch_threads: int | None = Field(None, gt=0)
    overwrite: bool = Field(False, description="replace existing embeddings at out")
    ray_address: str | None = None

    @model_validator(mode="after")
    def _data_or_scenes(self):
        _check_gpu_fields(self)
        if (self.scenes is None) == (self.data is None):
            raise ValueError("give either --data (a labelled patch set) or --scenes (tiles into an embedding store)")
        return self


class TuneConfig(_Config):
    """``landcover tune``: Ray Tune sweep of heads on an embeddings table."""

    embeddings: str = Field(description="embeddings folder written by landcover embed, or an embedding store (with --labels)")
    labels: str | None = Field(
        None, description="with a store: a class raster, points/polygons, or a CSV tile_id,label (as train-head); "
                          "trials are scored by stratified cross-validation on the drawn tiles, the other labelled tiles are the test")
    crosswalk: str | None = Field(None, description="with --labels: as train-head")
    class_column: str = Field("class", min_length=1, description="with --labels: class column of points/polygons")
    purity: float = Field(0.5, gt=0, le=1, description="with --labels: as train-head")
    per_class: int | None = Field(None, gt=0, description="with --labels: labelled tiles per class to train on, drawn with --seed (default: all)")
    features: Literal["embedding", "spectral", "embedding+spectral"] = Field(
        "embedding+spectral", description="with --labels: what the heads see (as train-head)")
    folds: int = Field(5, ge=2, le=20, description="with --labels: cross-validation folds at most (fewer when a class has fewer tiles)")
    out: str = Field(description="output folder: trials.parquet, metrics.json, model/")
    trials: int = Field(20, gt=0, description="number of trials")
    families: list[str] | None = Field(None, description="head families (default: all)")
    max_concurrent_trials: int | None = Field(None, gt=0, description="trials at once (default: as resources allow)")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs each trial asks for")
    max_epochs: int = Field(50, gt=0, description="MLP epochs at most; also the ASHA budget in steps")
    max_rounds: int = Field(200, gt=0, description="XGBoost rounds at most")
    grace_period: int = Field(5, gt=0, description="ASHA: steps (MLP epochs, or the same share of XGBoost rounds) before a trial may be stopped")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation share carved from the train split")
    seed: int = 0
    name: str = Field("heads", min_length=1, description="experiment name")
    storage_path: str | None = Field(None, description="Tune storage (default: <out>/_tune), local or s3://")
    tile_size: int = Field(64, gt=0, description="tile size the exported model maps with")
    gsd: float | None = Field(10.0, gt=0, description="ground sampling distance the exported model maps at")
    ray_address: str | None = None

    @model_validator(mode="after")
    def _labels_fields(self):
        if self.labels is None and (self.crosswalk is not None or self.per_class is not None):
            raise ValueError("--crosswalk and --per-class go with --labels (an embedding store's labelled tiles)")
        return self


class EvaluateConfig(_Config):
    """``landcover evaluate``: a model directory on labelled data -> metrics.json + report."""

    model: str = Field(description="model directory")
    data: str = Field(description="embeddings folder (from landcover embed) or an image folder")
    out: str = Field(description="report folder")
    split: Literal["test", "train", "all"] = Field("test", description="rows of an embeddings table to use")
    num_gpus: float | None = Field(None, ge=0, le=1, description=SCORING_GPUS_HELP)
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    ray_address: str | None = None

    @model_validator(mode="after")
    def _gpus(self):
        return _check_gpu_fields(self)


class FinetuneConfig(_Config):
    """``landcover finetune``: fine-tune a backbone end to end with Ray Train."""

    data: str = Field(description="image folder <Class>/<file>, or an embeddings folder (its rows and stored split)")
    out: str = Field(description="model directory to write (local or s3://)")
    backbone: str = Field("default", description="hub id, local folder, s3:// folder, or 'default'")
    input_size: int = Field(64, gt=0, description="model input size in pixels (patches are resized to it)")
    bands: Union[list[int], str, None] = Field(
        None, description="1-based bands of multi-band files, a preset, or 'all' (default: R,G,B)")
    rgb_bands: Union[list[int], str, None] = Field(
        None, description="1-based file bands holding R,G,B (keep their pretrained kernels; default: from bands)")
    scale: float | None = Field(None, gt=0, description="divisor to [0,1] for non-uint8 data (default 10000)")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="stratified test share for an image folder (0: none, "
                                                             "e.g. tiles from export-tiles, assessed on the map instead)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="validation share carved from the train split")
    seed: int = Field(0, description="random seed (split, initialisation, shuffling)")
    epochs: int = Field(15, gt=0, description="epochs at most (frozen + unfrozen)")
    freeze_epochs: int = Field(1, ge=0, description="first epochs with the backbone frozen (only the classifier learns)")
    batch_size: int = Field(64, gt=0, le=4096, description="tiles per step on each worker")
    lr: float = Field(2e-3, gt=0, description="peak learning rate of the classifier (one-cycle)")
    backbone_lr_factor: float = Field(0.25, gt=0, le=1, description="backbone learning rate = lr x this (discriminative)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="cross-entropy label smoothing")
    class_weighting: Literal["inverse", "effective", "none"] = Field(
        "inverse", description="class-balanced loss: inverse frequency, effective number of samples, or none")
    effective_beta: float = Field(0.999, gt=0, lt=1, description="beta of class_weighting: effective")
    augment: bool = Field(True, description="random dihedral views (flips, 90-degree rotations) while training")
    jitter: float = Field(0.1, ge=0, lt=1, description="radiometric jitter strength (0: off)")
    tta: bool = Field(True, description="evaluate and map with the mean of the 8 dihedral views")
    patience: int = Field(4, ge=0, description="early stopping: epochs without a better validation balanced accuracy (0: off)")
    workers: int = Field(2, gt=0, description="Ray Train workers")
    gpu: bool = Field(False, description="one GPU per worker (NCCL, bf16 autocast)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker")
    torch_threads: int | None = Field(None, gt=0, description="torch threads per worker (default: its CPUs, at least 1)")
    read_cpus: float = Field(0.5, gt=0, description="CPUs per decode task")
    name: str = Field("finetune", min_length=1, description="run name: re-running the same name resumes it")
    storage_path: str | None = Field(None, description="Ray Train storage for checkpoints (default: <out>.runs), local or s3://")
    keep_checkpoints: int = Field(2, gt=0, description="checkpoints kept (the best by validation score, and the latest)")
    max_failures: int = Field(3, ge=-1, description="worker failures to recover from (from the latest checkpoint)")
    tile_size: int = Field(64, gt=0, description="tile size the model maps with")
    gsd: float | None = Field(10.0, gt=0, description="ground sampling distance the model maps at (m)")
    overwrite: bool = Field(False, description="replace an existing model directory at out")
    ray_address: str | None = None

    @field_validator("bands", "rgb_bands")
    @classmethod
    def _bands(cls, v):
        if isinstance(v, list) and (not v or min(v) < 1):
            raise ValueError("1-based band indices, e.g. [4, 3, 2]")
        return v


class CompareConfig(_Config):
    """``landcover compare``: several models on one labelled split, side by side."""

    models: list[str] = Field(min_length=1, description="model directories (head-based or fine-tuned)")
    data: str = Field(description="embeddings folder (its stored split) or an image folder")
    out: str = Field(description="report folder")
    split: Literal["test", "train", "all"] = Field("test", description="rows of an embeddings table to use")
    num_gpus: float | None = Field(None, ge=0, le=1, description=SCORING_GPUS_HELP)
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    ray_address: str | None = None

    @model_validator(mode="after")
    def _gpus(self):
        return _check_gpu_fields(self)


class AssessConfig(_Config):
    """``landcover assess``: map accuracy and area estimates against reference land cover."""

    map: str | None = Field(None, description="map folder written by landcover map")
    reference: str | None = Field(
        None, description="reference: a class raster (any CRS/grid) or points/polygons (GeoJSON, GeoPackage, GeoParquet)")
    crosswalk: str | None = Field(
        None, description="YAML: map: {<map class>: <group>}, reference: {<code or name>: <group>} (default: same names)")
    class_column: str = Field("class", min_length=1, description="class column of a points/polygons reference")
    purity: float = Field(0.5, gt=0, le=1, description="a tile is assessed when its majority reference group covers this share")
    samples: str | None = Field(None, description="sample mode: CSV/Parquet with columns map, reference")
    areas: str | None = Field(None, description="sample mode: CSV with columns class, area (mapped area per map class)")
    area_unit: str | None = Field(None, description="sample mode: the unit of the areas table (reported as given)")
    exclude_training: str | None = Field(
        None, description="model directory from train-head --embeddings: leave out the tiles it was trained on")
    out: str = Field(description="report folder: assessment.json, report.md, confusion.png, comparison.png")
    overwrite: bool = Field(False, description="replace an existing assessment at out")

    @field_validator("samples")
    @classmethod
    def _samples_xor_map(cls, v, info):
        if v is not None and (info.data.get("map") or info.data.get("reference")):
            raise ValueError("give --samples (with --areas) or --map with --reference, not both")
        return v


class ExportTilesConfig(_Config):
    """``landcover export-tiles``: labelled tiles of an embedding store -> an image folder for finetune."""

    embeddings: str = Field(description="embedding store whose tiles to export (its scenes must be at hand)")
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

    embeddings: str = Field(description="embedding store (landcover map --embeddings, or landcover embed --scenes)")
    model: str = Field(description="head model directory trained on embeddings of the store's backbone")
    out: str = Field(description="output map folder (local or s3://)")
    bbox: list[float] | None = Field(None, description="only the tiles meeting W,S,E,N (lon/lat)")
    unknown_below: float | None = Field(None, gt=0, lt=1, description="as landcover map")
    read_cpus: float = Field(1.0, gt=0, description="CPUs per task (one store part each)")
    quicklook: bool = Field(True, description="write a PNG class map per scene")
    overwrite: bool = Field(False, description="replace a finished map at out")
    ray_address: str | None = None

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, v):
        if v is not None and (len(v) != 4 or v[0] > v[2] or v[1] > v[3]):
            raise ValueError("four numbers W,S,E,N with W <= E and S <= N (lon/lat)")
        return v


class SimilarConfig(_Config):
    """``landcover similar``: the tiles of an embedding store most like a few examples."""

    embeddings: str = Field(description="embedding store")
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


def _describe(cls: type[_Config]) -> str:
    return ", ".join(cls.model_fields)


def validate(cls: type[_Config], values: dict[str, Any], source: str = "config") -> _Config:
    """Validate ``values`` into ``cls``; raise ``ConfigError`` naming every bad field."""
    try:
        return cls(**values)
    except ValidationError as exc:
        problems, unknown = [], False
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(err["loc"][0]), list(cls.model_fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"unknown field '{field}'{hint}")
                unknown = True
            elif err["type"] == "missing":
                problems.append(f"field '{field}' is required")
            elif not err["loc"]:  # a rule across fields (model validator)
                problems.append(str(err["msg"]).removeprefix("Value error, "))
            else:
                problems.append(f"field '{field}': {err['msg']} (got {err.get('input')!r})")
        fix = f"valid fields are: {_describe(cls)}." if unknown else \
            "correct the value(s) named above (each field's meaning: landcover <verb> --help, docs/cli.md)."
        raise ConfigError(f"Invalid {source}: " + "; ".join(problems) + ".", fix) from None


def load(cls: type[_Config], path: str | None = None, overrides: dict[str, Any] | None = None) -> _Config:
    """Read a YAML config (optional), apply CLI overrides, validate."""
    import yaml

    values: dict[str, Any] = {}
    source = "config"
    if path:

        source = f"config {path}"
        try:
            text = storage.read_bytes(path).decode()
        except Exception as exc:
            raise ConfigError(f"Cannot read config file {path}: {exc}", "check the path.") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {path} is not valid YAML: {exc}", "fix the YAML syntax.") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file {path} must be a mapping of field: value.", f"fields: {_describe(cls)}.")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(cls, values, source)


def dump(cfg: _Config, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
