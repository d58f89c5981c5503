import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_icn import callbacks, pool_io
from keras_icn.pool import PseudoNegativePool
from conftest import REPO, make_dataset, make_model

SHAPE = (3, 2, 1)


def random_entries(first, count, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "index": np.arange(first, first + count),
        "image": rng.normal(size=(count,) + SHAPE).astype("float32"),
        "label": rng.integers(0, 10, count),
        "step": np.arange(first, first + count) // 4,
        "epoch": np.zeros(count, "int64"),
        "score": rng.uniform(size=count).astype("float32"),
    }


def read_all(directory, **kwargs):
    elements = list(pool_io.read_pool(directory, **kwargs).batch(10_000))
    return {k: np.concatenate([e[k].numpy() for e in elements]) for k in elements[0]}


def test_round_trip_is_bit_exact(tmp_path):
    first, second = random_entries(0, 5), random_entries(5, 7, seed=1)
    assert pool_io.write_shard(str(tmp_path), first, "fresh").endswith("pool-00000.tfrecord.gz")
    assert pool_io.write_shard(str(tmp_path), second, "fresh").endswith("pool-00001.tfrecord.gz")
    read = read_all(str(tmp_path))
    for name in ("index", "image", "label", "step", "epoch", "score"):
        np.testing.assert_array_equal(read[name], np.concatenate([first[name], second[name]]))
    assert read["image"].dtype == np.float32
    assert set(read["mode"]) == {b"fresh"} and set(read["schema_version"]) == {2}
    np.testing.assert_array_equal(read["shape"][0], SHAPE)


def test_records_read_with_plain_tf_data_and_the_documented_schema(tmp_path):
    pool_io.write_shard(str(tmp_path), random_entries(0, 3), "persistent")
    files = tf.io.gfile.glob(str(tmp_path / "pool-*.tfrecord.gz"))
    spec = {"image": tf.io.VarLenFeature(tf.float32), "shape": tf.io.VarLenFeature(tf.int64),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "mode": tf.io.FixedLenFeature([], tf.string)}
    record = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP")))
    parsed = tf.io.parse_single_example(record, spec)
    image = tf.reshape(tf.sparse.to_dense(parsed["image"]), tf.sparse.to_dense(parsed["shape"]))
    assert image.shape == SHAPE and parsed["mode"].numpy() == b"persistent"


def truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_corrupt_shard_names_the_file_and_can_be_skipped(tmp_path, caplog):
    pool_io.write_shard(str(tmp_path), random_entries(0, 50), "fresh")
    pool_io.write_shard(str(tmp_path), random_entries(50, 50), "fresh")
    truncate(tmp_path / "pool-00000.tfrecord.gz")
    with pytest.raises(pool_io.CorruptShardError, match="pool-00000.tfrecord.gz is corrupt"):
        pool_io.read_pool(str(tmp_path))
    read = read_all(str(tmp_path), skip_corrupt=True)
    np.testing.assert_array_equal(read["index"], np.arange(50, 100))
    assert "pool-00000.tfrecord.gz" in caplog.text


def test_other_image_shape_or_schema_version_is_refused(tmp_path):
    pool_io.write_shard(str(tmp_path), random_entries(0, 2), "fresh")
    with pytest.raises(ValueError, match=r"inputs of shape \(3, 2, 1\); expected \(28, 28, 1\)"):
        pool_io.read_pool(str(tmp_path), image_shape=(28, 28, 1))
    future = tf.train.Example.FromString(pool_io.make_example(0, np.zeros(SHAPE), 1, 0, 0, 0.5, "fresh"))
    future.features.feature["schema_version"].int64_list.value[0] = 3
    with tf.io.TFRecordWriter(str(tmp_path / "pool-00001.tfrecord.gz"), "GZIP") as writer:
        writer.write(future.SerializeToString())
    with pytest.raises(ValueError, match="pool-00001.tfrecord.gz has schema version"):
        pool_io.read_pool(str(tmp_path))


def test_temporary_files_are_not_shards(tmp_path):
    pool_io.write_shard(str(tmp_path), random_entries(0, 2), "fresh")
    (tmp_path / ".tmp-1234abcd-pool-00001.tfrecord.gz").write_bytes(b"partial")
    assert [os.path.basename(p) for p in pool_io.shard_paths(str(tmp_path))] == [
        "pool-00000.tfrecord.gz"]


def test_pool_writer_saves_every_entry_once_across_ring_wrap_around(tmp_path):
    # 8 new entries a step, a ring of 20: it wraps every 2.5 steps, and an epoch has 8 steps.
    model = make_model(synthesis_batch_size=8, pool_capacity=20)
    writer = callbacks.PoolWriter(str(tmp_path))
    model.fit(make_dataset(count=256), epochs=2, shuffle=False, verbose=0, callbacks=[writer])
    made = int(model.pool.count.numpy())
    assert made == 2 * 8 * 8
    read = read_all(str(tmp_path))
    np.testing.assert_array_equal(read["index"], np.arange(made))  # all, once, in order
    assert len(pool_io.shard_paths(str(tmp_path))) > 2  # it wrote before the ring overwrote
    # The newest entries on disk are exactly those in memory.
    held = model.pool.entries(made - 20, made)
    np.testing.assert_array_equal(read["image"][-20:], held["image"])
    np.testing.assert_array_equal(read["label"][-20:], held["label"])
    np.testing.assert_array_equal(read["epoch"], read["step"] // 8)


def test_restore_refills_the_ring_and_sets_aside_shards_after_the_checkpoint(tmp_path):
    directory = str(tmp_path)
    pool_io.write_shard(directory, random_entries(0, 6), "fresh")
    pool_io.write_shard(directory, random_entries(6, 6, seed=1), "fresh")
    pool_io.write_shard(directory, random_entries(12, 4, seed=2), "fresh")  # after the checkpoint
    pool = PseudoNegativePool(8, SHAPE)
    pool.count.assign(12)
    pool_io.restore_pool(pool, directory)
    assert int(pool.count.numpy()) == 12
    expected = np.concatenate([random_entries(0, 6)["image"], random_entries(6, 6, seed=1)["image"]])
    np.testing.assert_array_equal(pool.entries(4, 12)["image"], expected[4:])
    assert os.path.exists(tmp_path / "stale" / "pool-00002.tfrecord.gz")
    pool.count.assign(13)
    with pytest.raises(ValueError, match="hold 12 entries but the checkpoint counts 13"):
        pool_io.restore_pool(pool, directory)


def test_import_seeds_the_ring_with_the_newest_entries_and_writes_them_first(tmp_path):
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    pool_io.write_shard(source, random_entries(0, 7), "fresh")
    pool_io.write_shard(source, random_entries(7, 5, seed=1), "persistent")
    pool = PseudoNegativePool(8, SHAPE)
    assert pool_io.import_pool(pool, source, target) == 8
    newest = np.concatenate([random_entries(0, 7)["image"], random_entries(7, 5, seed=1)["image"]])[-8:]
    np.testing.assert_array_equal(pool.entries(0, 8)["image"], newest)
    written = read_all(target)
    np.testing.assert_array_equal(written["index"], np.arange(8))
    assert set(written["mode"]) == {b"imported"} and set(written["step"]) == {-1}
    with pytest.raises(ValueError, match="empty pool only"):
        pool_io.import_pool(pool, source, target)


def test_pool_writer_refuses_to_lose_entries_between_its_looks(tmp_path):
    model = make_model(synthesis_batch_size=8, pool_capacity=20)
    model.compile(optimizer="adam", jit_compile=False, steps_per_execution=3)  # 24 > 20
    with pytest.raises(ValueError, match="pool_capacity=20"):
        model.fit(make_dataset(count=96), epochs=1, verbose=0,
                  callbacks=[callbacks.PoolWriter(str(tmp_path))])


def test_plain_fit_resumes_the_pool_through_its_own_callbacks(tmp_path):
    pool_dir, path = str(tmp_path / "pool"), str(tmp_path / "model.keras")
    model = make_model(synthesis_batch_size=8, pool_capacity=20)
    writer = callbacks.PoolWriter(pool_dir)
    # The checkpoint first in the list: it has the writer write its entries before it saves.
    model.fit(make_dataset(count=128), epochs=1, shuffle=False, verbose=0,
              callbacks=[callbacks.Checkpoint(path, pool_writer=writer), writer])
    held = model.pool.entries(12, 32)["image"]  # 4 steps of 8: the ring holds the newest 20

    resumed = keras.models.load_model(path)  # the checkpoint holds the pool's counters only
    assert int(resumed.pool.count.numpy()) == 32
    seen = {}

    def look(batch, logs):
        if batch == 0:
            seen["ring"] = resumed.pool.entries(12, 32)["image"]

    snapshot = keras.callbacks.LambdaCallback(on_train_batch_begin=look)
    resumed.fit(make_dataset(count=128), epochs=2, initial_epoch=1, shuffle=False, verbose=0,
                callbacks=[snapshot, callbacks.PoolWriter(pool_dir)])
    np.testing.assert_array_equal(seen["ring"], held)  # refilled before the first step
    np.testing.assert_array_equal(read_all(pool_dir)["index"], np.arange(64))  # each once


def test_pool_tool_audits_each_epoch(tmp_path):
    # Epoch 0: class 0 is two images, all 0 and all 1 (RMS distance 1); class 1 is
    # two copies (0). Epoch 1: class 0 is four copies. Scores 0.2 0.7 0.5 0.1 | 0.9 x4.
    pixels = np.zeros((8,) + SHAPE, "float32")
    pixels[1] = 1.0
    pixels[2:4] = 0.3
    pixels[4:] = 0.6
    entries = {"index": np.arange(8), "image": pixels, "label": np.array([0, 0, 1, 1, 0, 0, 0, 0]),
               "step": np.arange(8), "epoch": np.array([0, 0, 0, 0, 1, 1, 1, 1]),
               "score": np.array([0.2, 0.7, 0.5, 0.1, 0.9, 0.9, 0.9, 0.9], "float32")}
    pool_io.write_shard(str(tmp_path / "pool"), entries, "data")
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "pool.py"), f"--pool_dir={tmp_path / 'pool'}",
         f"--grids={tmp_path / 'grids'}", "--keep=3"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", result.stdout, re.M)
    # Spread: epoch 0 is the mean of class 0's 1 and class 1's 0; epoch 1 keeps 3 copies.
    assert rows == [("0", "4", "0.5000", "0.3750", "0.5000"),
                    ("1", "4", "1.0000", "0.9000", "0.0000")]
    grid = tf.io.decode_png((tmp_path / "grids" / "epoch-000.png").read_bytes()).numpy()
    assert grid.shape == (2 * 3, 2 * 2, 1)  # 2 classes by 2 kept entries
    grid = tf.io.decode_png((tmp_path / "grids" / "epoch-001.png").read_bytes()).numpy()
    assert grid.shape == (1 * 3, 3 * 2, 1) and np.all(grid == 153)  # 0.6 of 255
