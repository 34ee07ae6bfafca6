"""Pretrained weights predict what their source predicts, on real photos (issue 24).

The photos are the ones bundled with scikit-learn and matplotlib (both kerascnn dependencies),
whole and cropped to other aspect ratios and sizes (``tests/fixtures/make_photo_fixture.py``
lists them and made the fixture with PyTorch: CI needs none). For each torchvision / timm
fixture model the fixture keeps the SHA-256 of the 8-bit crop the source's own pipeline makes
and the logits of its whole pipeline; kerascnn must make the same pixels (bit for bit) and, on
them, the same top-1 and top-5 classes with probabilities equal to float32 round-off. Keras's own
pipeline (``keras.utils.load_img`` + ``preprocess_input``) is run here directly.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

FIX = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIX / "photos" / "manifest.json").read_text())
MODELS = MANIFEST["models"]


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _source_dirs():
    import matplotlib
    import sklearn.datasets

    return [Path(sklearn.datasets.__file__).parent / "images", Path(matplotlib.get_data_path()) / "sample_data"]


def write_photos(out: Path) -> dict:
    """The eight photos as PNG files in ``out``, written from the same decoded pixels as the generator's
    ({name: path}); a str saying why not where the sources are missing or decode otherwise."""
    from PIL import Image

    paths = {}
    for name, p in MANIFEST["photos"].items():
        src = next((d / p["source"] for d in _source_dirs() if (d / p["source"]).is_file()), None)
        if src is None:
            return f"{p['source']} is not installed here"
        im = Image.open(src).convert("RGB")
        if _sha(np.asarray(im)) != p["source_sha256"]:
            return f"this Pillow decodes {p['source']} to other pixels than the fixture's"
        if p["box"]:
            im = im.crop(tuple(p["box"]))
        im.convert(p["mode"]).save(out / f"{name}.png")
        paths[name] = out / f"{name}.png"
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    paths = write_photos(tmp_path_factory.mktemp("photos"))
    if isinstance(paths, str):
        pytest.skip(paths)
    return paths


def _transform(m):
    from kerascnn.pretrained import transforms as T
    from kerascnn.pretrained.torchvision import timm_config

    if m["source"] == "torchvision":
        return T.torchvision((224, 224))
    return T.timm((224, 224), timm_config(FIX / m["weights"]))


def test_the_pixels_are_the_sources_bit_for_bit(photos):
    """Resize + centre crop as torchvision's ImageClassification and timm's create_transform do them
    (PIL, antialiased; shorter side 256 / floor(224 / crop_pct); squash), on every photo: the same bytes."""
    from kerascnn.data.images import _read_image

    for name, m in MODELS.items():
        t = _transform(m)
        for photo, ref in m["photos"].items():
            assert _sha(t.apply(_read_image(photos[photo]))) == ref["pixels_sha256"], (name, photo, t)
    a1 = _transform(MODELS["timm_resnet18_a1"])
    assert a1.describe() == "shorter side to 235 (bicubic, PIL), centre crop 224x224"
    assert _transform(MODELS["resnet18_small"]).describe() == "shorter side to 256 (bilinear, PIL), centre crop 224x224"


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _agreement(rows, m):
    """(top-1 agreements, top-5 set agreements, max |probability difference|) against the fixture."""
    top1 = top5 = 0
    worst = 0.0
    for row in rows:
        ref = np.asarray(m["photos"][Path(row["image"]).stem]["logits"])
        order = np.argsort(-ref)
        got = [t["index"] for t in row["top"]]
        top1 += got[0] == order[0]
        top5 += set(got[:5]) == set(order[:5])
        p = _softmax(ref)
        worst = max(worst, max(abs(t["probability"] - p[t["index"]]) for t in row["top"]))
    return top1, top5, worst


def _options(m):
    return [a for k, v in m["options"].items() for a in ("-o", f"{k}={v}")]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predict_gives_the_sources_top1_and_top5(name, photos, invoke):
    """The whole chain: --weights decides classes, transform and normalisation from the file; 8/8 top-1
    and 8/8 top-5 sets, probabilities to 1e-5 (float32 round-off on identical pixels)."""
    m = MODELS[name]
    r = invoke("predict", m["model"], *_options(m), "--weights", FIX / m["weights"], *photos.values(),
               "--top-k", "5", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 8 and all(len(row["top"]) == 5 for row in rows)
    top1, top5, worst = _agreement(rows, m)
    assert (top1, top5) == (8, 8) and worst < 1e-5, (top1, top5, worst)
    assert rows[0]["preprocessing"].startswith(f"{m['source']} (")


def test_predict_says_which_preprocessing_ran(photos, invoke):
    m = MODELS["timm_resnet18_squash"]
    r = invoke("predict", m["model"], *_options(m), "--weights", FIX / m["weights"], photos["china"])
    assert r.exit_code == 0, r.output
    line = r.output.splitlines()[0]
    assert line.startswith("preprocessing: timm (a resnet state_dict with timm's pretrained_cfg in ")
    assert line.endswith("resize to 248x248 (bilinear, PIL), centre crop 224x224; in the model: x/255, "
                         "(x - mean)/std (mean (0.5, 0.5, 0.5), std (0.25, 0.25, 0.25))")


def test_evaluate_applies_the_transform_to_each_image_as_decoded(photos, tmp_path, invoke):
    """A folder of the photos (two classes, train/ and test/): evaluate's loss and accuracy are the source
    pipeline's, although the photos have eight different sizes."""
    import shutil

    m = MODELS["resnet18_small"]
    names = sorted(photos)
    labels = {p: i % 2 for i, p in enumerate(names)}
    for split in ("train", "test"):
        for p in names:
            d = tmp_path / "data" / split / ("ab"[labels[p]])
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(photos[p], d / f"{p}.png")
    r = invoke("evaluate", m["model"], *_options(m), "--weights", FIX / m["weights"], "--data", tmp_path / "data",
               "--out", tmp_path / "eval", "--format", "json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    probs = {p: _softmax(m["photos"][p]["logits"]) for p in names}
    loss = float(np.mean([-np.log(np.clip(probs[p][labels[p]], 1e-7, 1)) for p in names]))  # evaluate's clip
    accuracy = float(np.mean([probs[p].argmax() == labels[p] for p in names]))
    assert got["images"] == 8 and got["accuracy"] == accuracy
    assert got["loss"] == pytest.approx(loss, rel=1e-5)
    assert got["preprocessing"].startswith("torchvision (a torchvision resnet state_dict)")


def test_export_records_the_transform_and_predict_applies_it(photos, tmp_path, invoke):
    """The normalisation is in the SavedModel; the resize and crop are not (PIL), so kerascnn.json records
    them and `kerascnn predict EXPORT` applies them: the export predicts what --weights predicts."""
    m = MODELS["vgg11_small"]
    r = invoke("export", m["model"], *_options(m), "--weights", FIX / m["weights"], "--out", tmp_path / "sm")
    assert r.exit_code == 0, r.output
    assert "in the graph: x/255, (x - mean)/std" in r.output
    assert "not in the graph: shorter side to 256 (bilinear, PIL), centre crop 224x224" in r.output
    meta = json.loads((tmp_path / "sm" / "kerascnn.json").read_text())
    assert meta["preprocessing"]["outside_graph"] == {"size": [224, 224], "resize": 256, "interpolation": "bilinear",
                                                      "source": "torchvision"}
    r = invoke("predict", tmp_path / "sm", *photos.values(), "--top-k", "5", "--format", "json")
    assert r.exit_code == 0, r.output
    top1, top5, worst = _agreement(json.loads(r.output), m)
    assert (top1, top5) == (8, 8) and worst < 1e-5


def test_keras_applications_pipeline_is_kerass_own(photos, tmp_path, invoke):
    """keras.applications weights: Keras's own example pipeline, keras.utils.load_img(target_size) (the
    whole photo, nearest neighbour) + preprocess_input. The file's name says nothing ('weights.bin'):
    what it is comes from its bytes, and which preprocessing from the model."""
    keras = pytest.importorskip("keras")
    from test_weights import _randomise, _save_legacy

    ref = keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3), classes=10,
                                              classifier_activation=None)
    _randomise(ref, 3)
    path = _save_legacy(ref, tmp_path / "weights.bin")
    files = list(photos.values())
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(f, target_size=(224, 224))) for f in files])
    logits = ref.predict(keras.applications.mobilenet_v3.preprocess_input(x), verbose=0)
    r = invoke("predict", "mobilenetv3small", "--weights", path, *files, "--top-k", "5", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    m = {"photos": {f.stem: {"logits": z} for f, z in zip(files, logits)}}
    top1, top5, worst = _agreement(rows, m)
    assert (top1, top5) == (8, 8) and worst < 1e-5
    assert rows[0]["preprocessing"].startswith("keras.applications (a Keras weight file, and mobilenetv3small is "
                                               "keras.applications.MobileNetV3Small layer for layer): whole image "
                                               "to 224x224 (nearest, PIL)")
