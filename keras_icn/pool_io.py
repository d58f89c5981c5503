"""The pool on disk: a directory of GZIP TFRecord shards of `tf.train.Example`s.

Shards are named `pool-00000.tfrecord.gz`, `pool-00001.tfrecord.gz`, ... in the
order they were written; each holds only entries that no earlier shard holds.
A shard is written under a temporary name and renamed when complete, so a
reader (and a resumed run) only ever sees whole shards.

Record schema, version 2 (every feature present in every record). Version 1,
written before inputs other than images, is the same with `shape` always
`[H, W, C]`; this keras-icn reads both.

| feature          | type        | meaning                                          |
|------------------|-------------|--------------------------------------------------|
| `schema_version` | int64       | 2                                                |
| `index`          | int64       | entry number: the i-th pseudo-negative the run made |
| `image`          | float list  | the input's values (an image, a series, a feature vector) exactly as in memory, row-major, in the model's units |
| `shape`          | int64 list  | the input's shape: `[H, W, C]`, `[T, C]`, `[F]`, ... |
| `label`          | int64       | the target class k                               |
| `step`           | int64       | the training step that made it (0-based; -1: imported) |
| `epoch`          | int64       | the epoch of that step (0-based; -1: imported)   |
| `score`          | float       | the classifier's q(k given x) when it was made    |
| `mode`           | bytes       | the `synthesis` that made it (`data`, `fresh`, `persistent` or `mixed`); `imported` for entries seeded from another pool |
"""

import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from keras_icn import files

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
SHARD_PATTERN = re.compile(r"^pool-(\d{5})\.tfrecord\.gz$")
_OPTIONS = tf.io.TFRecordOptions(compression_type="GZIP")
_SCALARS = {"schema_version": tf.int64, "index": tf.int64, "label": tf.int64,
            "step": tf.int64, "epoch": tf.int64, "score": tf.float32, "mode": tf.string}


class CorruptShardError(ValueError):
    """A pool shard that cannot be read to its end."""


def shard_name(number):
    return f"pool-{number:05d}.tfrecord.gz"


def shard_paths(directory):
    """The complete shards in `directory`, oldest first (temporary files excluded)."""
    if not tf.io.gfile.isdir(directory):
        return []
    names = sorted(n for n in tf.io.gfile.listdir(directory) if SHARD_PATTERN.match(n))
    return [os.path.join(directory, n) for n in names]


def make_example(index, image, label, step, epoch, score, mode):
    """Serializes one pool entry as a `tf.train.Example` (bytes)."""
    image = np.asarray(image, np.float32)

    def ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    features = {
        "schema_version": ints(SCHEMA_VERSION),
        "index": ints(index),
        # A list, not the array: protobuf copies a list about 6x faster.
        "image": tf.train.Feature(float_list=tf.train.FloatList(value=image.ravel().tolist())),
        "shape": ints(*image.shape),
        "label": ints(label),
        "step": ints(step),
        "epoch": ints(epoch),
        "score": tf.train.Feature(float_list=tf.train.FloatList(value=[float(score)])),
        "mode": tf.train.Feature(bytes_list=tf.train.BytesList(value=[mode.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def parse_example(serialized, input_shape):
    """Parses one record into a dict of tensors; `image` is float32 `input_shape`."""
    spec = {name: tf.io.FixedLenFeature([], dtype) for name, dtype in _SCALARS.items()}
    spec["image"] = tf.io.FixedLenFeature(list(input_shape), tf.float32)
    spec["shape"] = tf.io.FixedLenFeature([len(input_shape)], tf.int64)
    return tf.io.parse_single_example(serialized, spec)


def write_shard(directory, entries, mode):
    """Writes `entries` (a dict of equal-length arrays: index, image, label, step,
    epoch, score) as the next shard of `directory`, atomically. Returns its path."""
    tf.io.gfile.makedirs(directory)
    existing = shard_paths(directory)
    number = int(SHARD_PATTERN.match(os.path.basename(existing[-1])).group(1)) + 1 if existing else 0
    path = os.path.join(directory, shard_name(number))
    temporary = files.temporary_path(path)
    with tf.io.TFRecordWriter(temporary, _OPTIONS) as writer:
        for i in range(len(entries["index"])):
            writer.write(make_example(entries["index"][i], entries["image"][i],
                                      entries["label"][i], entries["step"][i],
                                      entries["epoch"][i], entries["score"][i], mode))
        writer.flush()
    files.commit(temporary, path)
    return path


def _records(path):
    return tf.data.TFRecordDataset(path, compression_type="GZIP")


def inspect_shard(path, input_shape=None):
    """Reads a whole shard: returns `(record_count, first_index, input_shape)`.

    Raises:
        ValueError: the shard is corrupt or truncated, has a schema version
            this keras-icn cannot read, or inputs of another shape than
            `input_shape`; the message names the file.
    """
    count, first = 0, None
    try:
        for serialized in _records(path):
            if first is None:
                example = tf.train.Example.FromString(serialized.numpy())
                feature = example.features.feature
                version = feature["schema_version"].int64_list.value
                if len(version) != 1 or version[0] not in READABLE_VERSIONS:
                    raise ValueError(f"Pool shard {path} has schema version {list(version)}; "
                                     f"this keras-icn reads versions {READABLE_VERSIONS}.")
                shape = tuple(feature["shape"].int64_list.value)
                if input_shape is not None and shape != tuple(input_shape):
                    raise ValueError(f"Pool shard {path} holds inputs of shape {shape}; "
                                     f"expected {tuple(input_shape)}.")
                input_shape = shape
                first = feature["index"].int64_list.value[0]
            count += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise CorruptShardError(
            f"Pool shard {path} is corrupt or truncated ({error.message.strip()}). "
            "Pass skip_corrupt=True (--skip_corrupt_shards) to skip it.") from None
    return count, first, input_shape


def read_pool(directory, skip_corrupt=False, input_shape=None, image_shape=None):
    """The pool in `directory` as a `tf.data.Dataset` of dicts, oldest entry first.

    Each element has the schema's features: `image` float32 (the input,
    of `shape`: `(H, W, C)` for an image),
    `label`, `index`, `step`, `epoch`, `score`, `mode`, `schema_version`, `shape`.
    Every shard is checked first (a streaming read, constant memory).

    Args:
        directory: the pool directory, e.g. `<workdir>/pool`.
        skip_corrupt: skip corrupt or truncated shards with a warning instead
            of raising.
        input_shape: the expected input shape; default: that of the first shard.
        image_shape: the old name of `input_shape`, still accepted.

    Raises:
        ValueError: no shards; a corrupt shard (unless skipped); a shard of
            an unreadable schema version or another input shape.
    """
    paths = []
    input_shape = input_shape if input_shape is not None else image_shape
    for path in shard_paths(directory):
        try:
            count, _, input_shape = inspect_shard(path, input_shape)
        except CorruptShardError as error:
            if not skip_corrupt:
                raise
            logging.warning("Skipping %s", error)
            continue
        if count:
            paths.append(path)
    if not paths:
        raise ValueError(f"No readable pool shards (pool-NNNNN.tfrecord.gz) in {directory!r}.")
    return _records(paths).map(lambda record: parse_example(record, input_shape))


def restore_pool(pool, directory, read_only=False):
    """Refills `pool` from its shards when a run resumes from a checkpoint.

    `pool.count` (restored with the model) says how many entries the run had
    made at the checkpoint. Shards written after it, by a run killed before its
    next checkpoint, are moved to `<directory>/stale/`: the resumed run makes
    those entries again. Temporary files of unfinished writes are deleted. The
    newest `capacity` entries go back into their slots. `read_only=True` (a
    worker reading the chief's shards) changes no file and skips such shards.

    Raises:
        ValueError: the shards do not hold exactly the entries the checkpoint
            counts, or a shard is unreadable; the message names the problem.
    """
    count = int(pool.count.numpy())
    if tf.io.gfile.isdir(directory) and not read_only:  # half-written shards of a killed run
        for name in tf.io.gfile.listdir(directory):
            if name.startswith(".tmp-"):
                tf.io.gfile.remove(os.path.join(directory, name))
    kept, total = [], 0
    for path in shard_paths(directory):
        records, first, _ = inspect_shard(path, pool.input_shape)
        if first >= count and read_only:
            continue
        if first >= count:
            stale = os.path.join(directory, "stale")
            tf.io.gfile.makedirs(stale)
            tf.io.gfile.rename(path, os.path.join(stale, os.path.basename(path)), overwrite=True)
            logging.warning("Moved %s (entries made after the checkpoint) to %s", path, stale)
            continue
        kept.append((path, records))
        total += records
    if total != count:
        raise ValueError(f"The pool shards in {directory} hold {total} entries but the "
                         f"checkpoint counts {count}: the run cannot resume exactly. Pass "
                         "--start_over to discard it.")
    wanted = min(count, pool.capacity)
    paths, covered = [], 0
    for path, records in reversed(kept):
        if covered >= wanted:
            break
        paths.insert(0, path)
        covered += records
    entries = {name: [] for name in ("index", "image", "label", "step", "score")}
    if paths:
        newest = (_records(paths).map(lambda r: parse_example(r, pool.input_shape))
                  .filter(lambda e: e["index"] >= count - wanted).batch(1024))
        for batch in newest:
            for name in entries:
                entries[name].append(batch[name].numpy())
    pool.restore({name: np.concatenate(values) if values else np.zeros((0,))
                  for name, values in entries.items()}, count)


def import_pool(pool, source, directory, skip_corrupt=False):
    """Seeds an empty `pool` with the newest `capacity` entries stored in `source`.

    The paper's reclassification from stored pseudo-negatives: a fresh
    classifier replays them as extra negatives from its first step. They are
    also written as the first shard of `directory` (mode `imported`, step and
    epoch -1, numbered from 0), so the run's own pool stays self-contained and
    resumable; shards already in `directory` (of a run killed before its first
    checkpoint) are set aside first, as `restore_pool` does. Returns how many
    entries were imported.
    """
    if int(pool.count.numpy()):
        raise ValueError("import_pool seeds an empty pool only.")
    restore_pool(pool, directory)
    newest = {name: np.zeros((0,) + shape, dtype) for name, shape, dtype in
              (("image", pool.input_shape, np.float32), ("label", (), np.int64),
               ("score", (), np.float32))}
    for batch in read_pool(source, skip_corrupt, input_shape=pool.input_shape).batch(4096):
        for name in newest:
            newest[name] = np.concatenate([newest[name], batch[name].numpy()])[-pool.capacity:]
    count = len(newest["label"])
    entries = {**newest, "index": np.arange(count), "step": np.full(count, -1),
               "epoch": np.full(count, -1)}
    write_shard(directory, entries, "imported")
    pool.restore(entries, count)
    return count
