"""Embedding-store figures (BENCHMARKS.md, "Embed once, map many times"):

1. the README Landsat scene mapped with --store vs remapped from its store (tiles/s);
2. an area query: the share of the store's row groups a bbox of 1/16 of the scene reads;
3. ``similar`` on that store: 5 water and 5 forest tiles (grid positions picked by eye on the
   quick-look) -> the 50 most similar tiles, drawn over the scene for judging by eye;
4. query latency at 1,000,000 synthetic 1,280-d rows: exact search vs the faiss IVF index.

    .venv/bin/python scripts/benchmarks/store_benchmark.py --out /tmp/store-bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SCENE = (REPO / ".." / "shared" / "data" / "scenes" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF").resolve()
# (grid_row, grid_col) picked by eye on the quick-look of the README map (64 px tiles at 10 m)
WATER = [(32, 49), (30, 47), (34, 51), (28, 50), (33, 45)]  # the reservoir, north of the city
FOREST = [(80, 85), (81, 88), (82, 86), (80, 90), (79, 87)]  # the dense forest in the south-east


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import pyarrow.parquet as pq

    from raylib.config import MapConfig, RemapConfig, SimilarConfig
    from raylib.eval import reports
    from raylib.formats import embstore
    from raylib.models.default import default_model_dir
    from raylib.pipelines import similar
    from raylib.pipelines.map.run import run_map
    from raylib.pipelines.remap import run_remap

    out = Path(args.out)
    m = run_map(MapConfig(scenes=[str(SCENE)], bands="landsat8-b234", fill_value=0, store=True,
                          out=str(out / "map"), overwrite=True))
    store = m["embeddings"]
    r = run_remap(RemapConfig(store=store, model=default_model_dir(), out=str(out / "remap"), overwrite=True))
    print(f"map --store: {m['tiles']} tiles in {m['seconds']} s = {m['tiles'] / m['seconds']:.1f} tiles/s; "
          f"remap: {r['seconds']} s = {r['tiles_per_second']} tiles/s; ratio {r['tiles_per_second'] / (m['tiles'] / m['seconds']):.0f}x")
    # 2. area query
    t = embstore.read(store, columns=["bbox"])
    bb = t.column("bbox").combine_chunks()
    xs = np.asarray(bb.field("xmin").to_numpy(zero_copy_only=False), float)
    ys = np.asarray(bb.field("ymin").to_numpy(zero_copy_only=False), float)
    xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
    w, e, s, n = xs.min(), xs.max(), ys.min(), ys.max()
    box = [w + (e - w) * 0.4, s + (n - s) * 0.4, w + (e - w) * 0.65, s + (n - s) * 0.65]
    total = hit = 0
    for f in embstore.part_files(store):
        md = pq.ParquetFile(f).metadata
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        cols = {k: names.index(f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")}
        for g in range(md.num_row_groups):
            st = {k: md.row_group(g).column(i).statistics for k, i in cols.items()}
            total += 1
            if st["xmin"].min <= box[2] and st["xmax"].max >= box[0] and st["ymin"].min <= box[3] and st["ymax"].max >= box[1]:
                hit += 1
    sub = embstore.read(store, columns=["tile_id"], bbox=box)
    print(f"bbox of 1/16 of the scene: {sub.num_rows} of {t.num_rows} tiles; row groups read {hit} of {total} "
          f"({hit / total:.1%})")
    # 3. similar
    full = embstore.read(store, columns=["tile_id", "grid_row", "grid_col", "status"])
    pos = {(a, b): tid for tid, a, b in zip(full["tile_id"].to_pylist(), full["grid_row"].to_pylist(),
                                             full["grid_col"].to_pylist())}
    from raylib.raster import scenes, tiling

    info = scenes.open_scene(str(SCENE))
    lay = tiling.layout(info, tiling.GridSpec(64, 64, 10.0))
    for name, cells in (("water", WATER), ("forest", FOREST)):
        res = str(out / f"similar-{name}.parquet")
        sr = similar.run_similar(SimilarConfig(store=store, positives=[pos[c] for c in cells], k=50, out=res))
        got = pq.read_table(res)
        grid = np.full((len(lay.row_offs), len(lay.col_offs)), -1, np.int16)
        grid[got["grid_row"].to_numpy(), got["grid_col"].to_numpy()] = 0
        for c in cells:
            grid[c] = 1
        png = reports.quicklook_png(f"similar to 5 {name} tiles (orange: the examples, blue: the 50 found)", grid,
                                    ["found", "example"], _thumb(SCENE), (info.height, info.width), lay.tile)
        (out / f"similar-{name}.png").write_bytes(png)
        print(f"similar {name}: top score {sr['top_score']:.3f}, exact search {sr['query_seconds']} s -> {out}/similar-{name}.png")
    # 4. 1M synthetic rows
    rng = np.random.default_rng(0)
    n, d = args.rows, 1280
    centres = rng.normal(size=(200, d)).astype(np.float32)
    emb = np.empty((n, d), np.float16)
    for i in range(0, n, 100_000):
        k = min(100_000, n - i)
        emb[i:i + k] = (centres[rng.integers(0, 200, k)] + rng.normal(size=(k, d)).astype(np.float32) * 0.8)
    q = similar._unit(emb[:5].astype(np.float32)).mean(axis=0)
    q /= np.linalg.norm(q)
    t0 = time.time()
    ex, _ = similar.exact_search(emb, q, 50, np.arange(5))
    t_exact = time.time() - t0
    t0 = time.time()
    index = similar.IVFIndex.build(emb)
    t_build = time.time() - t0
    lat = []
    for _ in range(20):
        t0 = time.time()
        ivf, _ = index.search(q, 55)
        lat.append(time.time() - t0)
    ivf = [i for i in ivf if i >= 5][:50]
    print(f"{n:,} synthetic rows x {d}: exact search {t_exact:.2f} s; IVF index built in {t_build:.1f} s "
          f"(nlist {index.index.nlist}), query {np.median(lat) * 1000:.1f} ms (median of 20), "
          f"recall@50 vs exact {len(set(ivf) & set(ex.tolist())) / 50:.2f}")
    return 0


def _thumb(path):
    import rasterio

    from raylib.eval import reports
    from raylib.raster import windows

    with rasterio.open(path) as ds:
        s = windows.decimated_read(ds, [3, 2, 1], max_side=512, fill=0)
    return reports.stretch(s, ~np.all(s == 0, axis=0))


if __name__ == "__main__":
    sys.exit(main())
