#!/usr/bin/env bash
# The per-stage measurement of issue 26 (item 5): EfficientNet-Lite0 with ImageNet init (the wheel), pooled at every
# stage, vs raw pixels, on the 10,000 Fashion-MNIST test images at 64 px, 3 seeds, k-means; no tuning on the labels.
# Writes one run folder per stage under benchmarks/feature-layers/ and summary.csv (collect.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CACHE=${CACHE:-.cache}
for layer in blocks.0 blocks.1 blocks.2 blocks.4 blocks.6 last; do
  flag=(); [ "$layer" = last ] || flag=(--feature-layer "$layer")
  out=benchmarks/feature-layers/$layer
  rm -rf "$out"
  $PY -m benchmark run --preset quick --dataset fashion_mnist --split test --backbones timm:efficientnet_lite0,raw_pixels \
      --init imagenet --pretexts none --clusterers kmeans --seeds 0,1,2 --image-size 64 --probe-draws 10 \
      "${flag[@]}" --out "$out" --cache-dir "$CACHE" --no-progress > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
done
$PY benchmarks/feature-layers/collect.py
