"""Keras callbacks of a training run: sample grids, divergence guard, pool writer."""

import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_icn import files, images, pool_io


class SampleGrid(keras.callbacks.Callback):
    """After each epoch, synthesizes `samples_per_class` images of every class.

    Writes a PNG grid (one row per class) to `path` and, with `log_dir`, an
    image summary TensorBoard shows under "samples". A fixed `seed` makes the
    grids of successive epochs start from the same noise, so they compare.

    Args:
        path: PNG file, rewritten atomically each time; None for none.
        samples_per_class: images per row.
        log_dir: TensorBoard log directory; None for none.
        seed: synthesis seed.
        epoch_path: a PNG file per epoch, kept, named by formatting it with the
            1-based `epoch` (like `ModelCheckpoint`'s filepath), e.g.
            `"samples/epoch-{epoch:03d}.png"`; None for none.
        class_names: names written at the left of each row (e.g. a TFDS
            ClassLabel's `names`); None for none.
    """

    def __init__(self, path=None, samples_per_class=8, log_dir=None, seed=0, epoch_path=None,
                 class_names=None):
        super().__init__()
        self.class_names = class_names
        self.path = path
        self.epoch_path = epoch_path
        self.samples_per_class = samples_per_class
        self.log_dir = log_dir
        self.seed = seed
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        num_classes = self.model.num_classes
        labels = np.repeat(np.arange(num_classes), self.samples_per_class)
        samples = self.model.synthesize(labels, seed=self.seed).numpy()
        grid = images.image_grid(samples, rows=num_classes, value_range=self.model.value_range)
        if self.class_names:
            grid = images.label_rows(grid, self.class_names)
        png = images.encode_png(grid)
        for path in (self.path, self.epoch_path and self.epoch_path.format(epoch=epoch + 1)):
            if path:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                files.write_bytes(path, png)
        if self._writer:
            with self._writer.as_default():
                tf.summary.image("samples", grid[None], step=epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer:
            self._writer.close()
            self._writer = None


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training cleanly when the loss or the pseudo-negatives stop being finite.

    After each batch it checks the loss and the pool's record of refused
    non-finite samples (the pool never stores them). On divergence it stops
    training and keeps a message naming the step in `self.error`.
    """

    def __init__(self):
        super().__init__()
        self.error = None

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        rejected_step = int(self.model.pool.rejected_step.numpy())
        if rejected_step >= 0:
            self.error = (
                f"Training diverged at step {rejected_step}: Langevin dynamics produced "
                "non-finite pseudo-negatives (none were added to the pool). Lower step_size "
                "or noise_stddev, or the learning rate."
            )
        elif not math.isfinite(loss):
            step = int(self.model.optimizer.iterations.numpy()) - 1  # 0-based, as the pool counts
            self.error = (
                f"Training diverged at step {step}: the loss is {loss}. Lower the learning "
                "rate, introspective_weight or step_size."
            )
        if self.error:
            logging.error(self.error)
            self.model.stop_training = True


class PoolWriter(keras.callbacks.Callback):
    """Persists the pool: appends the entries made since its last write as a new shard.

    Writes every `every_n_epochs` epochs and at the end of training, and
    earlier whenever the ring buffer would otherwise overwrite entries not yet
    on disk, so the shards hold every pseudo-negative made, each once. A write
    reads only the new entries. Shards are never rewritten; see `pool_io` for
    the record schema.

    Args:
        directory: the pool directory, e.g. `<workdir>/pool`.
        every_n_epochs: epochs between writes.
    """

    def __init__(self, directory, every_n_epochs=1):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1. Received: {every_n_epochs}")
        self.directory = directory
        self.every_n_epochs = every_n_epochs
        self.written = None  # entries on disk: numbers [0, written)

    def _entries_per_call(self):
        """Pool entries one compiled call can add between two looks of this callback."""
        return self.model.synthesis_batch_size * self.model.steps_per_execution

    def on_train_begin(self, logs=None):
        per_call = self._entries_per_call()
        if per_call > self.model.pool.capacity:
            raise ValueError(
                f"PoolWriter sees the pool once per {self.model.steps_per_execution} steps, which "
                f"add {per_call} entries: more than pool_capacity={self.model.pool.capacity}, so "
                "some would be overwritten unsaved. Raise pool_capacity or lower "
                "steps_per_execution.")
        # A resumed model's pool counts the entries its shards already hold.
        self.written = int(self.model.pool.count.numpy())

    def on_train_batch_end(self, batch, logs=None):
        pool = self.model.pool
        if int(pool.count.numpy()) - self.written + self._entries_per_call() > pool.capacity:
            self.write()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            self.write()

    def on_train_end(self, logs=None):
        self.write()

    def write(self):
        """Writes the entries made since the last write, if any, as one shard."""
        count = int(self.model.pool.count.numpy())
        if count == self.written:
            return None
        entries = self.model.pool.entries(self.written, count)
        steps_per_epoch = self.params.get("steps") or 0
        entries["epoch"] = entries["step"] // steps_per_epoch if steps_per_epoch else (
            np.zeros_like(entries["step"]))
        path = pool_io.write_shard(self.directory, entries, self.model.synthesis)
        self.written = count
        return path
