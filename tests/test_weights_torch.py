"""torchvision / timm checkpoints (issue 15): equal outputs, strict loading, full-size key shapes.

The fixture (``tests/fixtures/torchvision/``, made once by ``make_torchvision_fixture.py`` in an
environment with PyTorch; CI has none) holds reduced-width models built from torchvision's and
timm's own classes with random weights and BatchNorm statistics, one uint8 image, and their
logits computed in float64 from the same float32 weights and the same float32 normalised batch
kerascnn is fed here. kerascnn computes in float32, so the difference is kerascnn's float32
round-off alone (unit round-off u = 2**-24 = 6e-8; each layer adds a relative error of order
u * sqrt(fan-in) <= 6e-8 * 40 for fan-ins <= 1600, random in sign, over <= 60 layers: of order
1e-6 of the logits' scale, and measured at 1e-7..1e-6 below). The bound is the issue's 1e-5 of
the largest logit: ten times the estimate, while a wrong flatten order, transposed kernel,
epsilon or padding gives differences of order 1 (checked: the permutation test below).
"""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("safetensors")

import kerascnn
from kerascnn import pretrained as W
from kerascnn.pretrained import torchvision as TV

FIX = Path(__file__).parent / "fixtures" / "torchvision"
MANIFEST = json.loads((FIX / "manifest.json").read_text())
REL = 1e-5
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def refs():
    from safetensors.numpy import load_file

    return load_file(str(FIX / "inputs.safetensors"))


def _pixels(refs):
    """The fixture's batch on [0, 1]: the image and its mirror, float32 (as the generator)."""
    image = refs["image"]
    return np.stack([image, image[:, ::-1]]).astype(np.float32) / np.float32(255)


def _normalised(refs):
    return (_pixels(refs) - MEAN) / STD


def _build(name, classes=10):
    m = MANIFEST[name]
    return kerascnn.build(m["model"], (224, 224, 3), classes, **m["options"]), m


def _logits(model, x):
    model.layers[-1].activation = keras.activations.linear
    return np.asarray(model(x, training=False), np.float64)


def _rel_diff(got, ref):
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max()) / float(np.abs(ref).max())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_torchvision_safetensors_give_equal_logits(name, refs):
    model, m = _build(name)
    report = W.load_into(model, FIX / f"{name}.safetensors", options=m["options"], model_name=m["model"])
    assert report.fresh == [] and len(report.loaded) == len(W.weighted_layers(model))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    assert trainable == m["params"]     # torchvision's parameter count of the same model
    assert _rel_diff(_logits(model, _normalised(refs)), refs[name]) <= REL


def test_pth_state_dict_loads_like_its_safetensors(refs):
    pytest.importorskip("torch")
    model, m = _build("resnet18_small")
    W.load_into(model, FIX / "resnet18_small.pth", options=m["options"], model_name="resnet18")
    assert _rel_diff(_logits(model, _normalised(refs)), refs["resnet18_small"]) <= REL


def test_pth_without_torch_is_one_line(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(W.WeightsError, match=r"reading \.pth needs PyTorch: pip install 'kerascnn\[torch\]'"):
        TV.read_state_dict(FIX / "resnet18_small.pth")


def test_googlenet_imagenet_pipeline_is_tf_preprocessing(refs):
    """torchvision's GoogLeNet with ImageNet weights runs transform_input on the mean/std-normalised
    image: (x - 0.5) / 0.5 on [0, 1] pixels, kerascnn's ``tf`` preprocessing, the default for it."""
    model, m = _build("googlenet_small")
    W.load_into(model, FIX / "googlenet_small.safetensors", options=m["options"], model_name="googlenet")
    assert W.default_preprocessing("x.safetensors", "googlenet") == "tf"
    assert W.default_preprocessing("x.pth", "resnet18") == "torch"
    logits = _logits(model, _normalised(refs))
    model = W.with_preprocessing(model, "tf")
    got = np.asarray(model(_pixels(refs), training=False), np.float64)
    assert _rel_diff(got, refs["googlenet_transform_input"]) <= REL
    assert _rel_diff(logits, refs["googlenet_transform_input"]) > 0.01  # transform_input matters


def test_torch_preprocessing_layer_is_torchvision_normalisation(refs):
    model, m = _build("resnet18_small")
    W.load_into(model, FIX / "resnet18_small.safetensors", options=m["options"], model_name="resnet18")
    _logits(model, _normalised(refs))
    model = W.with_preprocessing(model, "torch")
    got = np.asarray(model(_pixels(refs), training=False), np.float64)
    assert _rel_diff(got, refs["resnet18_small"]) <= REL


def test_flatten_order_matters(refs):
    """Loading fc1 without the (C,H,W) -> (H,W,C) row permutation gives another function."""
    model, m = _build("vgg11_small")
    path = FIX / "vgg11_small.safetensors"
    W.load_into(model, path, options=m["options"], model_name="vgg11")
    fc1 = model.get_layer("fc1")
    w, b = fc1.get_weights()
    sd = TV.read_state_dict(path)
    np.testing.assert_array_equal(b, sd["classifier.0.bias"])
    assert not np.array_equal(w, sd["classifier.0.weight"].T)   # rows permuted
    fc1.set_weights([sd["classifier.0.weight"].T, b])
    assert _rel_diff(_logits(model, _normalised(refs)), refs["vgg11_small"]) > 0.01


def test_other_classes_get_a_fresh_head(refs):
    model, m = _build("resnet18_small", classes=3)
    report = W.load_into(model, FIX / "resnet18_small.safetensors", options=m["options"], model_name="resnet18")
    assert report.fresh == ["predictions"] and len(report.loaded) == len(W.weighted_layers(model)) - 1
    assert "new (not from the file): predictions" in report.line("f")


def test_mismatches_are_one_line_and_change_nothing(tmp_path):
    from safetensors.numpy import save_file

    sd = TV.read_state_dict(FIX / "resnet18_small.safetensors")
    model, _ = _build("resnet18_small")
    before = [w.copy() for w in model.get_weights()]
    cases = {
        "missing": ({k: v for k, v in sd.items() if not k.startswith("layer3.1.bn2")}, r"has no layer3\.1\.bn2\.weight"),
        "unknown": ({**sd, "layer9.0.conv1.weight": np.zeros((2, 2, 3, 3), np.float32)},
                    r"tensors layer9\.0\.conv1\.weight are not used by resnet18"),
        "shape": ({**sd, "layer1.0.conv1.weight": np.zeros((2, 2, 1, 1), np.float32)},
                  r"layer1\.0\.conv1\.weight has shape \(2, 2, 1, 1\).*needs \(2, 2, 3, 3\)"),
        "timm": ({"stem.0.weight": np.zeros(1, np.float32), "stages.0.0.conv1.weight": np.zeros(1, np.float32)},
                 r"timm.safetensors is not a torchvision .* timm checkpoints load only where they use torchvision's "
                 r"ResNet names"),
    }
    for what, (bad, pattern) in cases.items():
        path = tmp_path / f"{what}.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in bad.items()}, str(path))
        with pytest.raises(W.WeightsError, match=pattern):
            W.load_into(model, path, model_name="resnet18")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    vgg = kerascnn.build("vgg11", (224, 224, 3), 10, width=1 / 32, hidden=16)
    with pytest.raises(W.WeightsError, match="holds a torchvision resnet state_dict; vgg11 is not a resnet"):
        W.load_into(vgg, FIX / "resnet18_small.safetensors")


def test_variants_are_named_in_one_line():
    paper = kerascnn.build("googlenet", (224, 224, 3), 10, width=1 / 16)
    with pytest.raises(W.WeightsError, match="build it with -o variant=torchvision"):
        W.load_into(paper, FIX / "googlenet_small.safetensors", options={"width": 1 / 16}, model_name="googlenet")
    with pytest.raises(W.WeightsError, match="needs -o variant=torchvision"):   # options unknown: from the layers
        W.load_into(paper, FIX / "googlenet_small.safetensors", model_name="googlenet")
    keras_v1 = kerascnn.build("resnet50", (64, 64, 3), 10, variant="keras", width=1 / 32)
    with pytest.raises(W.WeightsError, match="variant=torchvision"):
        W.load_into(keras_v1, FIX / "resnet50_small.safetensors", options={"variant": "keras"}, model_name="resnet50")


FULL = {"vgg16": ("vgg16", {}), "vgg16_bn": ("vgg16_bn", {}), "resnet18": ("resnet18", {}),
        "resnet34": ("resnet34", {}), "resnet50": ("resnet50", {}), "alexnet": ("alexnet", {"variant": "torchvision"}),
        "googlenet": ("googlenet", {"variant": "torchvision"}), "timm_resnet50": ("resnet50", {})}


def test_full_size_torchvision_state_dicts_match_kerascnn_exactly():
    """Key -> shape of the real torchvision (and timm resnet50) state_dicts, recorded by the generator,
    against kerascnn's full-size models at 224x224x3, 1000 classes: every weight gets exactly one
    tensor of its shape (a dry run: shapes only, no array is read or converted)."""
    with gzip.open(FIX / "full_keys.json.gz", "rt") as f:
        full = json.load(f)
    for src, (name, options) in FULL.items():
        shapes = {k: np.broadcast_to(np.float32(0), tuple(v)) for k, v in full[src].items()}
        model = kerascnn.build(name, (224, 224, 3), 1000, **options)
        report = TV.load_state_dict(model, src, shapes, name, options, dry_run=True)
        assert report.fresh == [] and len(report.loaded) == len(W.weighted_layers(model)), src
        assert sum(int(np.prod(s)) for k, s in full[src].items() if not k.startswith(("aux", "num"))
                   and "running" not in k and "num_batches" not in k) == int(
            sum(np.prod(w.shape) for w in model.trainable_weights)), src
        if src == "googlenet":
            assert report.ignored == ["aux1 (auxiliary head)", "aux2 (auxiliary head)"]
        del model
    with pytest.raises(W.WeightsError, match=r"keys conv1\.0\.weight.*timm checkpoints load only"):
        TV.layout_of(full["timm_resnet50d"])


def _photos(root, size=32, per_class=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            a[..., 2 * c] //= 4
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def test_fine_tuning_starts_from_a_torchvision_file(tmp_path, invoke):
    """train -> the file's (converted) weights, a new 2-class head, torchvision preprocessing inside the
    model and in config.json; SGD at lr 1e-9 keeps the backbone at the file's values."""
    import shutil

    path = shutil.copy(FIX / "resnet18_small.safetensors", tmp_path / "resnet18.safetensors")
    run = tmp_path / "run"
    r = invoke("train", "resnet18", "-o", "width=0.03125", "--weights", path, "--data", _photos(tmp_path / "photos"),
               "--image-size", "32", "--freeze-epochs", "1", "--epochs", "2", "--batch-size", "4",
               "--optimizer", "sgd", "--lr", "1e-9", "--precision", "float32", "--run-dir", run, "-q")
    assert r.exit_code == 0, r.output
    assert "loaded 40 layers" in r.output and "new (not from the file): predictions" in r.output
    assert "preprocessing torch" in r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["weights_preprocessing"] == "torch" and cfg["finetune"]["phase1_trainable"] == ["predictions"]
    model = keras.models.load_model(run / "last.keras")
    assert model.get_layer("imagenet_preprocess").mode == "torch"
    sd = TV.read_state_dict(path)
    np.testing.assert_allclose(model.get_layer("conv1_conv").get_weights()[0],
                               sd["conv1.weight"].transpose(2, 3, 1, 0), atol=1e-6)
    bn = model.get_layer("conv1_bn")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), sd["bn1.running_var"])  # inference-mode BN


def test_train_with_a_torchvision_file_of_another_model_is_one_line(tmp_path, invoke):
    run = tmp_path / "run"
    r = invoke("train", "googlenet", "--weights", FIX / "googlenet_small.safetensors", "--data",
               _photos(tmp_path / "photos"), "--image-size", "32", "--epochs", "1", "--batch-size", "4",
               "--run-dir", run, "-q")
    assert r.exit_code == 1 and "build it with -o variant=torchvision" in r.output
    assert r.output.strip().splitlines()[-1].startswith("Error:") and "Traceback" not in r.output
    assert not run.exists()


def test_imagenet_for_a_torchvision_only_model_names_the_file():
    with pytest.raises(W.WeightsError, match=r"torchvision's: --weights resnet18-f37072fd\.pth \(from "
                                             r"https://download\.pytorch\.org/models/resnet18-f37072fd\.pth\)"):
        W.imagenet_file("resnet18")


def test_vgg_at_another_input_size_keeps_the_backbone_and_starts_a_new_dense_head():
    """torchvision's VGG adapts to any input with AdaptiveAvgPool2d((7, 7)); kerascnn's flattens the real
    map, so at 112x112 fc1 has other inputs: the convolutions load, fc1/fc2/predictions start fresh."""
    model = kerascnn.build("vgg11", (112, 112, 3), 10, width=1 / 32, hidden=16)
    path = FIX / "vgg11_small.safetensors"
    report = W.load_into(model, path, model_name="vgg11")
    assert report.fresh == ["fc1", "fc2", "predictions"] and len(report.loaded) == 8
    sd = TV.read_state_dict(path)
    np.testing.assert_array_equal(model.get_layer("block5_conv2").get_weights()[0],
                                  sd["features.18.weight"].transpose(2, 3, 1, 0))


def test_pth_training_checkpoint_wrapper_is_unwrapped(tmp_path):
    torch = pytest.importorskip("torch")
    sd = TV.read_state_dict(FIX / "resnet18_small.safetensors")
    torch.save({"epoch": 3, "state_dict": {k: torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "ckpt.pt")
    got = TV.read_state_dict(tmp_path / "ckpt.pt")
    assert sorted(got) == sorted(sd) and all(np.array_equal(got[k], sd[k]) for k in sd)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")   # a pickled module: refused
    with pytest.raises(W.WeightsError, match="holds objects other than tensors|not a PyTorch state_dict"):
        TV.read_state_dict(tmp_path / "module.pth")


def test_alexnet_torchvision_adaptive_pool_where_it_is_a_plain_layer():
    from kerascnn.registry import get_entry

    entry = get_entry("alexnet")
    names = lambda shape: [s.name for s in entry.specs(shape, 10, variant="torchvision")]
    assert "avgpool" not in names((224, 224, 3))               # 6x6 map: the identity
    avg = entry.analyze((416, 416, 3), 10, variant="torchvision").layers
    assert [tuple(l.output_shape) for l in avg if l.name in ("pool5", "avgpool")] == [(12, 12, 256), (6, 6, 256)]
    assert "avgpool" not in names((128, 128, 3))               # 3x3 map: flattened as it is
    model = kerascnn.build("alexnet", (128, 128, 3), 10, variant="torchvision", width=1 / 16, hidden=16)
    report = W.load_into(model, FIX / "alexnet_small.safetensors", options={"variant": "torchvision"},
                         model_name="alexnet")
    assert report.fresh == ["fc6", "fc7", "fc8"] and report.loaded == ["conv1", "conv2", "conv3", "conv4", "conv5"]


# ------------------------------------------------------------------ issue 24: the one-line messages

def test_a_file_of_another_depth_is_blamed_on_depth():
    r18 = kerascnn.build("resnet18", (64, 64, 3), 10, width=1 / 32)
    with pytest.raises(W.WeightsError, match=r"resnet50_small.safetensors is a ResNet of bottleneck blocks \(3, 4, 6, 3\) "
                                             r"\(resnet50\); resnet18 has basic blocks \(2, 2, 2, 2\): another depth "
                                             r"\(use resnet50\)"):
        W.load_into(r18, FIX / "resnet50_small.safetensors", model_name="resnet18")
    vgg11 = kerascnn.build("vgg11", (224, 224, 3), 10, width=1 / 32, hidden=16)
    with pytest.raises(W.WeightsError, match=r"is vgg16_bn \(13 convolutions, BatchNorm\); vgg11 is another depth"):
        W.load_into(vgg11, FIX / "vgg16_bn_small.safetensors", model_name="vgg11")


def test_torch_warnings_do_not_break_the_one_line_error(monkeypatch, tmp_path, invoke):
    """torch.load warns (a TorchScript archive, a legacy pickle) before it refuses: the user sees one
    Error line, no warning text, whether or not PyTorch is installed here (a stand-in torch)."""
    import pickle
    import sys
    import types
    import warnings

    fake = types.ModuleType("torch")

    def load(*args, **kwargs):
        warnings.warn("'torch.load' received a zip file that looks like a TorchScript archive", UserWarning)
        raise pickle.UnpicklingError("Weights only load failed. ... do those steps only if you trust the source")

    fake.load, fake.Tensor = load, type("Tensor", (), {})
    monkeypatch.setitem(sys.modules, "torch", fake)
    path = tmp_path / "legacy.pth"
    path.write_bytes(b"\x80\x02junk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(W.WeightsError, match=r"cannot read .*legacy.pth as a PyTorch state_dict: not a torch "
                                                 r"file, or it holds objects other than tensors"):
            TV.read_state_dict(path)
    assert not caught
    r = invoke("summary", "resnet18", "--weights", path)
    assert r.exit_code == 1 and r.output.count("\n") == 1 and r.output.startswith("Error: cannot read"), r.output


def test_alexnet_torchvision_runs_at_its_sources_224():
    from kerascnn.registry import get_entry, model_ref

    assert get_entry("alexnet").cfg.natural_input({"variant": "torchvision"}) == (224, 224, 3)
    assert model_ref("alexnet", ["variant=torchvision"]).input_shape == (224, 224, 3)
    assert model_ref("alexnet").input_shape == (227, 227, 3)   # the paper's stays the paper's
