"""What a run's own STAC costs (``pipelines.common.map_stac.describe``, at the end of every
map, embed, remap and change run): a map folder of N copies of one part, described once
(every part read and hashed), again with one part added (what an incremental run does),
and again with nothing changed.

    python scripts/benchmarks/stac_describe_benchmark.py --part maps/landsat/part-00000.parquet --parts 200
    PYTHONPATH=<a worktree of another commit> python scripts/benchmarks/stac_describe_benchmark.py ...   # side by side

It imports ``raylib`` from ``PYTHONPATH`` first, so one command measures any commit.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", required=True, help="a GeoParquet part of a map")
    ap.add_argument("--parts", type=int, default=200)
    args = ap.parse_args()
    import raylib
    from raylib.pipelines.common import map_stac

    work = Path(tempfile.mkdtemp(prefix="stac-describe-"))
    try:
        folder = work / "m"
        folder.mkdir()
        for k in range(args.parts):
            shutil.copy(args.part, folder / f"part-{k:05d}.parquet")
        mb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e6
        print(f"raylib from {Path(raylib.__file__).parent}; {args.parts} parts, {mb:.0f} MB")

        def timed(what: str) -> None:
            t0 = time.perf_counter()
            r = map_stac.describe(str(folder), "map", "m")
            print(f"{what}: {time.perf_counter() - t0:.2f} s ({r['items']} items, parts read: "
                  f"{r.get('parts_read', 'all')})")

        timed("first description")
        shutil.copy(args.part, folder / f"part-{args.parts:05d}.parquet")
        timed("one part added")
        timed("nothing changed")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
