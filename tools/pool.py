"""Audits a stored pseudo-negative pool: what the classifier was trained against, and when.

    python tools/pool.py --pool_dir=/tmp/w/pool --grids=/tmp/w/pool-grids
    python tools/pool.py --pool_dir=/tmp/w/pool --grid=/tmp/sevens.png --label=7 --epoch=0 --count=32

Prints the entries per class and, per epoch: entries; acceptance, the share
whose target-class probability q(k|x) was at least 0.5 when made (such a sample
was classified as its class; with more than 2 classes a few with lower q were
too, so this is a lower bound of the training-time acceptance); the mean q;
and spread, the mean pixel distance between two entries of one class (root
mean square over pixels, in value-range units; from the first --keep entries
of each class and epoch; averaged over classes). With --dataset, diversity is
each class's spread over that of the class in the dataset's first 1,000
training images, averaged over classes (1: as varied as real data, 0: one image
repeated; the synthesis_diversity of training's SynthesisMonitor). --grids
writes a grid per epoch, a row per class. Reads the TFRecord shards with
keras_icn.read_pool (plain tf.data), streaming; memory holds only the kept
entries. Pools of series and tables too: their grids are per-class line plots
(keras_icn.images.sample_figure), and --dataset is for TFDS image datasets.
"""

import collections
import sys

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import data, files, images, pool_io, quality  # noqa: E402

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
flags.DEFINE_integer("keep", 32, "Entries kept per class and epoch for spread and grids.")
flags.DEFINE_string("grids", None, "Write a grid per epoch (a row per class) into this directory.")
flags.DEFINE_string("dataset", None, "TFDS dataset of the run, to report diversity against its images.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir of --dataset.")


def spread(images_):
    """Mean distance between two of `images_`, root mean square over pixels."""
    flat = np.asarray(images_, np.float64).reshape(len(images_), -1)
    return quality.mean_pairwise_distance(flat) / np.sqrt(flat.shape[1])


def class_spread(images_, labels):
    """`spread` averaged over the classes with at least 2 images; None if none has."""
    values = [spread(images_[labels == k]) for k in np.unique(labels) if np.sum(labels == k) > 1]
    return float(np.mean(values)) if values else None


def audit(dataset, keep):
    """Counts per class, and per epoch: entries, acceptance, mean score, and the
    first `keep` entries of each class (for spread and grids)."""
    per_class, epochs = collections.Counter(), {}
    for batch in dataset.batch(4096):
        labels, epoch_of, scores, pixels = (batch[k].numpy()
                                            for k in ("label", "epoch", "score", "image"))
        per_class.update(labels.tolist())
        for epoch in np.unique(epoch_of):  # a handful of epochs per batch, not one per entry
            mine = epoch_of == epoch
            row = epochs.setdefault(int(epoch), {"entries": 0, "accepted": 0, "score_sum": 0.0,
                                                 "kept": collections.defaultdict(list)})
            row["entries"] += int(mine.sum())
            row["accepted"] += int(np.sum(scores[mine] >= 0.5))
            row["score_sum"] += float(scores[mine].sum(dtype=np.float64))
            for label in np.unique(labels[mine]):
                kept = row["kept"][int(label)]
                kept.extend(pixels[mine & (labels == label)][:keep - len(kept)])
    return per_class, epochs


def epoch_grid(kept, value_range):
    """A row per class of an epoch's kept entries (images, series or feature
    vectors: `images.sample_figure`); short rows are padded, images with
    `value_range[0]`, series and vectors with their first entry again."""
    columns = max(len(v) for v in kept.values())
    rows = [np.stack(kept[k] + [_filler(kept[k][0], value_range)] * (columns - len(kept[k])))
            for k in sorted(kept)]
    return images.sample_figure(np.concatenate(rows), len(rows), value_range)


def _filler(entry, value_range):
    return np.full(entry.shape, value_range[0], np.float32) if entry.ndim == 3 else entry


def select(dataset):
    if FLAGS.label is not None:
        dataset = dataset.filter(lambda e: e["label"] == FLAGS.label)
    if FLAGS.epoch is not None:
        dataset = dataset.filter(lambda e: e["epoch"] == FLAGS.epoch)
    return dataset.skip(FLAGS.first).take(FLAGS.count)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.info(machine.describe(ONEDNN_REASON))
    try:
        dataset = pool_io.read_pool(FLAGS.pool_dir, skip_corrupt=FLAGS.skip_corrupt_shards)
    except ValueError as error:
        sys.exit(f"error: {error}")
    value_range = tuple(float(v) for v in FLAGS.value_range)
    real, real_spread = None, None
    if FLAGS.dataset:
        try:
            data.dataset_info(FLAGS.dataset, FLAGS.data_dir)
        except ValueError as error:
            sys.exit(f"error: {error}")
        real = [t.numpy() for t in next(iter(data.load_split(
            FLAGS.dataset, "train[:1000]", FLAGS.data_dir, value_range).batch(1000)))]
        real_spread = class_spread(*real)
    per_class, epochs = audit(dataset, FLAGS.keep)
    total = sum(per_class.values())
    print(f"{total} entries in {len(pool_io.shard_paths(FLAGS.pool_dir))} shards of {FLAGS.pool_dir}")
    print("class  entries")
    for label in sorted(per_class):
        print(f"{label:>5}  {per_class[label]:>7}")
    if real_spread is not None:
        print(f"real images of {FLAGS.dataset}: spread {real_spread:.4f}")
    print("epoch  entries  acceptance  mean score  spread" + ("  diversity" if real_spread else ""))
    for epoch in sorted(epochs):
        row = epochs[epoch]
        kept_images = np.concatenate([np.stack(v) for v in row["kept"].values()])
        kept_labels = np.concatenate([[k] * len(v) for k, v in row["kept"].items()])
        value = class_spread(kept_images, kept_labels)
        line = (f"{epoch:>5}  {row['entries']:>7}  {row['accepted'] / row['entries']:>10.4f}  "
                f"{row['score_sum'] / row['entries']:>10.4f}  "
                + (f"{value:>6.4f}" if value is not None else f"{'-':>6}"))
        if real_spread:
            diversity = quality.class_diversity(kept_images, kept_labels, *real)
            line += f"  {diversity:>9.4f}" if diversity is not None else f"  {'-':>9}"
        print(line)
        if FLAGS.grids:
            tf.io.gfile.makedirs(FLAGS.grids)
            name = "imported" if epoch < 0 else f"epoch-{epoch:03d}"
            files.write_bytes(f"{FLAGS.grids}/{name}.png",
                              images.encode_png(epoch_grid(row["kept"], value_range)))
    if FLAGS.grids:
        print(f"Wrote a grid per epoch to {FLAGS.grids}")
    if FLAGS.grid:
        chosen = np.stack([e["image"].numpy() for e in select(dataset)] or [np.zeros((0,))])
        if chosen.ndim < 2:
            sys.exit("error: no entries match --label/--epoch/--first; nothing to draw.")
        columns = min(FLAGS.columns, len(chosen))
        padding = -len(chosen) % columns
        chosen = np.concatenate([chosen, np.broadcast_to(
            _filler(chosen[0], value_range), (padding,) + chosen.shape[1:])])
        grid = images.sample_figure(chosen, len(chosen) // columns, value_range)
        files.write_bytes(FLAGS.grid, images.encode_png(grid))
        print(f"Wrote a grid of {len(chosen) - padding} entries to {FLAGS.grid}")


if __name__ == "__main__":
    app.run(main)
