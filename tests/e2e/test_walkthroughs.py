"""The README's and docs/commands.md's walk-throughs, run as written: each ```bash block
marked ``<!-- walkthrough: NAME -->``, in a fresh clone's layout (the repository's files, the
shared data beside it as ``../shared``), with relative paths, by bash, each command a process
of its own that starts its own local Ray, as a user's would. A walk-through that breaks fails
here.

Where the full one takes long or needs what CI has not (the internet, a cloud bucket), it runs
in a small form: ``SMALL`` says what is changed, and nothing else is. The walk-throughs run in
the docs' order, in one clone: a later one reads what an earlier one wrote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import EUROSAT, REPO, eurosat_subset

pytestmark = pytest.mark.slow
MARK = re.compile(r"<!-- walkthrough: (?P<name>[\w-]+) -->\s*```bash\n(?P<body>.*?)```", re.S)
DOCS = [REPO / "README.md", REPO / "docs" / "commands.md"]
# the names of the walk-throughs, in the order they run (each test below runs one)
ORDER = ["quickstart", "label-and-adapt", "stac", "incremental", "cluster", "heads", "assess", "sample", "change",
         "accounts", "export"]
LANDSAT = "../shared/data/scenes/LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
# a piece of the README's Landsat scene (west, south, east, north; about 100 tiles of its 8,722)
SMALL_AOI = (-54.56, -25.38, -54.50, -25.32)


def walkthroughs() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in DOCS:
        for m in MARK.finditer(path.read_text()):
            assert m["name"] not in found, f"two walk-throughs named {m['name']}"
            found[m["name"]] = m["body"]
    return found


def _commands(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [" ".join(ln.split("#", 1)[0].split()) for ln in joined.splitlines() if ln.split("#", 1)[0].strip()]


def test_every_walkthrough_is_run_and_every_other_block_is_reference_syntax():
    """A block of commands in the docs is a walk-through (run below), commands a walk-through
    runs, or syntax with placeholders (``<uri>``, ``...``, ``[--flag]``, a bucket of one's
    own): a runnable example left unmarked would go untested."""
    assert sorted(walkthroughs()) == sorted(ORDER)
    run_somewhere = {c for body in walkthroughs().values() for c in _commands(body)}
    placeholder = re.compile(r"<[a-z][^>]*>|\.\.\. |\.\.\.$|\[--|s3://(my-)?bucket|points\.gpkg|districts\.gpkg|"
                             r"labelled\.parquet|cw\.yaml|lc-20\d\d\.tif|pip install|ray up|"
                             r"--config configs/finetune-eurosat.yaml|jobs/map.py --config configs/map-landsat.yaml",
                             re.M)
    for path in DOCS:
        text = MARK.sub("", path.read_text())
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            covered = all(c in run_somewhere for c in _commands(block))
            assert covered or placeholder.search(block), f"{path.name}: neither run nor placeholder syntax:\n{block}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory, s3_server, bucket):
    """A fresh clone's layout: the repository's own files (linked), ``../shared`` beside it, an
    empty working tree otherwise; the built-in model in the test cache (small: built once)."""
    from raylib.models.default import default_model_dir

    default_model_dir(per_class=10)  # the cache the commands find (LANDCOVER_CACHE: conftest)
    root = tmp_path_factory.mktemp("fresh")
    here = root / "landcover-ray"
    here.mkdir()
    for name in (".gitignore", "configs", "docs", "jobs", "raylib", "scripts", "pyproject.toml"):
        (here / name).symlink_to(REPO / name)
    (here / ".venv" / "bin").mkdir(parents=True)  # (a link to the environment would be uploaded by --working-dir)
    (here / ".venv" / "bin" / "activate").write_text(f". {REPO / '.venv' / 'bin' / 'activate'}\n")
    (root / "shared").symlink_to(REPO.parent / "shared")
    return here


def run(clone: Path, script: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``script`` in bash (stop at the first failing command) in the clone, ``landcover`` on
    the PATH (as after ``. .venv/bin/activate``), under umask 022, no Ray address: each
    command starts its own local Ray."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.pop("RAY_ADDRESS", None)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=clone, env=e, capture_output=True, text=True,
                       timeout=timeout, preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, f"{script}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"
    return r


def _aoi(path: Path, box) -> str:
    w, s, e, n = box
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                "geometry": {"type": "Polygon",
                                             "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}]}))
    return str(path)


def test_quickstart(clone):
    """The quick start's map (the install and the tests aside: CI runs both), on a piece of the
    scene (``--aoi``); what it prints has the README's shape."""
    body = walkthroughs()["quickstart"]
    line = next(ln for ln in body.splitlines() if "landcover map" in ln)
    command = line.split("&& ", 1)[1].replace(".venv/bin/landcover", "landcover")
    got = run(clone, command + f" --aoi {_aoi(clone.parent / 'small-aoi.geojson', SMALL_AOI)}").stdout.splitlines()
    readme = (REPO / "README.md").read_text()
    shown = re.search(r"The first command prints .*?```\n(.*?)```", readme, re.S)[1].splitlines()
    assert len(got) == len(shown), got
    for want, line in zip(shown, got):  # the README's lines; numbers, counts and paths aside
        pattern = re.escape(re.sub(r"\(\d[^)]*\)", "COUNTS", want))
        pattern = pattern.replace("COUNTS", r"\(.*\)").replace(r"\.\.\.", ".*?")
        pattern = pattern.replace("/path/to/landcover\\-ray", ".*")
        pattern = re.sub(r"(?<!\\)\d+", r"\\d+", pattern)
        assert re.fullmatch(pattern, line), (want, line)
    summary = json.loads((clone / "maps" / "landsat" / "_summary.json").read_text())
    assert summary["result"] == "ok" and summary["counts"]["ok"] > 50
    # the map's STAC, made from a relative --out: each Item's asset is its part, beside it
    items = sorted((clone / "maps" / "landsat" / "_stac" / "items").glob("*.json"))
    assert items
    for path in items:
        hrefs = [a["href"] for a in json.loads(path.read_text())["assets"].values() if a["href"].endswith(".parquet")]
        assert hrefs and all((path.parent / h).resolve().is_file() for h in hrefs), hrefs


def test_label_and_adapt(clone):
    """As written, whole: the head on 20 labelled tiles per class lifts NC Wake's balanced
    accuracy (floors below the README's 0.78 and 0.82)."""
    run(clone, walkthroughs()["label-and-adapt"])
    head = json.loads((clone / "reports" / "nc-20" / "assessment.json").read_text())
    assert head["balanced_accuracy"] > 0.72, head["balanced_accuracy"]
    model = json.loads((clone / "models" / "nc-20" / "model.json").read_text())
    assert model["id"].startswith("nc-mobilenetv2-logreg@")  # named after the map it learnt from
    mapped = json.loads((clone / "maps" / "nc-20-px" / "_summary.json").read_text())
    assert mapped["result"] == "ok" and mapped["tiles"] == 483


def test_stac(clone):
    """The STAC walk-through on a static catalog of the test scene in place of Earth Search
    (no internet here): its collection named as Earth Search's, inside the dates, cloud 5 %,
    under the AOI the command names (``docs/examples/wake.geojson``, here laid over the test
    scene in a copy of docs/)."""
    from .. import stac_catalog as sc

    cat = clone.parent / "stac"
    it = sc.item(cat / "sentinel-2-l2a" / sc.ITEM_ID, collection="sentinel-2-l2a")
    sc.static_catalog(cat, {"sentinel-2-l2a": [it]})
    body = walkthroughs()["stac"].replace("https://earth-search.aws.element84.com/v1", str(cat / "catalog.json"))
    docs = clone / "docs"  # a copy of docs/ whose wake.geojson covers the test scene
    docs.unlink()
    shutil.copytree(REPO / "docs", docs)
    w, s, e, n = it["bbox"]
    _aoi(docs / "examples" / "wake.geojson", (w, s, (w + e) / 2, (s + n) / 2))
    try:
        run(clone, body)
    finally:
        shutil.rmtree(docs)
        docs.symlink_to(REPO / "docs")
    s = json.loads((clone / "maps" / "wake-2020" / "_summary.json").read_text())
    assert s["result"] == "ok" and s["composite"]["tiles"] > 0 and s["scenes"] == 1


def test_incremental(clone, s3_server):
    """The scheduled map, run twice on the test S3 server (``my-bucket``: a bucket of the
    server's holding the NAIP scenes under naip/): the second run maps nothing new."""
    client = s3_server["client"]
    client.create_bucket(Bucket="my-bucket")
    for p in sorted((REPO.parent / "shared" / "data" / "scenes").glob("m_*.tif"))[:2]:
        client.upload_file(str(p), "my-bucket", f"naip/{p.name}")
    body = walkthroughs()["incremental"]
    first = run(clone, body).stdout
    assert "mapped 96 tiles from 2 scene(s)" in first, first
    again = run(clone, body).stdout
    assert "incremental: 2 scene(s) unchanged" in again, again


def test_cluster(clone):
    """``ray job submit`` to a head of its own (``ray start`` and ``ray stop`` are the
    fixture's: a test never stops the machine's other Ray), on a piece of the scene."""
    from ..conftest import _free_port, separate_ray_head

    import urllib.request

    gcs, dash = _free_port(), _free_port()
    address = f"http://127.0.0.1:{dash}"

    def up(env):
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as resp:
            return resp.status == 200

    lines = [ln for ln in walkthroughs()["cluster"].splitlines() if not ln.startswith(("ray start", "ray stop"))]
    body = "\n".join(lines).replace("http://127.0.0.1:8265", address).replace(
        '"$PWD/maps/landsat-job"', f'"$PWD/maps/landsat-job" --aoi {_aoi(clone.parent / "job-aoi.geojson", SMALL_AOI)}')
    args = [f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}"]
    with separate_ray_head(args, {}, up, "walkthrough-head"):
        for _ in range(20):  # the dashboard answers before the head's job agent has registered
            try:
                out = run(clone, body).stdout
                break
            except AssertionError as exc:
                if "No available agent to submit job" not in str(exc):
                    raise
        else:
            pytest.fail("the head's job agent never came up")
    assert "succeeded" in out and (clone / "maps" / "landsat-job" / "_SUCCESS").exists()


def test_heads(clone):
    """Embed, sweep, evaluate, fine-tune and compare, on 20 EuroSAT patches per class in
    place of 27,000, 4 trials of 2 families and 2 epochs; nothing but the verbs' own lines on
    the terminal (no Tune table, no Optuna log)."""
    small = eurosat_subset(clone.parent / "eurosat-small", sorted(p.name for p in EUROSAT.iterdir() if p.is_dir()),
                           0, 20)
    body = walkthroughs()["heads"].replace("../shared/data/eurosat-rgb", str(small)).replace(
        "--trials 20", "--trials 4 --families logistic_regression,knn").replace("--epochs 15", "--epochs 2")
    r = run(clone, body)
    assert "balanced accuracy" in r.stdout
    assert "Configuration for experiment" not in r.stdout and "new study created" not in r.stderr, r.stdout + r.stderr
    compare = json.loads((clone / "reports" / "frozen-vs-ft" / "compare.json").read_text())
    assert [m["kind"] for m in compare] == ["head", "finetuned"]


def test_assess(clone):
    run(clone, walkthroughs()["assess"])
    r = json.loads((clone / "reports" / "nc" / "assessment.json").read_text())
    assert r["tiles"]["assessed"] > 300


def test_sample(clone):
    import geopandas

    run(clone, walkthroughs()["sample"])
    units = geopandas.read_parquet(clone / "sample-30.parquet")
    assert units.map_class.value_counts().max() <= 30 and units.reference.isna().all()
    assert (clone / "sample.areas.csv").exists()


def test_change(clone):
    out = run(clone, walkthroughs()["change"]).stdout
    assert "pending" in out  # the three-date change says what it leaves pending
    s = json.loads((clone / "change" / "2010-2015-2020" / "_summary.json").read_text())
    assert s["tiles"] == 56 and s["counts"]["error"] == 16  # the ground grid's rows above and below the scene
    assert (clone / "change" / "2010-2020" / "_quicklook" / "change.png").stat().st_size > 10_000


def test_accounts(clone):
    run(clone, walkthroughs()["accounts"])
    s = json.loads((clone / "accounts" / "2020" / "summary.json").read_text())
    assert set(s["per_zone"]) == {"west", "east"} and s["outside_hectares"] < 1.0


def test_export(clone):
    out = run(clone, walkthroughs()["export"]).stdout
    assert "pixels of 640 m" in out and "pixels of 30 m" in out
    assert (clone / "exports" / "change" / "_SUCCESS").exists()


def test_the_outputs_are_readable_by_the_team(clone):
    """Under umask 022 (as the walk-throughs ran), every file the tools wrote (maps, the store,
    COGs, reports, models) is readable by group and others, and every folder enterable."""
    written = [clone / d for d in ("maps", "reports", "exports", "models", "change", "accounts")]
    bad = [str(p) for top in written for p in [top, *top.rglob("*")]
           if (p.is_file() and (p.stat().st_mode & 0o044) != 0o044)
           or (p.is_dir() and (p.stat().st_mode & 0o055) != 0o055)]
    assert not bad, bad[:10]
