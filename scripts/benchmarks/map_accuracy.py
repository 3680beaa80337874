"""Map accuracy of a model on the shipped labelled scenes (BENCHMARKS.md, "Map accuracy").

For each scene and scaling variant: ``landcover map`` (the model, default grid), then
``landcover assess`` against the reference raster with the scene's crosswalk. Prints one
Markdown table: tile agreement, balanced accuracy, per-group recall (producer's accuracy of
the census), the share of water among partial (edge/fill) vs interior tiles, expected
calibration error; and the Olofsson et al. (2014) example reproduced.

    .venv/bin/python scripts/benchmarks/map_accuracy.py --out /tmp/map-accuracy [--model DIR] [--variants auto,match]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data" / "labelled-scenes").resolve()

SCENES = {
    "NC Wake (Landsat 7, 28.5 m)": {
        "scene": DATA / "nc-wake-landsat7-landclass96" / "image_landsat7_2000.tif",
        "reference": DATA / "nc-wake-landsat7-landclass96" / "label_landclass96.tif",
        "crosswalk": REPO / "configs" / "crosswalks" / "eurosat-to-nc-landclass96.yaml",
        "map": {"bands": [3, 2, 1], "sensor": "landsat-etm-l1"},
    },
    "Chesapeake WV (NAIP, ~25 m)": {
        "scene": DATA / "chesapeake-wv-m_3907833_nw_17_1" / "image_naip.tif",
        "reference": DATA / "chesapeake-wv-m_3907833_nw_17_1" / "label_lc.tif",
        "crosswalk": REPO / "configs" / "crosswalks" / "eurosat-to-chesapeake.yaml",
        "map": {"bands": "naip"},
    },
}
WATER = ("SeaLake", "River")


def olofsson() -> str:
    from raylib.eval import accuracy

    e = accuracy.stratified_estimates([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]],
                                      [p * 0.09 for p in (200_000, 150_000, 3_200_000, 6_450_000)],
                                      ["deforestation", "forest gain", "stable forest", "stable non-forest"])
    rows = ["| class | area (ha) | user's | producer's |", "|---|---|---|---|"]
    for c in e["classes"]:
        a, u, p = e["area"][c], e["users_accuracy"][c], e["producers_accuracy"][c]
        rows.append(f"| {c} | {a['estimate']:,.0f} ± {a['ci95']:,.0f} | {u['estimate']:.2f} ± {u['ci95']:.2f} | "
                    f"{p['estimate']:.2f} ± {p['ci95']:.2f} |")
    o = e["overall_accuracy"]
    rows.append(f"| overall | | {o['estimate']:.2f} ± {o['ci95']:.2f} | |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--variants", default="auto,match", help="scaling variants to map with")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from raylib.config import AssessConfig, MapConfig
    from raylib.pipelines.assess import run_assess
    from raylib.pipelines.map.run import run_map

    lines = ["| scene | scaling | tiles assessed | agreement | balanced accuracy | recall per group | "
             "water share: partial / interior tiles | ECE |", "|---|---|---|---|---|---|---|---|"]
    for name, s in SCENES.items():
        for variant in args.variants.split(","):
            tag = f"{Path(s['scene']).stem}-{variant}"
            out = str(Path(args.out) / tag)
            summary = run_map(MapConfig(scenes=[str(s["scene"])], out=out, model=args.model, scaling=variant,
                                        overwrite=True, **s["map"]))
            r = run_assess(AssessConfig(map=out, reference=str(s["reference"]), crosswalk=str(s["crosswalk"]),
                                        out=out + "-assess", overwrite=True))
            counts = r["confusion"]["counts"]
            g = r["groups"]
            recall = {x: (counts[i][i], sum(row[i] for row in counts)) for i, x in enumerate(g)}
            rec = ", ".join(f"{x} {a}/{b}" for x, (a, b) in recall.items() if b)
            shares = r["class_shares"]
            water = [sum(v for k, v in shares[p].items() if k in WATER) for p in ("partial", "interior")]
            scaling = ", ".join(summary["scaling"])
            lines.append(f"| {name} | {variant} → {scaling} | {r['tiles']['assessed']} | "
                         f"{r['sample_accuracy']:.3f} | {r['balanced_accuracy']:.3f} | {rec} | "
                         f"{water[0]:.2f} / {water[1]:.2f} (n {shares['partial']['tiles']} / "
                         f"{shares['interior']['tiles']}) | {r['calibration']['ece']:.3f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n\nOlofsson et al. (2014), section 5, reproduced by `raylib.accuracy`:\n\n" + olofsson()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "map_accuracy.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
