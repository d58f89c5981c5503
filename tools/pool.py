"""Prints statistics of a stored pseudo-negative pool and draws grids of its images.

    python tools/pool.py --pool_dir=/tmp/w/pool
    python tools/pool.py --pool_dir=/tmp/w/pool --grid=/tmp/sevens.png --label=7 --epoch=0 --count=32

Reads the TFRecord shards with keras_icn.read_pool (plain tf.data), streaming:
memory does not grow with the pool.
"""

import collections
import sys

import numpy as np
from absl import app, flags

from keras_icn import files, images, pool_io

FLAGS = flags.FLAGS
flags.DEFINE_string("pool_dir", None, "The pool directory, e.g. <workdir>/pool.", required=True)
flags.DEFINE_bool("skip_corrupt_shards", False, "Skip corrupt shards with a warning.")
flags.DEFINE_string("grid", None, "Write a PNG grid of the selected entries here.")
flags.DEFINE_integer("label", None, "Select entries of this target class.")
flags.DEFINE_integer("epoch", None, "Select entries made in this epoch (0-based; -1: imported).")
flags.DEFINE_integer("first", 0, "Skip this many selected entries.")
flags.DEFINE_integer("count", 64, "Draw at most this many selected entries.")
flags.DEFINE_integer("columns", 16, "Images per row of the grid.")
flags.DEFINE_list("value_range", ["0.0", "1.0"], "low,high of the stored images.")


def statistics(dataset):
    """Counts per class and per epoch, and the mean score per epoch."""
    total, per_class, per_epoch = 0, collections.Counter(), collections.Counter()
    score_sums = collections.defaultdict(float)
    for batch in dataset.batch(4096):
        labels, epochs, scores = (batch[k].numpy() for k in ("label", "epoch", "score"))
        total += len(labels)
        per_class.update(labels.tolist())
        per_epoch.update(epochs.tolist())
        for epoch in np.unique(epochs):  # a handful of epochs per batch, not one per entry
            score_sums[int(epoch)] += float(scores[epochs == epoch].sum(dtype=np.float64))
    mean_scores = {e: score_sums[e] / per_epoch[e] for e in per_epoch}
    return total, per_class, per_epoch, mean_scores


def select(dataset):
    if FLAGS.label is not None:
        dataset = dataset.filter(lambda e: e["label"] == FLAGS.label)
    if FLAGS.epoch is not None:
        dataset = dataset.filter(lambda e: e["epoch"] == FLAGS.epoch)
    return dataset.skip(FLAGS.first).take(FLAGS.count)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        dataset = pool_io.read_pool(FLAGS.pool_dir, skip_corrupt=FLAGS.skip_corrupt_shards)
    except ValueError as error:
        sys.exit(f"error: {error}")
    total, per_class, per_epoch, mean_scores = statistics(dataset)
    print(f"{total} entries in {len(pool_io.shard_paths(FLAGS.pool_dir))} shards of {FLAGS.pool_dir}")
    print("class  entries")
    for label in sorted(per_class):
        print(f"{label:>5}  {per_class[label]:>7}")
    print("epoch  entries  mean score")
    for epoch in sorted(per_epoch):
        print(f"{epoch:>5}  {per_epoch[epoch]:>7}  {mean_scores[epoch]:>10.4f}")
    if FLAGS.grid:
        chosen = np.stack([e["image"].numpy() for e in select(dataset)] or [np.zeros((0,))])
        if chosen.ndim != 4:
            sys.exit("error: no entries match --label/--epoch/--first; nothing to draw.")
        columns = min(FLAGS.columns, len(chosen))
        padding = -len(chosen) % columns
        low = float(FLAGS.value_range[0])
        chosen = np.concatenate([chosen, np.full((padding,) + chosen.shape[1:], low, np.float32)])
        grid = images.image_grid(chosen, rows=len(chosen) // columns,
                                 value_range=tuple(float(v) for v in FLAGS.value_range))
        files.write_bytes(FLAGS.grid, images.encode_png(grid))
        print(f"Wrote a grid of {len(chosen) - padding} entries to {FLAGS.grid}")


if __name__ == "__main__":
    app.run(main)
