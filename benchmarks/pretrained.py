"""Pretrained weights (issue 15): kerascnn vs keras.applications with the same weights, and
fine-tuning throughput with a frozen backbone against the unfrozen one.

    python benchmarks/pretrained.py                       # random-but-fixed weights, random images
    python benchmarks/pretrained.py --images DIR          # your images (any folder of jpg/png)
    python benchmarks/pretrained.py --size 224 --no-record

Where the real ImageNet files are in the Keras cache (~/.keras/models, see README 'Transfer
learning'), both sides load them (keras.applications(weights="imagenet") reads the cache and
kerascnn --weights imagenet the same file) and the top-1 classes must agree image for image;
otherwise both get the same random weights (equivalence only). Appends to RESULTS.md.

    python benchmarks/pretrained.py --torchvision /work/torchvenv/bin/python --size 224 --n 8

also compares full-size torchvision models with kerascnn: the given Python (one with torch and
torchvision; kerascnn's own environment need not have them) builds each model with random weights
and BatchNorm statistics, saves its state_dict as .safetensors and its float32 logits on the images
through torchvision's ImageNet pipeline (mean/std; GoogLeNet with transform_input); kerascnn loads
the file with ``--weights`` defaults (preprocessing inside the model) and must agree image for image.

    python benchmarks/pretrained.py --photos --skip-keras

top-1 / top-5 agreement with each source's own pipeline on the eight real photos of
``tests/fixtures/photos`` (torchvision and timm: the fixture's logits; keras.applications:
``keras.utils.load_img`` + ``preprocess_input`` run here, full-size models with random weights),
for ``kerascnn predict --weights`` and for the pipeline before issue 24 (the whole photo squashed
to the input, bilinear; for a keras.applications file not named like a download, no
preprocessing at all).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import publish

APPS = {"vgg16": ("VGG16", "vgg16", {}), "vgg19": ("VGG19", "vgg19", {}),
        "resnet50": ("ResNet50", "resnet", {"variant": "keras"})}


def _images(args):
    if args.images:
        from kerascnn import data as D

        files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return D.load_image_files(files[: args.n], (args.size, args.size), 3), f"{min(len(files), args.n)} images"
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (args.n, args.size, args.size, 3)).astype("float32"), f"{args.n} random images"


def parity(name, x, args):
    import keras

    import kerascnn
    from kerascnn import pretrained as W

    cls, module, options = APPS[name]
    top = args.size == 224
    try:
        path = W.imagenet_file(name, options, include_top=top)
        real = True
    except W.WeightsError:
        path, real = None, False
    ref = getattr(keras.applications, cls)(weights="imagenet" if real else None, include_top=top,
                                           input_shape=(args.size, args.size, 3),
                                           **({"pooling": "avg"} if not top and name == "resnet50" else {}))
    if not real:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_weights import _randomise, _save_legacy

        _randomise(ref, 0)
        path = _save_legacy(ref, Path(args.tmp) / f"{name}.h5")
    model = kerascnn.build(name, (args.size, args.size, 3), 1000, **options)
    model, _, _ = W.load_pretrained(model, str(path), name, options, "caffe")
    if not top:   # compare the pooled features: the head is new
        cut = "avg_pool" if name == "resnet50" else "block5_pool"
        upto = [layer.name for layer in model.layers].index(cut) + 1
        model = keras.Sequential([keras.Input((args.size, args.size, 3)), *model.layers[:upto]])
    a = ref.predict(getattr(keras.applications, module).preprocess_input(x * 255.0), verbose=0, batch_size=8)
    b = model.predict(x, verbose=0, batch_size=8)
    a, b = a.reshape(len(x), -1), b.reshape(len(x), -1)
    agree = int((a.argmax(-1) == b.argmax(-1)).sum())
    rel = float(np.abs(a - b).max() / np.abs(a).max())
    return f"| {name} | {'ImageNet (Keras cache)' if real else 'random, fixed'} | {len(x)} | {agree}/{len(x)} | {rel:.1e} |"


TORCHVISION = {"vgg16": {}, "vgg16_bn": {}, "resnet18": {}, "resnet50": {}, "alexnet": {"variant": "torchvision"},
               "googlenet": {"variant": "torchvision"}}
_TORCH_SIDE = """
import importlib, sys, numpy as np, torch, torchvision, safetensors.torch as st
sys.path.insert(0, {fixtures!r})
from make_torchvision_fixture import MEAN, STD, randomise
x = np.load({images!r})
for i, name in enumerate({names!r}):
    if name == "googlenet":
        G = importlib.import_module("torchvision.models.googlenet")
        m = G.GoogLeNet(aux_logits=True, transform_input=True, init_weights=False)
    else:
        m = getattr(torchvision.models, name)()
    randomise(m, i)
    st.save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, {tmp!r} + f"/{{name}}.safetensors")
    with torch.no_grad():
        t = torch.from_numpy(((x - MEAN) / STD).transpose(0, 3, 1, 2).copy())
        np.save({tmp!r} + f"/{{name}}_logits.npy", m.eval()(t).numpy())
"""


def torchvision_parity(x, args) -> list:
    import subprocess

    import keras

    import kerascnn
    from kerascnn import pretrained as W

    names = [n for n in args.torchvision_models.split(",") if n]
    np.save(Path(args.tmp) / "tv_images.npy", x.astype("float32"))
    code = _TORCH_SIDE.format(fixtures=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"),
                              images=str(Path(args.tmp) / "tv_images.npy"), names=names, tmp=str(args.tmp))
    subprocess.run([args.torchvision, "-c", code], check=True)
    rows = []
    for name in names:
        options = TORCHVISION[name]
        model = kerascnn.build(name, (args.size, args.size, 3), 1000, **options)
        model.layers[-1].activation = keras.activations.linear
        model, _, prep = W.load_pretrained(model, f"{args.tmp}/{name}.safetensors", name, options)
        mode = prep.mode
        a = np.load(Path(args.tmp) / f"{name}_logits.npy")
        b = model.predict(x, verbose=0, batch_size=8)
        agree = int((a.argmax(-1) == b.argmax(-1)).sum())
        rel = float(np.abs(a - b).max() / np.abs(a).max())
        opt = "".join(f" -o {k}={v}" for k, v in options.items())
        rows.append(f"| {name}{opt} | {mode} | {len(x)} | {agree}/{len(x)} | {rel:.1e} |")
    return rows


def _agree(probs, ref) -> tuple:
    """(top-1 agreements, top-5 set agreements) of two (N, K) score arrays."""
    a, b = np.argsort(-np.asarray(probs), 1), np.argsort(-np.asarray(ref), 1)
    return int((a[:, 0] == b[:, 0]).sum()), int(sum(set(x[:5]) == set(y[:5]) for x, y in zip(a, b)))


def photo_agreement(args) -> list:
    """Rows: family | model | kerascnn predict --weights | before issue 24, on the eight photos (logits
    compared: with random weights a full-size model's softmax saturates and ties its top-5 at 0)."""
    import keras

    from kerascnn import data as D
    from kerascnn import pretrained as P
    from kerascnn.evaluation import predict_probabilities
    from test_transforms import FIX, MODELS, write_photos
    from test_weights import _randomise, _save_legacy

    photos = write_photos(Path(args.tmp))
    if isinstance(photos, str):
        raise SystemExit(photos)
    names = sorted(photos)
    files = [photos[n] for n in names]
    rows = []

    def before(model, prep_mode):   # main before issue 24: the whole photo squashed (bilinear), the mode given
        x = D.load_image_files(files, (224, 224), 3)[0]
        if not isinstance(model, keras.Sequential):   # a keras.applications-family model keeps its own layer
            return predict_probabilities(model, x)
        layers = [layer for layer in model.layers if layer.name != "imagenet_preprocess"]
        inner = keras.Sequential([keras.Input((224, 224, 3)), *layers])
        return predict_probabilities(P.with_preprocessing(inner, prep_mode), x)

    for name, m in sorted(MODELS.items()):
        model, _, prep = P.build_pretrained(m["model"], m["options"], str(FIX / m["weights"]))
        model.layers[-1].activation = keras.activations.linear   # logits: a saturated softmax has ties at 0
        ref = np.array([m["photos"][n]["logits"] for n in names])
        new = predict_probabilities(model, prep.transform.load(files))
        old = before(model, "tf" if m["model"] == "googlenet" else "torch")
        opts = "".join(f" -o {k}={v:g}" if isinstance(v, float) else f" -o {k}={v}" for k, v in m["options"].items())
        rows.append(f"| {m['source']} | {m['model']}{opts} ({prep.transform.describe()}) | "
                    "{}/8, {}/8 | {}/8, {}/8 |".format(*_agree(new, ref), *_agree(old, ref)))
    for name in [n for n in args.keras_models.split(",") if n]:
        from kerascnn.pretrained.keras_apps import counterpart, keras_app, preprocessing_of

        ctor = counterpart(name)
        module = keras_app(name).module if keras_app(name) else {"VGG16": "vgg16", "VGG19": "vgg19"}[ctor]
        src = getattr(keras.applications, ctor)(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
        _randomise(src, 0)
        path = _save_legacy(src, Path(args.tmp) / "weights.bin")   # a name that is not a download's
        x = np.stack([keras.utils.img_to_array(keras.utils.load_img(f, target_size=(224, 224))) for f in files])
        ref = np.asarray(src(getattr(keras.applications, module).preprocess_input(x), training=False))
        del src
        model, _, prep = P.build_pretrained(name, {}, str(path))
        model.layers[-1].activation = keras.activations.linear
        new = predict_probabilities(model, prep.transform.load(files))
        # before: keras.applications-family models did not exist; vgg16/vgg19 got no preprocessing (file name)
        old = before(model, preprocessing_of(name) if keras_app(name) else None)
        rows.append(f"| keras.applications | {name} ({prep.transform.describe()}) | "
                    "{}/8, {}/8 | {}/8, {}/8 |".format(*_agree(new, ref), *_agree(old, ref)))
        path.unlink()
        del model
        keras.backend.clear_session()
    return rows


def _train_step(model, opt, x, y):
    import keras
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def throughput(name, args):
    import keras
    import tensorflow as tf

    import kerascnn
    from kerascnn.training import finetune

    options = APPS[name][2] if name in APPS else {}
    model = kerascnn.build(name, (args.size, args.size, 3), 10, **options)
    x = tf.random.uniform((args.batch, args.size, args.size, 3))
    y = tf.random.uniform((args.batch,), 0, 10, dtype=tf.int32)
    rows = []
    for phase in (1, 2):
        finetune.set_phase(model, phase, "all")
        opt = keras.optimizers.SGD(1e-3)
        opt.build(model.trainable_variables)

        step = _train_step(model, opt, x, y)
        step()  # trace
        t = time.perf_counter()
        for _ in range(args.steps):
            step()
        rows.append(args.steps * args.batch / (time.perf_counter() - t))
    return (f"| {name} {args.size}x{args.size} | {args.batch} | {rows[0]:.1f} | {rows[1]:.1f} | "
            f"{rows[0] / rows[1]:.2f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--images", default=None)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--torchvision", default=None, metavar="PYTHON",
                    help="a Python with torch + torchvision: also compare full-size torchvision models")
    ap.add_argument("--torchvision-models", default=",".join(TORCHVISION))
    ap.add_argument("--skip-keras", action="store_true", help="only the torchvision comparison")
    ap.add_argument("--photos", action="store_true", help="top-1/top-5 agreement with each source's pipeline on "
                                                          "the real photos of tests/fixtures/photos")
    ap.add_argument("--keras-models", default="vgg16,mobilenetv2,mobilenetv3small,efficientnetb0,densenet121,"
                                              "resnet50v2", help="with --photos: keras.applications models")
    args = ap.parse_args()
    from kerascnn.tfquiet import import_tensorflow

    import_tensorflow()
    x, what = _images(args)
    names = args.models.split(",")
    title = (f"\n### Pretrained weights: kerascnn vs keras.applications ({what}, {args.size}x{args.size}, CPU "
             f"{os.cpu_count()} cores)")
    lines = []
    if not args.skip_keras:
        lines += [title, "",
                  "| model | weights | images | same top-1 | max rel. diff |", "|---|---|---|---|---|"]
        lines += [parity(n, x, args) for n in names]
        lines += ["", "Fine-tuning throughput (train steps, images/s): backbone frozen vs unfrozen", "",
                  "| model | batch | frozen | unfrozen | speed-up |", "|---|---|---|---|---|"]
        lines += [throughput(n, args) for n in names]
    if args.photos:
        import platform

        lines += [(f"\n### Pretrained weights on real photos: top-1 and top-5 agreement with the source's own "
                   f"pipeline (8 photos: tests/fixtures/photos; {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} cores)"), "",
                  "| source | kerascnn model (evaluation transform) | top-1, top-5: kerascnn predict --weights | "
                  "before issue 24 |", "|---|---|---|---|"]
        lines += photo_agreement(args)
    if args.torchvision:
        lines += [(f"\n### Pretrained weights: kerascnn vs torchvision, full-size models, random weights and "
                   f"BatchNorm statistics ({what}, {args.size}x{args.size}, float32 both sides, CPU)"), "",
                  "| kerascnn model | preprocessing | images | same top-1 | max rel. diff |", "|---|---|---|---|---|"]
        lines += torchvision_parity(x, args)
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
