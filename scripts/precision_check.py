"""What each precision does to a map, measured on a CPU: tiles of the README scene read as the
map reads them, through the built-in model at fp32, at bf16 (CPU autocast) and at TF32
(emulated: ``models.device.emulate_tf32``), side by side: the share of tiles whose label
agrees with fp32 and the largest change of a probability; for a model that adapts (the
built-in one), also with the head re-centred on these tiles' mean embedding, each precision
re-centred on its own (as a run's first pass on that device would), and with the head as trained.

    python scripts/precision_check.py [--tiles 2000] [--start 3000] [--model DIR]

A GPU runs the same arithmetic (bf16 autocast; TF32 rounds the same inputs), so these shares
are what a GPU map at that precision would agree with the CPU map, up to the order of the
sums; ``scripts/gpu_check.sh`` measures them on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCENE = REPO / ".." / "shared" / "data" / "scenes" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default=str(SCENE.resolve()))
    ap.add_argument("--tiles", type=int, default=2000, help="grid tiles to read (the fill border's are left out)")
    ap.add_argument("--start", type=int, default=3000, help="first grid tile")
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    import torch

    from raylib.config import MapConfig
    from raylib.models.default import default_model_dir
    from raylib.models.device import emulate_tf32
    from raylib.models.model_dir import LandcoverModel
    from raylib.pipelines.common.planning import plan_scene, resolve_grid
    from raylib.pipelines.map.source import read_units, scene_meta

    uri = args.model or default_model_dir()
    cfg = MapConfig(scenes=[args.scene], out="unused", bands="landsat8-b234", fill_value=0, model=uri)
    man = LandcoverModel.read_manifest(uri)
    grid = resolve_grid(cfg, man)
    plan = plan_scene(args.scene, cfg, man, grid)
    hi = min(plan.n_tiles, args.start + args.tiles)
    unit = {"scene_idx": [np.zeros(1, np.int64)], "lo": [np.array([args.start])], "hi": [np.array([hi])],
            "spec": [np.array([plan.read_spec(grid.tile_size, cfg.max_fill_fraction, 1.0, plan.pixel_type)], object)],
            "meta": [np.array([json.dumps({**scene_meta(plan), "index": 0})], object)]}
    b = read_units(unit, grid=grid, channels=len(man.bands["channels"]), read_timeout=60, read_retries=1,
                   pixel_type=plan.pixel_type)
    ok = b["status"] == "ok"
    raw, gain, offset = b["pixels"][ok], b["gain"][ok], b["offset"][ok]
    print(f"model {man.id}; {len(raw)} tiles ({raw.dtype}) of {Path(args.scene).name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    from raylib.models.adaptation import unit_rows

    def predict(model):
        """{way: probabilities} (the head as trained; re-centred on the tiles' own mean when the
        model can be), and the seconds of the network."""
        t0 = time.perf_counter()
        if model.net is not None:  # a fine-tuned network: no head to re-centre
            p = np.concatenate([model.predict(raw[i:i + args.batch], gain=gain[i:i + args.batch],
                                              offset=offset[i:i + args.batch])[0]
                                for i in range(0, len(raw), args.batch)])
            return {"as trained": p}, time.perf_counter() - t0
        emb = np.concatenate([model.embed16(raw[i:i + args.batch], gain[i:i + args.batch], offset[i:i + args.batch])
                              for i in range(0, len(raw), args.batch)])
        sec = time.perf_counter() - t0
        ways = {"as trained": model.predict_embeddings(emb)[0]}
        if model.can_adapt:
            ways["re-centred"] = model.predict_embeddings(emb, centre=unit_rows(emb).mean(axis=0))[0]
        return ways, sec

    p32s, s32 = predict(LandcoverModel.load(uri, device="cpu"))
    print(f"fp32: {s32:.1f} s")
    tf32_model = LandcoverModel.load(uri, device="cpu")
    emulate_tf32(tf32_model.backbone.model)
    for name, model in (("tf32 (emulated)", tf32_model),
                        ("bf16 (autocast)", LandcoverModel.load(uri, device="cpu", precision="bf16"))):
        ps, sec = predict(model)
        for way, p in ps.items():
            p32 = p32s[way]
            d = np.abs(p - p32).max(1)
            print(f"{name}, head {way}: labels agree with fp32 on {(p.argmax(1) == p32.argmax(1)).mean():.4f} of the "
                  f"tiles; |dp| max {d.max():.3f}, 99th percentile {np.quantile(d, 0.99):.3f}, mean {d.mean():.4f} "
                  f"({sec:.1f} s on this CPU)")


if __name__ == "__main__":
    main()
