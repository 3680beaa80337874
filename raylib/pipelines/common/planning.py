"""Planning a map: scene headers, band choice, radiometric scaling and the tile grid of
each scene (``ScenePlan``). Runs in the map's plan tasks (``pipelines.map.source``), in
``export-tiles``, and on the driver for the first scene (its configuration errors surface
at once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from raylib.config import MapConfig, identity_settings
from raylib.errors import ConfigError, InputError, LandcoverError
from raylib.formats import parts
from raylib.io import resilience, storage
from raylib.models.manifest import ModelManifest
from raylib.raster import bands as bandlib
from raylib.raster import radiometry, scene_source, scenes, tiling, windows
from raylib.raster.reading import ReadSpec

OUTSIDE_AOI = "outside_aoi"  # a scene none of whose tiles meets the AOI: one row, not a failure
SUPPORTED_DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")


@dataclass
class ScenePlan:
    """One scene's place in the run: its grid and read settings, or why it cannot be mapped."""

    uri: str
    gdal_path: str | None = None  # what GDAL opens: the file, or a STAC item's VRT (``raster.scene_source``)
    info: scenes.SceneInfo | None = None
    layout: tiling.Layout | None = None
    bands: list[int] | None = None
    scaler: bandlib.Scaler | None = None
    fingerprint: str | None = None
    failure: tuple[str, str] | None = None  # (reason, message)
    radiometry: dict | None = None  # the scaling this scene got, and where its constants came from
    retries: int = 0  # header reads retried after transient faults
    stats: dict | None = None  # per-tile statistics: file bands, their units (gain, offset), spectral roles
    cloud: dict | None = None  # a STAC item's quality asset: its VRT band and decoder (``raster.cloud_mask``)
    item: dict | None = None  # datetime (epoch s), item_id, collection: ``scene_source.item_properties``
    data_box: tuple[int, int, int, int] | None = None  # the scene's own pixels in a ground grid's VRT

    @property
    def pixel_type(self) -> str:
        """The type this scene's tiles would cross to the model in, as a job's first scene
        (``bands.transfer_type``; float32 for a scene that cannot be mapped)."""
        return bandlib.transfer_type(self.info.dtype) if self.info is not None and not self.failure else "float32"

    @property
    def n_tiles(self) -> int:
        return self.layout.n_tiles if self.layout else 1

    def read_spec(self, tile_size: int, max_fill_fraction: float = 1.0, max_tile_cloud: float = 1.0,
                  pixel_type: str = "float32") -> str:
        """What a read task needs for this scene: a ``ReadSpec`` as JSON (small; no pixels);
        ``pixel_type``: the job's transfer type (``bands.transfer_type``)."""
        return ReadSpec(uri=self.uri, gdal_path=self.gdal_path or storage.parse(self.uri).gdal_path,
                        bands=list(self.bands),
                        layout=self.layout, tile_size=tile_size, gain=self.scaler.gain.tolist(),
                        offset=self.scaler.offset.tolist(), fill_value=self.scaler.fill_value,
                        target_mean=self.scaler.target_mean.tolist(), max_fill_fraction=max_fill_fraction,
                        stats=self.stats, cloud=self.cloud, max_tile_cloud=max_tile_cloud,
                        pixel_type=pixel_type, data_box=list(self.data_box) if self.data_box else None).to_json()


def expand_scenes(uris: list[str], skipped: list[str] | None = None) -> list[str]:
    """Scene URIs, with folders/prefixes expanded to every .tif/.tiff under them (other
    objects under a prefix are appended to ``skipped``)."""
    out: list[str] = []
    storage.forget_listings()  # this job's listings give the scenes' fingerprints, no older one
    for uri in uris:
        if storage.is_prefix(uri):
            storage.check_bucket(uri)
            everything = storage.list_files(uri)
            found = [u for u in everything if u.lower().endswith(storage.RASTER_SUFFIXES)]
            if skipped is not None:
                kept = set(found)  # once: a prefix may hold 100,000s of scenes
                skipped.extend(u for u in everything if u not in kept)
            if not found:
                raise InputError(f"No .tif/.tiff scenes under {uri}.", "check the prefix; scenes must end in .tif or .tiff.")
            out.extend(found)
        else:
            storage.check_bucket(uri)
            out.append(storage.parse(uri).uri)
    seen: set[str] = set()
    return [u for u in out if not (u in seen or seen.add(u))]


def _sensor(cfg: MapConfig, uri: str, stac_item: bool, file_scale) -> tuple[str | None, str]:
    """A scene's sensor preset and the rule that chose it, in this order: the config's, the
    file name's, a band preset's, the scale/offset its bands carry (a STAC item's
    ``raster:bands``, a GeoTIFF's tags), what a STAC item says of itself
    (``radiometry.sensor_of_item``)."""
    if cfg.sensor:
        return cfg.sensor, "configured (sensor)"
    named = radiometry.detect_sensor(uri)
    if named:
        return named, f"the file name ({storage.basename(uri)})"
    preset = radiometry.BAND_PRESET_SENSORS.get(cfg.bands) if isinstance(cfg.bands, str) else None
    if preset:
        return preset, f"the band preset {cfg.bands}"
    if file_scale:
        return radiometry.FILE_SCALE, "the bands' own scale/offset (raster:bands, or the GeoTIFF's tags)"
    if stac_item:
        import json

        return radiometry.sensor_of_item(json.loads(storage.read_bytes(uri)))
    return None, "no sensor in the file name, no band preset, no scale/offset on the bands"


def _plan_scene(plan: ScenePlan, cfg: MapConfig, manifest: ModelManifest, grid: tiling.GridSpec) -> ScenePlan:
    """Header, band choice and radiometric scaling of one scene, filled into ``plan`` as
    they are learnt (raises on a bad scene; what was learnt before stays)."""
    import rasterio

    uri = plan.uri
    needed = len(manifest.bands["channels"])
    stac_item = scene_source.is_stac_item(uri)
    if stac_item and len(scene_channels(cfg, manifest)) != needed:
        raise ConfigError(f"stac_bands names {len(scene_channels(cfg, manifest))} band(s) but model {manifest.id} "
                          f"takes {needed}.", f"give {needed} names, in the model's channel order.")
    channels, cloud_asset = scene_channels(cfg, manifest), cfg.cloud_asset or "auto"
    if plan.fingerprint is None and (stac_item or grid.ground):  # a VRT, built per version: asked once, passed down
        plan.fingerprint = storage.fingerprint(uri)
    version = plan.fingerprint
    plan.gdal_path = path = scene_source.gdal_path(uri, channels, grid, cfg.fill_value, cloud_asset, version)
    plan.data_box = scene_source.data_box(uri, channels, grid, cloud_asset, version)
    cloud = scene_source.cloud(uri, channels, cloud_asset, version)
    plan.cloud = {"band": cloud[0], **cloud[1]} if cloud else None
    plan.info = info = scenes.open_scene(uri, path)
    plan.layout = tiling.layout(info, grid)
    if cfg.aoi:  # only the tiles that meet the AOI
        from raylib.raster import aoi

        keep = aoi.tiles_meeting(aoi.load(cfg.aoi), info.crs, info.transform, plan.layout.windows())
        if not keep.any():
            raise InputError(f"Scene {uri} does not meet the AOI {cfg.aoi}.", "leave it out, or widen the AOI.",
                             reason=OUTSIDE_AOI)
        plan.info = info = info.keeping(keep, len(plan.layout.col_offs))
        plan.layout = tiling.layout(info, grid)
    if info.dtype not in SUPPORTED_DTYPES:
        raise InputError(f"Scene {uri} has pixel type {info.dtype}, which cannot be scaled to model input.",
                         f"convert it to one of {', '.join(SUPPORTED_DTYPES)}.", reason="unsupported")
    if plan.fingerprint is None:  # (after the header: a missing file is the header's clear error)
        plan.fingerprint = storage.fingerprint(uri)
    fill = cfg.fill_value if cfg.fill_value is not None else info.nodata
    with storage.rasterio_env(), rasterio.open(path) as ds:
        # header facts first: after a damaged block in the statistics read, GDAL's error state
        # would fail these calls
        colorinterp, descriptions = ds.colorinterp, ds.descriptions
        n_data = info.count - (1 if cloud else 0)  # a quality asset is the VRT's last band, no spectral band
        file_scale = radiometry.file_scale(ds.scales, ds.offsets)
        sensor, rule = _sensor(cfg, uri, stac_item, file_scale)
        mode = scaling_mode(cfg.scaling, sensor, manifest, uri)
        if stac_item:  # its VRT holds the model's channels first, in order (``scene_source``)
            plan.bands = list(range(1, needed + 1))
        else:
            plan.bands = bandlib.resolve_bands(cfg.bands, info.count, uri, needed, colorinterp)
        sample = windows.decimated_read(ds, plan.bands, fill=fill) if mode == "match" else None
        unfit = bandlib.match_unfit(sample, fill) if sample is not None and cfg.scaling == "auto" else None
        stat_bands = list(range(1, min(n_data, bandlib.MAX_STAT_BANDS) + 1))
        tf_bands = sorted(set(stat_bands) | set(plan.bands))  # the model may read a band past the statistics'
        sensor_tf = None
        if sensor and sensor != "naip":  # one DN -> reflectance map for the model's and the statistics' bands
            try:
                sensor_tf = radiometry.transform(sensor, uri, tf_bands, descriptions, n_data, info.dtype,
                                                 scenes.centre_lonlat(info), cfg.sun_elevation, file_scales=file_scale)
            except ConfigError:
                if mode == "reflectance":
                    raise
        elif mode == "reflectance":
            sensor_tf = radiometry.transform(sensor, uri, tf_bands, descriptions, n_data, info.dtype,
                                             file_scales=file_scale)
        roles = radiometry.spectral_roles(sensor, descriptions, n_data, colorinterp, cfg.spectral_bands)
    if unfit:  # match only as a last resort, and never from a scene that cannot stand for the training set
        can_reflect = sensor_tf is not None and (sensor_tf.display or bool(manifest.bands.get("reflectance")))
        mode, sample = ("reflectance" if can_reflect else "dtype"), None
    model_tf = sensor_tf.select([tf_bands.index(b) for b in plan.bands]) if sensor_tf else None
    stat_tf = sensor_tf.select([tf_bands.index(b) for b in stat_bands]) if sensor_tf else None
    plan.scaler = bandlib.make_scaler(mode, sample, info.dtype, fill, manifest.bands["mean"],
                                      manifest.bands["std"],
                                      cfg.scale if cfg.scale is not None else manifest.bands.get("scale"), uri,
                                      sensor=model_tf, model_reflectance=manifest.bands.get("reflectance"))
    physical = sensor_tf is not None and not sensor_tf.display
    plan.stats = {
        "bands": stat_bands, "roles": {r: stat_bands.index(b) for r, b in roles.items() if b in stat_bands},
        "gain": (stat_tf.a.tolist() if physical else [1.0 / bandlib.dtype_max(info.dtype)] * len(stat_bands)),
        "offset": (stat_tf.c.tolist() if physical else [0.0] * len(stat_bands)),
        "units": "reflectance" if physical else "value / dtype maximum",
    }
    plan.radiometry = {"scaling": mode, "sensor_rule": rule, **(sensor_tf.notes if sensor_tf else {}), "statistics": plan.stats["units"],
                       "roles": {r: b for r, b in roles.items()},
                       "display": bool(mode == "reflectance" and sensor_tf is not None and sensor_tf.display)}
    if mode == "match" and not sensor:
        plan.radiometry["warning"] = (f"scaling: match, the last resort ({rule}): the scene's own statistics are "
                                      "stretched to the model's, so its map depends on what the scene holds; set "
                                      "--sensor to read it as reflectance")
    elif unfit:
        plan.radiometry["warning"] = (f"scaling: {mode}, not match: {unfit}; set --sensor (or --scaling) to choose")
    return plan


def display_by_name(uri: str, cfg: MapConfig, manifest: ModelManifest) -> bool:
    """Whether the scene is read as a display product (NAIP: its 8-bit values as they are),
    told without reading it: its sensor by the config, its file name or a band preset (the
    first rules of ``_sensor``), and a scaling that reads that sensor as reflectance. False
    where only the scene's header or STAC item could tell."""
    if scene_source.is_stac_item(uri):
        return False
    sensor = cfg.sensor or radiometry.detect_sensor(uri) or (
        radiometry.BAND_PRESET_SENSORS.get(cfg.bands) if isinstance(cfg.bands, str) else None)
    if sensor not in radiometry.DISPLAY_SENSORS:
        return False
    try:
        return scaling_mode(cfg.scaling, sensor, manifest, uri) == "reflectance"
    except ConfigError:
        return False


def scaling_mode(scaling: str, sensor: str | None, manifest: ModelManifest, uri: str) -> str:
    """The scaling a scene gets: ``auto`` is reflectance for the sensors where it mapped
    better than ``match`` (``radiometry.AUTO_REFLECTANCE``; BENCHMARKS.md "Map accuracy") and
    the model records its reflectance stretch (an 8-bit display product like NAIP goes as
    it is, like the model's 8-bit training images), else per-scene ``match``."""
    has_stretch = bool(manifest.bands.get("reflectance"))
    if scaling == "auto":
        measured_better = sensor in radiometry.AUTO_REFLECTANCE and (has_stretch or sensor == "naip")
        return "reflectance" if measured_better else "match"
    if scaling == "reflectance":
        if not sensor:
            raise ConfigError(f"scaling: reflectance needs the sensor of {uri}, and its file name does not tell it.",
                              f"set sensor (one of {', '.join(radiometry.SENSORS)}).")
        if not has_stretch and sensor != "naip":
            raise ConfigError(f"scaling: reflectance needs the model's reflectance stretch, and model {manifest.id} "
                              "records none.", "use scaling: match, or a model trained with --reflectance.")
    return scaling


_planner = threading.local()


def plan_scene(uri: str, cfg: MapConfig, manifest: ModelManifest, grid: tiling.GridSpec,
               fingerprint: str | None = None) -> ScenePlan:
    """``_plan_scene`` with a time limit and retries. A scene that cannot be mapped gets a
    plan with its ``failure`` (reason, message), and its grid when the header was read (its
    tiles become error rows); configuration errors are raised."""
    attempt: dict = {}
    if not hasattr(_planner, "watchdog"):  # one helper thread per planning thread, reused
        _planner.watchdog = resilience.Watchdog()

    def once():
        attempt["plan"] = ScenePlan(uri, fingerprint=fingerprint)
        return _planner.watchdog.call(lambda: _plan_scene(attempt["plan"], cfg, manifest, grid), cfg.read_timeout,
                                      f"reading the header of {uri}")

    retried = [0]

    def count(_exc):
        retried[0] += 1

    try:
        plan = resilience.retrying(once, retries=cfg.read_retries, on_retry=count)
        plan.retries = retried[0]
        plan.item = scene_source.item_properties(uri, plan.fingerprint)
        return plan
    except ConfigError:
        raise
    except Exception as exc:
        reason, msg = resilience.classify(exc)
        if isinstance(exc, LandcoverError):
            msg = resilience.redact(str(exc))
        learnt = attempt["plan"]
        if reason == OUTSIDE_AOI:  # no tile of it is in the map: the scene's one row says so
            learnt.info = learnt.layout = None
        return ScenePlan(uri, info=learnt.info, layout=learnt.layout, fingerprint=learnt.fingerprint,
                         failure=(reason, msg), retries=retried[0],
                         item=scene_source.item_properties(uri, learnt.fingerprint))


# what to do about a scene that cannot be read, by its failure's reason
FAILURE_FIXES = {
    "corrupt": "the file is damaged or cut short (a copy or download that did not finish?): copy it again from "
               "its source, or leave it out.",
    "not_found": "check the path (or key), and that it is a file, not a folder.",
    "permission_denied": "check the credentials (AWS_* or ~/.aws) and the object's or file's permissions.",
    "read_error": "check that the store answers (AWS_ENDPOINT_URL, the network), then run the same command again.",
    "timeout": "the store did not answer in time: run the same command again, or raise --read-timeout.",
    "unsupported": "give a GeoTIFF or COG (GDAL must read it as a raster with a CRS).",
}


def failure_error(plan: ScenePlan) -> InputError:
    """The one-line error of a run whose only scene cannot be mapped: what happened (GDAL's
    first line, not its chain) and the fix for its reason."""
    reason, msg = plan.failure
    first = msg.split(" | ", 1)[0]
    if "Fix:" in first:  # (a message that names its fix already: a band mismatch, a configuration)
        return InputError(first)
    fix = FAILURE_FIXES.get(reason, "check the scene, or leave it out.")
    return InputError(f"The scene {plan.uri} cannot be mapped ({reason}: {first.removeprefix(reason + ': ').rstrip('.')}).",
                      fix)


def scene_channels(cfg: MapConfig, manifest: ModelManifest) -> tuple[str, ...]:
    """The band names a STAC item's scene reads, in the model's channel order."""
    return tuple(cfg.stac_bands or manifest.bands.get("channels") or ())


def resolve_grid(cfg: MapConfig, manifest: ModelManifest) -> tiling.GridSpec:
    tile = cfg.tile_size or manifest.tile_size
    stride = cfg.stride or tile
    if cfg.gsd == "native":
        gsd = None
    elif cfg.gsd == "model":
        gsd = manifest.gsd
    else:
        gsd = float(cfg.gsd)
    return tiling.GridSpec(tile_size=int(tile), stride=int(stride), gsd=gsd,
                           ground=(cfg.grid or ("ground" if cfg.stac or cfg.composite else "scene")) == "ground")


def job_fingerprint(cfg: MapConfig, uris: list[str], fingerprints: dict | None, model_id: str, grid: dict) -> str:
    """What makes two runs the same job: the parts of one are valid for the other. The scene
    list (and the versions already known, in incremental maps), the model, the grid, and every
    setting of the config but those marked as how the job runs (``config.base``: a new setting
    is in it until its field says otherwise); each part records the versions of the scenes it
    holds, and a resumed run checks them (``map.run``)."""
    import hashlib

    h = hashlib.sha256()
    for u in uris:
        h.update(u.encode() + b"\0" + (fingerprints or {}).get(u, "").encode() + b"\n")
    return parts.digest({
        "scenes": h.hexdigest(), "model_id": model_id, "grid": grid,
        "settings": {k: getattr(cfg, k) for k in identity_settings(type(cfg))},
        "aoi_version": storage.fingerprint(cfg.aoi) if cfg.aoi else None,
    })
