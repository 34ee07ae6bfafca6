"""Issue 13: a SavedModel is a program; `predict` checks its graph against the classifier op
allowlist before anything of it runs (unless --unsafe)."""
import numpy as np
import pytest


def _write_png(path, shape=(8, 8)):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), "L").save(path)
    return path


def _hostile_savedmodel(path, written, op="write"):
    """A 3-class 'classifier' whose serving signature also writes (or reads) a file."""
    import tensorflow as tf

    class Hostile(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([64, 3]) / 64.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8, name="images")])
        def serve(self, images):
            x = tf.reshape(tf.cast(images, tf.float32), [-1, 64])
            if op == "write":
                tf.io.write_file(str(written), tf.strings.as_string(tf.reduce_sum(x)))
            else:
                x = x + tf.cast(tf.strings.length(tf.io.read_file(str(written))), tf.float32) * 0.0
            return {"probabilities": tf.nn.softmax(x @ self.w)}

    m = Hostile()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


def test_a_savedmodel_that_writes_a_file_is_refused_and_nothing_is_written(invoke, tmp_path):
    written = tmp_path / "pwned.txt"
    sm = _hostile_savedmodel(tmp_path / "hostile", written)
    img = _write_png(tmp_path / "a.png")
    r = invoke("predict", sm, img)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "'WriteFile'" in lines[0] and "--unsafe" in lines[0], lines[0]
    assert not written.exists()
    # --unsafe opts out: the model runs (and does what it was built to do)
    r = invoke("predict", sm, img, "--unsafe", "--top-k", "3")
    assert r.exit_code == 0, r.output
    assert written.exists() and float(written.read_text()) == float(np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).open(img), np.float64).sum())


def test_a_savedmodel_that_reads_a_file_is_refused_by_name(tmp_path):
    from kerascnn.errors import ConfigError
    from kerascnn.savedmodel_policy import check_savedmodel

    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    sm = _hostile_savedmodel(tmp_path / "reader", secret, op="read")
    with pytest.raises(ConfigError, match="'ReadFile'"):
        check_savedmodel(sm)


def test_kerascnns_own_exports_pass_the_policy(invoke, tmp_path):
    """convnet (via the CLI, then predict) and resnet18 small_input (policy check on its graph)."""
    import json

    from kerascnn.exporter import export_savedmodel
    from kerascnn.registry import build_model
    from kerascnn.training.record import RunRecord
    from kerascnn.savedmodel_policy import SAVER_OPS, check_savedmodel, disallowed_ops

    out = tmp_path / "convnet"
    assert invoke("export", "convnet", "--out", out).exit_code == 0
    img = _write_png(tmp_path / "d.png", (28, 28))
    r = invoke("predict", out, img, "--format", "json", "--top-k", "10")
    assert r.exit_code == 0, r.output
    top = json.loads(r.output)[0]["top"]
    assert len(top) == 10 and abs(sum(t["probability"] for t in top) - 1) < 1e-4

    model = build_model("resnet18", (32, 32, 3), 4, small_input=True)
    res = export_savedmodel(model, RunRecord.for_model("resnet18", (32, 32, 3), 4, class_names=list("abcd")), tmp_path / "r18")
    assert res["max_abs_diff"] <= 1e-5
    check_savedmodel(tmp_path / "r18")
    # the checkpoint ops are there, but only in the saver's functions
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((tmp_path / "r18" / "saved_model.pb").read_bytes())
    ops = {n.op for mg in proto.meta_graphs for f in mg.graph_def.library.function for n in f.node_def}
    assert {"SaveV2", "RestoreV2"} <= ops and disallowed_ops(proto) == []
    assert SAVER_OPS & {"WriteFile", "ReadFile", "MatchingFiles"} == set()


def test_checkpoint_ops_in_a_serving_function_are_refused(tmp_path):
    """RestoreV2 is fine in _traced_restore but not in a signature (it reads any file)."""
    import tensorflow as tf

    from kerascnn.errors import ConfigError
    from kerascnn.savedmodel_policy import check_savedmodel

    class Sneaky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8, name="images")])
        def serve(self, images):
            t = tf.raw_ops.RestoreV2(prefix="/etc/passwd", tensor_names=["x"], shape_and_slices=[""],
                                     dtypes=[tf.float32])[0]
            return {"probabilities": tf.zeros([tf.shape(images)[0], 3]) + 0.0 * tf.reduce_sum(t)}

    m = Sneaky()
    tf.saved_model.save(m, str(tmp_path / "sneaky"), signatures={"serving_default": m.serve})
    with pytest.raises(ConfigError, match="'RestoreV2' in function .*serve"):
        check_savedmodel(tmp_path / "sneaky")
