"""Land change and accounts on the shipped NAIP scenes of 2010, 2015 and 2020 (one place):
BENCHMARKS.md, "Land change".

1. ``landcover map --grid ground --tile-size 32`` of each date with the built-in model;
2. ``landcover change`` 2010 -> 2015 -> 2020 with persistence (the default with three
   dates) and without, and 2010 -> 2020 alone;
3. the ``--min-p-change`` sweep behind its default: for each threshold, the 2010 -> 2015
   changes counted without persistence, and how many of them 2020 keeps (the new class
   holds), reverts (A -> B -> A: flicker) or moves on;
4. ``landcover sample`` of the change map (strata: transitions) and ``landcover accounts``
   over two districts drawn over the scene (a border that cuts tiles).

    .venv/bin/python scripts/benchmarks/change_benchmark.py --out /tmp/change
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SCENES = REPO.parent / "shared" / "data" / "scenes"
DATES = {"2010": "m_4709963_se_14_1_20100629.tif", "2015": "m_4709963_se_14_1_20150926.tif",
         "2020": "m_4709963_se_14_1_20200831.tif"}


def run(args: list[str]) -> float:
    from raylib.cli import main

    t0 = time.time()
    rc = main(args)
    if rc != 0:
        raise SystemExit(f"landcover {' '.join(args)} -> exit {rc}")
    return time.time() - t0


def sweep(maps: list[str]) -> list[dict]:
    """The 2010 -> 2015 changes at each threshold, and what 2020 says of them."""
    from raylib.eval import change
    from raylib.pipelines.change.dates import READ, groups, open_date
    from raylib.pipelines.change.partition import join

    dates = [open_date(m) for m in maps]
    _, mats = groups(dates, None)
    j = join([d.source.read(READ) for d in dates], mats)
    out = []
    for t in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        d = change.decide(j.labels, j.probs, j.confidence, t, 0.0, False)
        c = d.changed[:, 0]
        old, new, third = d.accepted[:, 0], d.accepted[:, 1], j.labels[:, 2]
        out.append({"min_p_change": t, "changed": int(c.sum()), "kept": int((c & (third == new)).sum()),
                    "reverted": int((c & (third == old)).sum()),
                    "moved_on": int((c & (third != new) & (third != old) & (third >= 0)).sum()),
                    "observed": int(((j.labels[:, 0] >= 0) & (j.labels[:, 1] >= 0)).sum())})
    return out


def districts(change_dir: str, path: Path) -> str:
    """Two districts over the scene, split by a north-south line through a column of tiles."""
    import pyarrow.parquet as pq

    t = pq.read_table(str(Path(change_dir) / "part-00000.parquet"), columns=["bbox"])
    bb = t.column("bbox").combine_chunks()
    x0, x1 = float(np.min(bb.field("xmin"))), float(np.max(bb.field("xmax")))
    y0, y1 = float(np.min(bb.field("ymin"))), float(np.max(bb.field("ymax")))
    xm = x0 + (x1 - x0) * 0.47

    def box(a, b):
        return [[[a, y0 - 0.01], [b, y0 - 0.01], [b, y1 + 0.01], [a, y1 + 0.01], [a, y0 - 0.01]]]

    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"district": n}, "geometry": {"type": "Polygon", "coordinates": box(a, b)}}
        for n, a, b in (("West", x0 - 0.01, xm), ("East", xm, x1 + 0.01))]}))
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/change")
    p.add_argument("--tile-size", default="32")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    maps, seconds = [], {}
    for year, name in DATES.items():
        m = str(out / f"map-{year}")
        seconds[year] = run(["map", "--scenes", str(SCENES / name), "--grid", "ground", "--tile-size", a.tile_size,
                             "--out", m, "--overwrite"])
        maps.append(m)
    runs = {"persistence": ["--dates", *maps], "no persistence": ["--dates", *maps, "--no-persistence"],
            "2010 -> 2020": ["--before", maps[0], "--after", maps[2]]}
    summaries = {}
    for label, args in runs.items():
        o = str(out / ("change-" + label.replace(" ", "-").replace(">", "")))
        run(["change", *args, "--out", o, "--overwrite"])
        summaries[label] = json.loads((Path(o) / "_summary.json").read_text())
    kept = str(out / "change-persistence")
    run(["sample", "--map", kept, "--n", "120", "--min-per-class", "3", "--out", str(out / "sample.parquet"),
         "--overwrite"])
    zones = districts(kept, out / "districts.geojson")
    run(["accounts", "--map", kept, "--zones", zones, "--zone-field", "district", "--out", str(out / "accounts"),
         "--overwrite"])
    acc = json.loads((out / "accounts" / "summary.json").read_text())

    print("| run | tiles | changed | ha | candidates | pending | flicker (mapped) | flicker (kept) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, s in summaries.items():
        print(f"| {label} | {s['counts']['ok']} | {s['changed_tiles']} | {s['changed_hectares']:.1f} | "
              f"{s['candidates']} | {s['pending']} | {s['flicker_share']} | {s['flicker_share_after']} |")
    print("\n| min_p_change | 2010->2015 changes | kept in 2020 | reverted (A->B->A) | moved on |")
    print("|---|---|---|---|---|")
    for r in sweep(maps):
        print(f"| {r['min_p_change']:.2f} | {r['changed']} of {r['observed']} | {r['kept']} | {r['reverted']} | "
              f"{r['moved_on']} |")
    top = sorted((r for r in summaries["persistence"]["transitions"] if r["changed"]),
                 key=lambda r: -r["tiles"])[:8]
    print("\nlargest counted transitions (persistence):", ", ".join(
        f"{r['period']} {r['from']}->{r['to']} {r['tiles']}" for r in top))
    print("accounts:", {z: v["mapped_hectares"] for z, v in acc["per_zone"].items()},
          "map", acc["map_hectares"], "outside", acc["outside_hectares"])
    print("map seconds:", {k: round(v, 1) for k, v in seconds.items()})


if __name__ == "__main__":
    main()
