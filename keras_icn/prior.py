"""p_0: the distribution that Langevin chains start from.

`"gaussian"` (the paper's choice) is a per-pixel Gaussian fitted to the
positives: its mean and variance are running moments of every batch the model
trains on, so `model.fit` needs no extra call. `adapt()` fills them from a
sample up front, which `tools/train.py` does so the first steps already start
from a sensible p_0. `"uniform"` is uniform noise over `value_range`.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_icn import randomness

PRIORS = ("gaussian", "uniform")


@keras.saving.register_keras_serializable(package="keras_icn")
class PixelPrior(keras.layers.Layer):
    """Per-pixel start distribution p_0 for the Langevin chains.

    Args:
        image_shape: `(H, W, C)`.
        kind: `"gaussian"` (running per-pixel moments of the positives) or
            `"uniform"` (uniform over `value_range`).
        value_range: `(low, high)`; samples are clipped to it.
    """

    def __init__(self, image_shape, kind="gaussian", value_range=(0.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        if kind not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}. Received: prior={kind!r}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.kind = kind
        self.value_range = tuple(float(v) for v in value_range)
        low, high = self.value_range
        # Before any data is seen: the moments of uniform noise over the range.
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")
        self.mean = self.add_weight(
            shape=self.image_shape,
            initializer=keras.initializers.Constant((low + high) / 2),
            trainable=False,
            name="mean",
        )
        self.variance = self.add_weight(
            shape=self.image_shape,
            initializer=keras.initializers.Constant((high - low) ** 2 / 12),
            trainable=False,
            name="variance",
        )
        self.built = True

    def update(self, images):
        """Merges the moments of `images` (batch, H, W, C) into the running ones."""
        images = ops.cast(images, "float32")
        batch_count = ops.cast(ops.shape(images)[0], "float32")
        batch_mean = ops.mean(images, axis=0)
        batch_variance = ops.var(images, axis=0)
        count = self.count + batch_count
        delta = batch_mean - self.mean
        # Chan et al.'s parallel merge; exact whatever the initial values when count == 0.
        self.variance.assign(
            (self.count * self.variance + batch_count * batch_variance
             + ops.square(delta) * self.count * batch_count / count) / count
        )
        self.mean.assign(self.mean + delta * batch_count / count)
        self.count.assign(count)

    def adapt(self, data, max_batches=None):
        """Estimates the Gaussian's moments from `data`.

        Args:
            data: a `tf.data.Dataset` of image batches or of `(images, labels)`
                batches, or an array `(N, H, W, C)` in `value_range`.
            max_batches: read at most this many batches of a dataset.
        """
        if not isinstance(data, tf.data.Dataset):
            data = tf.data.Dataset.from_tensors(data)
        if max_batches is not None:
            data = data.take(max_batches)
        for batch in data:
            self.update(batch[0] if isinstance(batch, tuple) else batch)

    def sample(self, batch_size, seed):
        """Draws `batch_size` images from p_0.

        `seed`: stateless, `(2,)` for the batch or `(batch, 2)` per sample.
        """
        low, high = self.value_range
        if self.kind == "uniform":
            return randomness.uniform(seed, batch_size, self.image_shape, low, high)
        noise = randomness.normal(seed, batch_size, self.image_shape)
        return ops.clip(self.mean + ops.sqrt(self.variance) * noise, low, high)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "kind": self.kind,
            "value_range": self.value_range,
        }
