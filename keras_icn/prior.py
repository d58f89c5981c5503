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

p_0 is per feature: per pixel for images, per time step and channel for series
`(T, C)`, per column for feature vectors `(F,)`.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_icn import bounds, randomness

PRIORS = ("gaussian", "pca", "uniform")
PCA_COMPONENTS = 20


@keras.saving.register_keras_serializable(package="keras_icn")
class PixelPrior(keras.layers.Layer):
    """Per-feature (per-pixel, for images) start distribution p_0 for the Langevin chains.

    Args:
        input_shape: one input's shape: `(H, W, C)`, `(T, C)`, `(F,)`, ...
        kind: `"gaussian"` (running per-pixel moments of the positives),
            `"pca"` (the same, plus the top `PCA_COMPONENTS` principal
            components of `adapt()`'s images), or `"uniform"` (uniform over
            `value_range`).
        value_range: `(low, high)` (numbers, or arrays per feature) that
            samples are clipped to, or None: unbounded (see `keras_icn.bounds`).
        image_shape: the old name of `input_shape`, still accepted.
    """

    def __init__(self, input_shape=None, kind="gaussian", value_range=(0.0, 1.0),
                 image_shape=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}. Received: prior={kind!r}")
        input_shape = input_shape if input_shape is not None else image_shape
        if input_shape is None:
            raise ValueError("PixelPrior needs input_shape, one input's shape.")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.kind = kind
        self.value_range = bounds.normalize(value_range, self.input_shape)
        if kind == "uniform" and self.value_range is None:
            raise ValueError('prior="uniform" needs a bounded value_range (low, high). '
                             "Received: value_range=None")
        # Before any data is seen: the moments of uniform noise over the range
        # (of N(0, 1) without one).
        mean, variance = bounds.uniform_moments(self.value_range, self.input_shape)
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")
        self.mean = self.add_weight(shape=self.input_shape,
                                    initializer=keras.initializers.Constant(mean),
                                    trainable=False, name="mean")
        self.variance = self.add_weight(shape=self.input_shape,
                                        initializer=keras.initializers.Constant(variance),
                                        trainable=False, name="variance")
        if kind == "pca":  # zero until adapt(): then p_0 is the per-pixel Gaussian
            size = int(np.prod(self.input_shape))
            self.components = self.add_weight(shape=(PCA_COMPONENTS, size), initializer="zeros",
                                              trainable=False, name="components")
            self.component_variances = self.add_weight(
                shape=(PCA_COMPONENTS,), initializer="zeros", trainable=False,
                name="component_variances")
        self.built = True

    def update(self, images):
        """Merges the moments of `images` `(batch, ...)` into the running ones."""
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
            data: a `tf.data.Dataset` of input batches or of `(inputs, labels)`
                batches, or an array `(N, ...)` in `value_range`.
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
        """The top principal components of `images` `(N, features)` and their variances."""
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
        """Draws `batch_size` inputs from p_0.

        `seed`: stateless, `(2,)` for the batch or `(batch, 2)` per sample.
        """
        if self.kind == "uniform":
            low, high = self.value_range
            return randomness.uniform(seed, batch_size, self.input_shape, low, high)
        return bounds.clip(self.mean + self.gaussian_noise(batch_size, seed), self.value_range)

    def _residual_variance(self):
        """What the principal components leave of each feature's variance."""
        explained = ops.reshape(ops.matmul(self.component_variances[None],
                                           ops.square(self.components)), self.input_shape)
        return ops.maximum(self.variance - explained, 0.0)

    def gaussian_noise(self, batch_size, seed):
        """`batch_size` draws of N(0, C), unclipped: C is the Gaussian's
        covariance, diag(`variance`) for `"gaussian"` and `"uniform"` (whose
        draws are not Gaussian; `variance` is still the data's).

        `"pca"`: C = V diag(lambda) V^T + diag(what the components leave of each
        feature's variance), so every feature keeps its variance.
        """
        if self.kind != "pca":
            return ops.sqrt(self.variance) * randomness.normal(seed, batch_size, self.input_shape)
        component_seed, pixel_seed = randomness.split(seed, 2)
        weights = (randomness.normal(component_seed, batch_size, (PCA_COMPONENTS,))
                   * ops.sqrt(self.component_variances))
        noise = randomness.normal(pixel_seed, batch_size, self.input_shape)
        return self._along_components(weights) + ops.sqrt(self._residual_variance()) * noise

    def _along_components(self, weights):
        """`(batch,) + input_shape`: each row of `weights` `(batch, PCA_COMPONENTS)`
        times the components. A sum, not a matmul: each input must not depend on
        the batch around it (the serving signature's promise), and matrix
        kernels block by batch size."""
        return ops.reshape(ops.sum(weights[:, :, None] * self.components[None], axis=1),
                           (-1,) + self.input_shape)

    def covariance_times(self, values):
        """C x for each `x` of `values` `(batch,) + input_shape`, C as in
        `gaussian_noise`: the metric of Langevin chains with
        `synthesis_metric="prior"` (`keras_icn.sampler`)."""
        if self.kind != "pca":
            return self.variance * values
        flat = ops.reshape(values, (-1, 1, int(np.prod(self.input_shape))))
        # A sum, not a matmul, as in _along_components.
        weights = ops.sum(flat * self.components[None], axis=2) * self.component_variances
        return self._along_components(weights) + self._residual_variance() * values

    @property
    def image_shape(self):
        """The old name of `input_shape`."""
        return self.input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "input_shape": self.input_shape,
            "kind": self.kind,
            "value_range": bounds.to_config(self.value_range),
        }
