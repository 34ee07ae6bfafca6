"""Streaming from disk (kerascnn/data/stream.py): same batches as the in-memory path, exact resume, bad files."""

import numpy as np
import pytest
from conftest import kerascnn_in_process, kill_inside_epoch, load_weights, read_history, run_kerascnn
from images import digits_folder
from PIL import Image

from kerascnn import data as D
from kerascnn.data import stream
from kerascnn.errors import ConfigError, DataError


def _folder(root, per_class=24, odd_modes=True):
    """3 classes of 8x8 digits as PNG (gray), plus a few RGBA / palette / 16-bit / 10x10 files."""
    return digits_folder(root, classes=3, per_class=per_class, odd_modes=odd_modes)


def test_stream_batches_equal_the_in_memory_batches(tmp_path):
    root = _folder(tmp_path / "f")
    mem = D.load_data(data=str(root), seed=5)
    x_tr, y_tr, x_te, _, names = stream.scan(root, 5)
    assert (len(x_tr), len(x_te), names) == (len(mem.x_train), len(mem.x_test), ["c0", "c1", "c2"])
    np.testing.assert_array_equal(y_tr, mem.y_train)
    assert x_tr.raw_size == (8, 8) and x_tr.raw_channels == 1
    import dataclasses

    fi = dataclasses.replace(x_tr, size=(28, 28), channels=1)
    xm = D.prepare_images(mem.x_train, (28, 28), 1, mem.pixel_scale)
    a = list(D.train_dataset(xm, mem.y_train, 8, 3, 1, 3, augment=True).as_numpy_iterator())
    b = list(stream.stream_dataset(fi, y_tr, 8, 3, 1, 3, augment=True).as_numpy_iterator())
    assert len(a) == len(b) == 2 * (len(xm) // 8)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)  # order: epoch_order(n, seed, e) over file indices
        # same decode + conversion, same resize op: float32 values agree to a few ulps of 1.0
        np.testing.assert_allclose(xa, xb, rtol=0, atol=4 * np.finfo(np.float32).eps)
    ev = np.concatenate([x for x, _ in stream.eval_dataset(fi, y_tr, 7).as_numpy_iterator()])
    np.testing.assert_allclose(ev, xm, rtol=0, atol=4 * np.finfo(np.float32).eps)


def test_rgb_files_for_a_gray_model_are_decoded_by_tf_with_the_in_memory_pixels(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(2):
        (tmp_path / "f" / f"c{k}").mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "f" / f"c{k}" / f"{i}.png")
    mem = D.load_data(data=str(tmp_path / "f"), seed=2)
    x_tr, y_tr, _, _, _ = stream.scan(tmp_path / "f", 2)
    assert x_tr.raw_channels == 3 and all(x_tr.native)
    import dataclasses

    for size in ((16, 16), (12, 12)):   # RGB -> gray, then no resize / an antialiased shrink
        fi = dataclasses.replace(x_tr, size=size, channels=1)
        fi.load = None   # a PIL decode would fail: every file goes through TF's decoder
        got = np.concatenate([xb for xb, _ in stream.eval_dataset(fi, y_tr, 8).as_numpy_iterator()])
        want = D.prepare_images(mem.x_train, size, 1, mem.pixel_scale)
        # the same float32 luminance of 3 terms (summed in any order: a few ulps of 1.0 at most)
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.finfo(np.float32).eps)


def test_header_pass_names_bad_files_stop_or_skip(tmp_path):
    root = _folder(tmp_path / "f", per_class=5, odd_modes=False)
    (root / "c1" / "zz_broken.png").write_bytes(b"\x89PNG not really")
    (root / "c2" / "zz_empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="zz_broken.png: not a readable image"):
        stream.scan(root, 0, "stop")
    x_tr, _, x_te, _, _ = stream.scan(root, 0, "skip")
    assert len(x_tr) + len(x_te) == 15 and len(x_tr.bad) == 2
    assert "zz_broken.png" in x_tr.bad[0] and "zz_empty.jpg: empty image file" in x_tr.bad[1]


def test_header_pass_reads_the_available_memory_once_not_per_file(tmp_path, monkeypatch):
    # per file it cost /proc/meminfo + the cgroup files: 3/4 of a 100,000-file header pass
    root = _folder(tmp_path / "f", per_class=4, odd_modes=False)
    from kerascnn import guard

    calls = []
    monkeypatch.setattr(guard, "available_bytes", lambda: calls.append(1) or 1 << 30)
    keep, shapes, bad = stream.header_pass(sorted(str(f) for f in root.rglob("*.png")), "stop")
    assert (len(keep), len(shapes), bad, len(calls)) == (12, 12, [], 1)
    monkeypatch.setattr(guard, "available_bytes", lambda: 2 * 8 * 8 - 1)   # one 8x8 gray image x2 no longer fits
    with pytest.raises(DataError, match="refused before decoding"):
        stream.header_pass([str(next(root.rglob("*.png")))], "stop")


def test_auto_choice_from_decoded_size(tmp_path, monkeypatch):
    root = _folder(tmp_path / "f", per_class=3, odd_modes=False)
    assert stream.count_files(root) == 9
    from kerascnn import guard

    # an in-memory run holds ~4x its prepared float32 images (calibrated on peak RSS) + raw copies +
    # the runtime's growth (none here: the runtime is resident already)
    monkeypatch.setattr(guard, "resident_bytes", lambda: guard.RUNTIME_PEAK)
    need = int(guard.RAW_COPIES * 9 * 28 * 28 + guard.FLOAT_COPIES * 9 * 28 * 28 * 4)
    monkeypatch.setattr(guard, "available_bytes", lambda: need)  # exactly fits: in memory
    assert not stream.choose("auto", 9, (28, 28), 1, root)
    monkeypatch.setattr(guard, "available_bytes", lambda: need - 1)
    assert stream.choose("auto", 9, (28, 28), 1, root)
    assert not stream.choose("off", 9, (28, 28), 1, root) and stream.choose("on", 9, (28, 28), 1, root)


def test_available_memory_honours_the_memory_cgroup_v1_and_v2(tmp_path, monkeypatch):
    from kerascnn import guard

    monkeypatch.delenv("KERASCNN_MEMORY_LIMIT", raising=False)
    v1 = tmp_path / "v1"
    job = v1 / "memory" / "outer" / "job"
    job.mkdir(parents=True)
    (v1 / "memory" / "outer" / "memory.limit_in_bytes").write_text("3000000000\n")   # the parent: 3 GB
    (v1 / "memory" / "outer" / "memory.usage_in_bytes").write_text("1000000000\n")
    (job / "memory.limit_in_bytes").write_text(f"{2 << 30}\n")                      # the job: 2 GiB
    (job / "memory.usage_in_bytes").write_text("500000000\n")
    (job / "memory.stat").write_text("cache 200000000\ntotal_inactive_file 100000000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("5:cpu:/\n4:memory:/outer/job\n0::/\n")
    monkeypatch.setattr(guard, "CGROUP_ROOT", v1)
    monkeypatch.setattr(guard, "PROC_CGROUP", proc)
    assert guard.cgroup_headroom() == (2 << 30) - 500_000_000 + 100_000_000   # the job's room (< parent's 2 GB)
    assert guard.available_bytes() == guard.cgroup_headroom()                 # far below this host's memory
    (v1 / "memory" / "outer" / "memory.usage_in_bytes").write_text("2500000000\n")
    assert guard.cgroup_headroom() == 500_000_000                              # now the parent is the tightest
    v2 = tmp_path / "v2"
    (v2 / "ci" / "step").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v2 / "ci" / "memory.max").write_text("max\n")                                    # no limit there
    (v2 / "ci" / "memory.current").write_text("7\n")
    (v2 / "ci" / "step" / "memory.max").write_text(f"{1 << 30}\n")
    (v2 / "ci" / "step" / "memory.current").write_text(f"{1 << 28}\n")
    proc.write_text("0::/ci/step\n")
    monkeypatch.setattr(guard, "CGROUP_ROOT", v2)
    assert guard.cgroup_headroom() == (1 << 30) - (1 << 28)
    root = _folder(tmp_path / "f", per_class=3, odd_modes=False)      # 9 images of 28x28x1 float32:
    assert not stream.choose("auto", 9, (28, 28), 1, root)             # far below half of 768 MiB
    assert stream.choose("auto", 9 << 20, (28, 28), 1, root)           # 27 GiB: streamed, whatever the host has
    proc.write_text("0::/\n")
    (v2 / "memory.max").write_text("max\n")
    assert guard.cgroup_headroom() is None


@pytest.mark.parametrize("count", [1, 2, 4])
def test_worker_shares_are_disjoint_cover_the_epoch_once_and_rebuild_its_batches(count):
    order = np.random.default_rng(0).permutation(53)[:48]  # one epoch's order, 6 batches of 8 (5 dropped)
    shares = [stream.worker_share(order, 8, (w, count)) for w in range(count)]
    assert all(len(s) == 48 // count for s in shares)
    every = np.concatenate(shares)
    assert len(np.unique(every)) == 48 and set(every) == set(order)  # disjoint, each file exactly once
    # step i's shares, worker by worker, are step i's single-worker batch (same permutation)
    steps = np.concatenate([s.reshape(6, 8 // count) for s in shares], axis=1)
    np.testing.assert_array_equal(steps.reshape(-1), order)
    import tensorflow as tf

    np.testing.assert_array_equal(stream.worker_share(tf.constant(order), 8, (count - 1, count)).numpy(), shares[-1])
    with pytest.raises(ConfigError, match="divisible by the 3 workers"):
        stream.worker_share(order, 8, (0, 3))


def test_each_worker_decodes_only_its_share_and_together_they_are_the_one_worker_batches(tmp_path):
    root = _folder(tmp_path / "f", per_class=12)
    x_tr, y_tr, _, _, _ = stream.scan(root, 1)
    import dataclasses

    fi = dataclasses.replace(x_tr, size=(12, 12), channels=1)
    one = list(stream.stream_dataset(fi, y_tr, 8, 3, 0, 2, augment=True).as_numpy_iterator())
    two = [list(stream.stream_dataset(fi, y_tr, 8, 3, 0, 2, augment=True, worker=(w, 2)).as_numpy_iterator())
           for w in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) == 2 * (len(fi) // 8)
    for (x1, y1), (xa, ya), (xb, yb) in zip(one, *two):
        assert len(ya) == len(yb) == 4
        np.testing.assert_array_equal(np.concatenate([ya, yb]), y1)   # same files, same order
        np.testing.assert_allclose(np.concatenate([xa, xb]), x1, rtol=0, atol=4 * np.finfo(np.float32).eps)
    # what each worker reads from disk in one epoch: only its share, each file once
    steps, reads = len(fi) // 8, []
    for w in range(2):
        read = []
        counted = dataclasses.replace(fi, native=[False] * len(fi))   # every decode goes through load()
        counted.load = lambda i, *raw, load=counted.load, read=read: read.append(int(i)) or load(i, *raw)
        list(stream.stream_dataset(counted, y_tr, 8, 3, 0, 1, worker=(w, 2)).as_numpy_iterator())
        reads.append(read)
    assert [len(r) for r in reads] == [len(set(r)) for r in reads] == [4 * steps, 4 * steps]
    assert not set(reads[0]) & set(reads[1])
    assert set(reads[0]) | set(reads[1]) == set(D.epoch_order(len(fi), 3, 0).numpy()[:8 * steps].tolist())


def test_streamed_training_equals_in_memory_and_resumes_exactly_after_sigkill(tmp_path):
    root = _folder(tmp_path / "f")
    common = ["train", "convnet", "--data", root, "--epochs", "3", "--batch-size", "8", "--seed", "4",
              "--deterministic", "--augment", "-q"]
    on = kerascnn_in_process(*common, "--stream", "on", "--run-dir", tmp_path / "on")
    assert on.returncode == 0, on.stderr[-2000:]
    assert "streamed from disk" in on.stdout
    off = kerascnn_in_process(*common, "--stream", "off", "--run-dir", tmp_path / "off")
    assert off.returncode == 0 and "in memory" in off.stdout, off.stderr[-2000:]
    for a, b in zip(load_weights(tmp_path / "on" / "last.keras"), load_weights(tmp_path / "off" / "last.keras")):
        # identical batches (test above) and op determinism: the same weights up to the few-ulp
        # input differences the batch-vs-single resize may leave, amplified by 3 epochs of training
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    import json

    import keras

    from kerascnn.evaluation import metrics_from_probabilities

    ev = kerascnn_in_process("evaluate", tmp_path / "on", "--which", "last", "--format", "json")  # streams (config)
    assert ev.returncode == 0, ev.stderr[-1500:]
    streamed = json.loads(ev.stdout)
    mem = D.load_data(data=str(root), seed=4)
    model = keras.models.load_model(tmp_path / "on" / "last.keras")
    probs = np.asarray(model(D.prepare_images(mem.x_test, (28, 28), 1, mem.pixel_scale), training=False))
    in_memory = metrics_from_probabilities(probs, mem.y_test, mem.class_names)
    assert streamed["images"] == in_memory["images"] == 14  # round(0.2 * 72): the seeded test split
    # same model, inputs equal to a few ulps: the loss agrees far inside 1e-4
    assert abs(streamed["loss"] - in_memory["loss"]) <= 1e-4 * max(1.0, in_memory["loss"])


    # SIGKILL inside an epoch (the state saved every 2 of the 6 steps per epoch), --resume at that step
    meta = kill_inside_epoch(*common, "--stream", "on", "--save-every", "2", "--run-dir", tmp_path / "cut")
    assert meta and 0 < meta["step"] < 6 and meta["epoch"] >= 0, meta
    resumed = kerascnn_in_process("train", "--resume", tmp_path / "cut", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "streamed from disk" in resumed.stdout and f"step {meta['step'] + 1} of 6" in resumed.stdout
    assert [r["loss"] for r in read_history(tmp_path / "cut")] == [r["loss"] for r in read_history(tmp_path / "on")]
    for a, b in zip(load_weights(tmp_path / "on" / "last.keras"), load_weights(tmp_path / "cut" / "last.keras")):
        assert np.array_equal(a, b)  # bitwise: same file order per (seed, epoch), skipped to the step, same state


def test_bad_files_skip_lists_them_in_the_run_directory(tmp_path):
    root = _folder(tmp_path / "f", per_class=8, odd_modes=False)
    (root / "c0" / "zz_broken.png").write_bytes(b"\x89PNG not really")
    stop = kerascnn_in_process("train", "convnet", "--data", root, "--stream", "on", "--epochs", "1", "-q",
                               "--run-dir", tmp_path / "stop")
    assert stop.returncode == 1 and "zz_broken.png: not a readable image" in stop.stderr
    assert "Traceback" not in stop.stderr
    skip = kerascnn_in_process("train", "convnet", "--data", root, "--stream", "on", "--bad-files", "skip",
                               "--epochs", "1", "--batch-size", "4", "-q", "--run-dir", tmp_path / "skip")
    assert skip.returncode == 0, skip.stderr[-2000:]
    assert "skipped 1 bad image file(s)" in skip.stdout + skip.stderr
    listed = (tmp_path / "skip" / "bad_files.txt").read_text().splitlines()
    assert len(listed) == 1 and "zz_broken.png" in listed[0]


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cache_gives_the_same_batches(tmp_path, cache):
    import dataclasses

    root = _folder(tmp_path / "f", per_class=10)
    x_tr, y_tr, *_ = stream.scan(root, 1)
    fi = dataclasses.replace(x_tr, size=(12, 12), channels=3)
    plain = list(stream.stream_dataset(fi, y_tr, 6, 2, 0, 2, augment=True).as_numpy_iterator())
    if cache == "memory":
        xm = stream.decode_all(fi)
        cached = list(D.train_dataset(xm, y_tr, 6, 2, 0, 2, augment=True).as_numpy_iterator())
    else:
        fc = stream.disk_cache(fi, tmp_path / "cache-train.npy")
        assert np.load(tmp_path / "cache-train.npy", mmap_mode="r").shape == (len(fi), 12, 12, 3)
        cached = list(stream.stream_dataset(fc, y_tr, 6, 2, 0, 2, augment=True).as_numpy_iterator())
        ev = np.concatenate([x for x, _ in stream.eval_dataset(fc, y_tr, 5).as_numpy_iterator()])
        np.testing.assert_array_equal(ev, np.load(tmp_path / "cache-train.npy"))
    assert len(plain) == len(cached) == 2 * (len(fi) // 6)
    for (xa, ya), (xb, yb) in zip(plain, cached):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)  # the cache holds exactly what the stream decodes


def test_cache_disk_cli_run_cleans_up(tmp_path):
    root = _folder(tmp_path / "f", per_class=8, odd_modes=False)
    r = kerascnn_in_process("train", "convnet", "--data", root, "--stream", "on", "--cache", "disk", "--epochs", "1",
                            "--batch-size", "8", "--run-dir", tmp_path / "run", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cache: 19 images decoded once" in r.stdout  # 24 files - round(0.2 * 24) test = 19 train + val
    assert not list((tmp_path / "run").glob("cache-*"))


def test_a_finished_run_leaves_no_tf_data_iterator_behind(tmp_path):
    """The engine lets go of its training stream when the run ends: no tf.data iterator of the run
    is left in the caller's process for Python's cycle collector to tear down at some later moment
    (which, in this suite's worker processes, blocked a later test for up to two minutes)."""
    import gc

    from tensorflow.python.data.ops.iterator_ops import OwnedIterator

    def iterators():
        return {id(o) for o in gc.get_objects() if isinstance(o, OwnedIterator)}

    root = _folder(tmp_path / "f", per_class=8, odd_modes=False)
    gc.collect()
    before = iterators()
    for stream_mode in ("on", "off"):
        r = kerascnn_in_process("train", "convnet", "--data", root, "--stream", stream_mode, "--epochs", "1",
                                "--batch-size", "8", "--run-dir", tmp_path / stream_mode, "-q")
        assert r.returncode == 0, r.stderr[-2000:]
        assert iterators() - before == set(), stream_mode       # no gc.collect(): gone by reference count


def test_stream_on_needs_a_folder_or_manifest(tmp_path, invoke):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((8, 4, 4), np.uint8), y_train=np.arange(8) % 2)
    r = invoke("train", "convnet", "--data", tmp_path / "d.npz", "--stream", "on", "--epochs", "1",
               "--run-dir", tmp_path / "run")
    assert r.exit_code == 2 and "--stream on needs --data DIR" in r.output, r.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_each_stream_their_share_and_train_as_one(tmp_path):
    from test_multiworker_faults import _ports, _sha, _worker

    root = _folder(tmp_path / "f", per_class=12, odd_modes=False)
    common = ["convnet", "--data", root, "--stream", "on", "--epochs", "2", "--batch-size", "8", "--seed", "4",
              "--deterministic", "--augment", "-q"]
    ports = _ports()
    procs = [_worker(i, ports, common + ["--run-dir", tmp_path / f"w{i}"]) for i in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
    assert "streamed from disk, sharded by file over 2 workers" in outs[0][0]
    assert _sha(outs[0][0]) and _sha(outs[0][0]) == _sha(outs[1][0])
    # the same 2-replica math in one process (MirroredStrategy over 2 logical CPUs, one whole stream)
    one = run_kerascnn("train", *common, "--strategy", "mirrored", "--run-dir", tmp_path / "one",
                       env={"KERASCNN_LOGICAL_CPUS": "2"})
    assert one.returncode == 0 and "sharded" not in one.stdout, one.stderr[-1500:]
    for a, b in zip(load_weights(tmp_path / "w0" / "last.keras"), load_weights(tmp_path / "one" / "last.keras")):
        np.testing.assert_array_equal(a, b)
