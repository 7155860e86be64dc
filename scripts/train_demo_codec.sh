#!/usr/bin/env bash
# The exact commands that made latentcache/assets/demo-codec.pt (see docs/demo-codec.md).
# Trains bmshj2018-hyperprior at the quality-3 widths (N=128, M=192, λ=0.0067) from scratch on
# scikit-image's CC0 / public-domain photos with one CPU thread, in two runs of the same command:
#   1. 1,100 steps from scratch (cosine lr schedule over 1,100 steps; at most 40 minutes);
#   2. resumed from $WORK/demo-codec.pt.state.pt (saved at step 1,100) to 2,600 steps (at most
#      54 minutes): the cosine schedule is re-stretched to 2,600 steps, so the lr goes back up
#      from 5e-5 to 3.3e-4 at step 1,101 and decays again to 5e-5 at step 2,600.
# then evaluates it against JPEG on the two photos it never saw. Starting from an empty $WORK it
# should give the shipped weights (weights_sha256 9c5fcbb1...; not re-verified by a fresh re-run)
# provided neither run hits its --max-minutes cap (they took 32.5 + 34.6 min on one thread of a
# shared 2-core machine); a run that is interrupted resumes from its last --save-every state.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-build/demo-codec}
PY=${PY:-.venv/bin/python}
LC=${LC:-.venv/bin/latentcache}

train() {  # train STEPS MAX_MINUTES: runs (or resumes) to STEPS steps
  OMP_NUM_THREADS=1 "$LC" codec train \
    --images "$WORK/photos/train" --arch bmshj2018-hyperprior --quality 3 --init scratch \
    --steps "$1" --max-minutes "$2" --batch-size 8 --crop 128 \
    --lr 5e-4 --aux-lr 1e-2 --clip 1.0 --seed 0 --save-every 100 \
    --threads 1 --half --out "$WORK/demo-codec.pt"
}

"$PY" scripts/skimage_photos.py "$WORK/photos"
train 1100 40   # the first demo codec (weights_sha256 235b3b72...)
train 2600 54   # resumes at step 1100
mkdir -p latentcache/assets
cp "$WORK/demo-codec.pt" latentcache/assets/demo-codec.pt
"$LC" codec eval --codec demo --images "$WORK/photos/heldout" --out "$WORK/eval" --threads 1
