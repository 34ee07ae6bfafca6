#!/usr/bin/env bash
# The weights of four convnet runs must stay bitwise what main (341619d, before the training
# path was restructured, issue 20) trained on this machine (Intel Xeon, 2 cores, AVX-512 + AVX512_BF16 +
# AMX: the default precision is mixed_bfloat16 there; other CPUs train other, equally repeatable, weights).
# Prints each SHA-256 and OK/DIFFERS.
# Usage: benchmarks/same_weights.sh   (about 1.5 minutes on 2 cores)
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
status=0
check() {   # expected-sha256, then the arguments of `kerascnn train`
  want=$1; shift
  got=$(kerascnn train "$@" 2>&1 | sed -n 's/^weights sha256 //p')
  if [ "$got" = "$want" ]; then verdict=OK; else verdict=DIFFERS; status=1; fi
  echo "$verdict  $got  kerascnn train $*"
}
check 171d4494cfbc5b383e894b132e0c84586068bef2f3b488c7833b116360af4acc convnet --run-dir run2 -q
check 65e967a04b342053841795994011b114518f3828c24ce34d6559a90a2c60202d convnet --run-dir run1 --deterministic -q
check 6c679dcb4fa3efb08facdbb94a85a0956795f3a723383420af3a907754df09a1 convnet --run-dir run3 --precision float32 --epochs 5 -q
check 23dbb11ffa50954f2794660ce04f043df58f13a2f6ddf38410cbd508963fdb20 convnet --run-dir run4 --backend jax --epochs 3 -q
exit $status
