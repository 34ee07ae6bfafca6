"""Streaming TFRecord shards (kerascnn/data/records.py): in-memory pixels and splits, (seed, epoch)-keyed
order, exact resume after SIGKILL, workers sharded by file (or by record when shards are too few)."""
import dataclasses

import numpy as np
import pytest
from conftest import kerascnn_in_process, kill_inside_epoch, load_weights, read_history
from images import digits_folder

from kerascnn import data as D
from kerascnn.data import formats, records, stream
from kerascnn.errors import DataError

EPS4 = 4 * np.finfo(np.float32).eps


def write_digit_shards(tmp):
    """72 digits (3 classes, a few RGBA / palette / 16-bit / 10x10 files) in 4 training shards under tmp/s."""
    formats.write_shards(digits_folder(tmp / "f", 3, 24, odd_modes=True), tmp / "s", 4, seed=0)
    return tmp / "s"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_digit_shards(tmp_path_factory.mktemp("rec"))


def _filenames(serialized):
    import tensorflow as tf

    spec = {"image/filename": tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)["image/filename"].numpy().decode() for r in serialized]


def test_record_count_from_headers_and_corrupt_shard(shards, tmp_path):
    files = sorted(shards.iterdir())
    assert [records.count_records(f) for f in files] == [18, 18, 18, 18]   # 72 dealt round-robin
    assert stream.count_files(shards) == 72
    cut = tmp_path / "train-00000-of-00001.tfrecord"
    cut.write_bytes(files[0].read_bytes()[:-5])
    with pytest.raises(DataError, match="corrupt TFRecord file .record 17 runs past the end"):
        records.count_records(cut)


def test_stream_has_the_in_memory_splits_labels_and_pixels(shards):
    mem = D.load_data(data=str(shards), seed=5)
    x_tr, y_tr, x_te, y_te, names = stream.scan(shards, 5)
    assert (len(x_tr), len(x_te), names) == (58, 14, ["c0", "c1", "c2"])   # round(0.2 * 72) test records
    assert (x_tr.raw_size, x_tr.raw_channels) == ((8, 8), 1)
    np.testing.assert_array_equal(y_tr, mem.y_train)
    np.testing.assert_array_equal(y_te, mem.y_test)
    for size, channels in (((28, 28), 1), ((8, 8), 3), ((6, 6), 1)):   # enlarge, gray -> RGB, shrink
        fi = dataclasses.replace(x_te, size=size, channels=channels)
        got = list(stream.eval_dataset(fi, y_te, 5).as_numpy_iterator())
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), y_te)   # record order = label order
        want = D.prepare_images(mem.x_test, size, channels, mem.pixel_scale)
        # same uint8 pixels (TF decode, PIL for the 10x10 ones), same float ops: a few ulps of 1.0 at most
        np.testing.assert_allclose(np.concatenate([x for x, _ in got]), want, rtol=0, atol=EPS4)
    cached = stream.decode_all(fi)   # --cache memory: the decoded copy is what the stream yields
    np.testing.assert_array_equal(cached, np.concatenate([x for x, _ in got]))
    glob = stream.scan(shards.parent / "s" / "train-0000[0-3]-*", 5)   # a glob: the same shards
    np.testing.assert_array_equal(glob[1], y_tr)
    assert len(D.load_data(data=str(shards / "train-*"), seed=5).x_train) == 58


def test_epoch_order_is_keyed_by_seed_and_epoch_only(shards):
    x_tr, y_tr, *_ = stream.scan(shards, 1)
    fi = dataclasses.replace(x_tr, size=(8, 8), channels=1, window=16)   # 58 records: 4 windows an epoch
    steps = len(fi) // 8
    whole = list(stream.stream_dataset(fi, y_tr, 8, 3, 0, 3, augment=True).as_numpy_iterator())
    later = list(stream.stream_dataset(fi, y_tr, 8, 3, 2, 3, augment=True).as_numpy_iterator())
    assert len(whole) == 3 * steps and len(later) == steps
    for (xa, ya), (xb, yb) in zip(whole[2 * steps:], later):   # a run resumed at epoch 2 sees epoch 2
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    split = set(_filenames(records._records(fi, np.arange(4, dtype=np.int64)).map(lambda g, r: r)))
    epochs = [_filenames(r for _, r in records.epoch_records(fi, 3, e, batch_size=8)) for e in range(3)]
    for names in epochs:   # each epoch: steps * 8 distinct training records (the remainder dropped)
        assert len(names) == len(set(names)) == 8 * steps and set(names) <= split
    assert epochs[0] != epochs[1] != epochs[2]
    again = _filenames(r for _, r in records.epoch_records(fi, 3, 1, batch_size=8))
    other = _filenames(r for _, r in records.epoch_records(fi, 4, 1, batch_size=8))
    assert again == epochs[1] and other != epochs[1]


def test_worker_policy_and_file_shares():
    assert records.policy(4, 1) == ("file", "")
    assert records.policy(4, 4) == ("file", "sharded by file over 4 workers")
    how, why = records.policy(3, 4)
    assert how == "data" and why == ("sharded by record over 4 workers (3 shard files < 4 workers: "
                                     "every worker reads every shard)")
    order = np.random.default_rng(0).permutation(11)
    shares = records.file_shares(order, 3)
    assert [len(s) for s in shares] == [4, 4, 3]
    assert sorted(np.concatenate(shares).tolist()) == list(range(11))   # disjoint, covers every file
    assert shares[1].tolist() == order[[1, 4, 7, 10]].tolist()          # worker i: files i, i+n, ...


@pytest.mark.parametrize("count", [2, 4])
def test_workers_read_disjoint_shard_files_covering_the_epoch(shards, count):
    import tensorflow as tf

    x_tr, _, *_ = stream.scan(shards, 1)
    fi = dataclasses.replace(x_tr, size=(8, 8), channels=1)
    holding = fi.shards_holding()
    shard_of = {}
    for s in holding:   # every record's shard, by its file name
        for r in tf.data.TFRecordDataset(fi.shards[s]).as_numpy_iterator():
            shard_of[_filenames([r])[0]] = s
    assert sum(fi.counts) == 72 and len(holding) == 4
    seen = []
    for w in range(count):
        names = _filenames(r for _, r in records.epoch_records(fi, 3, 0, (w, count), batch_size=4 * count))
        assert len(names) == (len(fi) // (4 * count)) * 4
        seen.append({shard_of[n] for n in names})
    assert all(len(s) == 4 // count for s in seen)               # each reads only its own files
    assert set().union(*seen) == set(holding) and sum(map(len, seen)) == 4   # disjoint, all of them


def test_fewer_shards_than_workers_shard_by_record_into_the_one_worker_batches(shards):
    x_tr, y_tr, *_ = stream.scan(shards, 1)
    fi = dataclasses.replace(x_tr, size=(12, 12), channels=1)
    assert records.policy(len(fi.shards_holding()), 5)[0] == "data"   # 4 shards < 5 workers
    one = list(stream.stream_dataset(fi, y_tr, 10, 3, 0, 2, augment=True).as_numpy_iterator())
    five = [list(stream.stream_dataset(fi, y_tr, 10, 3, 0, 2, augment=True, worker=(w, 5)).as_numpy_iterator())
            for w in range(5)]
    assert len(one) == 2 * (len(fi) // 10) and all(len(e) == len(one) for e in five)
    for i, (x1, y1) in enumerate(one):   # worker w: images 2w, 2w+1 of every global batch, augmented alike
        assert all(len(e[i][1]) == 2 for e in five)
        np.testing.assert_array_equal(np.concatenate([e[i][1] for e in five]), y1)
        np.testing.assert_allclose(np.concatenate([e[i][0] for e in five]), x1, rtol=0, atol=EPS4)


def test_auto_streams_shards_by_their_decoded_size(shards, monkeypatch):
    from kerascnn import guard

    monkeypatch.setattr(guard, "resident_bytes", lambda: guard.RUNTIME_PEAK)   # the runtime is resident
    need = int(guard.RAW_COPIES * 72 * 28 * 28 + guard.FLOAT_COPIES * 72 * 28 * 28 * 4)   # in memory, calibrated
    monkeypatch.setattr(guard, "available_bytes", lambda: need)   # exactly fits
    assert not stream.wants_stream("auto", str(shards), (28, 28), 1)
    assert not stream.wants_stream("off", str(shards), (28, 28), 1)
    monkeypatch.setattr(guard, "available_bytes", lambda: need - 1)
    assert stream.wants_stream("auto", str(shards), (28, 28), 1)
    assert stream.wants_stream("on", str(shards / "train-*"), (28, 28), 1)
    with pytest.raises(DataError, match="in memory this run needs about .* stream it from disk"):
        stream.wants_stream("off", str(shards), (28, 28), 1)   # refused in one line before loading


def test_streamed_shards_train_evaluate_and_resume_exactly_after_sigkill(shards, tmp_path):
    common = ["train", "convnet", "--data", shards, "--stream", "on", "--epochs", "2", "--batch-size", "8",
              "--seed", "4", "--deterministic", "--augment", "-q"]
    on = kerascnn_in_process(*common, "--run-dir", tmp_path / "on")
    assert on.returncode == 0, on.stderr[-2000:]
    assert "52 train / 6 val streamed from TFRecord shards |" in on.stdout   # round(0.1 * 58) val
    ev = kerascnn_in_process("evaluate", tmp_path / "on", "--which", "last", "--format", "json")
    assert ev.returncode == 0, ev.stderr[-1500:]
    import json

    assert json.loads(ev.stdout)["images"] == 14
    # SIGKILL inside epoch 2 (the state saved after every step), --resume at that step
    meta = kill_inside_epoch(*common, "--save-every", "1", "--run-dir", tmp_path / "cut")
    assert meta and 0 < meta["step"] < 6 and meta["epoch"] == 0, meta
    assert [int(r["epoch"]) for r in read_history(tmp_path / "cut")] == [1]
    resumed = kerascnn_in_process("train", "--resume", tmp_path / "cut", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "streamed from TFRecord shards" in resumed.stdout and f"epoch 2, step {meta['step'] + 1}" in resumed.stdout
    assert [r["loss"] for r in read_history(tmp_path / "cut")] == [r["loss"] for r in read_history(tmp_path / "on")]
    for a, b in zip(load_weights(tmp_path / "on" / "last.keras"), load_weights(tmp_path / "cut" / "last.keras")):
        assert np.array_equal(a, b)   # bitwise: the same records per (seed, epoch), skipped to the step, same state
