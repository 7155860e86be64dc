#!/usr/bin/env bash
# The exact command that made latentcache/assets/demo-codec.pt (see docs/demo-codec.md).
# Trains bmshj2018-hyperprior at the quality-3 widths (N=128, M=192, λ=0.0067) from scratch on
# scikit-image's CC0 / public-domain photos, with one CPU thread for at most 40 minutes, then
# evaluates it against JPEG on the two photos it never saw.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-build/demo-codec}
PY=${PY:-.venv/bin/python}
LC=${LC:-.venv/bin/latentcache}

"$PY" scripts/skimage_photos.py "$WORK/photos"
OMP_NUM_THREADS=1 "$LC" codec train \
  --images "$WORK/photos/train" --arch bmshj2018-hyperprior --quality 3 --init scratch \
  --steps 1100 --max-minutes 40 --batch-size 8 --crop 128 \
  --lr 5e-4 --aux-lr 1e-2 --clip 1.0 --seed 0 --save-every 100 \
  --threads 1 --half --out "$WORK/demo-codec.pt"
mkdir -p latentcache/assets
cp "$WORK/demo-codec.pt" latentcache/assets/demo-codec.pt
"$LC" codec eval --codec demo --images "$WORK/photos/heldout" --out "$WORK/eval" --threads 1
