"""`kerascnn export`: a verified SavedModel (or ONNX / LiteRT) that needs no kerascnn to run.

SavedModel: ``keras.export.ExportArchive`` with explicit signatures so the names
are stable (Keras's automatic input names change with what the process built
before): ``serving_default`` takes ``images`` as uint8 (None, H, W, C) at the
trained size and returns ``probabilities`` float32 (None, K); ``serve_float``
takes float32 raw pixel values (0..255 scale). Preprocessing is inside: raw
pixels are cast and scaled by 1/255 to [0, 1], the range every kerascnn model
is trained on (the data pipeline maps uint8 and 0..255 data there, and leaves
float data already in [0, 1] as it is). The class names travel in
``assets/class_names.json`` and ``kerascnn.json``.

Precision: exports compute in float32. A model trained with a mixed_bfloat16 or
mixed_float16 policy (kerascnn picks mixed_bfloat16 on bf16-capable CPUs and GPUs) keeps
float32 master weights; the export rebuilds it with a float32 policy, copies those weights,
checks the float32 copy against the trained model (same classes, max |diff| reported as
``precision_diff``), and then verifies the SavedModel against the float32 copy to 1e-5.
bf16 kernels differ between eager and graph execution by ~1e-2 on probabilities, so a
bf16 export could not be verified tightly, and float32 serves on every CPU.

Crash safety: the export is written into a hidden ``.NAME.partial-*`` sibling,
reloaded with ``tf.saved_model.load`` and checked against the Keras model, and
only then renamed onto the target. An existing target is replaced only with
``force=True`` and only when it is a previous kerascnn export (``is_kerascnn_export``: its
``kerascnn.json`` carries ``"format": EXPORT_FORMAT`` and the folder holds nothing but what an
export writes); a run directory, a folder of other files or a plain file is refused in one line
naming what is there. The old tree is moved aside first and deleted after the rename. Exported
folders get normal permissions (0755 / 0644 under the usual umask).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kerascnn import fsutil
from kerascnn.errors import ConfigError, ExportError, first_line

TOLERANCE = 1e-5        # float32 models: the export must match the Keras model to this (max |diff|)
LOW_PRECISION_TOLERANCE = 1e-2  # mixed_bfloat16/float16 models (bf16 keeps ~3 significant digits)


def tolerance_for(model) -> float:
    """1e-5 for float32 models; 1e-2 when any layer computes in bfloat16/float16 (mixed precision)."""
    low = any(getattr(getattr(l, "dtype_policy", None), "compute_dtype", "float32") in ("bfloat16", "float16")
              for l in model._flatten_layers(include_self=False))
    return LOW_PRECISION_TOLERANCE if low else TOLERANCE


def float32_copy(model):
    """The same architecture and weights with every mixed-precision policy replaced by float32."""
    import keras

    config = keras.saving.serialize_keras_object(model)

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "dtype" and isinstance(value, str) and value.startswith("mixed_"):
                    node[key] = "float32"
                elif (key == "config" and node.get("class_name") == "DTypePolicy" and isinstance(value, dict)
                      and str(value.get("name", "")).startswith("mixed_")):
                    value["name"] = "float32"
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = keras.saving.deserialize_keras_object(config)
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def _agree(got, expected, tol) -> tuple[float, bool]:
    """Max |diff| and whether the predicted classes agree (rows whose top-2 margin exceeds 2*tol)."""
    diff = float(np.max(np.abs(got - expected)))
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
    same = bool(np.array_equal(got.argmax(1)[clear], expected.argmax(1)[clear]))
    return diff, same
RAW_PIXEL_SCALE = 1.0 / 255.0  # raw 0..255 pixels -> the [0, 1] range every model is trained on
EXPORT_FORMAT = "kerascnn-savedmodel/1"  # the marker in kerascnn.json that says "kerascnn wrote this folder"
EXPORT_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra", "kerascnn.json"}


def _listing(names: list, limit: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(n[:60] for n in names[:limit]) + more


def not_replaceable(target: Path) -> str | None:
    """None when ``target`` is a previous kerascnn export that ``--force`` may replace; else one
    line saying what is there. kerascnn must prove it wrote every file: an export lists its files
    with sizes and SHA-256 in ``kerascnn.json`` (``manifest``), and anything else inside (a file
    added under ``assets/`` or any subfolder, a changed file, a link) keeps the folder."""
    from kerascnn.prediction import read_export_marker

    hint = "--force replaces only a previous kerascnn export; choose another --out"
    if target.is_symlink():
        return f"{target} is a symbolic link, not a kerascnn export; {hint}"
    if not target.is_dir():
        return f"{target} is a file, not a kerascnn export; {hint}"
    try:
        names = [p.name for p in target.iterdir()]
    except OSError as e:
        return f"{target} cannot be listed ({e.strerror}); {hint}"
    if (target / "config.json").is_file():
        return f"{target} is a kerascnn run directory ({_listing(names)}), not an export; {hint}"
    marker = read_export_marker(target)
    if marker is None:
        what = f"it holds {_listing(names)}" if names else "it is an empty folder without the marker"
        return f"{target} is not a kerascnn export (no kerascnn.json marker; {what}); {hint}"
    foreign = [n for n in names if n not in EXPORT_ENTRIES]
    if foreign:
        return f"{target} holds files that are not part of a kerascnn export ({_listing(foreign)}); {hint}"
    problem = unproven_entry(target, marker.get(MANIFEST_KEY))
    return f"{target} {problem}; {hint}" if problem else None


MANIFEST_KEY = "manifest"   # kerascnn.json: {"files": {relative path: [size, sha256]}, "dirs": [...]}
# exports written before the manifest: only the files a SavedModel export holds, by name
LEGACY_FILES = (r"saved_model\.pb|fingerprint\.pb|kerascnn\.json|assets/class_names\.json|"
                r"variables/variables\.index|variables/variables\.data-[0-9]{5}-of-[0-9]{5}")
LEGACY_DIRS = {"variables", "assets", "assets.extra"}


def _entries(root: Path) -> list:
    """(relative posix path, os.DirEntry) of everything under ``root``; links are not followed."""
    import os

    out, stack = [], [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                out.append((Path(e.path).relative_to(root).as_posix(), e))
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
    return sorted(out, key=lambda t: t[0])


def _sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(root: Path) -> dict:
    """{relative path: [size, sha256]} of every file under ``root`` but ``kerascnn.json`` (which
    carries it), plus ``"dirs"``: the folders; what ``unproven_entry`` checks before --force."""
    files, dirs = {}, []
    for rel, e in _entries(root):
        if e.is_dir(follow_symlinks=False):
            dirs.append(rel)
        elif rel != "kerascnn.json":
            files[rel] = [e.stat(follow_symlinks=False).st_size, _sha256(e.path)]
    return {"dirs": dirs, "files": files}


def unproven_entry(root: Path, listed: dict | None) -> str | None:
    """None when every entry under ``root`` is one kerascnn wrote (``listed``: the marker's
    manifest; None for an export written before manifests: the SavedModel file names only);
    else what is there ("holds assets/mine.txt, which kerascnn did not write")."""
    import re

    try:
        entries = _entries(root)
    except OSError as e:
        return f"cannot be listed ({e.strerror})"
    files = listed.get("files", {}) if isinstance(listed, dict) else None
    dirs = set(listed.get("dirs", [])) if isinstance(listed, dict) else LEGACY_DIRS
    to_hash = []
    for rel, e in entries:
        if e.is_symlink():
            return f"holds a symbolic link {rel[:80]}, which kerascnn did not write"
        if e.is_dir(follow_symlinks=False):
            if rel not in dirs:
                return f"holds a folder {rel[:80]}, which kerascnn did not write"
            continue
        if not e.is_file(follow_symlinks=False):
            return f"holds {rel[:80]}, which is not a regular file"
        if rel == "kerascnn.json":
            continue
        if files is None:
            if not re.fullmatch(LEGACY_FILES, rel):
                return f"holds {rel[:80]}, which kerascnn did not write"
            continue
        if rel not in files:
            return f"holds {rel[:80]}, which kerascnn did not write"
        size, digest = files[rel]
        if e.stat(follow_symlinks=False).st_size != size:
            return f"holds {rel[:80]}, changed since kerascnn wrote it (size)"
        to_hash.append((rel, e.path, digest))
    for rel, path, digest in to_hash:   # names and sizes first, content last
        if _sha256(path) != digest:
            return f"holds {rel[:80]}, changed since kerascnn wrote it (content)"
    return None


def recover(target: Path) -> list:
    """Put back an export that a crashed ``export --force`` moved aside (only on a platform
    without an atomic exchange; ``fsutil.recover_replaced``); [(what, path)] done."""
    return fsutil.recover_replaced(Path(target), owned=lambda p: not_replaceable(p) is None)


# ONNX / LiteRT: one file, proven by a hidden sidecar beside it with its size and SHA-256
def sidecar(path: Path) -> Path:
    return path.parent / f".{path.name}.kerascnn.json"


def file_not_replaceable(path: Path, fmt: str) -> str | None:
    """None when ``path`` is a file kerascnn exported (its sidecar lists its size and SHA-256);
    else one line saying why ``--force`` leaves it."""
    import os
    import stat

    hint = f"--force replaces only a previous kerascnn {fmt} export; choose another --out"
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path} cannot be read ({e.strerror}); {hint}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a plain file; {hint}"
    try:
        side = sidecar(path)
        meta = json.loads(side.read_text()) if side.is_file() and side.stat().st_size < 4096 else None
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != f"kerascnn-{fmt}/1":
        return f"{path} was not written by kerascnn export (no {sidecar(path).name} beside it); {hint}"
    if st.st_nlink != 1 or st.st_size not in meta.get("sizes", []) or _sha256(path) not in meta.get("sha256", []):
        return f"{path} changed since kerascnn wrote it; {hint}"
    return None


def commit_file(tmp: Path, path: Path, fmt: str, force: bool) -> None:
    """Rename the verified ``tmp`` onto ``path`` with its sidecar: the sidecar lists the old and
    the new file first (a crash in between leaves a file the sidecar still proves), then the new
    one only."""
    import os

    tmp, path = Path(tmp), Path(path)
    if os.path.lexists(path):
        if not force:
            raise ConfigError(f"{path} already exists; pass --force to replace it")
        reason = file_not_replaceable(path, fmt)
        if reason:
            raise ConfigError(reason)
        old = json.loads(sidecar(path).read_text())
    else:
        old = {"sizes": [], "sha256": []}
    new = {"size": tmp.stat().st_size, "sha256": _sha256(tmp)}
    both = {"format": f"kerascnn-{fmt}/1", "file": path.name, "sizes": old["sizes"][-1:] + [new["size"]],
            "sha256": old["sha256"][-1:] + [new["sha256"]]}
    fsutil.atomic_write_json(sidecar(path), both)
    os.replace(tmp, path)
    fsutil.atomic_write_json(sidecar(path), {"format": both["format"], "file": path.name,
                                             "sizes": [new["size"]], "sha256": [new["sha256"]]})


def _probe_batch(shape, n=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + tuple(shape), dtype=np.uint8)


def export_savedmodel(model, info, target: Path, force: bool = False, preprocessing: dict | None = None) -> dict:
    import keras
    import tensorflow as tf

    h, w, c = (int(v) for v in model.input_shape[1:])
    k = int(model.output_shape[-1])
    scale = RAW_PIXEL_SCALE
    names = list(info.class_names) if len(info.class_names) == k else [str(i) for i in range(k)]

    staging = fsutil.partial_dir(target)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)

        def _serve(x):
            return {"probabilities": tf.cast(model(tf.cast(x, tf.float32) * scale, training=False), tf.float32)}

        archive.add_endpoint("serving_default", _serve,
                             input_signature=[tf.TensorSpec([None, h, w, c], tf.uint8, name="images")])
        archive.add_endpoint("serve_float", _serve,
                             input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")])
        archive.write_out(str(staging), verbose=False)
        meta = {"format": EXPORT_FORMAT, "model": info.model_name, "input_shape": [h, w, c], "num_classes": k,
                "class_names": names, "pixel_scale": scale,
                "input": "images: uint8 (serving_default) or float32 0..255 (serve_float)",
                "output": "probabilities: float32 (N, K)"}
        if preprocessing:
            meta["preprocessing"] = preprocessing
        (staging / "assets").mkdir(exist_ok=True)
        (staging / "assets" / "class_names.json").write_text(json.dumps(names))
        (staging / "kerascnn.json").write_text(json.dumps(meta, indent=2))
        # verify before anything is renamed into place
        probe = _probe_batch((h, w, c))
        tol = tolerance_for(model)
        expected = np.asarray(model(probe.astype(np.float32) * scale, training=False), np.float32)
        loaded = tf.saved_model.load(str(staging))
        got = loaded.signatures["serving_default"](images=tf.constant(probe))["probabilities"].numpy()
        diff, same = _agree(got, expected, tol)
        if diff > tol or not same:
            raise ExportError(f"{target}: the reloaded export disagrees with the Keras model "
                              f"(max |diff| {diff:.3g} > {tol:g} or different classes)")
        got1 = loaded.signatures["serve_float"](images=tf.constant(probe[:1].astype(np.float32)))["probabilities"]
        del loaded
        meta[MANIFEST_KEY] = manifest(staging)      # the proof that kerascnn wrote every file (--force checks it)
        (staging / "kerascnn.json").write_text(json.dumps(meta, indent=2))
        fsutil.normal_permissions(staging)
        fsutil.commit_dir(staging, target, force=force, replaceable=not_replaceable)
    except FileExistsError:
        raise ConfigError(f"{target} already exists; pass --force to replace it (the old export is kept "
                          f"until the new one is complete)") from None
    except PermissionError as e:
        if e.errno is not None:
            raise
        raise ConfigError(str(e)) from None
    except Exception as e:
        err = fsutil.write_error(target, e)
        if err is None:
            raise
        raise err from None
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return {"path": str(target), "format": "savedmodel", "max_abs_diff": diff,
            "batch1_diff": float(np.max(np.abs(got1.numpy() - expected[:1]))), "tolerance": tol,
            "signature": f"serving_default(images: uint8[None,{h},{w},{c}]) -> probabilities: float32[None,{k}]",
            "class_names": names}


def _preprocessing_record(prep) -> dict:
    """kerascnn.json's ``preprocessing``: what is in the graph (the normalisation) and what is not (the
    source's resize and crop: PIL, done by ``kerascnn predict`` from this record, or by the caller)."""
    out = prep.to_dict()
    out["description"] = prep.describe()
    out["outside_note"] = ("resize and crop run before the graph (PIL, as the weights' source does it); "
                           "`kerascnn predict EXPORT` applies them from this record" if prep.transform else
                           "the whole image resized to the input size before the graph (kerascnn's own)")
    return out


def export_other(model, info, target: Path, fmt: str, force: bool = False) -> dict:
    """ONNX / LiteRT through Keras's own exporter, verified by reloading."""
    extra = {"onnx": "onnx", "litert": "litert"}[fmt]
    try:
        if fmt == "onnx":
            import onnxruntime  # noqa: F401
            import tf2onnx  # noqa: F401
        else:
            import ai_edge_litert  # noqa: F401
    except ImportError:
        raise ConfigError(f"--format {fmt} needs optional packages: pip install \"kerascnn[{extra}]\"") from None
    suffix = ".onnx" if fmt == "onnx" else ".tflite"
    path = target.with_suffix(suffix) if target.suffix != suffix else target
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(f"{path} already exists; pass --force to replace it")
    if path.exists() or path.is_symlink():
        reason = file_not_replaceable(path, fmt)
        if reason:
            raise ConfigError(reason)
    h, w, c = (int(v) for v in model.input_shape[1:])
    raw = _probe_batch((h, w, c))
    probe = raw.astype(np.float32) * RAW_PIXEL_SCALE
    expected = np.asarray(model(probe, training=False), np.float32)
    exported = uint8_model(model) if fmt == "onnx" else model
    with fsutil.atomic_path(path, commit=lambda tmp, dst: commit_file(tmp, dst, fmt, force)) as tmp:
        import warnings

        with warnings.catch_warnings():  # tf2onnx's np.object probe warns on NumPy 2
            warnings.simplefilter("ignore", FutureWarning)
            exported.export(str(tmp), format=fmt, verbose=False)
        if fmt == "onnx":
            import onnxruntime as ort

            sess = ort.InferenceSession(str(tmp))
            got = sess.run(None, {sess.get_inputs()[0].name: raw})[0]
        else:
            from ai_edge_litert.interpreter import Interpreter

            interp = Interpreter(model_path=str(tmp))
            inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
            interp.resize_tensor_input(inp["index"], probe.shape)
            interp.allocate_tensors()
            interp.set_tensor(inp["index"], probe)
            interp.invoke()
            got = interp.get_tensor(out["index"])
        tol = max(1e-4, tolerance_for(model))
        diff, same = _agree(np.asarray(got, np.float32), expected, tol)
        if diff > tol or not same:
            raise ExportError(f"{path}: the reloaded {fmt} model disagrees with Keras (max |diff| {diff:.3g})")
    note = ("input: images uint8 (N, H, W, C) 0..255, scaled inside, like the SavedModel" if fmt == "onnx" else
            "input: float32 pixels already scaled to [0, 1] (raw / 255), unlike the SavedModel's uint8")
    return {"path": str(path), "format": fmt, "max_abs_diff": diff, "note": note}


def uint8_model(model):
    """``model`` behind an ``images`` uint8 input scaled by 1/255 inside: the SavedModel's input
    contract, for exporters that trace the Keras model itself (ONNX)."""
    import keras

    inp = keras.Input(model.input_shape[1:], dtype="uint8", name="images")
    scaled = keras.layers.Rescaling(RAW_PIXEL_SCALE, name="scale_raw_pixels")(inp)
    wrapped = keras.Model(inp, model(scaled), name=f"{model.name}_uint8")
    wrapped(np.zeros((1,) + tuple(model.input_shape[1:]), np.uint8))  # Keras's exporter wants a called model
    return wrapped


EXTRAS = {"onnx": ("onnxruntime", "tf2onnx"), "litert": ("ai_edge_litert",)}


def target_path(ref: str, out: str | None, fmt: str = "savedmodel", fuse_bn: bool = False) -> Path:
    """Where the export goes, known before any model is loaded (saved_models/NAME[.onnx|.tflite])."""
    if out is None:
        p = Path(str(ref).rstrip("/"))
        name = p.name if (p.is_dir() or p.is_file() or p.suffix == ".keras") else str(ref)
        out = Path("saved_models") / (Path(name).stem + ("-fused" if fuse_bn else ""))
    target = Path(out)
    suffix = {"onnx": ".onnx", "litert": ".tflite"}.get(fmt)
    return target.with_suffix(suffix) if suffix and target.suffix != suffix else target


def precheck(ref: str, out: str | None = None, force: bool = False, fmt: str = "savedmodel",
             fuse_bn: bool = False) -> Path:
    """Everything about an export that needs no TensorFlow: the reference, the optional packages
    of the format and an existing target (without --force). Returns the target path."""
    import importlib.util

    from kerascnn.runs import check_model_ref

    check_model_ref(ref)
    missing = [m for m in EXTRAS.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"--format {fmt} needs optional packages: pip install \"kerascnn[{fmt}]\"")
    target = target_path(ref, out, fmt, fuse_bn)
    if (target.exists() or target.is_symlink()) and not force:
        raise ConfigError(f"{target} already exists; pass --force to replace it")
    if fmt == "savedmodel":
        recover(target)       # an export a crashed --force moved aside goes back first
    if force and (target.exists() or target.is_symlink()):
        reason = not_replaceable(target) if fmt == "savedmodel" else file_not_replaceable(target, fmt)
        if reason:
            raise ConfigError(reason)
    return target


def export(ref: str, out: str | None = None, force: bool = False, fmt: str = "savedmodel", which: str = "best",
           fuse_bn: bool = False, unsafe: bool = False, weights: str | None = None,
           preprocessing: str | None = None, options: dict | None = None) -> dict:
    from kerascnn.runs import is_untrained, resolve_for_inference

    precheck(ref, out, force, fmt, fuse_bn)
    # with --weights: the file's classes; the normalisation goes inside, the resize/crop into kerascnn.json
    model, info, prep = resolve_for_inference(ref, which, unsafe, options, weights, preprocessing)
    result = {}
    if prep is not None:
        result["preprocessing"] = _preprocessing_record(prep)
    if not weights and is_untrained(info):
        result["warning"] = f"{ref} is an untrained model: the export serves random initial weights"
    if tolerance_for(model) != TOLERANCE:  # mixed precision: serve the float32 master weights
        copy = float32_copy(model)
        probe = _probe_batch(model.input_shape[1:]).astype(np.float32) * RAW_PIXEL_SCALE
        low = np.asarray(model(probe, training=False), np.float32)
        diff, same = _agree(np.asarray(copy(probe, training=False), np.float32), low, LOW_PRECISION_TOLERANCE)
        if diff > 5 * LOW_PRECISION_TOLERANCE or not same:
            raise ExportError(f"{ref}: the float32 copy of this mixed-precision model disagrees with it "
                              f"(max |diff| {diff:.3g})")
        result["precision_diff"] = diff
        result["trained_precision"] = next(l.dtype_policy.name for l in model.layers if l.weights)
        model = copy
    if fuse_bn:
        from kerascnn.fuse import fold_batchnorm

        try:
            fused = fold_batchnorm(model, info.model_name, info.config.model_options)
        except ValueError as e:  # rebuilt architecture does not match the saved weights
            raise ExportError(f"--fuse-bn: {ref}: the rebuilt model does not match the saved one ({first_line(e)}); "
                              f"pass the run directory so its config.json supplies the model options") from None
        probe = _probe_batch(model.input_shape[1:]).astype(np.float32) * RAW_PIXEL_SCALE
        a = np.asarray(model(probe, training=False))
        b = np.asarray(fused(probe, training=False))
        rel = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))
        if rel > max(1e-4, tolerance_for(model)):
            raise ExportError(f"BatchNorm folding changed the outputs (max relative diff {rel:.3g})")
        result["fused_bn_relative_diff"] = rel
        from kerascnn.fuse import count_batchnorm

        result["fused_bn_layers_removed"] = count_batchnorm(model) - count_batchnorm(fused)
        model = fused
    target = target_path(ref, out, "savedmodel", fuse_bn)
    if fmt == "savedmodel" and (target.exists() or target.is_symlink()):  # fail fast; re-checked at commit
        if not force:
            raise ConfigError(f"{target} already exists; pass --force to replace it")
        reason = not_replaceable(target)
        if reason:
            raise ConfigError(reason)
    fsutil.sweep_partials(target.parent) if target.parent.exists() else None
    if fmt == "savedmodel":
        result.update(export_savedmodel(model, info, target, force, result.get("preprocessing")))
    else:
        result.update(export_other(model, info, target, fmt, force))
    return result
