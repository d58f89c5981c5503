"""Keras callbacks of a training run: synthesis monitor (sample grids and
measures), divergence guard, pool writer, checkpoint. Each owns its state: the
pool writer restores the pool from its own shards when training begins, so a
resumed `model.fit` needs nothing else."""

import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_icn import bounds, files, images, pool_io, quality, replicas, sampler


class SynthesisMonitor(keras.callbacks.Callback):
    """After each epoch, synthesizes a fixed set of samples, draws and measures them.

    It synthesizes `samples_per_class` images of every class (a fixed `seed`,
    so the grids of successive epochs start from the same noise and compare),
    writes a PNG grid (one row per class) to `path`, and with `log_dir` an
    image summary TensorBoard shows under "samples". It adds cheap measures of
    the set to the epoch's logs, so they reach `History` (and metrics.json) and,
    when it comes before Keras' `TensorBoard` callback, TensorBoard:

    - `synthesis_accuracy`: the fraction classified as requested;
    - `synthesis_saturation`: the fraction of pixels at the ends of `value_range`;
    - `synthesis_diversity` (with `real_images`): per class, the mean pairwise
      pixel distance of the samples over that of the real images, averaged
      (1: as varied as real data; 0: one image repeated).

    When synthesis degenerates it logs a warning naming the epoch and the
    setting to change, and keeps it in `self.warnings`: non-finite samples;
    saturated ones (over `MAX_SATURATION`, and more than real images); a
    diversity under `MIN_DIVERSITY`; or (ICN) the epoch's pseudo-negative
    acceptance at most `ACCEPTANCE_BOUNDS[0]` or at least `ACCEPTANCE_BOUNDS[1]`.

    Args:
        path: PNG file, rewritten atomically each time; None for none.
        samples_per_class: images per row (at least 2 for diversity).
        log_dir: TensorBoard log directory; None for none.
        seed: synthesis seed.
        epoch_path: a PNG file per epoch, kept, named by formatting it with the
            1-based `epoch` (like `ModelCheckpoint`'s filepath), e.g.
            `"samples/epoch-{epoch:03d}.png"`; None for none.
        class_names: names written at the left of each row (e.g. a TFDS
            ClassLabel's `names`); None for none.
        real_images, real_labels: real training images (in `value_range`) and
            their labels, the yardstick of diversity (over the classes with
            at least 2 of them) and saturation; None for none.
        every: run every `every` epochs and after the last one (the fit's
            `epochs`); the epochs in between get no figure and no measures.
    """

    MAX_SATURATION = 0.98
    MIN_DIVERSITY = 0.1
    ACCEPTANCE_BOUNDS = (0.01, 0.99)

    def __init__(self, path=None, samples_per_class=8, log_dir=None, seed=0, epoch_path=None,
                 class_names=None, real_images=None, real_labels=None, every=1):
        super().__init__()
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be an int >= 1. Received: every={every!r}")
        self.every = every
        self.class_names = class_names
        self.path = path
        self.epoch_path = epoch_path
        self.samples_per_class = samples_per_class
        self.log_dir = log_dir
        self.seed = seed
        self.real_images = None if real_images is None else np.asarray(real_images, np.float32)
        self.real_labels = None if real_labels is None else np.asarray(real_labels)
        self.warnings = []
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params.get("epochs"):
            return
        num_classes = self.model.num_classes
        labels = np.repeat(np.arange(num_classes), self.samples_per_class)
        samples = self.model.synthesize(labels, seed=self.seed).numpy()
        measures = self._measure(samples, labels)
        if logs is not None:
            logs.update(measures)
        self._check(epoch, samples, measures, logs or {})
        grid = images.sample_figure(samples, num_classes, self.model.value_range,
                                    self.class_names, real=self._real_like(labels))
        png = images.encode_png(grid)
        for path in (self.path, self.epoch_path and self.epoch_path.format(epoch=epoch + 1)):
            if path:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                files.write_bytes(path, png)
        if self._writer:
            with self._writer.as_default():
                tf.summary.image("samples", grid[None], step=epoch)
            self._writer.flush()

    def _real_like(self, labels):
        """Real inputs of `labels`' classes, for the figure of a series or a table
        (an image grid shows samples only); None where a class has none."""
        if self.real_images is None or self.real_images.ndim == 4:
            return None
        rows = []
        for label in labels:
            positions = np.flatnonzero(self.real_labels == label)
            if not len(positions):
                return None
            rows.append(positions[len(rows) % len(positions)])
        return self.real_images[rows]

    def _measure(self, samples, labels):
        logits = self.model(np.nan_to_num(samples))
        measures = {
            "synthesis_accuracy": float(np.mean(np.asarray(sampler.classified_as(logits, labels)))),
            "synthesis_saturation": saturation(samples, self.model.value_range)}
        if (self.real_images is not None and self.samples_per_class >= 2
                and np.all(np.isfinite(samples))):
            value = quality.class_diversity(samples, labels, self.real_images, self.real_labels)
            if value is not None:
                measures["synthesis_diversity"] = value
        return measures

    def _check(self, epoch, samples, measures, logs):
        model, found = self.model, []
        name = f"Epoch {epoch + 1}"
        if not np.all(np.isfinite(samples)):
            found.append(f"{name}: synthesized samples are not finite. Lower step_size (now "
                         f"{model.step_size}) or noise_stddev (now {model.noise_stddev}).")
        real_saturation = (0.0 if self.real_images is None
                           else saturation(self.real_images, model.value_range))
        if (measures["synthesis_saturation"] >= self.MAX_SATURATION
                and measures["synthesis_saturation"] > real_saturation + 0.1):
            found.append(
                f"{name}: {measures['synthesis_saturation']:.0%} of the synthesized pixels are "
                f"at the ends of value_range (real images: {real_saturation:.0%}); the chains "
                f"overshoot. Lower step_size (now {model.step_size}) or noise_stddev (now "
                f"{model.noise_stddev}).")
        if measures.get("synthesis_diversity", 1.0) < self.MIN_DIVERSITY:
            found.append(
                f"{name}: the samples of each class are nearly alike (diversity "
                f"{measures['synthesis_diversity']:.3f}; real images: 1). Raise noise_stddev "
                f"(now {model.noise_stddev}) or lower synthesis_steps (now "
                f"{model.synthesis_steps}).")
        acceptance = logs.get("pseudo_negative_acceptance")
        low, high = self.ACCEPTANCE_BOUNDS
        if acceptance is not None and model.mode == "icn" and acceptance <= low:
            found.append(
                f"{name}: pseudo-negative acceptance was {float(acceptance):.3f} for the whole "
                f"epoch: the chains never reach their class. Raise num_langevin_steps (now "
                f"{model.num_langevin_steps}) or step_size (now {model.step_size}).")
        elif acceptance is not None and model.mode == "icn" and acceptance >= high:
            found.append(
                f"{name}: pseudo-negative acceptance was {float(acceptance):.3f} for the whole "
                f"epoch: the classifier never rejects its pseudo-negatives. Raise "
                f"introspective_weight (now {model.introspective_weight}).")
        for message in found:
            logging.warning(message)
        self.warnings += found

    def on_train_end(self, logs=None):
        if self._writer:
            self._writer.close()
            self._writer = None


def saturation(images, value_range):
    """The fraction of `images`' values at either end of `value_range` (NaN counts)."""
    return float(np.mean(bounds.at_bounds(images, value_range)))


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

    When training begins and `directory` holds shards, it restores the pool
    from them (`pool_io.restore_pool`): a model loaded from a checkpoint gets
    its ring buffer back, and shards written after that checkpoint (by a run
    killed before its next one) are set aside. A model whose pool counts
    entries but whose directory holds none (trained before without a writer)
    starts writing from its current count.

    Under MultiWorkerMirroredStrategy every worker runs one: the chief's writes
    the run's `directory`; another worker's, given `restore_from` (the chief's
    directory, on a file system they share), writes into its own temporary
    `directory` and refills its pool from the chief's shards, read-only, once
    the chief has restored (the callback waits for every worker there).

    Args:
        directory: the pool directory, e.g. `<workdir>/pool`.
        every_n_epochs: epochs between writes.
        restore_from: a non-chief worker's: the chief's pool directory.
    """

    def __init__(self, directory, every_n_epochs=1, restore_from=None):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1. Received: {every_n_epochs}")
        self.directory = directory
        self.every_n_epochs = every_n_epochs
        self.restore_from = restore_from
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
        if self.restore_from is None and (pool_io.shard_paths(self.directory)
                                          or not int(self.model.pool.count.numpy())):
            pool_io.restore_pool(self.model.pool, self.directory)
        replicas.barrier(self.model.distribute_strategy)  # the chief's shards are in order
        if self.restore_from is not None:
            pool_io.restore_pool(self.model.pool, self.restore_from, read_only=True)
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


class Checkpoint(keras.callbacks.Callback):
    """Saves the model (weights, optimizer, p_0, pool counters) atomically each epoch.

    Keras' `ModelCheckpoint` writes in place; a run killed mid-write would
    leave a broken file to resume from. With `pool_writer`, that writer's
    pending entries are written first, so a checkpoint never counts entries
    that are not on disk (whatever the order of the callback list). With
    `guard`, nothing is saved once training diverged.
    """

    def __init__(self, path, guard=None, pool_writer=None):
        super().__init__()
        self.path, self.guard, self.pool_writer = path, guard, pool_writer

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.error:
            return
        if self.pool_writer is not None:
            self.pool_writer.write()
        save_model(self.model, self.path)


def save_model(model, path):
    """`model.save(path)`, atomically: a reader sees the old file or the new one."""
    temporary = files.temporary_path(path)
    model.save(temporary)
    files.commit(temporary, path)
