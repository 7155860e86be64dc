#!/usr/bin/env bash
# The body of `make demo`: the main job, offline, on the demo texture set with the demo codec.
#   demo dataset (generated from scikit-image's CC0 textures) -> encode with the demo codec
#   -> dataset card -> codec rate-distortion vs JPEG on the test patches
#   -> classifier trained on the latents -> test accuracy.
# Assumes `latentcache` is on PATH (the Makefile puts .venv/bin first). Under 10 min on 2 cores.
set -euo pipefail
OUT=${DEMO_OUT:-demo-out}
CODEC=${DEMO_CODEC:---codec demo --quality 3}   # e.g. DEMO_CODEC="--checkpoint my.pt --quality 3"
EPOCHS=${DEMO_EPOCHS:-15}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "1/5 encode the demo dataset with the demo codec"
# shellcheck disable=SC2086
latentcache encode --dataset demo --data-root "$OUT/data/demo" $CODEC \
  --out "$OUT/store" --format both --workers 0 --overwrite

step "2/5 the dataset card"
latentcache inspect "$OUT/store"

step "3/5 the codec against JPEG on the test patches (true bpp, PSNR)"
# shellcheck disable=SC2086
latentcache codec eval $CODEC --images "$OUT/data/demo/test" --out "$OUT/codec-eval"

step "4/5 train a classifier on the latents (cResNet-39 at 1/4 width on 8x8 y_hat)"
rm -rf "$OUT/run"   # a fresh run each time: train refuses a folder that already holds one
latentcache train "$OUT/store" --model cresnet39 --model-opt base_width=16 \
  --epochs "$EPOCHS" --resize 0 --crop 0 --batch-size 32 --optimizer adamw --device cpu \
  --out "$OUT/run"

step "5/5 test accuracy"
latentcache eval "$OUT/run" "$OUT/store" --split test --device cpu

step "done: store $OUT/store, plots in $OUT/codec-eval/rd.png and $OUT/run/"
