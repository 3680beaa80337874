"""The configs of the verbs that make and score models: ``train-head``, ``embed``, ``tune``,
``evaluate``, ``finetune``, ``compare``."""

from __future__ import annotations

import logging
from typing import ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from raylib.config.actors import ModelActors, ScoringActor
from raylib.config.base import RayAddress, Split, _Config
from raylib.config.reading import PRESET_NAMES, SceneReadSettings


class TrainHeadConfig(_Config):
    """``landcover train-head``: fit a logistic-regression head on an image-folder set, or on
    labelled tiles of an embedding store."""

    renamed: ClassVar[dict[str, str]] = {"embeddings": "store"}  # "embeddings" named a flag, a store and a table
    data: str | None = Field(None, description="image folder (<Class>/<file>), local or s3://")
    store: str | None = Field(None, description="embedding store (or a map folder holding one): train on its labelled "
                                                "tiles (with --labels)")
    labels: str | None = Field(
        None, description="with --store: a class raster, points/polygons (GeoJSON, GeoPackage, GeoParquet), or a CSV tile_id,label")
    crosswalk: str | None = Field(None, description="YAML as for assess: the 'reference' section maps label codes to classes")
    class_column: str = Field("class", min_length=1, description="class column of points/polygons labels")
    purity: float = Field(0.5, gt=0, le=1, description="raster labels: a tile's majority class must cover this share")
    features: Literal["embedding", "spectral", "embedding+spectral"] = Field(
        "embedding+spectral", description="with --store: what the head sees (spectral: the per-tile band statistics, NDVI, NDWI)")
    pixels: bool = Field(
        False, description="with --store: also a pixel classifier of the drawn tiles' spectral bands (read from "
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
    batch_size: int = Field(64, gt=0, description="images per backbone batch while embedding")
    name: str | None = Field(None, min_length=1, description="the model's name (its id is <name>@<hash>; default: "
                             "the data's folder or the store's map, with the backbone and head)")
    degrade: list[float] | None = Field(
        None, description="resolution augmentation: also embed each training image blurred as if seen at a GSD "
                          "this many times coarser, one factor drawn per image from [min, max] (e.g. [1.5, 4])")
    reflectance: Literal["none", "eurosat-rgb"] = Field(
        "none", description="how the images relate to reflectance: 'eurosat-rgb' records the EuroSAT RGB stretch "
                            "(enables scaling: reflectance)")
    spectral: Literal["none", "eurosat-ms"] = Field(
        "none", description="also fit a spectral head (NDVI, NDWI) on the EuroSAT MS sample beside the data (or "
                            "LANDCOVER_EUROSAT_MS_DIR), pooled with the image head where a scene has NIR")
    adapt: bool = Field(False, description="advise maps to re-centre the head on each scene (scene-centre "
                                           "adaptation; landcover map --no-adapt overrides)")

    @model_validator(mode="after")
    def _data_or_store(self):
        if (self.data is None) == (self.store is None):
            raise ValueError("give either --data (an image folder) or --store with --labels (an embedding store)")
        if self.store is not None and self.labels is None:
            raise ValueError("--store needs --labels (a class raster, points/polygons, or a CSV tile_id,label)")
        if self.pixels and self.store is None:
            raise ValueError("--pixels trains on tiles of an embedding store: give --store and --labels")
        if self.data is None and (self.spectral != "none" or self.adapt):
            raise ValueError("--spectral and --adapt go with --data (an image folder of another place); a head on "
                             "tiles of the store is of the area it maps already")
        return self

    @field_validator("degrade")
    @classmethod
    def _degrade(cls, v):
        if v is not None and (len(v) != 2 or not 1 <= v[0] <= v[1]):
            raise ValueError("two factors [min, max] with 1 <= min <= max, e.g. [1.5, 4]")
        return v


class EmbedConfig(SceneReadSettings, ModelActors):
    """``landcover embed``: labelled patches -> Parquet embeddings (Ray Data actor pool)."""

    data: str | None = Field(None, description="image folder <Class>/<file> (JPG/PNG/TIF), or an image raster with --labels")
    scenes: list[str] | None = Field(
        None, description="scenes to embed tile by tile into an embedding store (instead of --data): as landcover map")
    out: str = Field(description="output folder for the embeddings Parquet, or the embedding store (local or s3://)")
    model: str | None = Field(None, description="--scenes: model directory whose backbone and preprocessing embed (default: built-in)")
    tile_size: int | None = Field(None, gt=0, description="--scenes: tile size (default: the model's)")
    gsd: Union[float, Literal["native", "model"]] = Field("model", description="--scenes: as landcover map")
    labels: str | None = Field(None, description="class raster co-registered with data: cut patches from it")
    classes: dict[int, str] | None = Field(None, description="label raster value -> class name (default class_<v>)")
    patch_size: int = Field(32, gt=0, description="patch size in pixels when cutting from a label raster")
    threshold: float = Field(0.85, gt=0, le=1, description="keep a cut patch when one class covers this share")
    backbone: str = Field("default", description="hub id, local folder, s3:// folder, or 'default'")
    input_size: int = Field(128, gt=0, description="backbone input size in pixels")
    split: Literal["stratified", "group"] = Field("stratified", description="how to split train/test")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of rows (or groups) in the test split")
    seed: int = Field(0, description="random seed for the split")
    read_batch_size: int = Field(64, gt=0, le=4096, description="patches (or tiles) per read task's block")
    overwrite: bool = Field(False, description="replace existing embeddings at out")
    ray_address: RayAddress = None

    @model_validator(mode="after")
    def _data_or_scenes(self):
        if (self.scenes is None) == (self.data is None):
            raise ValueError("give either --data (a labelled patch set) or --scenes (tiles into an embedding store)")
        return self


class TuneConfig(_Config):
    """``landcover tune``: Ray Tune sweep of heads on an embeddings table."""

    # "embeddings" named both of its inputs (and a map's flag): --data for a table, --store for a store
    renamed: ClassVar[dict[str, str]] = {"embeddings": "data"}
    data: str | None = Field(None, description="embeddings table: the folder landcover embed --data wrote")
    store: str | None = Field(None, description="embedding store (or a map folder holding one), with --labels")
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
    seed: int = Field(0, description="random seed (validation split, search, heads)")
    name: str = Field("heads", min_length=1, description="experiment name")
    storage_path: str | None = Field(None, description="Tune storage (default: <out>/_tune), local or s3://")
    tile_size: int = Field(64, gt=0, description="tile size the exported model maps with")
    gsd: float | None = Field(10.0, gt=0, description="ground sampling distance the exported model maps at")
    ray_address: RayAddress = None

    @model_validator(mode="before")
    @classmethod
    def _old_embeddings(cls, values):
        """The old --embeddings took a store with --labels: that is --store now (else --data)."""
        if isinstance(values, dict) and values.get("embeddings") is not None and values.get("labels") is not None:
            values = dict(values)
            logging.getLogger("raylib.config").warning(
                "--embeddings (embeddings) is deprecated: with --labels it is --store (store) now, and the old name "
                "will go in a later release")
            values.setdefault("store", values.pop("embeddings"))
        return values

    @model_validator(mode="after")
    def _labels_fields(self):
        if self.labels is None and (self.crosswalk is not None or self.per_class is not None):
            raise ValueError("--crosswalk and --per-class go with --labels (an embedding store's labelled tiles)")
        if (self.data is None) == (self.store is None):
            raise ValueError("give either --data (an embeddings table from landcover embed --data) or --store with "
                             "--labels (an embedding store)")
        if self.store is not None and self.labels is None:
            raise ValueError("--store needs --labels (a class raster, points/polygons, or a CSV tile_id,label)")
        if self.labels is not None and self.store is None:
            raise ValueError("--labels labels the tiles of an embedding store: give --store, not --data")
        return self


class _ScoringConfig(ScoringActor):
    """A verb that scores models on a labelled split on a scoring actor (``evaluate``,
    ``compare``): what they share."""

    data: str = Field(description="embeddings folder (from landcover embed: its stored split) or an image folder")
    out: str = Field(description="report folder")
    split: Split = "test"
    ray_address: RayAddress = None


class EvaluateConfig(_ScoringConfig):
    """``landcover evaluate``: a model directory on labelled data -> metrics.json + report."""

    model: str = Field(description="model directory")


class FinetuneConfig(_Config):
    """``landcover finetune``: fine-tune a backbone end to end with Ray Train."""

    data: str = Field(description="image folder <Class>/<file>, or an embeddings folder (its rows and stored split)")
    out: str = Field(description="model directory to write (local or s3://)")
    backbone: str = Field("default", description="hub id, local folder, s3:// folder, or 'default'")
    input_size: int = Field(64, gt=0, description="model input size in pixels (patches are resized to it)")
    bands: Union[list[int], str, None] = Field(
        None, description=f"1-based bands of multi-band files, a preset ({PRESET_NAMES}) or 'all' (default: R,G,B)")
    rgb_bands: Union[list[int], str, None] = Field(
        None, description=f"1-based file bands holding R,G,B, or a preset ({PRESET_NAMES}): they keep their "
                          "pretrained kernels (default: from bands)")
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
    ray_address: RayAddress = None

    @field_validator("bands", "rgb_bands")
    @classmethod
    def _bands(cls, v):
        if isinstance(v, list) and (not v or min(v) < 1):
            raise ValueError("1-based band indices, e.g. [4, 3, 2]")
        return v


class CompareConfig(_ScoringConfig):
    """``landcover compare``: several models on one labelled split, side by side."""

    models: list[str] = Field(min_length=1, description="model directories (head-based or fine-tuned)")
