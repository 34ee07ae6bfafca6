#!/usr/bin/env bash
# Regenerates the README's pictures in docs/images/ (tracked files: this script is the only command
# that writes there). Trains the lectures' convnet on real MNIST (4 epochs, --deterministic) first.
# Usage: bash benchmarks/readme_images.sh [DATA_DIR]   (default ../shared/data; writes runs/mnist-convnet)
set -euo pipefail
DATA=${1:-../shared/data}
RUN=runs/mnist-convnet
export TF_CPP_MIN_LOG_LEVEL=3
if [ ! -f "$RUN/last.keras" ]; then
  kerascnn train convnet --data "$DATA/mnist.npz" --epochs 4 --batch-size 256 --schedule onecycle --lr 5e-3 \
    --val-split 0.1 --seed 1 --deterministic --run-dir "$RUN" -q
fi
kerascnn visualize filters "$RUN" --out docs/images/mnist-convnet-filters.png
kerascnn visualize activations "$RUN" --index 0 --out docs/images/mnist-convnet-activations.png
kerascnn visualize mistakes "$RUN" --out docs/images/mnist-convnet-mistakes.png
