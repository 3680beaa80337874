"""The GPU node's check (issue 28), run by ``scripts/gpu_check.sh``: every GPU verb once, the
GPU map against the CPU map, the model path against the architecture's ceiling, and the
pipeline's throughput, GPU busy share and host cores for 1 and N copies of the README
Landsat scene, with the built-in model and with a heavy backbone (ViT-B/16 at 224 px, built
from its configuration: random weights, which cost the same as trained ones).

    python scripts/gpu_check.py --scene S.TIF --eurosat DIR [--runs 1:1,8:1,8:0.5,8:1:no-adapt] [--heavy-copies 4]
                                [--verbs map,map-embeddings,embed,finetune] [--precisions fp32,tf32,bf16]
                                [--cpu-map DIR] [--order ...] [--small] [--json out.json] [--skip a,b]

Sections (``--skip`` names them), by default in this order (``--order``): agreement, model, pipeline,
heavy, verbs; and ``shapes`` (what a new batch shape costs; part of model). Each prints one
line per figure (``key: value``); a section that fails prints its error and the rest go on.
``--small`` shrinks every size (a run on a CPU machine checks the script itself). Without
CUDA the GPU figures are the CPU's and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS: dict = {}
JSON_PATH: list[Path] = []  # where say() keeps the figures so far (a run cut short still leaves them)


def say(key: str, value) -> None:
    RESULTS[key] = value
    for p in JSON_PATH:
        p.write_text(json.dumps(RESULTS, indent=1))
    shown = f"{value:.4g}" if isinstance(value, float) else value
    print(f"{key}: {shown}", flush=True)


# --------------------------------------------------------------------------- what the node does


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host (/proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def _ray_processes() -> dict[int, tuple[str, float]]:
    """pid -> (title, CPU seconds) of the host's Ray worker processes (titles ``ray::...``)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith("ray::"):
                continue
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(d.name)] = (title, (int(f[11]) + int(f[12])) / tick)
        except (OSError, IndexError, ValueError):
            continue
    return out


class Usage:
    """Over a ``with`` block: the GPU's busy share (``nvidia-smi dmon -s u``: the share of each
    second a kernel ran, averaged), the host's cores busy (mean), and the CPU seconds of Ray's
    worker processes other than the model actors (the plan and read tasks)."""

    def __enter__(self):
        self.t0, self.cpu0 = time.time(), _cpu_jiffies()
        self.first = {pid: cpu for pid, (_, cpu) in _ray_processes().items()}
        self.last: dict[int, float] = {}
        self.actors: set[int] = set()
        self.sm: list[tuple[float, int]] = []  # (seconds since the start, SM busy %) each second
        self.proc = None
        self.done = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()  # a job's workers end with it: seen while alive
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-d", "1"], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _poll(self):
        while not self.done.wait(0.25):
            for pid, (title, cpu) in _ray_processes().items():
                self.last[pid] = cpu
                if "MapWorker" in title or "Agent" in title:
                    self.actors.add(pid)

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if parts and not line.startswith("#") and len(parts) > 1 and parts[1].isdigit():
                self.sm.append((time.time() - self.t0, int(parts[1])))

    def __exit__(self, *exc):
        self.wall = time.time() - self.t0
        busy1, total1 = _cpu_jiffies()
        self.cores = (busy1 - self.cpu0[0]) / max(1, total1 - self.cpu0[1]) * (os.cpu_count() or 1)
        self.done.set()
        self.read_cpu_s = sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items()
                              if pid not in self.actors)
        if self.proc:
            self.proc.terminate()
            self.proc.wait(5)
        self.gpu_busy = self.busy_after(0.0)
        return False

    def busy_after(self, t: float) -> float | None:
        """The GPU's busy share from ``t`` s after the block's start to its end (None: no samples)."""
        sm = [v for at, v in self.sm if at >= t]
        return float(np.mean(sm)) / 100 if sm else None


# --------------------------------------------------------------------------- commands


def landcover(*args: str, timeout: float = 180) -> tuple[int, str, float]:
    """``landcover args...`` as a user runs it; (exit code, its output, seconds). A command
    past ``timeout`` is stopped and reported as exit 124, so one hang cannot eat the check."""
    exe = shutil.which("landcover") or str(Path(sys.executable).parent / "landcover")
    t0 = time.time()
    try:
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, f"{text}\nstopped after {timeout:.0f} s", time.time() - t0
    return r.returncode, (r.stdout + r.stderr).strip(), time.time() - t0


def smoke(name: str, *args: str) -> bool:
    code, out, sec = landcover(*args)
    last = out.splitlines()[-1] if out else ""
    first = next((ln for ln in out.splitlines() if ln.startswith(("mapped", "embedded", "fine-tuned", "wrote",
                                                                  "evaluated", "model"))), last)
    say(f"verb {name}", f"{'ok' if code == 0 else f'FAILED (exit {code})'} in {sec:.1f} s: {first[:200]}")
    if code != 0:
        print(out[-3000:], flush=True)
    return code == 0


def summary(out: str) -> dict:
    return json.loads((Path(out) / "_summary.json").read_text())


def start_ray(work: Path) -> str:
    """A Ray head on this node with its GPUs, for every command of the check (one start)."""
    import torch

    port = 6391
    gpus = torch.cuda.device_count() or 1  # without CUDA: one logical GPU (the script's own check)
    cmd = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())", "start",
           "--head", f"--port={port}", f"--num-gpus={gpus}", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={work / 'ray'}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=180)
    return f"127.0.0.1:{port}"


def stop_ray() -> None:
    subprocess.run([sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())",
                    "stop", "--force"], capture_output=True, timeout=120)


def copies(scene: str, n: int, work: Path) -> list[str]:
    """``n`` copies of a scene under distinct names (hard links where the disk allows)."""
    out = []
    for k in range(n):
        d = work / "scenes" / f"{k:03d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / Path(scene).name
        if not p.exists():
            try:
                os.link(scene, p)
            except OSError:
                shutil.copy(scene, p)
        out.append(str(p))
    return out


# --------------------------------------------------------------------------- sections


def versions() -> None:
    import ray
    import rasterio
    import torch

    say("python", sys.version.split()[0])
    say("torch", f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})")
    say("ray", ray.__version__)
    say("rasterio", f"{rasterio.__version__} (GDAL {rasterio.__gdal_version__})")
    try:
        import transformers

        say("transformers", transformers.__version__)
    except ImportError:
        say("transformers", "absent")
    say("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA: CPU figures")
    say("host", f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")


def verbs(args, work: Path, ray_address: str) -> None:
    """Each GPU verb once (``--verbs``: map, map-embeddings, embed, finetune; finetune is
    followed by evaluate of the model it made)."""
    scene, ra = args.scene, ["--ray-address", ray_address]
    landsat = ["--bands", "landsat8-b234", "--fill-value", "0"]
    chosen = args.verbs.split(",")
    if "map" in chosen:
        smoke("map --num-gpus 1", "map", "--scenes", scene, *landsat, "--out", str(work / "v-map"), "--num-gpus",
              "1", *ra)
    if "map-embeddings" in chosen:
        smoke("map --store --num-gpus 1", "map", "--scenes", scene, *landsat, "--out", str(work / "v-emb"),
              "--num-gpus", "1", "--store", "--no-quicklook", *ra)
    if "embed" in chosen:
        smoke("embed --scenes --num-gpus 1", "embed", "--scenes", scene, *landsat, "--out", str(work / "v-store"),
              "--num-gpus", "1", *ra)
    if "finetune" not in chosen:
        return
    ft = str(work / "v-ft")
    tuned = smoke("finetune --gpu (1 epoch)", "finetune", "--data", args.eurosat, "--out", ft, "--gpu", "--epochs",
                  "1", "--freeze-epochs", "0", "--workers", "1", "--batch-size", "32", "--input-size", "64", *ra)
    if not tuned:  # evaluate's GPU path all the same, with the built-in model
        from raylib.models.default import default_model_dir

        ft = str(default_model_dir())
    what = "1 epoch, its own patches" if tuned else "the built-in model"
    if smoke(f"evaluate --num-gpus 1 ({what})", "evaluate", "--model", ft, "--data", args.eurosat, "--out",
             str(work / "v-eval"), "--num-gpus", "1", *ra):
        metrics = json.loads((Path(work / "v-eval") / "metrics.json").read_text())
        say(f"evaluate balanced accuracy ({what})", metrics.get("metrics", metrics).get("balanced_accuracy"))


def agreement(args, work: Path, ray_address: str) -> None:
    """The README scene mapped on the GPU (each precision) and on the CPU, tile by tile."""
    from raylib.formats.mapfile import read_map

    base = ["map", "--scenes", args.scene, "--bands", "landsat8-b234", "--fill-value", "0", "--no-quicklook",
            "--ray-address", ray_address]

    def probs(out):  # by the tiles' place in the scene (a tile id holds the scene's path)
        t = read_map(out).sort_by([("row_off", "ascending"), ("col_off", "ascending")])
        ok = np.array(t["status"].to_pylist()) == "ok"
        p = np.full((t.num_rows, len(t["probs"][int(np.argmax(ok))].as_py())), np.nan, np.float32)
        for i in np.flatnonzero(ok):
            p[i] = t["probs"][int(i)].as_py()
        return list(zip(t["row_off"].to_pylist(), t["col_off"].to_pylist())), ok, p

    if args.cpu_map:  # the same scene and model mapped on another machine's CPU
        from raylib.models.default import default_model_dir
        from raylib.models.landcover_model import LandcoverModel

        cpu_out = args.cpu_map
        made, here = summary(cpu_out).get("model_id"), LandcoverModel.read_manifest(default_model_dir()).id
        if made != here:
            raise RuntimeError(f"--cpu-map {cpu_out} was made with model {made}, the built-in model here is {here}: "
                               "map the scene again with this checkout (BENCHMARKS.md, 'The GPU path')")
        say("agreement: CPU map", f"{cpu_out} (made beforehand, model {made})")
    else:
        cpu_out = str(work / "a-cpu")
        code, out, sec = landcover(*base, "--out", cpu_out, "--num-gpus", "0",
                                   "--actors", str(max(2, (os.cpu_count() or 2) // 2)))
        if code:
            raise RuntimeError(out[-2000:])
        say("agreement: CPU map seconds", round(sec, 1))
    ids, ok, cpu = probs(cpu_out)
    for precision in args.precisions.split(","):
        o = str(work / f"a-gpu-{precision}")
        code, out, sec = landcover(*base, "--out", o, "--num-gpus", "1", "--precision", precision)
        if code:
            say(f"agreement {precision}", f"FAILED: {out[-500:]}")
            continue
        gids, gok, gpu = probs(o)
        assert gids == ids and (gok == ok).all(), "the GPU map's tiles are not the CPU map's"
        same = float((gpu[ok].argmax(1) == cpu[ok].argmax(1)).mean())
        d = np.abs(gpu[ok] - cpu[ok]).max(1)
        say(f"agreement {precision}: labels", f"{same:.4f} of {int(ok.sum())} tiles; max |dp| {d.max():.4g}, "
                                             f"mean {d.mean():.3g} ({sec:.1f} s)")


def timed(fn, dev: str, reps: int = 1) -> float:
    """Seconds ``reps`` calls of ``fn`` take, the device's queue drained on both sides."""
    import torch

    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def timed_rate(fn, b: int, dev: str, reps: int) -> float:
    """Tiles/s of ``fn`` on a batch of ``b``, after one warm-up call (cuDNN plans its shape)."""
    fn()
    return reps * b / timed(fn, dev, reps)


def model_path(args) -> None:
    """``LandcoverModel.predict`` on host tiles (uint16 with their scaling, as the map sends
    them; float32 as before) at several batches, and the architecture's ceiling: the same
    network on tensors already on the device, channels-last, per precision."""
    import torch

    from raylib.models.default import default_model_dir
    from raylib.models.device import set_precision
    from raylib.models.landcover_model import LandcoverModel

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = [64, 256] if args.small else [64, 256, 1024, 4096]
    reps = 2 if args.small else 8

    def rate(fn, b):
        return timed_rate(fn, b, dev, reps)

    rng = np.random.default_rng(0)
    for precision in ("fp32", "bf16"):
        m = LandcoverModel.load(default_model_dir(), device=dev, precision=precision)
        for b in sizes:
            raw = rng.integers(6000, 20000, (b, 3, 64, 64), dtype=np.uint16)
            g, o = np.full((b, 3), 3e-5, np.float32), np.zeros((b, 3), np.float32)
            say(f"model path {precision} uint16, batch {b} (tiles/s)",
                rate(lambda: m.predict(raw, gain=g, offset=o), b))
            if precision == "fp32" and b in (64, 1024):
                x = raw * np.float32(3e-5)
                say(f"model path fp32 float32 host tiles, batch {b} (tiles/s)", rate(lambda: m.predict(x), b))
    new_shapes(default_model_dir(), rate, dev)
    net = LandcoverModel.load(default_model_dir(), device=dev).backbone.model
    if dev == "cuda":
        net = net.to(memory_format=torch.channels_last)
    for precision in ("fp32", "tf32", "bf16"):
        set_precision(dev, precision)
        for b in sizes[1:]:
            x = torch.rand((b, 3, 128, 128), device=dev)
            if dev == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)

            def once():
                with torch.inference_mode(), torch.autocast(dev, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    net(pixel_values=x)

            say(f"ceiling {precision}, batch {b} (tiles/s)", rate(once, b))
    set_precision(dev, "fp32")


def new_shapes(model_dir, rate, dev: str) -> None:
    """What a batch of a size the network has not seen costs (cuDNN plans each new input
    shape): the bare network on odd sizes, against a model actor (which pads batches to a
    few shapes, all planned at its start: ``models.device``); and where a 1,024-tile batch's
    time goes (the tiles onto the device and prepared, the network, the head on the host)."""
    import torch

    from raylib.pipelines.map.predictor import Predictor

    def first(fn):
        return timed(fn, dev)

    t0 = time.perf_counter()
    actor = Predictor(str(model_dir), None, 1, dev, batch_size=1024)
    say("model actor start, every batch shape planned (s)", time.perf_counter() - t0)
    bb = actor.model.backbone
    bare = []
    for n in (149, 175, 730, 53, 1019):
        x = torch.rand((n, 3, 128, 128), device=dev).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            bare.append(first(lambda: bb.model(pixel_values=x)))
    say("bare network, first batch of 149/175/730/53/1019 tiles (s)", " ".join(f"{t:.2f}" for t in bare))
    rng = np.random.default_rng(1)
    padded = []
    for n in (151, 177, 733, 55, 1017):
        raw = rng.integers(6000, 20000, (n, 3, 64, 64), dtype=np.uint16)
        g, o = np.full((n, 3), 3e-5, np.float32), np.zeros((n, 3), np.float32)
        padded.append(first(lambda: actor.model.predict(raw, gain=g, offset=o)))
    say("model actor, first batch of 151/177/733/55/1017 tiles (s)", " ".join(f"{t:.3f}" for t in padded))
    raw = rng.integers(6000, 20000, (1024, 3, 64, 64), dtype=np.uint16)
    g, o = np.full((1024, 3), 3e-5, np.float32), np.zeros((1024, 3), np.float32)

    def prepared():
        x = bb.preprocessor.tiles(bb.feed(raw, g, o), bb.input_size)
        return x.contiguous(memory_format=torch.channels_last)

    x = prepared()
    e = actor.model.embed16(raw, g, o)
    with torch.inference_mode():
        parts = {"onto the device and prepared": rate(prepared, 1024),
                 "network": rate(lambda: bb.model(pixel_values=x), 1024),
                 "network with pooling, float16, to the host": rate(lambda: actor.model.embed16(raw, g, o), 1024),
                 "head and OOD on the host": rate(lambda: actor.model.predict_embeddings(e), 1024)}
    say("batch of 1024, each part alone (tiles/s)", "; ".join(f"{k} {v:.0f}" for k, v in parts.items()))


def shapes(args) -> None:
    """``new_shapes`` alone (the model section runs it too)."""
    import torch

    from raylib.models.default import default_model_dir

    dev = "cuda" if torch.cuda.is_available() else "cpu"

    new_shapes(default_model_dir(), lambda fn, b: timed_rate(fn, b, dev, 4), dev)


def heavy_model(work: Path) -> str:
    """A model directory with ViT-B/16 at 224 px (random weights) and a logistic head."""
    from transformers import ViTConfig, ViTModel

    from raylib.models.default import default_model_dir
    from raylib.models.heads import LogisticHead
    from raylib.models.model_dir import write_model_dir
    from raylib.models.landcover_model import LandcoverModel

    out = work / "heavy-model"
    if (out / "model.json").exists():
        return str(out)
    vit = work / "vit-b16"
    ViTModel(ViTConfig(image_size=224, patch_size=16), add_pooling_layer=False).save_pretrained(vit)
    (vit / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": 224, "width": 224}, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    base = LandcoverModel.read_manifest(default_model_dir())
    rng = np.random.default_rng(0)
    head = LogisticHead().fit(rng.normal(size=(200, 768)).astype(np.float32), np.arange(200) % len(base.classes))
    write_model_dir(str(out), name="vit-b16-random", backbone_ref=str(vit), input_size=224, head=head,
                    classes=base.classes, band_mean=base.bands["mean"], band_std=base.bands["std"],
                    tile_size=base.tile_size, gsd=base.gsd, metrics={}, created_by="gpu_check", bands=base.bands)
    return str(out)


def _share(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _seconds(text: str) -> float:
    """Ray Data's duration text (``1.12s``, ``209.44ms``, ``478.5us``) in seconds."""
    for unit, f in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * f
    return float("nan")


def stages(lines: list[str]) -> str:
    """The map's Ray Data stages from ``_summary.json`` ``ray_data_stats``: each stage's tasks,
    seconds from its first task to its last, and its tasks' wall and CPU seconds summed. A
    model actor takes several blocks at once (``actor_concurrency``), so its wall and CPU
    seconds count the actor's whole while once for each block in it at the time: read its
    seconds from first task to last against the run's, and the read tasks' figures as they
    are."""
    out, name = [], None
    for ln in lines:
        m = re.match(r"Operator \d+ (.+?): (\d+) tasks executed, \d+ blocks produced in (\S+)", ln)
        if m:
            name = m.group(1)
            out.append(f"{name}: {m.group(2)} tasks over {_seconds(m.group(3)):.1f} s")
            continue
        m = re.match(r"\* Remote (wall|cpu) time: .*, (\S+) total", ln)
        if m and name:
            out[-1] += f", {m.group(1)} {_seconds(m.group(2)):.1f} s"
    return "; ".join(out) or "n/a"


def pipeline(args, work: Path, ray_address: str, heavy: bool) -> None:
    """The map's throughput, GPU busy share and host cores, whole runs, warm cluster."""
    runs = [(args.heavy_copies, "1", "")] if heavy else [(int(n), g, a[0] if a else "")
                                                         for n, g, *a in (r.split(":") for r in args.runs.split(","))]
    model = ["--model", heavy_model(work)] if heavy else []
    what = "heavy (ViT-B/16 224 px)" if heavy else "built-in"
    for n, gpus, extra in runs:
        if extra not in ("", "no-adapt"):
            raise ValueError(f"--runs: {extra!r} is not a run option (copies:num_gpus[:no-adapt])")
        scenes = copies(args.scene, n, work)
        out = str(work / f"p-{'heavy' if heavy else 'mobilenet'}-{n}-{gpus}{extra and '-' + extra}")
        with Usage() as u:
            code, text, sec = landcover("map", "--scenes", *scenes, "--bands", "landsat8-b234", "--fill-value", "0",
                                        "--no-quicklook", "--ray-address", ray_address, *model, "--num-gpus", gpus,
                                        *([f"--{extra}"] if extra else []), "--out", out)
        key = f"pipeline {what}, {n} cop{'y' if n == 1 else 'ies'}, num_gpus {gpus}{extra and ', ' + extra}"
        if code:
            say(key, f"FAILED: {text[-800:]}")
            continue
        s = summary(out)
        t = s["timings"]
        first = t.get("first_row_s", float("nan"))
        adapt = f", of which the first pass (adaptation) {t['adaptation']:.1f} s" if "adaptation" in t else ""
        say(key, f"{s['tiles'] / s['seconds']:.0f} tiles/s ({s['tiles']} tiles, {s['seconds']:.1f} s; first row "
                 f"{first:.1f} s{adapt}; {s['tiles'] / max(1e-9, s['seconds'] - first):.0f} tiles/s from the first "
                 f"row to the last); GPU busy {_share(u.gpu_busy)} ({_share(u.busy_after(first))} from the first row "
                 f"to the last); host cores busy {u.cores:.1f} of "
                 f"{os.cpu_count()}; read tasks {u.read_cpu_s:.0f} CPU s; stages: "
                 f"{stages(s.get('ray_data_stats', []))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", required=True)
    ap.add_argument("--eurosat", required=True, help="an image folder <Class>/<file> of a few hundred patches")
    ap.add_argument("--runs", default="1:1,8:1,8:0.5,8:1:no-adapt",
                    help="pipeline runs, copies:num_gpus[:no-adapt] each")
    ap.add_argument("--verbs", default="map,map-embeddings,embed,finetune")
    ap.add_argument("--precisions", default="fp32,tf32,bf16", help="the agreement section's GPU maps")
    ap.add_argument("--cpu-map", default=None, help="the scene's CPU map made beforehand (else mapped here)")
    ap.add_argument("--order", default="agreement,model,pipeline,heavy,verbs", help="sections, in order")
    ap.add_argument("--heavy-copies", type=int, default=4)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--skip", default="")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.json:
        JSON_PATH.append(Path(args.json))
    versions()
    address = start_ray(work)
    say("ray cluster", address)
    try:
        sections = {"agreement": lambda: agreement(args, work, address), "model": lambda: model_path(args),
                    "shapes": lambda: shapes(args),
                    "pipeline": lambda: pipeline(args, work, address, heavy=False),
                    "heavy": lambda: pipeline(args, work, address, heavy=True),
                    "verbs": lambda: verbs(args, work, address)}
        for name in args.order.split(","):
            fn = sections[name]
            if name in skip:
                continue
            t0 = time.time()
            try:
                fn()
            except Exception:
                say(f"section {name}", "FAILED\n" + traceback.format_exc()[-3000:])
            say(f"section {name} seconds", round(time.time() - t0, 1))
    finally:
        stop_ray()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
