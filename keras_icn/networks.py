"""Backbone networks: functional builders that map images to class logits.

Any `keras.Model` from images `(batch, H, W, C)` to `(batch, num_classes)` logits
can serve as the network of an `IntrospectiveClassifier`; these are the two used
by the ICN family of papers.
"""

import keras
from keras import layers


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
    x = layers.Conv2D(32, 5, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(hidden_units, activation="relu")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="mnist_cnn")


def _residual_block(x, filters, stride):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet32(input_shape=(32, 32, 3), num_classes=10, blocks_per_stage=5):
    """ResNet-32 for 32x32 colour images (CIFAR-10, SVHN).

    Three stages of `blocks_per_stage` basic blocks with 16, 32 and 64 filters
    (6 * 5 + 2 = 32 layers), global average pooling and `num_classes` logits.
    Its BatchNormalization layers run in inference mode during synthesis.

    Args:
        input_shape: `(H, W, C)` of the images.
        num_classes: number of logits K.
        blocks_per_stage: residual blocks per stage (5 gives ResNet-32).

    Returns:
        A functional `keras.Model` named `"resnet32"`.

    Reference: He et al., "Deep Residual Learning for Image Recognition", 2016.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, filters, stride)
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="resnet32")


def default_network(image_shape, num_classes):
    """The network `tools/train.py` uses for a dataset's image shape."""
    height, width, channels = image_shape
    if (height, width) == (32, 32):
        return resnet32(image_shape, num_classes)
    return mnist_cnn(image_shape, num_classes)
