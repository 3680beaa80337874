#!/usr/bin/env bash
# The GPU node's check (issue 28), about 6 minutes on one H200: versions; each GPU verb once
# (map, map --store, embed --scenes, finetune --gpu for one epoch, evaluate); the GPU map
# of the README scene against its CPU map, per precision; the model path at batch 64 / 256 /
# 1,024 / 4,096 against the architecture's ceiling; the pipeline's tiles/s, GPU busy share
# (nvidia-smi dmon), host cores busy and read tasks' CPU seconds for 1 and 8 copies of the
# scene with the built-in model, and for a heavy backbone (ViT-B/16, 224 px, random weights).
#
# Here, once:   bash ../shared/gpu/make-bundles.sh       # Ray, rasterio, the built-in model -> .gpu/a, .gpu/b
#               bash scripts/gpu_check.sh --prepare      # then the scene, 400 EuroSAT patches and the scene's
#                                                        # CPU map (~2 min) -> .gpu/data
#               (in that order: make-bundles.sh starts from an empty .gpu; .gpu/b and .gpu/data: 60 MiB)
# There (two device runs back to back, the second carrying .gpu/b and .gpu/data):
#               bash .gpu/a/install.sh
#               bash .gpu/b/install.sh && . /tmp/site/env.sh && bash scripts/gpu_check.sh
# The output goes to stdout and, when $OUT is set, to $OUT/gpu_check.txt and gpu_check.json.
# Extra arguments go to scripts/gpu_check.py (--order, --runs 8:1,8:1:no-adapt,1:1, --verbs, --precisions, --cpu-map DIR,
# --small, --skip ...).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=.gpu/data
SCENE_NAME=LC08_L1TP_224078_20200518_20200518_01_RT.TIF

if [ "${1:-}" = "--prepare" ]; then
  shared=../shared/data
  mkdir -p "$DATA/scenes" "$DATA/eurosat"
  cp "$shared/scenes/$SCENE_NAME" "$DATA/scenes/"
  for d in "$shared"/eurosat-rgb/*/; do
    c=$(basename "$d"); mkdir -p "$DATA/eurosat/$c"
    find "$d" -maxdepth 1 -name '*.jpg' | sort | head -40 | xargs -I{} cp {} "$DATA/eurosat/$c/"
  done
  excl=$(git rev-parse --git-dir)/info/exclude
  grep -qx '/.gpu/' "$excl" 2>/dev/null || echo '/.gpu/' >> "$excl"
  # the scene's CPU map with this checkout's built-in model (the agreement section's reference: --cpu-map)
  rm -rf "$DATA/cpu-map"
  .venv/bin/landcover map --scenes "$DATA/scenes/$SCENE_NAME" --bands landsat8-b234 --fill-value 0 \
      --no-quicklook --out "$DATA/cpu-map" || exit 1
  du -sh "$DATA"
  exit 0
fi

PY=${PYTHON:-python3}
[ -d /tmp/site ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; }
out=${OUT:-}
echo "gpu_check $(date -u +%Y-%m-%dT%H:%MZ) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
args=(--scene "$DATA/scenes/$SCENE_NAME" --eurosat "$DATA/eurosat")
[ -n "$out" ] && args+=(--json "$out/gpu_check.json")
if [ -n "$out" ]; then
  timeout 540 "$PY" scripts/gpu_check.py "${args[@]}" "$@" 2>&1 | tee "$out/gpu_check.txt"
else
  timeout 540 "$PY" scripts/gpu_check.py "${args[@]}" "$@"
fi
