"""How soon a newcomer's map shows its first rows, and how long the whole run takes: the
README's Landsat scene (re-centred: its first pass comes first) and a NAIP scene on the
ground grid (a display product: no first pass), each a `landcover map` process of its own with
a warm model cache, as the README runs it. Several checkouts are run alternately, in one
session, so their figures compare side by side on a noisy machine.

    .venv/bin/python scripts/benchmarks/first_rows_benchmark.py                      # this checkout
    .venv/bin/python scripts/benchmarks/first_rows_benchmark.py --trees . /tmp/base  # this one against another

Each tree is run with its own ``raylib`` first on PYTHONPATH and as the working directory
(the Ray workers import it from there); ``../shared/data`` must lie beside each tree.
Prints one line per run, then the medians (``_summary.json`` ``timings``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "landsat": ["--scenes", "../shared/data/scenes/LC08_L1TP_224078_20200518_20200518_01_RT.TIF",
                "--bands", "landsat8-b234", "--fill-value", "0"],
    "naip-ground": ["--scenes", "../shared/data/scenes/m_4709963_se_14_1_20150926.tif", "--grid", "ground"],
}


def one(tree: Path, case: str, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("RAY_ADDRESS", None)
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "raylib.cli", "map", *CASES[case], "--out", str(out)], cwd=tree,
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{tree} {case}: exit {r.returncode}\n{r.stderr[-2000:]}")
    s = json.loads((out / "_summary.json").read_text())
    t = s.get("timings", {})
    return {"first_row_s": t.get("first_row_s"), "adaptation_s": t.get("adaptation"), "run_s": s["seconds"],
            "process_s": round(time.time() - t0, 1), "tiles": s["tiles"], "counts": s["counts"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", default=["."])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    args = ap.parse_args()
    trees = [Path(t).resolve() for t in args.trees]
    work = Path(tempfile.mkdtemp(prefix="first-rows-"))
    got: dict[tuple, list[dict]] = {}
    try:
        for k in range(args.runs):
            for case in args.cases:
                for tree in trees:
                    out = work / f"{tree.name}-{case}-{k}"
                    r = one(tree, case, out)
                    shutil.rmtree(out, ignore_errors=True)
                    got.setdefault((str(tree), case), []).append(r)
                    print(json.dumps({"tree": str(tree), "case": case, "run": k, **r}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("medians:")
    for (tree, case), rs in got.items():
        med = {m: statistics.median([r[m] or 0.0 for r in rs]) for m in ("first_row_s", "adaptation_s", "run_s")}
        print(f"  {case:12s} {tree}: first row {med['first_row_s']:.1f} s, first pass {med['adaptation_s']:.1f} s, "
              f"run {med['run_s']:.1f} s ({rs[0]['counts']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
