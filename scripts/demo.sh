#!/usr/bin/env bash
# The body of `make demo`: the demo recipe (pipelines/demo.toml), offline, on the demo texture
# set with the demo codec:
#   demo dataset (generated from scikit-image's CC0 textures) -> encode with the demo codec
#   -> cResNet-39 on the latents | decode -> ResNet-50 on decoded pixels | ResNet-50 on originals
#   -> test accuracy -> rate-accuracy report; then the dataset card and the codec against JPEG.
# Every stage is cached: a second `make demo` reuses them and finishes in seconds. The first
# takes about a minute on a 2-core CPU (the recipe is small on purpose: see pipelines/demo.toml).
# Assumes `latentcache` is on PATH (the Makefile puts .venv/bin first).
set -euo pipefail
OUT=${DEMO_OUT:-demo-out}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "1/3 the demo recipe: encode -> decode -> train -> eval -> report (cached stages are reused)"
latentcache run demo --out "$OUT" --data-root "$OUT/data/demo"

step "2/3 the dataset card"
latentcache inspect "$OUT/stages/encode-q3-mse/store"

step "3/3 the codec against JPEG on the test patches (true bpp, PSNR)"
if [ -f "$OUT/codec-eval/rd.png" ]; then
  echo "$OUT/codec-eval/rd.png exists (delete it to measure again)"
else
  latentcache codec eval --codec demo --quality 3 --images "$OUT/data/demo/test" --out "$OUT/codec-eval"
fi

step "done: report $OUT/report/report.md (plots beside it), codec $OUT/codec-eval/rd.png"
sed -n '/^## Ours/,/^## /p' "$OUT/report/report.md" | grep '^|' || true
