"""The label-and-adapt loop on the shipped labelled scenes (BENCHMARKS.md, "Embed once, map
many times").

For each scene: ``landcover map --store`` with the built-in model (the zero-shot map and
the store; timed), then for K labelled tiles per class and a few seeds, side by side:

- ``train-head --store --labels <reference raster> --per-class K``, every reference
  group labelled, and only the three assessed groups labelled (a crosswalk without the
  others' codes); ``remap`` (timed); ``assess --exclude-training``;
- ``train-head --pixels`` (both labellings): the tile head and a pixel classifier of the
  same tiles' pixels, each labelled by the raster; ``map`` with it (it needs the imagery)
  and ``assess --exclude-training``;
- ``tune --store --labels ... --per-class K`` (largest K; the three groups);
- ``export-tiles`` + ``finetune`` on the same K tiles' windows read from the scene, then
  ``map`` with the fine-tuned network and ``assess --exclude-training``.

Prints balanced accuracy over the scene's main groups (tiles not used for training) and the
remap vs map speed.

    .venv/bin/python scripts/benchmarks/few_labels.py --out /tmp/adapt [--ks 5,10,20] [--seeds 0,1,2] \
        [--tune-trials 24] [--finetune-seeds 0] [--pixel-seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from scripts.benchmarks.map_accuracy import SCENES  # noqa: E402

GROUPS = {"NC Wake (Landsat 7, 28.5 m)": ["forest", "developed", "herbaceous_shrub"],
          "Chesapeake WV (NAIP, ~25 m)": ["forest", "low_vegetation", "developed"]}


def balanced(r: dict, groups: list[str]) -> tuple[float, dict]:
    c = np.array(r["confusion"]["counts"])
    g = r["groups"]
    rec = {x: c[g.index(x), g.index(x)] / c[:, g.index(x)].sum() for x in groups if c[:, g.index(x)].sum()}
    return float(np.mean(list(rec.values()))), {k: round(float(v), 3) for k, v in rec.items()}


def three_group_crosswalk(src: Path, groups: list[str], dest: Path) -> Path:
    """The scene's crosswalk with only the assessed groups' reference codes: a user who
    labels tiles of those classes alone."""
    import yaml

    cw = yaml.safe_load(src.read_text())
    cw["reference"] = {k: v for k, v in cw["reference"].items() if v in groups}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cw))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--ks", default="5,10,20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--features", default="embedding+spectral")
    ap.add_argument("--tune-trials", type=int, default=24, help="trials of landcover tune --labels (0: skip)")
    ap.add_argument("--finetune-seeds", default="0", help="seeds of the fine-tune comparison ('': skip)")
    ap.add_argument("--pixel-seeds", default="0,1,2", help="seeds of the train-head --pixels way ('': skip)")
    ap.add_argument("--scenes", default="", help="comma-separated substrings of the scene names to run (default: all)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from raylib.config import (AssessConfig, ExportTilesConfig, FinetuneConfig, MapConfig, RemapConfig, TrainHeadConfig,
                               TuneConfig)
    from raylib.errors import InputError
    from raylib.pipelines.assess import run_assess
    from raylib.pipelines.export_tiles import export_tiles
    from raylib.pipelines.finetune import run_finetune
    from raylib.pipelines.map.run import run_map
    from raylib.pipelines.remap import run_remap
    from raylib.pipelines.train_head import train_head
    from raylib.pipelines.tune import run_tune

    out = Path(args.out)
    ks = [int(x) for x in args.ks.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    lines = ["| scene | labelled tiles per class | way | balanced accuracy (mean over seeds) | per seed | recall per group (first seed) |",
             "|---|---|---|---|---|---|"]
    speed = []

    def row(name, k, way, bas, rec):
        lines.append(f"| {name} | {k} | {way} | {np.mean(bas):.3f} | {', '.join(f'{b:.3f}' for b in bas)} | {rec} |")
        print(lines[-1], flush=True)

    for name, s in SCENES.items():
        if args.scenes and not any(x in name for x in args.scenes.split(",")):
            continue
        groups = GROUPS[name]
        tag = Path(s["scene"]).stem
        m = run_map(MapConfig(scenes=[str(s["scene"])], out=str(out / tag / "map"), store=True, overwrite=True,
                              **s["map"]))
        store = m["embeddings"]
        ref = dict(reference=str(s["reference"]), crosswalk=str(s["crosswalk"]), overwrite=True)

        def assess(map_dir, model, what):
            r = run_assess(AssessConfig(map=map_dir, exclude_training=model, out=str(out / tag / f"assess-{what}"), **ref))
            return balanced(r, groups)

        r0 = run_assess(AssessConfig(map=str(out / tag / "map"), out=str(out / tag / "zero-shot"), **ref))
        ba0, rec0 = balanced(r0, groups)
        lines.append(f"| {name} | 0 | zero-shot EuroSAT model | {ba0:.3f} | | {rec0} |")
        print(lines[-1], flush=True)
        three = three_group_crosswalk(s["crosswalk"], groups, out / tag / "three-groups.yaml")
        ways = {"head, every group labelled": str(s["crosswalk"]), "head, the three groups labelled": str(three)}
        for k in ks:
            for way, cw in ways.items():
                bas, first = [], None
                for seed in seeds:
                    what = f"{'all' if cw == str(s['crosswalk']) else 'three'}-k{k}-s{seed}"
                    head = str(out / tag / f"head-{what}")
                    try:
                        train_head(TrainHeadConfig(store=store, labels=str(s["reference"]), crosswalk=cw,
                                                   per_class=k, seed=seed, features=args.features, out=head))
                    except InputError as exc:  # e.g. a scene with tiles of one assessed group only
                        lines.append(f"| {name} | {k} | {way} | n/a: {exc} | | |")
                        print(lines[-1], flush=True)
                        break
                    rm = run_remap(RemapConfig(store=store, model=head, out=str(out / tag / f"map-{what}"),
                                               overwrite=True, quicklook=seed == seeds[0]))
                    speed.append((name, m["tiles"] / m["seconds"], rm["tiles_per_second"]))
                    ba, rec = assess(str(out / tag / f"map-{what}"), head, what)
                    bas.append(ba)
                    first = first or rec
                if bas:
                    row(name, k, way, bas, first)
        for k in ks if args.pixel_seeds else []:
            for way, cw in ways.items():
                bas, first = [], None
                for seed in [int(x) for x in args.pixel_seeds.split(",")]:
                    what = f"pixels-{'all' if cw == str(s['crosswalk']) else 'three'}-k{k}-s{seed}"
                    head = str(out / tag / f"head-{what}")
                    train_head(TrainHeadConfig(store=store, labels=str(s["reference"]), crosswalk=cw,
                                               per_class=k, seed=seed, features=args.features, pixels=True, out=head))
                    pmap = str(out / tag / f"map-{what}")
                    run_map(MapConfig(scenes=[str(s["scene"])], out=pmap, model=head, overwrite=True,
                                      quicklook=seed == 0, **s["map"]))
                    ba, rec = assess(pmap, head, what)
                    bas.append(ba)
                    first = first or rec
                row(name, k, f"{way} + a pixel classifier (train-head --pixels, then map)", bas, first)
        if args.tune_trials:
            k = max(ks)
            bas, first = [], None
            for seed in seeds:
                t = run_tune(TuneConfig(store=store, labels=str(s["reference"]), crosswalk=str(three), per_class=k,
                                        seed=seed, trials=args.tune_trials, out=str(out / tag / f"tune-k{k}-s{seed}")))
                rm = run_remap(RemapConfig(store=store, model=t["model"], out=str(out / tag / f"map-tune-k{k}-s{seed}"),
                                           overwrite=True, quicklook=False))
                ba, rec = assess(str(out / tag / f"map-tune-k{k}-s{seed}"), t["model"], f"tune-k{k}-s{seed}")
                bas.append(ba)
                first = first or {**rec, "best": t["best_config"]["family"]}
            row(name, k, f"tune ({args.tune_trials} trials, 4 families), the three groups labelled", bas, first)
        for k in ks if args.finetune_seeds else []:
            bas, first = [], None
            for seed in [int(x) for x in args.finetune_seeds.split(",")]:
                tiles = str(out / tag / f"tiles-k{k}-s{seed}")
                export_tiles(ExportTilesConfig(store=store, labels=str(s["reference"]), crosswalk=str(three),
                                               per_class=k, seed=seed, out=tiles, overwrite=True))
                model = str(out / tag / f"finetuned-k{k}-s{seed}")
                run_finetune(FinetuneConfig(data=tiles, out=model, test_fraction=0, val_fraction=0.2, workers=1,
                                            batch_size=8, epochs=15, input_size=128, seed=seed, overwrite=True,
                                            name=f"ft-{tag}-k{k}-s{seed}", storage_path=str(out / "runs")))
                fmap = str(out / tag / f"map-finetuned-k{k}-s{seed}")
                run_map(MapConfig(scenes=[str(s["scene"])], out=fmap, model=model, overwrite=True, **s["map"]))
                ba, rec = assess(fmap, model, f"finetuned-k{k}-s{seed}")
                bas.append(ba)
                first = first or rec
            row(name, k, "fine-tuned backbone (export-tiles + finetune, 15 epochs), the three groups labelled", bas, first)
    lines += ["", "| scene | map tiles/s (whole run, with --store) | remap tiles/s (median) | ratio |", "|---|---|---|---|"]
    for name in SCENES:
        rows = [x for x in speed if x[0] == name]
        if not rows:
            continue
        mp, rp = rows[0][1], float(np.median([x[2] for x in rows]))
        lines.append(f"| {name} | {mp:.1f} | {rp:.1f} | {rp / mp:.1f}x |")
    text = "\n".join(lines)
    (out / "adapt.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
