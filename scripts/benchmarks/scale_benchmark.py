"""The map job's fixed costs against the area, side by side in one run.

    python scripts/benchmarks/scale_benchmark.py [--sizes 100,800,5000] [--duty 16,256] [--rate 2000] [--json out.json]

Scenes are copies of the shipped scenes that cost no disk: GDAL VRT files that point to the
real GeoTIFF, each with its own geotransform, laid out side by side on a grid (so the map
covers a large area and a bbox query means something). The model is the simulated
accelerator of ``scripts/benchmarks/map_throughput.py`` (``--rate`` tiles/s, no CPU), so the figures are the
pipeline's, not this CPU's model.

1. ``--sizes``: each size mapped in a fresh process (its own Ray session, started by the
   job as a user's command would): seconds from the job's start to the first row back from
   the model (``timings.first_row_s``), and the driver process's peak RSS (VmHWM).
2. ``--duty``: in one Ray session (warmed up), the README's Landsat scene in 16 copies, and
   its 16 sub-windows in 256 copies (the same tiles in 16x the scenes): the simulated
   device's busy time over the whole run (from ``run_map``'s start to its end: planning,
   start-up and the tail included), with a GPU actor's blocks (``block_tiles`` 1,024).
3. The largest map of (1): a bbox query of ~1 % of its area with pyarrow dataset filters on
   the ``bbox`` covering column: row groups and bytes read against the whole map.
4. ``--noop N``: an incremental map whose state records N scenes, run again with nothing new.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "benchmarks"))
DATA = (REPO / ".." / "shared" / "data" / "scenes").resolve()
NAIP = [DATA / "m_4709963_se_14_1_20100629.tif", DATA / "m_4709963_se_14_1_20150926.tif",
        DATA / "m_4709963_se_14_1_20200831.tif"]
LANDSAT = DATA / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"


def vrt_copies(folder: Path, sources: list[Path], n: int, per_row: int = 80, crop: int = 1) -> list[str]:
    """``n`` VRT files, copy k of ``sources[k % len]`` shifted to grid cell (k // per_row,
    k % per_row) (one scene footprint apart); ``crop``: each copy is one of the source's
    ``crop`` x ``crop`` sub-windows (in turn), a smaller scene."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    heads = {}
    for src in sources:
        with rasterio.open(src) as ds:
            heads[src] = (ds.width, ds.height, ds.count, ds.dtypes[0], ds.crs.to_wkt(), ds.transform,
                          ds.nodata, [ds.colorinterp[i].name for i in range(ds.count)], ds.descriptions)
    for k in range(n):
        src = sources[k % len(sources)]
        w0, h0, count, dtype, wkt, tf, nodata, ci, desc = heads[src]
        w, h = w0 // crop, h0 // crop
        sub = k % (crop * crop)
        sx, sy = (sub % crop) * w, (sub // crop) * h
        x0 = tf.c + (k % per_row) * w * tf.a
        y0 = tf.f + (k // per_row) * h * tf.e
        bands = "".join(
            f'<VRTRasterBand dataType="{_gdal_type(dtype)}" band="{b}">'
            + (f"<NoDataValue>{nodata}</NoDataValue>" if nodata is not None else "")
            + f"<ColorInterp>{ci[b - 1].capitalize()}</ColorInterp>"
            + (f"<Description>{desc[b - 1]}</Description>" if desc[b - 1] else "")
            + f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SrcRect xOff="{sx}" yOff="{sy}" xSize="{w}" ySize="{h}"/><DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            "</SimpleSource></VRTRasterBand>" for b in range(1, count + 1))
        xml = (f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{_escape(wkt)}</SRS>'
               f"<GeoTransform>{x0}, {tf.a}, 0, {y0}, 0, {tf.e}</GeoTransform>{bands}</VRTDataset>")
        p = folder / f"s{k:06d}-{src.stem}.vrt"
        p.write_text(xml)
        out.append(str(p))
    return out


def _gdal_type(dtype: str) -> str:
    return {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}[dtype]


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


# --------------------------------------------------------------------------- one size, own process


def one_size(n: int, work: Path, rate: float) -> dict:
    """Runs in its own process: map ``n`` NAIP copies with the simulated device."""
    from map_throughput import device, duty_cycle

    from raylib import console
    from raylib.config import MapConfig
    from raylib.pipelines.map.run import run_map

    scenes = vrt_copies(work / "scenes", NAIP, n)
    log = str(work / "device.log")
    console.mark_started()
    t0 = time.time()
    # the pipeline's own first row: the simulated device loads no model, so a first block
    # mapped by the driver (driver_first_block) would say nothing about the area's costs
    s = run_map(MapConfig(scenes=scenes, out=str(work / "map"), quicklook=False, bands="naip",
                          driver_first_block=False, adapt=False), predictor=device(rate, log))
    busy, wall, tiles = duty_cycle(log)
    return {"scenes": n, "tiles": s["tiles"], "first_row_s": s["timings"]["first_row_s"], "seconds": time.time() - t0,
            "driver_peak_rss_mib": peak_rss_mib(), "parts": s["parts"], "counts": s["counts"],
            "duty_whole_run": busy / s["seconds"], "map": str(work / "map")}


# --------------------------------------------------------------------------- duty cycle, one session


def duty(sizes: list[int], work: Path, rate: float) -> list[dict]:
    """The README's Landsat scene: 16 whole copies, or 256 copies of its 16 sub-windows (the
    same number of tiles in 16 times the scenes)."""
    import ray
    from map_throughput import device, duty_cycle

    from raylib.config import MapConfig
    from raylib.pipelines.map.run import run_map

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    # the simulated device stands for a GPU, but its actors ask for none: give them a GPU
    # actor's blocks (a read task's tiles) and concurrency; SCALE_MAP='{...}' overrides map settings
    # (adapt=False: the simulated device gives no embeddings for an adapting run's first pass)
    base = {**dict(quicklook=False, bands="landsat8-b234", fill_value=0, block_tiles=1024, actor_concurrency=8,
                   adapt=False,
                   driver_first_block=False),  # the device's log holds the actor's batches only
            **json.loads(os.environ.get("SCALE_MAP", "{}"))}
    run_map(MapConfig(scenes=vrt_copies(work / "warm", NAIP, 1), out=str(work / "warm-map"), quicklook=False,
                      bands="naip", adapt=False), predictor=device(rate, str(work / "warm.log")))
    out = []
    for n in sizes:
        scenes = vrt_copies(work / f"duty{n}", [LANDSAT], n, per_row=16, crop=1 if n <= 16 else 4)
        log = str(work / f"duty{n}.log")
        s = run_map(MapConfig(scenes=scenes, out=str(work / f"duty{n}-map"), **base), predictor=device(rate, log))
        busy, wall, tiles = duty_cycle(log)
        out.append({"scenes": n, "tiles_predicted": tiles, "seconds": s["seconds"], "busy_s": busy,
                    "duty_whole_run": busy / s["seconds"], "duty_first_to_last_batch": busy / wall,
                    "first_row_s": s["timings"].get("first_row_s"), "tiles_per_s": tiles / s["seconds"]})
        print(json.dumps(out[-1]), flush=True)
        shutil.rmtree(work / f"duty{n}-map", ignore_errors=True)
    ray.shutdown()
    return out


# --------------------------------------------------------------------------- bbox query


def bbox_query(map_dir: str, share: float = 0.01) -> dict:
    """Row groups and bytes a pyarrow dataset filter on the bbox covering column reads for a
    query window of ``share`` of the map's extent."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    ds = pads.dataset(map_dir, format="parquet", ignore_prefixes=["_", "."])
    bb = ds.to_table(columns=["bbox"])["bbox"].combine_chunks()
    x0, x1 = pc.min(bb.field("xmin")).as_py(), pc.max(bb.field("xmax")).as_py()
    y0, y1 = pc.min(bb.field("ymin")).as_py(), pc.max(bb.field("ymax")).as_py()
    side = share ** 0.5
    cx, cy = x0 + 0.37 * (x1 - x0), y0 + 0.61 * (y1 - y0)
    qx0, qx1 = cx - side * (x1 - x0) / 2, cx + side * (x1 - x0) / 2
    qy0, qy1 = cy - side * (y1 - y0) / 2, cy + side * (y1 - y0) / 2
    flt = ((pc.field("bbox", "xmin") <= qx1) & (pc.field("bbox", "xmax") >= qx0)
           & (pc.field("bbox", "ymin") <= qy1) & (pc.field("bbox", "ymax") >= qy0))
    total_groups = read_groups = 0
    total_bytes = read_bytes = 0
    for frag in ds.get_fragments():
        md = pq.read_metadata(frag.path)
        sizes = [md.row_group(g).total_byte_size for g in range(md.num_row_groups)]
        total_groups += len(sizes)
        total_bytes += sum(sizes)
        for rg in frag.split_by_row_group(flt):
            g = rg.row_groups[0].id
            read_groups += 1
            read_bytes += sizes[g]
    rows = ds.to_table(filter=flt, columns=["tile_id"]).num_rows
    return {"query_share_of_extent": share, "rows_matched": rows, "rows_total": ds.count_rows(),
            "row_groups_read": read_groups, "row_groups_total": total_groups,
            "bytes_read_share": read_bytes / max(1, total_bytes)}


# --------------------------------------------------------------------------- incremental no-op


def noop(n: int, work: Path) -> dict:
    """An incremental map whose state records ``n`` scenes (written as a finished run would
    have), run again with the same ``n`` scenes: nothing to map."""
    from raylib import console
    from raylib.config import MapConfig
    from raylib.formats import mapstate
    from raylib.formats.mapfile import MARKER, SUCCESS
    from raylib.io import storage
    from raylib.models.default import default_model_dir
    from raylib.models.landcover_model import LandcoverModel
    from raylib.pipelines.common.planning import resolve_grid
    from raylib.pipelines.map.run import run_map

    folder = work / "noop-scenes"  # symlinks named .tif (a folder of scenes, as a user lists one)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for k in range(n):
        p = folder / f"s{k:06d}-{NAIP[k % len(NAIP)].name}"
        p.symlink_to(NAIP[k % len(NAIP)])
        scenes.append(str(p))
    out = work / "noop-map"
    out.mkdir(parents=True, exist_ok=True)
    cfg = MapConfig(scenes=[str(work / "noop-scenes")], out=str(out), incremental=True, quicklook=False,
                    bands="naip")
    manifest = LandcoverModel.read_manifest(default_model_dir())
    grid = resolve_grid(cfg, manifest)
    state = mapstate.MapState(manifest.id, {"tile_size": grid.tile_size, "stride": grid.stride, "gsd": grid.gsd})
    t = time.time()
    for uri in scenes:
        mapstate.record(state, uri, fingerprint=storage.fingerprint(uri), parts=[], tiles=48, counts={"ok": 48},
                        quicklook=None)
    state.save(str(out))
    (out / MARKER).write_text(json.dumps({"job": "x", "kind": "map", "incremental": True}))
    (out / SUCCESS).write_text("")
    made = time.time() - t
    console.mark_started()
    t = time.time()
    s = run_map(cfg)
    return {"recorded_scenes": n, "noop_seconds": time.time() - t, "unchanged": s["unchanged"],
            "tiles_computed": s["tiles_computed"], "state_bytes": _size(out), "state_written_in_s": made}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "_state").rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,800,5000")
    ap.add_argument("--duty", default="16,256")
    ap.add_argument("--noop", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="simulated device, tiles/s")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.one is not None:  # a child: one size
        print("RESULT " + json.dumps(one_size(args.one, Path(args.work), args.rate)), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    env = dict(os.environ, RAY_AUTH_MODE="disabled", LANDCOVER_PROGRESS="0")
    fig: dict = {"command": "python scripts/benchmarks/scale_benchmark.py " + " ".join(sys.argv[1:]), "sizes": [],
                 "duty": [], "bbox_query": None, "noop": None}
    largest = None
    for n in [int(x) for x in args.sizes.split(",") if x]:
        w = work / f"size{n}"
        r = subprocess.run([sys.executable, __file__, "--one", str(n), "--work", str(w), "--rate", str(args.rate)],
                           capture_output=True, text=True, env=env)
        line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            sys.exit(f"size {n} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        res = json.loads(line[0][7:])
        fig["sizes"].append(res)
        print(json.dumps(res), flush=True)
        largest = res["map"]
    if largest:
        fig["bbox_query"] = bbox_query(largest)
        print(json.dumps(fig["bbox_query"]), flush=True)
    if args.duty:
        fig["duty"] = duty([int(x) for x in args.duty.split(",") if x], work, args.rate)
    if args.noop:
        fig["noop"] = noop(args.noop, work)
        print(json.dumps(fig["noop"]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
