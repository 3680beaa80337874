"""The label-and-adapt loop on the shipped labelled scenes (BENCHMARKS.md, "Embed once, map
many times").

For each scene: ``landcover map --embeddings`` with the built-in model (the zero-shot map and
the store; timed), then for K labelled tiles per class and a few seeds: ``train-head
--embeddings --labels <reference raster> --per-class K``, ``remap`` (timed), ``assess
--exclude-training``. Prints balanced accuracy over the scene's main groups (tiles not used
for training), zero-shot and per K, and the remap vs map speed.

    .venv/bin/python scripts/adapt_benchmark.py --out /tmp/adapt [--ks 5,10,20] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from scripts.map_accuracy import SCENES  # noqa: E402

GROUPS = {"NC Wake (Landsat 7, 28.5 m)": ["forest", "developed", "herbaceous_shrub"],
          "Chesapeake WV (NAIP, ~25 m)": ["forest", "low_vegetation", "developed"]}


def balanced(r: dict, groups: list[str]) -> tuple[float, dict]:
    c = np.array(r["confusion"]["counts"])
    g = r["groups"]
    rec = {x: c[g.index(x), g.index(x)] / c[:, g.index(x)].sum() for x in groups if c[:, g.index(x)].sum()}
    return float(np.mean(list(rec.values()))), {k: round(float(v), 3) for k, v in rec.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--ks", default="5,10,20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--features", default="embedding+spectral")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from raylib.assessing import run_assess
    from raylib.config import AssessConfig, MapConfig, RemapConfig, TrainHeadConfig
    from raylib.mapping import run_map
    from raylib.remapping import run_remap
    from raylib.training import train_head

    out = Path(args.out)
    lines = ["| scene | labelled tiles per class | balanced accuracy (mean over seeds) | per seed | recall per group (seed 0) |",
             "|---|---|---|---|---|"]
    speed = []
    for name, s in SCENES.items():
        groups = GROUPS[name]
        tag = Path(s["scene"]).stem
        m = run_map(MapConfig(scenes=[str(s["scene"])], out=str(out / tag / "map"), embeddings=True, overwrite=True,
                              **s["map"]))
        store = m["embeddings"]
        ref = dict(reference=str(s["reference"]), crosswalk=str(s["crosswalk"]), overwrite=True)
        r0 = run_assess(AssessConfig(map=str(out / tag / "map"), out=str(out / tag / "zero-shot"), **ref))
        ba0, rec0 = balanced(r0, groups)
        lines.append(f"| {name} | 0 (zero-shot EuroSAT model) | {ba0:.3f} | | {rec0} |")
        print(lines[-1], flush=True)
        for k in [int(x) for x in args.ks.split(",")]:
            bas, rec_first = [], None
            for seed in [int(x) for x in args.seeds.split(",")]:
                head = str(out / tag / f"head-k{k}-s{seed}")
                train_head(TrainHeadConfig(embeddings=store, labels=str(s["reference"]), crosswalk=str(s["crosswalk"]),
                                           per_class=k, seed=seed, features=args.features, out=head))
                rm = run_remap(RemapConfig(embeddings=store, model=head, out=str(out / tag / f"map-k{k}-s{seed}"),
                                           overwrite=True, quicklook=seed == 0))
                speed.append((name, m["tiles"] / m["seconds"], rm["tiles_per_second"]))
                r = run_assess(AssessConfig(map=str(out / tag / f"map-k{k}-s{seed}"), exclude_training=head,
                                            out=str(out / tag / f"assess-k{k}-s{seed}"), **ref))
                ba, rec = balanced(r, groups)
                bas.append(ba)
                rec_first = rec_first or rec
            lines.append(f"| {name} | {k} | {np.mean(bas):.3f} | {', '.join(f'{b:.3f}' for b in bas)} | {rec_first} |")
            print(lines[-1], flush=True)
    lines += ["", "| scene | map tiles/s (whole run, with --embeddings) | remap tiles/s (median) | ratio |", "|---|---|---|---|"]
    for name in SCENES:
        rows = [x for x in speed if x[0] == name]
        mp, rp = rows[0][1], float(np.median([x[2] for x in rows]))
        lines.append(f"| {name} | {mp:.1f} | {rp:.1f} | {rp / mp:.1f}x |")
    text = "\n".join(lines)
    (out / "adapt.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
