#!/usr/bin/env bash
# Accuracy runs recorded in README.md ("Results"): real data from ../shared/data (keras.datasets layout).
# Usage: bash benchmarks/accuracy_runs.sh [DATA_DIR]   (default ../shared/data); writes runs under runs/bench-*
set -euo pipefail
DATA=${1:-../shared/data}
export TF_CPP_MIN_LOG_LEVEL=3
run() {  # name, then kerascnn train arguments
  local name=$1; shift
  rm -rf "runs/bench-$name"
  local t0=$(date +%s.%N)
  kerascnn train "$@" --run-dir "runs/bench-$name" -q | tail -3
  local t1=$(date +%s.%N)
  kerascnn evaluate "runs/bench-$name" --format json > "runs/bench-$name/test.json"
  python - "$name" "$t0" "$t1" <<'PY'
import json, sys
name, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
m = json.load(open(f"runs/bench-{name}/metrics.json")); t = json.load(open(f"runs/bench-{name}/test.json"))
print(f"RESULT {name}: test accuracy {t['accuracy']:.4f}, epochs {m['epochs']}, train+val wall {t1 - t0:.0f} s "
      f"({(t1 - t0) / 60:.1f} min), {m['train_images_per_second']} img/s")
PY
}
run default   convnet                                   # the README's main command (digits, bundled)
run convnet-mnist  convnet --data "$DATA/mnist.npz" --epochs 12 --batch-size 128
run lenet5-mnist   lenet5 -o variant=modern -o batch_norm=true --data "$DATA/mnist.npz" --epochs 15 --batch-size 128
run lenet5-classic lenet5 --data "$DATA/mnist.npz" --epochs 15 --batch-size 128
run convnet-fashion convnet --data "$DATA/fashion_mnist.npz" --epochs 20 --batch-size 128 --weight-decay 1e-4
