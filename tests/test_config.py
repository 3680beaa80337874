import pytest

from raylib import config
from raylib.cli import _coerce
from raylib.config import MapConfig
from raylib.errors import ConfigError


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "map.yaml"
    p.write_text("scenes: [a.tif]\nout: maps/x\ntile_size: 32\nbands: landsat8-b234\n")
    cfg = config.load(MapConfig, str(p), {"tile_size": 64})
    assert cfg.tile_size == 64 and cfg.bands == "landsat8-b234" and cfg.gsd == "model"


def test_unknown_key_is_named_with_suggestion(tmp_path):
    p = tmp_path / "map.yaml"
    p.write_text("scenes: [a.tif]\nout: o\ntilesize: 32\n")
    with pytest.raises(ConfigError) as e:
        config.load(MapConfig, str(p))
    assert "unknown field 'tilesize'" in str(e.value) and "did you mean 'tile_size'" in str(e.value)


@pytest.mark.parametrize("field,value,needle", [
    ("tile_size", -1, "tile_size"),
    ("gsd", -5.0, "gsd"),
    ("scaling", "magic", "scaling"),
    ("batch_size", "many", "batch_size"),
    ("block_tiles", 0, "block_tiles"),
    ("actor_concurrency", 0, "actor_concurrency"),
    ("adapt_sample", 4, "adapt_sample"),
    ("adapt", "sometimes", "adapt"),
])
def test_bad_values_name_the_field(field, value, needle):
    with pytest.raises(ConfigError) as e:
        config.validate(MapConfig, {"scenes": ["a"], "out": "o", field: value})
    assert f"'{needle}'" in str(e.value)


def test_missing_required():
    with pytest.raises(ConfigError, match=r"field 'out' \(--out\) is required"):
        config.validate(MapConfig, {"scenes": ["a"]})


def test_cli_coercion():
    vals = _coerce(MapConfig, {"scenes": ["a.tif", "b.tif"], "bands": ["3,2,1"], "tile_size": "64",
                               "gsd": "native", "model": "none"})
    cfg = config.validate(MapConfig, {"out": "o", **vals})
    assert cfg.bands == [3, 2, 1] and cfg.tile_size == 64 and cfg.gsd == "native" and cfg.model is None
    assert _coerce(MapConfig, {"bands": ["naip"]})["bands"] == "naip"
    assert config.validate(MapConfig, {"scenes": ["a"], "out": "o", "gsd": "10"}).gsd == 10.0


def test_bad_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("scenes: [a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(MapConfig, str(p))
    with pytest.raises(ConfigError, match="Cannot read config"):
        config.load(MapConfig, str(tmp_path / "missing.yaml"))


def test_boolean_flags_switch_both_ways_and_unset_keeps_the_file(tmp_path):
    from raylib.cli import _coerce, _parser
    from raylib.config import FinetuneConfig, load

    args = _parser().parse_args(["finetune", "--data", "d", "--out", "o", "--no-augment", "--gpu"])
    values = {k: getattr(args, k) for k in FinetuneConfig.model_fields}
    cfg = load(FinetuneConfig, None, _coerce(FinetuneConfig, values))
    assert cfg.augment is False and cfg.gpu is True and cfg.tta is True  # --tta not given: default
    f = tmp_path / "ft.yaml"
    f.write_text("data: d\nout: o\ntta: false\n")
    args = _parser().parse_args(["finetune", "--config", str(f)])
    cfg = load(FinetuneConfig, str(f), _coerce(FinetuneConfig, {k: getattr(args, k) for k in FinetuneConfig.model_fields}))
    assert cfg.tta is False  # the file's value stands when the flag is not given


@pytest.mark.parametrize("value,extra,needle", [
    (["zone", "month"], {}, "partition_by"),  # an unknown key names the field and the allowed ones
    (["zone", "zone"], {}, "names a key twice"),
    (["year"], {"incremental": True}, "whole maps"),
])
def test_bad_partition_by_is_one_clear_message(value, extra, needle):
    with pytest.raises(ConfigError) as e:
        config.validate(MapConfig, {"scenes": ["a"], "out": "o", "partition_by": value, **extra})
    assert needle in str(e.value)
    if value == ["zone", "month"]:
        assert "'zone'" in str(e.value) and "'date'" in str(e.value)


def test_pixels_goes_with_a_store():
    from raylib.config import TrainHeadConfig

    with pytest.raises(ConfigError, match="--pixels trains on tiles of an embedding store"):
        config.validate(TrainHeadConfig, {"data": "imgs", "out": "m", "pixels": True})
    assert config.validate(TrainHeadConfig, {"store": "s", "labels": "l.csv", "out": "m", "pixels": True}).pixels


def test_spectral_and_adapt_go_with_an_image_folder():
    from raylib.config import TrainHeadConfig

    with pytest.raises(ConfigError, match="--spectral and --adapt go with --data"):
        config.validate(TrainHeadConfig, {"store": "s", "labels": "l.tif", "out": "m", "adapt": True})
    with pytest.raises(ConfigError, match="'spectral'"):
        config.validate(TrainHeadConfig, {"data": "d", "out": "m", "spectral": "landsat"})
