"""The change and accounts drivers' memory against the number of tiles (BENCHMARKS.md, "Land
change": scale): two synthetic ground-grid maps of ``--tiles`` tiles each (random classes,
written in the map contract), then ``landcover change`` and ``landcover accounts`` as one
partition in the driver's process and as Ray Data partitions of ``--partition-tiles``, each
in a fresh driver process whose peak resident memory (its own, not the Ray workers') is
reported with its time.

    .venv/bin/python scripts/benchmarks/change_scale.py --out /tmp/change-scale --tiles 400000 --partition-tiles 50000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# the driver's peak from VmHWM: ru_maxrss survives exec, so a child forked from this (large)
# process would report this process's size
MEASURE = """
import sys, time
from raylib.cli import main
t0 = time.time()
rc = main(sys.argv[1:])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("RESULT", rc, round(time.time() - t0, 1), int(hwm) // 1024)
"""


def write_maps(out: Path, tiles: int) -> list[str]:
    """Two dates of one place, ``tiles`` ground tiles each (10 % of them changed)."""
    import pyarrow as pa

    from raylib.formats import mapfile
    from raylib.raster import scenes, tiling

    classes = ["forest", "crop", "water", "built"]
    grid = tiling.GridSpec(16, 16, 10.0, ground=True)
    side = int(np.ceil(np.sqrt(tiles)))
    info = scenes.SceneInfo("synthetic.tif", side * 16, side * 16, 3, "uint16", "EPSG:32618",
                            (10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), (10.0, 10.0), 0, True)
    rows = tiling.tile_table(info, grid).slice(0, tiles)
    rng = np.random.default_rng(0)
    first = rng.integers(0, len(classes), tiles)
    second = np.where(rng.random(tiles) < 0.1, rng.integers(0, len(classes), tiles), first)
    maps = []
    for name, labels, day in (("2015", first, "2015-06-01"), ("2020", second, "2020-06-01")):
        folder = out / f"map-{name}"
        maps.append(str(folder))
        if (folder / "_SUCCESS").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        probs = np.full((tiles, len(classes)), 0.1 / (len(classes) - 1), np.float32)
        probs[np.arange(tiles), labels] = 0.9
        t = rows.append_column("datetime", pa.array(np.full(tiles, np.datetime64(day, "s").astype(np.int64)),
                                                    pa.timestamp("s", tz="UTC")))
        per = 200_000
        for i in range(0, tiles, per):
            part = mapfile.build_table(t.slice(i, per), probs[i:i + per], np.full(min(per, tiles - i), "ok", object),
                                       np.full(min(per, tiles - i), "", object),
                                       np.zeros(min(per, tiles - i), np.float32), classes, "synthetic@1")
            mapfile.write_part(part, str(folder / f"part-{i // per:05d}.parquet"), classes, "synthetic@1",
                               {"grid": grid.as_dict()})
        (folder / "_SUCCESS").write_text("")
    return maps


def measure(args: list[str]) -> tuple[float, int]:
    r = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, cwd=REPO)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT")]
    if r.returncode or not line or line[0].split()[1] != "0":
        raise SystemExit(f"{args} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    _, _, seconds, mib = line[0].split()
    return float(seconds), int(mib)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/change-scale")
    p.add_argument("--tiles", type=int, default=400_000)
    p.add_argument("--partition-tiles", type=int, default=50_000)
    a = p.parse_args()
    out = Path(a.out)
    t0 = time.time()
    maps = write_maps(out, a.tiles)
    made = time.time() - t0
    zones = out / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": n}, "geometry": {"type": "Polygon", "coordinates": [[
            [w, 30], [e, 30], [e, 50], [w, 50], [w, 30]]]}} for n, w, e in (("A", -80, -76.9), ("B", -76.9, -70))]}))
    print(f"{a.tiles:,} tiles per date ({made:.0f} s to write the maps)\n")
    print("| run | partitions | seconds | driver peak RSS (MiB) |")
    print("|---|---|---|---|")
    for verb, args in (("change", ["--before", maps[0], "--after", maps[1]]),
                       ("accounts", ["--map", str(out / "change-1"), "--zones", str(zones), "--zone-field", "name"])):
        for label, tiles in (("one partition", 10 ** 9), ("partitions", a.partition_tiles)):
            dest = out / f"{verb}-{1 if tiles == 10 ** 9 else 'n'}"
            seconds, mib = measure([verb, *args, "--out", str(dest), "--overwrite",
                                    "--partition-tiles", str(tiles)])
            s = json.loads((dest / ("_summary.json" if verb == "change" else "summary.json")).read_text())
            print(f"| {verb}, {label} | {s.get('partitions')} | {seconds} | {mib} |")


if __name__ == "__main__":
    main()
