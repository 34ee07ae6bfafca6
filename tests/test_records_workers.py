"""Streaming TFRecord shards, the multi-process half (split from test_records.py so that pytest-xdist,
which keeps a file on one worker, can run the two halves side by side): two workers sharded by
file or by record, and a record that does not decode ending the run in one line."""
import numpy as np
import pytest
from conftest import kerascnn_in_process, load_weights, run_kerascnn
from test_records import write_digit_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_digit_shards(tmp_path_factory.mktemp("rec"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_shard_by_file_or_by_record_with_one_shard(shards, tmp_path):
    from test_multiworker_faults import _ports, _sha, _worker

    one_shard = tmp_path / "one"
    one_shard.mkdir()
    (one_shard / "train-00000-of-00001.tfrecord").write_bytes(b"".join(f.read_bytes() for f in sorted(shards.iterdir())))
    common = ["convnet", "--stream", "on", "--epochs", "2", "--batch-size", "8", "--seed", "4",
              "--deterministic", "--augment", "-q"]
    for data, line in ((shards, "streamed from TFRecord shards, sharded by file over 2 workers |"),
                       (one_shard, ("streamed from TFRecord shards, sharded by record over 2 workers (1 shard file "
                                    "< 2 workers: every worker reads every shard) |"))):
        ports = _ports()
        procs = [_worker(i, ports, common + ["--data", data, "--run-dir", tmp_path / f"{data.name}-w{i}"])
                 for i in (0, 1)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
        assert line in outs[0][0]
        assert _sha(outs[0][0]) and _sha(outs[0][0]) == _sha(outs[1][0])
    # by record, the two workers' batches put together are one process's: the same 2-replica math
    one = run_kerascnn("train", *common, "--data", one_shard, "--strategy", "mirrored", "--run-dir",
                       tmp_path / "mirrored", env={"KERASCNN_LOGICAL_CPUS": "2"})
    assert one.returncode == 0 and "sharded" not in one.stdout, one.stderr[-1500:]
    for a, b in zip(load_weights(tmp_path / "one-w0" / "last.keras"), load_weights(tmp_path / "mirrored" / "last.keras")):
        np.testing.assert_array_equal(a, b)


def test_a_record_that_does_not_decode_ends_training_in_one_line_naming_the_cause(shards, tmp_path):
    """A damaged image inside a shard is found only when it is read (no decode pass up front): the
    run stops with one line saying what TensorFlow's decoder said (``cli.one_line`` digs it out of a
    "Graph execution error" when the read happens inside a compiled function)."""
    import tensorflow as tf

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted(shards.iterdir()):   # every shard: its records, then a copy of its first with a broken image
        recs = [r.numpy() for r in tf.data.TFRecordDataset(str(f))]
        ex = tf.train.Example.FromString(recs[0])
        ex.features.feature["image/encoded"].bytes_list.value[:] = [b"not an image"]
        with tf.io.TFRecordWriter(str(bad / f.name)) as w:
            for r in recs + [ex.SerializeToString()]:
                w.write(r)
    r = kerascnn_in_process("train", "convnet", "--data", bad, "--stream", "on", "--epochs", "1", "--batch-size",
                            "8", "-q", "--run-dir", tmp_path / "run")
    assert r.returncode == 1, r.stdout[-1000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert "Unknown image file format" in err[0] and "Graph execution error" not in err[0], err[0]
