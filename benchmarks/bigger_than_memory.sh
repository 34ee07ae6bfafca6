#!/bin/bash
# Issue 14's memory proof: train / SIGKILL mid-epoch / --resume / evaluate / export on a folder of
# 100,000 64x64 JPEGs (1.2 GB as uint8, 4.9 GB as float32 RGB) inside a 2 GiB memory cgroup (v1:
# /sys/fs/cgroup/memory must be writable, i.e. root), each command under /usr/bin/time -v.
#   benchmarks/bigger_than_memory.sh [WORKDIR]     (default /work/bigdata; nothing is written in the repo)
# Per command: WORKDIR/NAME.out/.err and one line in WORKDIR/summary.txt (rc, cgroup peak, OOM kills,
# peak RSS, wall time). Figures of 2026-11-23: benchmarks/RESULTS.md, "Bigger than memory".
set -x
B=${1:-/work/bigdata}; D=$B/jpeg64; R=$B/runs
CG=/sys/fs/cgroup/memory/kerascnn_stream_cap
LIMIT=${LIMIT:-2147483648}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD TF_CPP_MIN_LOG_LEVEL=3
mkdir -p $CG $B
[ -d $D ] || python -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; from data_pipeline import make_folder; make_folder(Path('$D'), 100000, 64)"

capped() {  # capped NAME CMD...: CMD in the cgroup, peak and OOM kills afterwards
    local name=$1; shift
    echo $LIMIT > $CG/memory.limit_in_bytes; echo $LIMIT > $CG/memory.memsw.limit_in_bytes
    echo 0 > $CG/memory.max_usage_in_bytes; echo 0 > $CG/memory.failcnt
    local before=$(grep '^oom_kill ' $CG/memory.oom_control | awk '{print $2}')
    bash -c "echo \$\$ > $CG/cgroup.procs; exec /usr/bin/time -v \"\$@\"" _ "$@" > $B/$name.out 2> $B/$name.err
    local rc=$? after=$(grep '^oom_kill ' $CG/memory.oom_control | awk '{print $2}')
    echo "$name rc=$rc cgroup_limit=$LIMIT cgroup_max_usage=$(cat $CG/memory.max_usage_in_bytes) oom_kills=$((after-before)) maxrss_kb=$(grep 'Maximum resident' $B/$name.err | awk '{print $NF}') wall=$(grep 'Elapsed (wall' $B/$name.err | awk '{print $NF}')" | tee -a $B/summary.txt
}

rm -rf $R; mkdir -p $R
COMMON="convnet --data $D --image-size 64 --epochs 2 --batch-size 128 --seed 1 --deterministic"
capped alloc_3g python -c "import numpy as np; print(np.ones(3 * 2**30 // 8).sum())"      # the cap is enforced
capped mem_off python -m kerascnn train $COMMON --stream off --run-dir $R/off                # in memory: refused
capped train_full python -m kerascnn train $COMMON --run-dir $R/full                        # --stream auto
( capped train_cut python -m kerascnn train $COMMON --run-dir $R/cut ) &
while ! grep -q '^1,' $R/cut/history.csv 2>/dev/null; do sleep 2; done
sleep ${HALF:-30}                                                                           # mid-epoch 2
kill -9 $(pgrep -f "^python -m kerascnn train .*--run-dir $R/cut" | head -1)
wait
capped train_resume python -m kerascnn train --resume $R/cut
python -c "
import numpy as np, keras
a, b = (keras.models.load_model('$R/' + r + '/last.keras').get_weights() for r in ('full', 'cut'))
print('RESUMED_WEIGHTS_BITWISE_EQUAL', all(np.array_equal(x, y) for x, y in zip(a, b)))"
capped evaluate python -m kerascnn evaluate $R/cut --format json
capped export python -m kerascnn export $R/cut --out $R/export
