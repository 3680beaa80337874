"""Scene-centre adaptation end to end on Ray: the first pass's centre is the scene's, it is
stored with the map before any tile is mapped, a killed run resumes with it, and remap of
the map's store uses it."""

import pathlib

import numpy as np
import pytest

from raylib.config import MapConfig, RemapConfig
from raylib.errors import ConfigError
from raylib.formats import embstore
from raylib.formats import parts
from raylib.formats.mapfile import read_map
from raylib.io import storage
from raylib.models import adaptation
from raylib.models.landcover_model import LandcoverModel
from raylib.pipelines.common import centres as centres_of
from raylib.pipelines.map.run import run_map
from raylib.pipelines.remap import run_remap

from ..conftest import NAIP


def _args(model: str, out: str, *more: str) -> list[str]:
    return ["map", "--scenes", str(NAIP), "--bands", "naip", "--model", model, "--out", out, "--adapt",
            "--store", "--read-batch-size", "8", "--batch-size", "8", "--no-quicklook", *more]


def test_a_killed_adapted_map_resumes_with_its_stored_scene_centre(ray_session, test_model, tmp_path, capsys):
    from .test_reliability import driver

    out = str(tmp_path / "adapted")
    r = driver(ray_session, _args(test_model["uri"], out), failpoint="adapted")
    assert r.returncode == -9, r.stderr[-2000:]
    files = storage.list_files(out + "/_adaptation")
    assert len(files) == 1 and not storage.exists(out + "/_SUCCESS")
    first = centres_of.read_file(files[0])
    assert first["scene"].to_pylist() == [str(NAIP)] and first["tiles"].to_pylist()[0] >= 40

    s = run_map(MapConfig(scenes=[str(NAIP)], bands="naip", model=test_model["uri"], out=out, adapt=True,
                          store=True, read_batch_size=8, batch_size=8, quicklook=False))
    a = s["adaptation"]
    assert a["method"] == "scene-centre" and a["sampled"] == 0 and a["reused"] == 1 and a["scenes"] == 1
    assert "adapt:" not in capsys.readouterr().err  # (no first pass: no line of its progress)
    assert storage.list_files(out + "/_adaptation") == files  # the stored centre, not a new one
    centre = np.asarray(first["centre"].to_pylist()[0], np.float32)
    # a recursive Parquet glob of the map folder meets the map's parts and its store, not the centres
    globbed = sorted(str(p.relative_to(out)) for p in pathlib.Path(out).rglob("*.parquet"))
    assert globbed == sorted([*parts.existing(out), *(
        f"_embeddings/{storage.basename(p)}" for p in embstore.part_files(out + "/_embeddings"))])

    # the centre is the scene's: every readable tile of this small scene, not one block of 8
    store = embstore.read_one(embstore.part_files(out + "/_embeddings")[0])
    t = read_map(out).sort_by("tile_id")
    ok = np.asarray(t["status"].to_pylist()) == "ok"
    by_id = dict(zip(store["tile_id"].to_pylist(), range(store.num_rows)))
    emb = embstore.embeddings_of(store.take([by_id[i] for i, o in zip(t["tile_id"].to_pylist(), ok) if o]))
    assert len(emb) == first["tiles"].to_pylist()[0] == ok.sum()
    np.testing.assert_allclose(centre, adaptation.unit_rows(emb).mean(axis=0), atol=2e-3)
    # every tile's probabilities: the head on its embedding, re-centred on the scene's centre
    model = LandcoverModel.load(test_model["uri"], with_backbone=False)
    probs = np.asarray([p for p, o in zip(t["probs"].to_pylist(), ok) if o], np.float32)
    np.testing.assert_allclose(probs, model.predict_embeddings(emb, centre=centre)[0], atol=1e-4)
    assert not np.allclose(probs, model.predict_embeddings(emb)[0], atol=1e-2)  # and it changed the map

    # remap of the map's store uses the map's centre (and gives the map)
    rm = run_remap(RemapConfig(store=out, model=test_model["uri"], out=str(tmp_path / "remapped"),
                               adapt=True, quicklook=False))
    assert rm["adaptation"] == {"method": "scene-centre", "scenes": 1, "from_map": 1, "from_store": 0}
    b = read_map(str(tmp_path / "remapped")).sort_by("tile_id")
    assert b["label"].equals(t["label"])
    # a store away from its map: --adapt computes each scene's centre from all its stored tiles (here: the same
    # tiles the first pass read), without it the head as trained
    import shutil

    alone = tmp_path / "store-alone"
    shutil.copytree(out + "/_embeddings", alone)
    rs = run_remap(RemapConfig(store=str(alone), model=test_model["uri"], out=str(tmp_path / "r2"), adapt=True,
                               quicklook=False))
    assert rs["adaptation"] == {"method": "scene-centre", "scenes": 1, "from_map": 0, "from_store": 1}
    assert read_map(str(tmp_path / "r2")).sort_by("tile_id")["label"].equals(t["label"])

    # on GPU actors (a logical GPU here): the first pass and the map both run there, with the CPU map's answers
    g = run_map(MapConfig(scenes=[str(NAIP)], bands="naip", model=test_model["uri"], out=str(tmp_path / "gpu"),
                          adapt=True, num_gpus=1, quicklook=False))
    assert g["adaptation"]["sampled"] == 1 and g["adaptation"]["scenes"] == 1
    assert read_map(str(tmp_path / "gpu")).sort_by("tile_id")["label"].equals(t["label"])
    said = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("adapt:")]
    assert len(said) == 1 and said[0].startswith("adapt: 1/1 scenes ") and said[0].endswith(" done"), said


def test_a_display_product_keeps_the_head_as_trained_unless_asked(ray_session, test_model, tmp_path):
    """A model that advises adaptation re-centres scenes by default, but not a display product
    (NAIP's 8-bit values, read as the model's training JPEGs were): its map is the map
    without adaptation, and the summary says why."""
    import json
    import shutil

    advised = tmp_path / "advised"
    shutil.copytree(test_model["uri"], advised)
    m = json.loads((advised / "model.json").read_text())
    m["inference"]["adapt"] = "scene-centre"
    (advised / "model.json").write_text(json.dumps(m))
    args = dict(scenes=[str(NAIP)], bands="naip", model=str(advised), quicklook=False)
    s = run_map(MapConfig(out=str(tmp_path / "auto"), **args))
    a = s["adaptation"]
    assert a["scenes"] == 0 and a["display_products"]["scenes"] == 1 and "too_few_tiles" not in a
    run_map(MapConfig(out=str(tmp_path / "off"), adapt=False, **args))
    assert read_map(str(tmp_path / "auto")).sort_by("tile_id")["label"].equals(
        read_map(str(tmp_path / "off")).sort_by("tile_id")["label"])


def test_adapt_is_refused_for_a_head_that_cannot_be_recentred(test_model, tmp_path):
    import json
    import shutil

    knn = tmp_path / "knn-like"
    shutil.copytree(test_model["uri"], knn)
    m = json.loads((knn / "model.json").read_text())
    m["head"]["params"]["l2_normalize"] = False  # a head that does not standardise unit embeddings
    (knn / "model.json").write_text(json.dumps(m))
    manifest = LandcoverModel.read_manifest(str(knn))
    with pytest.raises(ConfigError, match="cannot be re-centred"):
        centres_of.resolve(True, str(knn), manifest)
    assert centres_of.resolve(None, str(knn), manifest) is False  # no advice, no adaptation
    assert centres_of.resolve(None, test_model["uri"], LandcoverModel.read_manifest(test_model["uri"])) is False
