"""The on-device pool of pseudo-negatives: a fixed-capacity ring buffer.

Entry number `i` (counting every entry ever added, from 0) lives in slot
`i % capacity`, so `count` alone tells a reader which entries are new since it
last looked and which were overwritten. The entries are training state, not
model state: `model.save()` keeps only the counters (`PoolWriter` persists the
entries as TFRecords, and `restore()` refills the buffer from them), and no
exported signature touches the pool.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def _gather(variable, slots):
    """Rows `slots` of a pool variable, read from the variable itself (a resource
    gather): converting it to a tensor first would copy the whole buffer."""
    return tf.gather(variable.value, slots)


@keras.saving.register_keras_serializable(package="keras_icn")
class PseudoNegativePool(keras.layers.Layer):
    """Ring buffer of pseudo-negatives held in non-trainable variables.

    Each entry: the input (an image, a series, a feature vector), its target
    class, the training step that made it and the classifier's score for it
    (the target-class probability) when made.

    Args:
        capacity: number of entries kept on the device.
        input_shape: one input's shape, e.g. `(H, W, C)`, `(T, C)` or `(F,)`.
        image_shape: the old name of `input_shape`, still accepted.
    """

    def __init__(self, capacity, input_shape=None, image_shape=None, **kwargs):
        super().__init__(**kwargs)
        if int(capacity) < 1:
            raise ValueError(f"pool_capacity must be a positive integer. Received: {capacity!r}")
        if input_shape is None and image_shape is None:
            raise ValueError("PseudoNegativePool needs input_shape, one input's shape.")
        self.capacity = int(capacity)
        self.input_shape = tuple(int(d) for d in (input_shape if input_shape is not None
                                                  else image_shape))

        def variable(name, shape, dtype):
            return self.add_weight(
                shape=shape, dtype=dtype, initializer="zeros", trainable=False,
                autocast=False, name=name,
            )

        self.images = variable("images", (self.capacity,) + self.input_shape, "float32")
        self.labels = variable("labels", (self.capacity,), "int32")
        self.steps = variable("steps", (self.capacity,), "int64")
        self.scores = variable("scores", (self.capacity,), "float32")
        self.count = variable("count", (), "int64")  # entries ever added
        # First training step whose samples were refused as non-finite; -1: none.
        self.rejected_step = self.add_weight(
            shape=(), dtype="int64", initializer=keras.initializers.Constant(-1),
            trainable=False, autocast=False, name="rejected_step",
        )
        self.built = True

    @property
    def image_shape(self):
        """The old name of `input_shape`."""
        return self.input_shape

    @property
    def size(self):
        """Entries currently held: min(count, capacity), int64 scalar."""
        return ops.minimum(self.count, self.capacity)

    def add(self, images, labels, steps, scores):
        """Appends a batch of entries, overwriting the oldest once full.

        A batch holding any non-finite image or score is refused whole: nothing
        is written, and `rejected_step` keeps the first step that produced one.
        """
        batch_size = images.shape[0]
        if batch_size > self.capacity:
            raise ValueError(
                f"Cannot add {batch_size} entries to a pool of capacity {self.capacity}; "
                "pool_capacity must be at least the synthesis batch size."
            )
        steps = ops.cast(steps, "int64")
        finite = ops.logical_and(ops.all(ops.isfinite(images)), ops.all(ops.isfinite(scores)))

        def append():
            slots = (self.count + tf.range(batch_size, dtype="int64")) % self.capacity
            for variable, values in ((self.images, images), (self.labels, labels),
                                     (self.steps, steps), (self.scores, scores)):
                values = ops.cast(values, variable.dtype)
                variable.value.scatter_update(tf.IndexedSlices(values, slots))
            self.count.assign_add(batch_size)
            return tf.constant(True)

        def refuse():
            first = ops.where(self.rejected_step < 0, ops.max(steps), self.rejected_step)
            self.rejected_step.assign(first)
            return tf.constant(False)

        return tf.cond(finite, append, refuse)

    def sample(self, batch_size, seed):
        """Draws `batch_size` entries uniformly (with replacement) from those held.

        Returns `(images, labels)`. Call only once the pool holds entries.
        """
        slots = tf.random.stateless_uniform(
            (batch_size,), seed, minval=0, maxval=ops.maximum(self.size, 1), dtype="int64"
        )
        return _gather(self.images, slots), _gather(self.labels, slots)

    def entries(self, start, stop):
        """Entries number `start` to `stop - 1` as numpy arrays (a dict).

        They must still be held: `count - capacity <= start <= stop <= count`.
        Reads only those slots, so the cost grows with `stop - start`.
        """
        count = int(self.count.numpy())
        if not max(count - self.capacity, 0) <= start <= stop <= count:
            raise ValueError(f"Entries [{start}, {stop}) are not held by a pool of capacity "
                             f"{self.capacity} that has made {count}.")
        slots = np.arange(start, stop) % self.capacity
        return {
            "index": np.arange(start, stop),
            "image": _gather(self.images, slots).numpy(),
            "label": _gather(self.labels, slots).numpy(),
            "step": _gather(self.steps, slots).numpy(),
            "score": _gather(self.scores, slots).numpy(),
        }

    def restore(self, entries, count):
        """Refills the buffer: puts `entries` (a dict as `entries()` returns; at
        most `capacity`, the newest) in their slots and sets `count`."""
        index = np.asarray(entries["index"], np.int64)
        if len(index) > self.capacity or (len(index) and index.max() >= count):
            raise ValueError(f"Cannot restore {len(index)} entries up to number "
                             f"{index.max() if len(index) else None} into a pool of capacity "
                             f"{self.capacity} with count {count}.")
        for variable, name in ((self.images, "image"), (self.labels, "label"),
                               (self.steps, "step"), (self.scores, "score")):
            if len(index):
                values = ops.cast(np.asarray(entries[name]), variable.dtype)
                variable.value.scatter_update(tf.IndexedSlices(values, index % self.capacity))
        self.count.assign(count)

    def save_own_variables(self, store):
        # Only the counters: the entries are persisted as TFRecords by
        # `PoolWriter`, which keeps `model.keras` the size of the network.
        store["count"] = self.count
        store["rejected_step"] = self.rejected_step

    def load_own_variables(self, store):
        self.count.assign(store["count"])
        self.rejected_step.assign(store["rejected_step"])

    def get_config(self):
        return {**super().get_config(), "capacity": self.capacity, "input_shape": self.input_shape}
