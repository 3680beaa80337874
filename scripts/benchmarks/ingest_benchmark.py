"""The map driver's ceiling: rows per second it can take in and write, without Ray.

    python scripts/benchmarks/ingest_benchmark.py [--rows 400000] [--block 256]

Feeds blocks of rows shaped as the model stage returns them (tile rows of NAIP-sized scenes
with their manifest columns, class probabilities and statistics) to ``map.ingest.Ingest``
and a real part writer (local disk): the rows per second one driver process can absorb.
Divided by a device's tiles/s, it is the number of model actors one driver can serve.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data" / "scenes").resolve()
NAIP = DATA / "m_4709963_se_14_1_20150926.tif"


def blocks(n_rows: int, block: int, classes: int):
    """Model-stage blocks over copies of one NAIP scene (48 tiles each)."""
    from raylib.config import MapConfig
    from raylib.models.default import default_model_dir
    from raylib.models.landcover_model import LandcoverModel
    from raylib.pipelines.common.planning import plan_scene, resolve_grid
    from raylib.pipelines.map.row_codec import encode_tiles
    from raylib.pipelines.map.source import scene_meta

    manifest = LandcoverModel.read_manifest(default_model_dir())
    cfg = MapConfig(scenes=[str(NAIP)], out="/tmp/unused", bands="naip", quicklook=False)
    grid = resolve_grid(cfg, manifest)
    plan = plan_scene(str(NAIP), cfg, manifest, grid)
    base_meta = scene_meta(plan)
    n = plan.n_tiles
    cols = encode_tiles(base_meta, grid, 0, n)  # a read block's place columns (raster.read_block.PLACE)
    rng = np.random.default_rng(0)
    k = 0
    out = []
    while k < n_rows:
        uris, metas, idx, rows = [], [], [], {c: [] for c in cols}
        while len(idx) < block and k < n_rows:
            s = k // n
            uri = f"{NAIP}#copy{s}"
            t0 = k % n
            take = min(block - len(idx), n - t0, n_rows - k)
            meta = json.dumps({**base_meta, "uri": uri, "index": s})
            metas += [meta] + [""] * (take - 1)
            uris += [uri] * take
            idx += list(range(t0, t0 + take))
            for c in cols:
                rows[c].append(cols[c][t0:t0 + take])
            k += take
        m = len(idx)
        b = {c: np.concatenate(v) for c, v in rows.items()}
        b["uri"] = np.asarray(uris, object)
        b["tile_id"] = np.asarray([f"{u}-{i}" for u, i in zip(uris, idx)], object)
        p = rng.random((m, classes), dtype=np.float32)
        b.update(idx=np.asarray(idx, np.int64), probs=p / p.sum(1, keepdims=True), meta=np.asarray(metas, object),
                 status=np.full(m, "ok", object), error=np.full(m, "", object), retries=np.zeros(m, np.int32),
                 fill_fraction=np.zeros(m, np.float32), span=np.zeros(m, np.int64),
                 band_mean=rng.random((m, 16), dtype=np.float32), band_std=rng.random((m, 16), dtype=np.float32),
                 n_stats=np.full(m, 4, np.int8), ndvi=rng.random(m, dtype=np.float32),
                 ndwi=rng.random(m, dtype=np.float32), ood=rng.random(m, dtype=np.float32),
                 scene_idx=np.zeros(m, np.int64))
        out.append(b)
    return out, cfg, grid, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--block", type=int, default=256)
    args = ap.parse_args()
    from raylib.formats import mapfile
    from raylib.pipelines.map.ingest import Ingest
    from raylib.pipelines.map.outputs import FullOutput

    bl, cfg, grid, manifest = blocks(args.rows, args.block, 10)
    with open("/proc/self/status") as fh:  # the input blocks, made before: the ingest's share is the rest
        before = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    out = tempfile.mkdtemp(prefix="ingest-bench-")
    cfg = cfg.model_copy(update={"out": out})
    output = FullOutput(cfg)
    output._first = 0
    ingest = Ingest(cfg, grid, manifest, output.writer_for)
    output.start({"classes": manifest.classes, "model_id": manifest.id}, ingest.record)
    t0 = time.perf_counter()
    for b in bl:
        ingest.add(b)
    output.close()
    sec = time.perf_counter() - t0
    rows = mapfile.read_map(out + "/_tmp", columns=["tile_id"]).num_rows
    assert rows == args.rows, rows
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
    print(json.dumps({"rows": args.rows, "block": args.block, "seconds": round(sec, 2),
                      "rows_per_second": round(args.rows / sec), "parts": len(output.written),
                      "peak_rss_mib": round(peak), "blocks_rss_mib": round(before)}))


if __name__ == "__main__":
    main()
