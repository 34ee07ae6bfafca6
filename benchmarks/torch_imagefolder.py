"""torchvision ``ImageFolder`` + ``DataLoader`` over a class folder: one pass, printed as one JSON line.

Run with the PyTorch venv (no TensorFlow there), one process per measurement, by ``data_speed.py``:

    /work/torchenv/bin/python benchmarks/torch_imagefolder.py DIR --to 32 --channels 1 --batch 64 --workers 2

The transform is what a torchvision user writes for the same input: PIL open, ``convert("L"|"RGB")``,
``Resize(to)`` (PIL bilinear with antialiasing, as kerascnn resizes) when the size changes, ``ToTensor``
(float32 in [0, 1]). JSON: start-up (ImageFolder's listing), first batch, images/s over the rest of
the pass, CPU seconds per image of the whole pass (this process + its reaped workers).
"""
from __future__ import annotations

import argparse
import json
import resource
import time


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--to", type=int, required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    import torch
    from PIL import Image
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    mode = "L" if a.channels == 1 else "RGB"

    def loader(path):
        with open(path, "rb") as fh:
            return Image.open(fh).convert(mode)

    steps = ([transforms.Resize(a.to)] if a.to != a.size else []) + [transforms.ToTensor()]
    c0, t0 = cpu_seconds(), time.perf_counter()
    ds = datasets.ImageFolder(a.root, transform=transforms.Compose(steps), loader=loader)
    startup = time.perf_counter() - t0
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers, drop_last=True)
    t0 = time.perf_counter()
    it = iter(dl)
    next(it)
    t1 = time.perf_counter()
    n = 0
    for xb, _ in it:
        n += int(xb.shape[0])
    t2 = time.perf_counter()
    del it
    total = n + a.batch
    print(json.dumps({"startup": startup, "first": t1 - t0, "ips": n / (t2 - t1), "images": total,
                      "cpu_per_image": (cpu_seconds() - c0) / total}))


if __name__ == "__main__":
    main()
