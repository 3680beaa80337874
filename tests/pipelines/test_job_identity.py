"""A map's job identity (``planning.job_fingerprint``) is derived from the setting groups: every
field of ``MapConfig`` is in it unless its field is marked (``config.base``: run, scenes, grid,
model). A new setting fails here until it is given a changed value below (it is in the
identity) or a mark that says why not; the marks that claim "the rows are alike" are held to
it by ``tests/e2e/test_map.py::test_settings_marked_run_leave_the_rows_alike``."""

import pytest

from raylib.config import MapConfig, identity_settings, job_role
from raylib.pipelines.common.planning import job_fingerprint

# each field that is a job's setting as it is -> a valid value other than its default
CHANGED = {
    "stac_bands": ["blue", "green", "red"], "cloud_asset": "none", "max_tile_cloud": 0.5,
    "precision": "bf16",
    "bands": [3, 2, 1], "fill_value": 0, "scaling": "dtype", "sensor": "naip",
    "spectral_bands": {"red": 1, "green": 2, "nir": 4}, "sun_elevation": 40.0, "scale": 255.0,
    "max_fill_fraction": 0.5,
    "aoi": "AOI", "composite": "best", "part_mb": 64.0, "partition_by": ["zone"], "rows_per_part": 100,
    "unknown_below": 0.5, "store": True, "incremental": True, "tta": True, "adapt": False, "adapt_sample": 100,
    "spectral_prior": False,
}
# in the identity through what they resolve to (the scene list, the grid, the model's id)
THROUGH = {
    "scenes": {"scenes", "stac", "collections", "bbox", "datetime", "max_cloud", "query", "max_items"},
    "grid": {"tile_size", "stride", "gsd", "grid"},
    "model": {"model"},
}
STAC_ONLY = {"stac_bands", "cloud_asset"}


def _fingerprint(cfg: MapConfig) -> str:
    return job_fingerprint(cfg, ["a.tif"], None, "m@1", {"kind": "scene", "step": 64})


def _base(field: str, **extra) -> dict:
    base = {"out": "out", "num_gpus": 1.0}  # (num_gpus: precision other than fp32 needs a GPU; it is how it runs)
    base.update({"stac": "catalog.json"} if field in STAC_ONLY or field == "max_tile_cloud" else {"scenes": ["a.tif"]})
    return {**base, **extra}


def test_every_field_of_a_map_is_in_its_identity_or_marked():
    roles = {k: job_role(f) for k, f in MapConfig.model_fields.items()}
    assert set(roles.values()) <= {"settings", "run", *THROUGH}
    for role, fields in THROUGH.items():
        assert {k for k, r in roles.items() if r == role} == fields, role
    assert set(identity_settings(MapConfig)) == set(CHANGED), (
        "a MapConfig field is neither in CHANGED nor marked: give it a changed value here (it is part of the "
        "job) or mark it in raylib/config (config.base: RUN, SCENES, GRID, MODEL)")


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_each_setting_changes_the_job(field, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}')
    value = str(aoi) if CHANGED[field] == "AOI" else CHANGED[field]
    same = _fingerprint(MapConfig(**_base(field)))
    assert _fingerprint(MapConfig(**_base(field))) == same
    assert _fingerprint(MapConfig(**_base(field, **{field: value}))) != same


@pytest.mark.parametrize("field", sorted(k for k, f in MapConfig.model_fields.items() if job_role(f) == "run"))
def test_how_a_job_runs_is_not_the_job(field):
    changed = {"out": "elsewhere", "overwrite": True, "quicklook": False, "cog": True, "refresh": True,
               "ray_address": "auto", "driver_first_block": False, "num_gpus": 0.5, "max_error_share": 1.0}
    value = changed.get(field, 3)  # (every other run setting takes a small positive number)
    assert _fingerprint(MapConfig(**_base(field, **{field: value}))) == _fingerprint(MapConfig(**_base(field)))


def test_stac_bands_are_part_of_the_job():
    """The leak this derivation closed: a --stac run rerun with other --stac-bands was the same
    job, and would have resumed parts read from other assets."""
    a = MapConfig(stac="catalog.json", out="out", stac_bands=["red", "green", "blue"])
    b = MapConfig(stac="catalog.json", out="out", stac_bands=["blue", "green", "red"])
    assert _fingerprint(a) != _fingerprint(b)
