"""PatchWhitening: a first convolution fitted to the data, not learned.

The fast CIFAR-10 networks (Page's ResNet-9 line, Jordan's airbench) start with
a small convolution whose filters whiten the image's patches: the eigenvectors
of the patch covariance of some training images, each scaled by one over the
square root of its eigenvalue, with and without a minus sign (so a ReLU-like
activation after it keeps both halves). Training then starts from features of
unit variance in every direction, and those runs reach their accuracy in fewer
epochs. The filters stay fixed; the bias is trained.

Like Keras' preprocessing layers, it is fitted with `adapt(images)`;
`IntrospectiveClassifier.adapt` adapts every such layer of its network from the
same batches that fit p_0 (a resumed run has the fitted kernel in its checkpoint).
"""

import keras
import numpy as np
import tensorflow as tf

# Images the filters are fitted to (airbench fits them to 5,000).
EXAMPLES = 5000


@keras.saving.register_keras_serializable(package="keras_icn")
class PatchWhitening(keras.layers.Layer):
    """A `kernel_size` x `kernel_size` valid convolution whose `2 * k * k * C`
    filters whiten the image patches (set by `adapt`), plus a trained bias.

    Args:
        kernel_size: patch side k.
        epsilon: added to the eigenvalues before the square root, so directions
            of almost no variance are not blown up.

    Example:

        whiten = PatchWhitening(2)
        whiten.adapt(images)          # (N, H, W, C), in the model's units
        features = whiten(images)     # (N, H - 1, W - 1, 2 * 2 * 2 * C)

    Reference: Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024.
    """

    def __init__(self, kernel_size=2, epsilon=5e-4, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(kernel_size, int) and kernel_size >= 1):
            raise ValueError(f"kernel_size must be an int >= 1. Received: "
                             f"kernel_size={kernel_size!r}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon!r}")
        self.kernel_size = kernel_size
        self.epsilon = epsilon

    def build(self, input_shape):
        k, channels = self.kernel_size, input_shape[-1]
        self.filters = 2 * k * k * channels
        # Until adapted: Glorot's random filters, so an unadapted layer still works.
        self.kernel = self.add_weight(name="kernel", shape=(k, k, channels, self.filters),
                                      initializer="glorot_uniform", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        return tf.nn.conv2d(inputs, self.kernel, 1, "VALID") + self.bias

    def compute_output_shape(self, input_shape):
        k = self.kernel_size
        spatial = [None if s is None else s - k + 1 for s in input_shape[1:3]]
        return (input_shape[0], *spatial, 2 * k * k * input_shape[-1])

    def adapt(self, images):
        """Sets the filters from `images` `(N, H, W, C)`: the eigenvectors of their
        centred patch covariance over sqrt(eigenvalue + epsilon), largest first,
        then the same negated; the bias centres each filter's output on the
        patches' mean."""
        images = np.asarray(images, np.float64)
        if images.ndim != 4 or min(images.shape[1:3]) < self.kernel_size:
            raise ValueError(f"adapt takes images (N, H, W, C) of at least {self.kernel_size} "
                             f"pixels a side. Received: shape {images.shape}")
        if not self.built:
            self.build(images.shape)
        k = self.kernel_size
        # (N, H', W', C, k, k) -> patches (M, k * k * C), in the kernel's
        # (row, column, channel) order.
        windows = np.lib.stride_tricks.sliding_window_view(images, (k, k), axis=(1, 2))
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * images.shape[-1])
        mean = patches.mean(axis=0)
        centred = patches - mean
        covariance = centred.T @ centred / len(centred)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
        order = np.argsort(eigenvalues)[::-1]
        scaled = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0) + self.epsilon)
        filters = np.concatenate([scaled, -scaled], axis=1)  # (k * k * C, 2 k k C)
        self.kernel.assign(filters.reshape(self.kernel.shape).astype(self.kernel.dtype))
        self.bias.assign((-mean @ filters).astype(self.bias.dtype))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "epsilon": self.epsilon}


def adapt_network(network, data, max_batches=None):
    """Adapts every `PatchWhitening` layer of `network` (each must take the
    network's inputs) to the first `EXAMPLES` inputs of `data`: a
    `tf.data.Dataset` of input or `(inputs, labels)` batches (at most
    `max_batches` of them are read), or an array. Returns how many it adapted."""
    whitening = [layer for layer in network._flatten_layers(include_self=False)
                 if isinstance(layer, PatchWhitening)]
    if not whitening:
        return 0
    if isinstance(data, tf.data.Dataset):
        batches, count = [], 0
        for batch in data.take(-1 if max_batches is None else max_batches):
            batches.append(np.asarray(batch[0] if isinstance(batch, tuple) else batch))
            count += len(batches[-1])
            if count >= EXAMPLES:
                break
        data = np.concatenate(batches)
    for layer in whitening:
        layer.adapt(np.asarray(data)[:EXAMPLES])
    return len(whitening)
