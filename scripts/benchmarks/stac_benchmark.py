"""Area-first mapping from STAC on the test catalog (the one the suite builds from the
shipped scenes): items, tiles, clear tiles and seconds.

Two catalogs, each mapped with ``landcover map --stac`` as a user would (ground grid, the
default model, cloud screening by the items' SCL assets):

- ``naip``: the NAIP scene's 2010 / 2015 / 2020 dates, each with a synthetic SCL asset
  whose clouds lie elsewhere each date, ``--composite best`` and ``mean``;
- ``landsat-aoi``: the Landsat window as per-band COGs in UTM 21 and the same pixels placed
  in UTM 22, an AOI across both scenes' edges and the zone line.

Run: python scripts/benchmarks/stac_benchmark.py [--work /tmp/stac-bench]
Prints a Markdown table (for BENCHMARKS.md) and writes the summaries as JSON. The default
model is built and Ray started before the runs: their seconds are a warm session's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import stac_catalog as sc  # noqa: E402  (the suite's catalog builders)


def naip_catalog(folder: Path) -> Path:
    h, w = 723, 934
    masks = {d: np.full((h, w), 4, np.uint8) for d in sc.NAIP_DATES}
    masks["20100629"][:, :400] = 9
    masks["20150926"][:, 500:] = 9
    masks["20150926"][:200, :260] = 8
    masks["20200831"][:300, :] = 3
    items = [sc.naip_item(folder / "naip-test", d, masks[d]) for d in sc.NAIP_DATES]
    return sc.static_catalog(folder, {"naip-test": items})


def landsat_catalog(folder: Path) -> tuple[Path, Path]:
    west = sc.item(folder / "l8" / "w", item_id="w", collection="l8")
    north = sc.window_profile()[1]["transform"].f
    east = sc.item(folder / "l8" / "e", item_id="e", collection="l8", crs="EPSG:32622", origin=(200000.0, north))
    cat = sc.static_catalog(folder, {"l8": [west, east]})
    (w0, s0, e0, n0), (w1, _, e1, _) = west["bbox"], east["bbox"]
    mid = (s0 + n0) / 2
    a, b, c, d = (w0 + e0) / 2, mid - 0.02, (w1 + e1) / 2, mid + 0.03
    aoi = folder / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[a, b], [c, b], [c, d], [a, d], [a, b]]]}))
    return cat, aoi


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/stac-bench")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from raylib.config import MapConfig
    from raylib.io import storage
    from raylib.models.default import default_model_dir
    from raylib.pipelines.common.ray_session import ensure_ray
    from raylib.pipelines.map.run import run_map

    default_model_dir()  # built once on first use (minutes), not timed
    ensure_ray(None)  # the runs below are warm-session figures: Ray's own start is not in them
    work = Path(args.work)
    storage.delete_prefix(str(work))
    naip = naip_catalog(work / "naip")
    l8, aoi = landsat_catalog(work / "landsat")
    runs = [("naip, --composite best", dict(stac=str(naip), composite="best", out=str(work / "m-best"))),
            ("naip, --composite mean", dict(stac=str(naip), composite="mean", out=str(work / "m-mean"))),
            ("landsat, --aoi across 2 UTM zones", dict(stac=str(l8), aoi=str(aoi), fill_value=0,
                                                       out=str(work / "m-aoi")))]
    rows, summaries = [], {}
    for name, kw in runs:
        t0 = time.time()
        s = run_map(MapConfig(**kw))
        seconds = time.time() - t0
        summaries[name] = s
        ok = s["counts"].get("ok", 0)
        comp = s.get("composite") or {}
        rows.append((name, s["scenes"], s["tiles"], ok, s["error_reasons"].get("cloudy", 0),
                     f"{comp['clear_tiles']} of {comp['tiles']}" if comp else "–", f"{seconds:.1f}",
                     f"{s['timings'].get('composite', 0):.2f}" if comp else "–"))
    print("| catalog | items | tiles | clear tiles | cloudy | composite: ground tiles with a clear observation "
          "| seconds | composite s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    (work / "summaries.json").write_text(json.dumps(summaries, indent=1, default=str))


if __name__ == "__main__":
    main()
