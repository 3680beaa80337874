"""Label-free adaptation, option by option (BENCHMARKS.md, "Label-free adaptation").

With the built-in model, side by side in one run:
  * NC Wake (Landsat 7, 6 bands): ``landcover map`` (bands 3,2,1, sensor landsat-etm-l1) with
    scene-centre adaptation on/off and the spectral prior on/off, each assessed as
    ``landcover assess`` does with configs/crosswalks/eurosat-to-nc-landclass96.yaml;
  * the README Landsat-8 scene (RGB, no NIR): the water share (SeaLake + River) of the map,
    and of the tiles east of the reservoir, adaptation on/off;
  * display products (NAIP): the North Dakota scene's crop and built-up shares and the
    Chesapeake tile's balanced accuracy, by default (head as trained) and with ``--adapt``;
  * EuroSAT: the model's own hold-out (the split it was trained with), as trained and
    re-centred on the hold-out's mean; the EuroSAT MS sample (270 patches with NIR), the
    image head alone and pooled with a spectral head fitted out of fold (5 folds).

    .venv/bin/python scripts/benchmarks/scene_adaptation.py --out /tmp/adapt-bench
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data").resolve()
NC = DATA / "labelled-scenes" / "nc-wake-landsat7-landclass96"
README_SCENE = DATA / "scenes" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
CROSSWALK = REPO / "configs" / "crosswalks" / "eurosat-to-nc-landclass96.yaml"
NAIP = DATA / "scenes" / "m_4709963_se_14_1_20150926.tif"
CHESAPEAKE = DATA / "labelled-scenes" / "chesapeake-wv-m_3907833_nw_17_1"
OPTIONS = {"both (default)": [], "adaptation only": ["--no-spectral-prior"], "spectral prior only": ["--no-adapt"],
           "neither (the head as trained)": ["--no-adapt", "--no-spectral-prior"]}


def nc_row(out: Path, name: str, flags: list[str]) -> str:
    from raylib.cli import main

    m, a = out / f"nc-{len(flags)}-{'-'.join(f.strip('-') for f in flags)}", out / "assess"
    assert main(["map", "--scenes", str(NC / "image_landsat7_2000.tif"), "--bands", "3,2,1", "--sensor",
                 "landsat-etm-l1", "--out", str(m), "--overwrite", *flags]) == 0
    assert main(["assess", "--map", str(m), "--reference", str(NC / "label_landclass96.tif"), "--crosswalk",
                 str(CROSSWALK), "--purity", "0.5", "--out", str(a), "--overwrite"]) == 0
    r = json.loads((a / "assessment.json").read_text())
    groups, counts = r["groups"], np.asarray(r["confusion"]["counts"] if isinstance(r["confusion"], dict)
                                             else r["confusion"])
    recall = ", ".join(f"{g} {int(counts[i, i])}/{int(counts[:, i].sum())}" for i, g in enumerate(groups)
                       if counts[:, i].sum())
    users_water = r["users_accuracy"]["water"]["estimate"] if "water" in r["users_accuracy"] else float("nan")
    return (f"| {name} | {' '.join(flags) or '(none)'} | **{r['balanced_accuracy']:.3f}** | {r['overall_accuracy']:.3f} | "
            f"{recall} | {users_water:.2f} |")


def unknown_rows(map_folder: str) -> list[str]:
    """``--unknown-below`` thresholds on NC's default map: the share withheld (of all tiles
    and of each reference group) and the balanced accuracy of the rest."""
    import pyarrow as pa

    from raylib.eval import reference
    from raylib.formats.mapfile import read_map

    t = read_map(map_folder)
    t = t.filter(pa.array(np.asarray(t["status"].to_pylist()) == "ok"))
    cw = reference.load_crosswalk(str(CROSSWALK))
    ref = reference.raster_reference(t, str(NC / "label_landclass96.tif"), cw, 0.5)
    groups = cw.groups
    mapped = np.array([groups.index(cw.map[v]) for v in t["label"].to_pylist()])[ref.rows]
    conf = np.asarray(t["confidence"].to_pylist(), float)[ref.rows]
    rows = []
    for below in (None, 0.3, 0.4, 0.5, 0.6):
        keep = conf >= (below or 0)
        present = [g for g in np.unique(ref.group) if (keep & (ref.group == g)).any()]
        bal = np.mean([(mapped[keep & (ref.group == g)] == g).mean() for g in present])
        withheld = ", ".join(f"{groups[g]} {1 - keep[ref.group == g].mean():.0%}" for g in np.unique(ref.group))
        rows.append(f"| {below or '(off)'} | {1 - keep.mean():.1%} | {withheld} | **{bal:.3f}** |")
    return rows


def water_row(out: Path, name: str, flags: list[str]) -> str:
    import pyarrow as pa

    from raylib.cli import main
    from raylib.formats.mapfile import read_map

    m = out / f"readme-{len(flags)}"
    assert main(["map", "--scenes", str(README_SCENE), "--bands", "landsat8-b234", "--fill-value", "0", "--out",
                 str(m), "--overwrite", *flags]) == 0
    t = read_map(str(m))
    t = t.filter(pa.array(np.asarray(t["status"].to_pylist()) == "ok"))
    lab = np.asarray(t["label"].to_pylist())
    r, c = np.asarray(t["grid_row"].to_pylist()), np.asarray(t["grid_col"].to_pylist())
    east = (r >= int(0.2 * (r.max() + 1))) & (r < int(0.65 * (r.max() + 1))) & (c >= int(0.8 * (c.max() + 1)))
    water = np.isin(lab, ["SeaLake", "River"])
    veg = np.isin(lab, ["Forest", "Pasture", "HerbaceousVegetation", "AnnualCrop", "PermanentCrop"])
    conf = np.asarray(t["confidence"].to_pylist(), float)
    return (f"| {name} | {' '.join(flags) or '(none)'} | **{water.mean():.3f}** | {water[east].mean():.3f} | "
            f"{veg[east].mean():.3f} | {np.median(conf):.2f} | {m}/_quicklook |")


def naip_rows(out: Path) -> list[str]:
    """Display products: the North Dakota NAIP scene (farmland, prairie, pothole wetlands; no
    towns: a built-up label is an error) and the Chesapeake NAIP tile (assessed), default
    (a display product keeps the head as trained) against ``--adapt``."""
    import pyarrow as pa

    from raylib.cli import main
    from raylib.formats.mapfile import read_map

    rows = []
    for name, flags in (("default (display product: head as trained)", []), ("re-centred", ["--adapt"])):
        m = out / f"naip-{len(flags)}"
        assert main(["map", "--scenes", str(NAIP), "--out", str(m), "--overwrite", *flags]) == 0
        t = read_map(str(m))
        lab = np.asarray(t.filter(pa.array(np.asarray(t["status"].to_pylist()) == "ok"))["label"].to_pylist())
        built = np.isin(lab, ["Highway", "Industrial", "Residential"]).mean()
        c = out / f"chesapeake-{len(flags)}"
        assert main(["map", "--scenes", str(CHESAPEAKE / "image_naip.tif"), "--bands", "naip", "--out", str(c),
                     "--overwrite", *flags]) == 0
        assert main(["assess", "--map", str(c), "--reference", str(CHESAPEAKE / "label_lc.tif"), "--crosswalk",
                     str(REPO / "configs" / "crosswalks" / "eurosat-to-chesapeake.yaml"), "--purity", "0.5", "--out",
                     str(out / "assess-ch"), "--overwrite"]) == 0
        r = json.loads((out / "assess-ch" / "assessment.json").read_text())
        rows.append(f"| {name} | {' '.join(flags) or '(none)'} | {np.isin(lab, ['AnnualCrop']).mean():.3f} | "
                    f"**{built:.3f}** | {np.isin(lab, ['SeaLake', 'River']).mean():.3f} | "
                    f"{r['balanced_accuracy']:.3f} |")
    return rows


def eurosat_rows() -> list[str]:
    from PIL import Image
    from sklearn.metrics import balanced_accuracy_score as bas

    from raylib.models import adaptation, spectral
    from raylib.models.default import default_model_dir, find_eurosat
    from raylib.models.landcover_model import LandcoverModel
    from raylib.raster import patches

    model = LandcoverModel.load(default_model_dir())
    ps = patches.subsample(patches.list_image_folder(find_eurosat()), 300, 0)  # the split the model was built with
    test = patches.stratified_split(ps.labels, 0.2, 0)
    files, y = [f for f, t in zip(ps.files, test) if t], ps.labels[test]
    x = np.stack([patches.read_rgb(f) for f in files])
    g, o = np.full(3, 1 / 255, np.float32), np.zeros(3, np.float32)
    emb = np.concatenate([model.embed16(x[i:i + 64], g, o) for i in range(0, len(x), 64)])
    as_trained = bas(y, model.predict_embeddings(emb)[0].argmax(1))
    centred = bas(y, model.predict_embeddings(emb, centre=adaptation.unit_rows(emb).mean(axis=0))[0].argmax(1))
    rows = [f"| EuroSAT RGB hold-out ({len(y)} patches, the model's own split) | head as trained | **{as_trained:.3f}** |",
            f"| | re-centred on the hold-out's mean | **{centred:.3f}** |"]
    ms = DATA / "eurosat-ms-sample"
    X, ym = spectral.eurosat_ms_indices(str(ms), model.classes)
    jp = np.stack([np.asarray(Image.open(DATA / "eurosat-rgb" / model.classes[c] / (Path(f).stem + ".jpg"))).transpose(2, 0, 1)
                   for c in range(len(model.classes)) for f in sorted((ms / model.classes[c]).glob("*.tif"))])
    p_img = model.predict(jp, gain=g, offset=o)[0]
    p_sp = spectral.out_of_fold(X, ym, len(model.classes))
    rows += [f"| EuroSAT MS sample ({len(ym)} patches with NIR) | image head alone | **{bas(ym, p_img.argmax(1)):.3f}** |",
             f"| | pooled with the spectral head (out of fold) | **{bas(ym, spectral.pool(p_img, p_sp, 0.5).argmax(1)):.3f}** |",
             f"| | spectral head alone (out of fold) | {bas(ym, p_sp.argmax(1)):.3f} |"]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    print("| NC Wake: option | flags | balanced accuracy | overall | recall (hits / reference tiles) | user's accuracy of water |")
    print("|---|---|---|---|---|---|")
    for name, flags in OPTIONS.items():
        print(nc_row(out, name, flags), flush=True)
    print("\n| NC Wake, default map: --unknown-below | tiles withheld | withheld per reference group | balanced accuracy of the rest |")
    print("|---|---|---|---|")
    print("\n".join(unknown_rows(str(out / "nc-0-"))))
    print("\n| README scene: option | flags | water share | water share east of the reservoir | vegetation share east | median confidence | pictures |")
    print("|---|---|---|---|---|---|---|")
    for name, flags in (("adaptation (default)", []), ("the head as trained", ["--no-adapt"])):
        print(water_row(out, name, flags), flush=True)
    print("\n| NAIP (display products) | flags | North Dakota: AnnualCrop share | built-up share (no towns there) | "
          "water share | Chesapeake balanced accuracy |")
    print("|---|---|---|---|---|---|")
    print("\n".join(naip_rows(out)))
    print("\n| EuroSAT | option | balanced accuracy |\n|---|---|---|")
    print("\n".join(eurosat_rows()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
