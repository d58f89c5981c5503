"""Shared tiny fixtures: 8x8 images, 2 classes, small networks."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import keras
import numpy as np
import pytest
import tensorflow as tf

# Two logical CPU devices, so tests can run MirroredStrategy on this CPU (the
# documented way; see docs/scaling.md). It must happen before
# TensorFlow initializes its devices; without a strategy, ops run on the first.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras_icn  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (8, 8, 1)


def tfds_data_dir():
    """The prepared TFDS data_dir with MNIST and CIFAR-10: TFDS_DATA_DIR, else
    ../shared/datasets/tfds."""
    path = os.environ.get("TFDS_DATA_DIR") or str(REPO.parent / "shared" / "datasets" / "tfds")
    for prepared in ("mnist/3.0.1", "cifar10/3.0.2"):
        if not os.path.isdir(os.path.join(path, prepared)):
            pytest.fail(f"No prepared TFDS {prepared} under {path!r}: set TFDS_DATA_DIR to a TFDS "
                        "data_dir that holds mnist/3.0.1 and cifar10/3.0.2 (these tests must not "
                        "be skipped).")
    return path


def make_network(num_classes=2, image_shape=IMAGE_SHAPE, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(image_shape),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(num_classes),
    ], name="tiny")


def make_images(count=256, seed=0):
    """Class 0 is bright on the left half, class 1 on the right; noise on top."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count).astype("int32")
    images = rng.uniform(0.0, 0.2, (count,) + IMAGE_SHAPE).astype("float32")
    half = IMAGE_SHAPE[1] // 2
    images[labels == 0, :, :half] += 0.7
    images[labels == 1, :, half:] += 0.7
    return images, labels


def make_dataset(count=256, batch_size=32, seed=0):
    images, labels = make_images(count, seed)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size, drop_remainder=True)


def make_model(num_classes=2, **kwargs):
    settings = dict(num_langevin_steps=5, synthesis_batch_size=8, pool_batch_size=8,
                    pool_capacity=64, synthesis_steps=20, seed=0)
    model = keras_icn.IntrospectiveClassifier(make_network(num_classes), num_classes,
                                              **{**settings, **kwargs})
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    return model


@pytest.fixture(scope="session")
def trained_model():
    """A tiny ICN trained until it separates the two classes."""
    model = make_model()
    model.fit(make_dataset(), epochs=8, shuffle=False, verbose=0)
    return model
