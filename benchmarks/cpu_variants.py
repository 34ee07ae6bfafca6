"""Which Keras backend / TensorFlow setting trains a small net fastest on this CPU (issue 11).

Each variant is one fresh process (the settings are process-wide: oneDNN on/off, thread pools,
KERAS_BACKEND) running `kerascnn bench MODEL --mode train` -- the training step of `kerascnn
train`, through its engine -- or, for the reference, the same architecture in PyTorch eager
(`torch_models.py`, SGD with momentum as bench, data resident, batch 128). Variants are
interleaved (round 1: A, B, C, ...; round 2: A, B, C, ...) because the 2 cores are shared;
median and range over rounds of each process's median window are printed.

``--avx2`` emulates an AVX2-only CPU on an AVX-512 one: oneDNN (TensorFlow's and PyTorch's),
ATen and XLA:CPU are capped at AVX2 and bf16 detection is off.

    python benchmarks/cpu_variants.py --models lenet5,convnet --rounds 3 --avx2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
        "KERASCNN_CPU_BF16": "0", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}
VARIANTS = {  # name -> (extra bench args, extra env)
    "tf": ([], {}),
    "tf_xla": (["--jit"], {}),
    "tf_onednn_off": ([], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "tf_inter_op_2": ([], {"KERASCNN_INTER_OP_THREADS": "2"}),
    "jax": (["--backend", "jax"], {}),
    "keras_torch": (["--backend", "torch"], {}),
    "pytorch_eager": (None, {}),
}

TORCH = r"""
import json, os, statistics, sys, time
import numpy as np, torch
sys.path.insert(0, {here!r})
from torch_models import MODELS
name, batch, steps, warmup, repeats = {args!r}
torch.manual_seed(0)
model = MODELS[name]()
opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
loss_fn = torch.nn.CrossEntropyLoss()
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
y = torch.from_numpy(rng.integers(0, 10, batch))
def run(n):
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return float(loss)
run(warmup)
ips = []
for _ in range(repeats):
    t = time.perf_counter(); run(steps); ips.append(steps * batch / (time.perf_counter() - t))
print(json.dumps({{"train_images_per_second": statistics.median(ips)}}))
"""


def one(model, variant, batch, steps, warmup, repeats, base_env):
    args, env_extra = VARIANTS[variant]
    env = dict(os.environ, **base_env, **env_extra, TF_CPP_MIN_LOG_LEVEL="3")
    if args is None:
        cmd = [sys.executable, "-c", TORCH.format(here=str(HERE), args=(model, batch, steps, warmup, repeats))]
    else:
        cmd = [sys.executable, "-m", "kerascnn", "bench", model, "--mode", "train", "--batch-size", str(batch),
               "--steps", str(steps), "--warmup", str(warmup), "--repeats", str(repeats), "--format", "json", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        return None, r.stderr.strip().splitlines()[-1:] or ["failed"]
    out = r.stdout
    return json.loads(out[out.index("{"):])["train_images_per_second"], None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lenet5,convnet")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--avx2", action="store_true", help="emulate an AVX2-only CPU (see the docstring)")
    a = ap.parse_args()
    base = AVX2 if a.avx2 else {}
    variants = a.variants.split(",")
    for model in a.models.split(","):
        samples = {v: [] for v in variants}
        for _ in range(a.rounds):
            for v in variants:
                t = time.time()
                ips, err = one(model, v, a.batch_size, a.steps, a.warmup, a.repeats, base)
                samples[v].append(ips)
                print(f"  {model} {v}: {ips if ips else err} ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
        for v, s in samples.items():
            s = [x for x in s if x]
            if s:
                print(json.dumps({"model": model, "variant": v, "avx2": a.avx2, "median": round(statistics.median(s)),
                                  "min": round(min(s)), "max": round(max(s)), "n": len(s)}), flush=True)


if __name__ == "__main__":
    main()
