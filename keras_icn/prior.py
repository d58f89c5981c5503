"""p_0: the distribution that Langevin chains start from.

`"gaussian"` (the paper's choice) is a per-pixel Gaussian fitted to the
positives: its mean and variance are running moments of every batch the model
trains on, so `model.fit` needs no extra call. `adapt()` fills them from a
sample up front, which `tools/train.py` does so the first steps already start
from a sensible p_0. `"pca"` is a Gaussian too, with the same per-pixel means and
variances, whose covariance also has the sample's top principal components
(fitted by `adapt()`): its draws vary in the directions real images vary in
(strokes, shapes), not only pixel by pixel. `"uniform"` is uniform noise over
`value_range`.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_icn import randomness

PRIORS = ("gaussian", "pca", "uniform")
PCA_COMPONENTS = 20


@keras.saving.register_keras_serializable(package="keras_icn")
class PixelPrior(keras.layers.Layer):
    """Per-pixel start distribution p_0 for the Langevin chains.

    Args:
        image_shape: `(H, W, C)`.
        kind: `"gaussian"` (running per-pixel moments of the positives),
            `"pca"` (the same, plus the top `PCA_COMPONENTS` principal
            components of `adapt()`'s images), or `"uniform"` (uniform over
            `value_range`).
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
        if kind == "pca":  # zero until adapt(): then p_0 is the per-pixel Gaussian
            size = int(np.prod(self.image_shape))
            self.components = self.add_weight(shape=(PCA_COMPONENTS, size), initializer="zeros",
                                              trainable=False, name="components")
            self.component_variances = self.add_weight(
                shape=(PCA_COMPONENTS,), initializer="zeros", trainable=False,
                name="component_variances")
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
        """Estimates the Gaussian's moments (and, for `"pca"`, its components) from `data`.

        Args:
            data: a `tf.data.Dataset` of image batches or of `(images, labels)`
                batches, or an array `(N, H, W, C)` in `value_range`.
            max_batches: read at most this many batches of a dataset.
        """
        if not isinstance(data, tf.data.Dataset):
            data = tf.data.Dataset.from_tensors(data)
        if max_batches is not None:
            data = data.take(max_batches)
        seen = []
        for batch in data:
            images = batch[0] if isinstance(batch, tuple) else batch
            self.update(images)
            if self.kind == "pca":
                seen.append(np.reshape(np.asarray(images, np.float32), (len(images), -1)))
        if seen:
            self._fit_components(np.concatenate(seen))

    def _fit_components(self, images):
        """The top principal components of `images` `(N, H*W*C)` and their variances."""
        centred = images - images.mean(0)
        _, singular_values, directions = np.linalg.svd(centred, full_matrices=False)
        count = min(PCA_COMPONENTS, len(singular_values))
        variances = np.zeros(PCA_COMPONENTS, np.float32)
        variances[:count] = singular_values[:count] ** 2 / max(len(images) - 1, 1)
        components = np.zeros(self.components.shape, np.float32)
        components[:count] = directions[:count]
        self.components.assign(components)
        self.component_variances.assign(variances)

    def sample(self, batch_size, seed):
        """Draws `batch_size` images from p_0.

        `seed`: stateless, `(2,)` for the batch or `(batch, 2)` per sample.
        """
        low, high = self.value_range
        if self.kind == "uniform":
            return randomness.uniform(seed, batch_size, self.image_shape, low, high)
        if self.kind == "gaussian":
            noise = randomness.normal(seed, batch_size, self.image_shape)
            return ops.clip(self.mean + ops.sqrt(self.variance) * noise, low, high)
        # pca: covariance V diag(lambda) V^T + diag(what the components leave of
        # each pixel's variance), so every pixel keeps its variance.
        component_seed, pixel_seed = randomness.split(seed, 2)
        scales = ops.sqrt(self.component_variances)
        weights = randomness.normal(component_seed, batch_size, (PCA_COMPONENTS,)) * scales
        explained = ops.reshape(ops.matmul(self.component_variances[None],
                                           ops.square(self.components)), self.image_shape)
        residual = ops.sqrt(ops.maximum(self.variance - explained, 0.0))
        noise = randomness.normal(pixel_seed, batch_size, self.image_shape)
        # A sum, not a matmul: each image must not depend on the batch around it
        # (the serving signature's promise), and matrix kernels block by batch size.
        structured = ops.reshape(ops.sum(weights[:, :, None] * self.components[None], axis=1),
                                 (-1,) + self.image_shape)
        return ops.clip(self.mean + structured + residual * noise, low, high)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "kind": self.kind,
            "value_range": self.value_range,
        }
