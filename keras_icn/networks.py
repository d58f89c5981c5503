"""Backbone networks: functional builders that map inputs to class logits.

Any `keras.Model` from inputs of a fixed shape to `(batch, num_classes)` logits
can serve as the network of an `IntrospectiveClassifier`. For images, the two
used by the ICN family of papers, built from `keras_icn.layers` (Keras' layers
with cheaper gradients) where those apply; for series `(T, C)`, the fully
convolutional network (FCN) of Wang et al. (2017); for feature vectors `(F,)`,
a multilayer perceptron. `build("auto", ...)` picks by the input's rank.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from keras_icn import layers as icn_layers
from keras_icn import whitening


def mnist_cnn(input_shape=(28, 28, 1), num_classes=10, hidden_units=256):
    """The MNIST CNN of the introspective-learning papers.

    Two 5x5 convolutions (32 and 64 filters, ReLU, 2x2 max pooling), a dense
    hidden layer and `num_classes` logits. This is also the network of
    `shared/peers/torch_sgld_reference.py`, so benchmarks compare like with like.

    Args:
        input_shape: `(H, W, C)` of the images.
        num_classes: number of logits K.
        hidden_units: width of the dense hidden layer.

    Returns:
        A functional `keras.Model` named `"mnist_cnn"`.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    x = icn_layers.Conv2D(32, 5, padding="same", activation="relu")(inputs)
    x = icn_layers.MaxPooling2D(2)(x)
    x = icn_layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = icn_layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(hidden_units, activation="relu")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="mnist_cnn")


# Keras' BatchNormalization keeps 99% of its moving statistics per step (momentum
# 0.99); ResNets for CIFAR are trained with PyTorch's default, 90%. The moving
# statistics are what inference mode uses (evaluation, and every Langevin chain):
# at 0.99 they take 390 steps to come within 2% of the batch statistics, at 0.9
# 37, so short runs and early chains see the network being trained.
BATCH_NORM_MOMENTUM = 0.9


def _batch_norm():
    # Under a strategy with several replicas, batch statistics are computed over
    # the global batch (as on one device), so every replica updates the moving
    # statistics alike; Keras' default keeps one copy per replica and saves the first.
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
    return icn_layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5,
                                     synchronized=synchronized)


def _residual_block(x, filters, stride):
    shortcut = x
    y = icn_layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = _batch_norm()(y)
    y = layers.ReLU()(y)
    y = icn_layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = _batch_norm()(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = _batch_norm()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(input_shape=(32, 32, 3), num_classes=10, depth=32, filters=16):
    """The CIFAR ResNet of He et al. (ResNet-20, -32, -44, ...) for small images.

    Three stages of `(depth - 2) / 6` basic blocks with `filters`, 2x and 4x
    that many filters (16, 32, 64 by default), BatchNormalization (momentum
    0.9, as in PyTorch), global average pooling and `num_classes` logits. Its
    BatchNormalization layers run in inference mode during synthesis; built in
    the scope of a strategy with several replicas, they are synchronized.

    Args:
        input_shape: `(H, W, C)` of the images.
        num_classes: number of logits K.
        depth: `6n + 2` weighted layers on the main path; 32 gives ResNet-32,
            8 (one block per stage) a fast network for tests.
        filters: filters of the first stage.

    Returns:
        A functional `keras.Model` named `"resnet{depth}"`.

    Reference: He et al., "Deep Residual Learning for Image Recognition", 2016.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...). "
                         f"Received: depth={depth}")
    inputs = keras.Input(shape=input_shape, name="images")
    x = icn_layers.Conv2D(filters, 3, padding="same", use_bias=False)(inputs)
    x = _batch_norm()(x)
    x = layers.ReLU()(x)
    for stage in range(3):
        for block in range((depth - 2) // 6):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, filters * 2**stage, stride)
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"resnet{depth}")


@keras.saving.register_keras_serializable(package="keras_icn")
class Dirac(keras.initializers.Initializer):
    """A convolution kernel whose first `min(C_in, C_out)` filters pass their
    input channel through unchanged (PyTorch's `dirac_`), the others drawn
    like Keras' default (Glorot uniform): a deep stack starts near identity."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel = keras.initializers.GlorotUniform(self.seed)(shape, dtype)
        height, width, channels_in, channels_out = shape
        count = min(channels_in, channels_out)
        identity = np.zeros((height, width, channels_in, count), np.float32)
        identity[height // 2, width // 2, np.arange(count), np.arange(count)] = 1.0
        return ops.concatenate([ops.cast(identity, kernel.dtype), kernel[..., count:]], axis=-1)

    def get_config(self):
        return {"seed": self.seed}


FAST_CNN_MIN_SIZE = 9  # 9 -> 8 (whitening) -> 4 -> 2 -> 1 (pooling)


def fast_cnn(input_shape=(32, 32, 3), num_classes=10, widths=(64, 256, 256),
             batch_norm_momentum=0.4):
    """A fast convolutional network for small colour images, after Keller Jordan's
    airbench94 (2024), itself after David Page's ResNet-9 line of fast CIFAR-10 runs.

    A 2x2 patch-whitening convolution (`keras_icn.whitening.PatchWhitening`,
    fitted to the data by `IntrospectiveClassifier.adapt`) and GELU, then three
    groups of a 3x3 convolution, 2x2 max pooling, BatchNorm and GELU, and a
    second 3x3 convolution, BatchNorm and GELU, with `widths` filters (their
    kernels start as `Dirac`); 3x3 max pooling over what is left and
    `num_classes` logits scaled by 1/9. Its BatchNormalization layers learn a
    shift but no scale and keep moving statistics with Keras momentum 0.4
    (PyTorch's 0.6), so inference mode (every Langevin chain) follows the
    network being trained within a few steps.

    Args:
        input_shape: `(H, W, C)` of the images (32x32x3 for CIFAR-10).
        num_classes: number of logits K.
        widths: filters of the three groups; `(8, 16, 16)` gives a network
            for tests.
        batch_norm_momentum: Keras momentum of the moving statistics.

    Reference: Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024
    (arXiv:2404.00498).
    """
    if min(input_shape[:2]) < FAST_CNN_MIN_SIZE:
        raise ValueError(f"fast_cnn pools three times after a 2x2 convolution, so it takes images "
                         f"of at least {FAST_CNN_MIN_SIZE}x{FAST_CNN_MIN_SIZE} pixels. Received: "
                         f"input_shape={tuple(input_shape)}; use network=mnist_cnn.")
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1

    def batch_norm():
        return icn_layers.BatchNormalization(momentum=batch_norm_momentum, epsilon=1e-5,
                                         scale=False, synchronized=synchronized)

    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.Activation("gelu")(whitening.PatchWhitening(2, name="whiten")(inputs))
    for width in widths:
        x = icn_layers.Conv2D(width, 3, padding="same", use_bias=False,
                              kernel_initializer=Dirac())(x)
        x = icn_layers.MaxPooling2D(2)(x)
        x = layers.Activation("gelu")(batch_norm()(x))
        x = icn_layers.Conv2D(width, 3, padding="same", use_bias=False,
                              kernel_initializer=Dirac())(x)
        x = layers.Activation("gelu")(batch_norm()(x))
    x = icn_layers.MaxPooling2D(x.shape[1])(x)  # 3x3 for 32x32 inputs
    x = layers.Flatten()(x)
    x = layers.Dense(num_classes, use_bias=False)(x)
    logits = layers.Rescaling(1 / 9, name="logits")(x)
    return keras.Model(inputs, logits, name="fast_cnn")


def resnet32(input_shape=(32, 32, 3), num_classes=10):
    """ResNet-32 for 32x32 colour images (CIFAR-10, SVHN): `resnet(depth=32)`."""
    return resnet(input_shape, num_classes, depth=32)


def fcn(input_shape, num_classes, filters=(128, 256, 128), kernel_sizes=(8, 5, 3)):
    """The fully convolutional network for time series of Wang, Yan and Oates (2017).

    Three blocks of a 1-D convolution (`filters`, `kernel_sizes`, same padding),
    BatchNorm and ReLU, then global average pooling over time and `num_classes`
    logits. Fawaz et al. (2019) benchmark it on the UCR/UEA archives.

    Args:
        input_shape: `(T, C)`: time steps, channels.
        num_classes: number of logits K.

    Reference: Wang, Yan & Oates, "Time Series Classification from Scratch with
    Deep Neural Networks: A Strong Baseline", IJCNN 2017.
    """
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for width, size in zip(filters, kernel_sizes):
        x = layers.Conv1D(width, size, padding="same", use_bias=False)(x)
        x = _batch_norm()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="fcn")


def resnet1d(input_shape, num_classes, filters=(64, 128, 128), kernel_sizes=(8, 5, 3)):
    """The residual network for time series of Wang, Yan and Oates (2017).

    Three residual blocks, each three 1-D convolutions (`kernel_sizes`, same
    padding, the block's width from `filters`) with BatchNorm, ReLU between
    them; the shortcut is a 1x1 convolution with BatchNorm where the width
    changes, BatchNorm alone where it does not (as in Fawaz et al.'s code).
    Global average pooling over time, then `num_classes` logits. Arguments and
    reference as for `fcn`.
    """
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for width in filters:
        y = x
        for i, size in enumerate(kernel_sizes):
            y = layers.Conv1D(width, size, padding="same", use_bias=False)(y)
            y = _batch_norm()(y)
            if i < len(kernel_sizes) - 1:
                y = layers.ReLU()(y)
        shortcut = x
        if shortcut.shape[-1] != width:
            shortcut = layers.Conv1D(width, 1, use_bias=False)(shortcut)
        shortcut = _batch_norm()(shortcut)
        x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling1D()(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="resnet1d")


def mlp(input_shape, num_classes, hidden_units=(256, 256)):
    """A multilayer perceptron for feature vectors `(F,)`: dense ReLU layers of
    `hidden_units`, then `num_classes` logits (inputs standardized upstream)."""
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = layers.Flatten()(inputs)
    for width in hidden_units:
        x = layers.Dense(width, activation="relu")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="mlp")


NETWORKS = ("auto", "mnist_cnn", "fast_cnn", "fast_cnn<width>", "resnet<depth>", "fcn",
            "resnet1d", "mlp")


def resolve(name, input_shape):
    """The network `"auto"` stands for with inputs of `input_shape` (any other
    name unchanged): the MLP for `(F,)`, the FCN for `(T, C)`, fast_cnn for
    colour images of at least `FAST_CNN_MIN_SIZE` pixels a side, else the MNIST CNN."""
    input_shape = tuple(input_shape)
    if name != "auto":
        return name
    if len(input_shape) == 1:
        return "mlp"
    if len(input_shape) == 2:
        return "fcn"
    colour = input_shape[-1] == 3 and min(input_shape[:2]) >= FAST_CNN_MIN_SIZE
    return "fast_cnn" if colour else "mnist_cnn"


def build(name, input_shape, num_classes):
    """A network by name: `"mnist_cnn"`, `"resnet{6n+2}"` (e.g. `"resnet32"`),
    `"fast_cnn"` (`"fast_cnn{w}"`: widths w, 4w, 4w; fast_cnn is fast_cnn64), `"fcn"`,
    `"resnet1d"`, `"mlp"`, or `"auto"` (`resolve`): by the input's rank, the
    MNIST CNN for grey images (fast_cnn for colour ones), the FCN for series `(T, C)`,
    the MLP for vectors `(F,)`."""
    input_shape = tuple(input_shape)
    name = resolve(name, input_shape)
    wanted_rank = {"mnist_cnn": 3, "fcn": 2, "resnet1d": 2}.get(
        name, 3 if name.startswith(("resnet", "fast_cnn")) else None)
    if wanted_rank is not None and len(input_shape) != wanted_rank:
        raise ValueError(f"network={name!r} takes inputs of rank {wanted_rank}; these have "
                         f"shape {input_shape}. Use network=auto, or one of {NETWORKS}.")
    if name == "mnist_cnn":
        return mnist_cnn(input_shape, num_classes)
    if name.startswith("resnet") and name[len("resnet"):].isdigit():
        return resnet(input_shape, num_classes, depth=int(name[len("resnet"):]))
    if name == "fast_cnn":
        return fast_cnn(input_shape, num_classes)
    if name.startswith("fast_cnn") and name[len("fast_cnn"):].isdigit():
        width = int(name[len("fast_cnn"):])
        return fast_cnn(input_shape, num_classes, widths=(width, 4 * width, 4 * width))
    if name == "fcn":
        return fcn(input_shape, num_classes)
    if name == "resnet1d":
        return resnet1d(input_shape, num_classes)
    if name == "mlp":
        return mlp(input_shape, num_classes)
    raise ValueError(f"network must be one of {NETWORKS} (e.g. 'resnet32'). "
                     f"Received: network={name!r}")
